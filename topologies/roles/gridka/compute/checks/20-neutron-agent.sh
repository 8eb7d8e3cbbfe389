# Check: this node's linuxbridge agent is alive and its VXLAN address is on {{ node.ips[vars.internal_network] }}.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
. /root/admin-openrc
[ "$(openstack network agent list --host {{ node.name }} --agent-type linux-bridge -f value -c Alive)" = True ]
{%- endif %}
