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
{{ lib.wait_agents("neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent neutron-metadata-agent") }}
{%- endif %}
