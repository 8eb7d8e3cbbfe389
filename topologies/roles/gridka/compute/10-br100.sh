{%- if not vars.get("br100", true) -%}
# compute node: no br100 (vars.br100 is false): the internal network's NIC keeps its
# address; neutron's VXLAN tenant networks need no bridge of the node's own. Where that
# NIC is the node's only one (rdo-course), bridging it would move the address SSH and
# every service use in the middle of this run.
set -eu
echo "skipped: br100 (vars.br100 is false)"
{%- else -%}
# compute node: eth1 bridged into br100, which carries the node's internal address
# ({{ node.ips[vars.internal_network] }}), so instances share the internal network.
{% import "_lib.j2" as lib -%}
set -eu
nic={{ (node.interfaces | selectattr("network", "equalto", vars.internal_network) | first).name | quote }}
{{ lib.br100_files("nic", node.ips[vars.internal_network] ~ "/" ~ (node.interfaces | selectattr("network", "equalto", vars.internal_network) | first).prefix) }}
networkctl reload
networkctl reconfigure "$nic"
for _ in $(seq 30); do
  ip -4 -br addr show br100 2>/dev/null | grep -q '{{ node.ips[vars.internal_network] }}/' && [ -e /sys/class/net/br100/brif/$nic ] && break
  sleep 1
done
ip -br addr show br100
[ -e /sys/class/net/br100/brif/$nic ]
ip -4 -br addr show br100 | grep -q '{{ node.ips[vars.internal_network] }}/'
{%- endif %}
