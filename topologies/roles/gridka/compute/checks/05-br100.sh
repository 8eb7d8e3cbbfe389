{%- if not vars.get("br100", true) -%}
# Check: no br100 (vars.br100 is false): the node's internal address stays on its NIC.
set -eu
ip -4 -br addr show | grep -q ' {{ node.ips[vars.internal_network] }}/'
[ ! -e /sys/class/net/br100 ]
{%- else -%}
# Check: br100 carries eth1 and the node's internal address.
set -eu
ip -4 -br addr show br100 | grep -q '{{ node.ips[vars.internal_network] }}/'
[ -n "$(ls /sys/class/net/br100/brif)" ]
{%- endif %}
