# Check: nova-compute on {{ groups.compute | join(" and ") }} reports up, and each is a hypervisor.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("nova-compute") }}
{%- else %}
. /root/admin-openrc
services=$(openstack compute service list --service nova-compute -f value -c Host -c State)
hypervisors=$(openstack hypervisor list -f value -c 'Hypervisor Hostname' -c State)
echo "$services"
echo "$hypervisors"
{%- for name in groups.compute %}
grep -Eq '^{{ name }} up$' <<<"$services"
grep -Eq '^{{ name }}(\.[^ ]*)? up$' <<<"$hypervisors"
{%- endfor %}
{%- endif %}
