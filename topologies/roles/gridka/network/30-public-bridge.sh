{%- if not vars.get("public_network", "public") -%}
# network-node: no br-public: the lab has no external network (vars.public_network is not
# set), so no floating IPs; instances reach each other over VXLAN tenant networks.
set -eu
echo "skipped: br-public (the lab has no external network: vars.public_network is not set)"
{%- else -%}
# network-node: the public network's interface {{ vars.network_public_interface }} becomes the port of bridge
# br-public, which takes over its address; neutron's linuxbridge agent plugs the routers'
# gateway ports (and with them the floating IPs) into br-public, as the course's neutron
# edition did with br-ex on eth2. systemd-networkd files sorted before cloud-init's, so
# this survives a reboot (needs a package mirror, as neutron does).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
{%- set nic = node.interfaces | selectattr("name", "equalto", vars.network_public_interface) | first %}
{%- set address = (nic.ip ~ "/" ~ nic.prefix) if nic.ip else "" %}
pub={{ vars.network_public_interface | quote }}
{{ lib.bridge_files("br-public", "pub", address) }}
networkctl reload
networkctl reconfigure "$pub"
for _ in $(seq 30); do
  [ -e /sys/class/net/br-public/brif/$pub ] {% if address %}&& ip -4 -br addr show br-public | grep -q '{{ address }}'{% endif %} && break
  sleep 1
done
# A bridge port carries no address of its own.
ip -4 addr flush dev "$pub"
ip link set "$pub" up
ip -br addr show br-public
bridge link show
[ -e /sys/class/net/br-public/brif/$pub ]
{%- if address %}
ip -4 -br addr show br-public | grep -q '{{ address }}'
{%- endif %}
{%- endif %}
{%- endif %}
