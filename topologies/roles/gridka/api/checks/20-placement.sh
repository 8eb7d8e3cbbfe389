# Check: placement answers (resource providers: one per compute node once they run).
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("placement") }}
{%- else %}
. /root/admin-openrc
openstack resource provider list
{%- endif %}
