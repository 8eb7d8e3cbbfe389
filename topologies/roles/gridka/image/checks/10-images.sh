# Check: glance answers with the image list (through keystone's catalog).
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("glance") }}
{%- else %}
. /root/admin-openrc
openstack image list
{%- endif %}
