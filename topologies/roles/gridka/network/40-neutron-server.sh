# network-node: neutron's API (uwsgi, port 9696) and RPC server with the ML2 plugin on
# the db-node's neutron database: {% if vars.get("public_network", "public") %}flat provider networks (physical network "{{ vars.get("public_network", "public") }}"
# on br-public), {% endif %}VXLAN tenant networks, the linuxbridge mechanism driver with l2population,
# routers; nova on {{ groups.get("api", ["the api node"])[0] }} is told about port changes (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
# Debian's neutron-server is neutron-api + neutron-rpc-server; ML2 comes with neutron-common.
{{ lib.install("neutron-server") }}
conf=/etc/neutron/neutron.conf
crudini --set "$conf" database connection {{ lib.db_url("neutron") | quote }}
crudini --set "$conf" DEFAULT core_plugin ml2
crudini --set "$conf" DEFAULT service_plugins router
crudini --set "$conf" DEFAULT transport_url {{ lib.transport_url() | quote }}
crudini --set "$conf" DEFAULT auth_strategy keystone
crudini --set "$conf" DEFAULT interface_driver linuxbridge
crudini --set "$conf" DEFAULT notify_nova_on_port_status_changes true
crudini --set "$conf" DEFAULT notify_nova_on_port_data_changes true
crudini --set "$conf" DEFAULT api_workers 1
crudini --set "$conf" DEFAULT rpc_workers 1
crudini --set "$conf" DEFAULT rpc_state_report_workers 1
# Debian's neutron (Zed) refuses the linuxbridge driver unless it is enabled here.
crudini --set "$conf" experimental linuxbridge true
{{ lib.authtoken("neutron") }}
{{ lib.service_auth("nova", "nova") }}
crudini --set "$conf" oslo_concurrency lock_path /var/lib/neutron/tmp
ml2=/etc/neutron/plugins/ml2/ml2_conf.ini
crudini --set "$ml2" ml2 type_drivers flat,vxlan
crudini --set "$ml2" ml2 tenant_network_types vxlan
crudini --set "$ml2" ml2 mechanism_drivers linuxbridge,l2population
crudini --set "$ml2" ml2 extension_drivers port_security
{%- if vars.get("public_network", "public") %}
crudini --set "$ml2" ml2_type_flat flat_networks {{ vars.public_network | quote }}
{%- endif %}
crudini --set "$ml2" ml2_type_vxlan vni_ranges 1:1000
crudini --set "$ml2" securitygroup enable_ipset true
{#- One thread: neutron's API runs on eventlet, whose hub the ini's 32 uwsgi threads
    corrupt ("greenlet.error: cannot switch to a different thread" in neutron-api.log),
    after which every request hangs (both compute nodes' agent listings did, for good). #}
{{ lib.uwsgi_processes("/etc/neutron/neutron-api-uwsgi.ini", threads=1) }}
install -d -o neutron -g neutron /var/lib/neutron/tmp
runuser -u neutron -- neutron-db-manage --config-file "$conf" --config-file "$ml2" upgrade head
{{ lib.restart("neutron-api neutron-rpc-server") }}
{{ lib.wait_port("127.0.0.1", 9696) }}
curl -s http://127.0.0.1:9696/
echo
{%- endif %}
