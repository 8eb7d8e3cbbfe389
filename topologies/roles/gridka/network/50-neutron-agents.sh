# network-node: the agents: linuxbridge ({% if vars.get("public_network", "public") %}br-public for the provider network "{{ vars.get("public_network", "public") }}",
# {% endif %}VXLAN over {{ node.ips[vars.internal_network] }}), L3 (routers, NAT, floating IPs), DHCP and metadata
# (it passes the instances' requests to nova's metadata API on {{ groups.get("api", ["the api node"])[0] }}) (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent neutron-metadata-agent") }}
{{ lib.linuxbridge_agent(vars.public_network ~ ":br-public" if vars.get("public_network", "public") else "") }}
crudini --set /etc/neutron/l3_agent.ini DEFAULT interface_driver linuxbridge
conf=/etc/neutron/dhcp_agent.ini
crudini --set "$conf" DEFAULT interface_driver linuxbridge
crudini --set "$conf" DEFAULT dhcp_driver neutron.agent.linux.dhcp.Dnsmasq
crudini --set "$conf" DEFAULT enable_isolated_metadata true
conf=/etc/neutron/metadata_agent.ini
crudini --set "$conf" DEFAULT nova_metadata_host {{ lib.host("api") }}
crudini --set "$conf" DEFAULT metadata_proxy_shared_secret {{ vars.metadata_secret | quote }}
crudini --set "$conf" DEFAULT metadata_workers 1
{{ lib.restart("neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent neutron-metadata-agent") }}
{#- -f value prints the columns in the listing's order: Alive, State, Binary. #}
{{ lib.wait_listing("openstack network agent list --host " ~ node.name ~ " -f value -c Alive -c State -c Binary",
                    ["^True True neutron-linuxbridge-agent$", "^True True neutron-l3-agent$",
                     "^True True neutron-dhcp-agent$", "^True True neutron-metadata-agent$"],
                    logs=["/var/log/neutron/neutron-linuxbridge-agent.log", "/var/log/neutron/neutron-l3-agent.log",
                          "/var/log/neutron/neutron-dhcp-agent.log", "/var/log/neutron/neutron-metadata-agent.log"]) }}
{%- endif %}
