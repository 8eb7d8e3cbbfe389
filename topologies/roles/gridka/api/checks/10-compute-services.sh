# Check: nova-conductor and nova-scheduler report up; the API answers.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("nova") }}
{%- else %}
. /root/admin-openrc
listing=$(openstack compute service list -f value -c Binary -c Host -c State)
echo "$listing"
grep -Eq '^nova-conductor {{ node.name }} up$' <<<"$listing"
grep -Eq '^nova-scheduler {{ node.name }} up$' <<<"$listing"
{%- endif %}
