# Check: cinder-scheduler and cinder-volume report up.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("cinder") }}
{%- else %}
. /root/admin-openrc
listing=$(openstack volume service list -f value -c Binary -c Host -c State)
echo "$listing"
grep -Eq '^cinder-scheduler {{ node.name }} up$' <<<"$listing"
grep -Eq '^cinder-volume {{ node.name }}@lvm up$' <<<"$listing"
{%- endif %}
