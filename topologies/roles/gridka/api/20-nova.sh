# api-node: nova-api (uwsgi, port 8774), the metadata API (8775, which neutron's metadata
# agent asks for the instances), nova-scheduler, nova-conductor and the noVNC console
# proxy (6080), on the db-node's nova_api, nova and nova_cell0 databases and RabbitMQ;
# then the cells: cell0 and cell1 (needs a package mirror). Compute hosts join cell1
# when the compute role discovers them (and every 2 minutes by the scheduler).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("nova") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("nova-api nova-conductor nova-scheduler nova-consoleproxy python3-osc-placement") }}
conf=/etc/nova/nova.conf
crudini --set "$conf" api_database connection {{ lib.db_url("nova_api") | quote }}
crudini --set "$conf" database connection {{ lib.db_url("nova") | quote }}
{{ lib.nova_common() }}
crudini --set "$conf" neutron service_metadata_proxy true
crudini --set "$conf" neutron metadata_proxy_shared_secret {{ vars.metadata_secret | quote }}
crudini --set "$conf" scheduler discover_hosts_in_cells_interval 120
# One worker each: the course's api-node has 1 GiB for all of these and Horizon.
crudini --set "$conf" DEFAULT osapi_compute_workers 1
crudini --set "$conf" DEFAULT metadata_workers 1
crudini --set "$conf" conductor workers 1
crudini --set "$conf" scheduler workers 1
{{ lib.uwsgi_processes("/etc/nova/nova-api-uwsgi.ini") }}
{{ lib.uwsgi_processes("/etc/nova/nova-api-metadata-uwsgi.ini") }}

runuser -u nova -- nova-manage api_db sync
runuser -u nova -- nova-manage cell_v2 map_cell0 \
  --database_connection {{ lib.db_url("nova_cell0") | quote }}
if ! runuser -u nova -- nova-manage cell_v2 list_cells | grep -Eq '^\| +cell1 +\|'; then
  runuser -u nova -- nova-manage cell_v2 create_cell --name=cell1 --verbose
fi
runuser -u nova -- nova-manage db sync
runuser -u nova -- nova-manage cell_v2 list_cells

# The console proxy: noVNC (Debian's default is SPICE), no serial console proxy.
sed -i -E 's/^[# ]*NOVA_CONSOLE_PROXY_TYPE=.*/NOVA_CONSOLE_PROXY_TYPE=novnc/' /etc/default/nova-consoleproxy
grep -q '^NOVA_CONSOLE_PROXY_TYPE=novnc$' /etc/default/nova-consoleproxy \
  || echo 'NOVA_CONSOLE_PROXY_TYPE=novnc' >> /etc/default/nova-consoleproxy
sed -i -E 's/^[# ]*NOVA_SERIAL_PROXY_START=.*/NOVA_SERIAL_PROXY_START=false/' /etc/default/nova-consoleproxy
systemctl disable --now nova-spicehtml5proxy nova-serialproxy

{{ lib.restart("nova-api nova-api-metadata nova-scheduler nova-conductor nova-novncproxy") }}
{{ lib.wait_port("127.0.0.1", 8774) }}
{{ lib.wait_port("127.0.0.1", 8775) }}
{{ lib.wait_port("127.0.0.1", 6080) }}
{{ lib.wait_listing("openstack compute service list -f value -c Binary -c Host -c State",
                    ["^nova-conductor " ~ node.name ~ " up$", "^nova-scheduler " ~ node.name ~ " up$"]) }}
{%- endif %}
