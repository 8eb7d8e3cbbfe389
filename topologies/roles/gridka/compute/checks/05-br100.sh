# Check: br100 carries eth1 and the node's internal address.
set -eu
ip -4 -br addr show br100 | grep -q '{{ node.ips[vars.internal_network] }}/'
[ -n "$(ls /sys/class/net/br100/brif)" ]
