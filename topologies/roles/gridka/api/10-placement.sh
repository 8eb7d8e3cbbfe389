# api-node: the placement API (uwsgi, port 8778) on the db-node's placement database;
# nova's scheduler asks it where instances fit (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("placement") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("placement-api python3-osc-placement") }}
conf=/etc/placement/placement.conf
crudini --set "$conf" placement_database connection {{ lib.db_url("placement") | quote }}
crudini --set "$conf" api auth_strategy keystone
{{ lib.authtoken("placement") }}
{{ lib.uwsgi_processes("/etc/placement/placement-api-uwsgi.ini") }}
runuser -u placement -- placement-manage db sync
{{ lib.restart("placement-api") }}
{{ lib.wait_port("127.0.0.1", 8778) }}
curl -s http://127.0.0.1:8778/
echo
{%- endif %}
