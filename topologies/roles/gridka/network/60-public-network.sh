{%- if not vars.get("public_network", "public") -%}
# network-node: no external network in neutron (vars.public_network is not set): no
# floating IPs in this lab.
set -eu
echo "skipped: external network (vars.public_network is not set)"
{%- else -%}
# network-node: the course's public network as neutron's external network "{{ vars.get("public_network", "public") }}" (flat,
# on br-public) and its subnet: the lab host's address as gateway, floating IPs from
# {{ vars.get("floating_range", ["?", "?"])[0] }} to {{ vars.get("floating_range", ["?", "?"])[1] }} (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
{%- set net = networks[vars.public_network] %}
. /root/admin-openrc
name={{ vars.public_network | quote }}
if ! openstack network show "$name" >/dev/null 2>&1; then
  openstack network create --external --provider-network-type flat \
    --provider-physical-network "$name" "$name"
fi
if ! openstack subnet show "$name-subnet" >/dev/null 2>&1; then
  openstack subnet create --network "$name" --subnet-range {{ net.subnet }} \
{%- if net.gateway %}
    --gateway {{ net.gateway }} \
{%- endif %}
    --allocation-pool {{ ("start=" ~ vars.floating_range[0] ~ ",end=" ~ vars.floating_range[1]) | quote }} \
    --no-dhcp "$name-subnet"
fi
openstack subnet show "$name-subnet" -f value -c cidr -c gateway_ip -c allocation_pools
{%- endif %}
{%- endif %}
