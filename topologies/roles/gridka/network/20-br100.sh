{%- if not vars.get("br100", true) -%}
# network-node: no br100 (vars.br100 is false): nova-network's bridge, which neutron does
# not use; the lab has no NIC to spare for it.
set -eu
echo "skipped: br100 (vars.br100 is false)"
{%- else -%}
# network-node: bridge br100 enslaving {{ vars.network_flat_interface }} with no address (the
# network service puts the gateway addresses on it); {{ vars.network_public_interface }} up.
# systemd-networkd files, sorted before cloud-init's, so they survive a reboot.
{% import "_lib.j2" as lib -%}
set -eu
flat={{ vars.network_flat_interface | quote }}
{{ lib.br100_files("flat") }}
networkctl reload
networkctl reconfigure "$flat"
ip link set {{ vars.network_public_interface | quote }} up
for _ in $(seq 30); do
  [ "$(cat /sys/class/net/$flat/master/uevent 2>/dev/null | sed -n 's/^INTERFACE=//p')" = br100 ] && break
  sleep 1
done
ip -br addr show br100
bridge link show
[ -e /sys/class/net/br100/brif/$flat ]
{%- endif %}
