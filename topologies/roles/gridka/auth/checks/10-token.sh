# Check: keystone issues the admin a token.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
. /root/admin-openrc
openstack token issue -f value -c expires
{%- endif %}
