# compute node: neutron's linuxbridge agent: the instances' ports on VXLAN tenant
# networks over {{ node.ips[vars.internal_network] }} (br100 carries it), iptables security groups
# (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("neutron-linuxbridge-agent") }}
{%- if "network" in node.roles %}
# The network role configured and started this node's agent (with its provider bridge).
{%- else %}
{{ lib.linuxbridge_agent("") }}
crudini --set /etc/neutron/neutron.conf DEFAULT auth_strategy keystone
crudini --set /etc/neutron/neutron.conf experimental linuxbridge true
{{ lib.restart("neutron-linuxbridge-agent") }}
{%- endif %}
{{ lib.wait_agents("neutron-linuxbridge-agent") }}
{%- endif %}
