{%- if not vars.get("public_network", "public") -%}
# Check: none: the lab has no external network (vars.public_network is not set).
set -eu
echo "no external network in this lab"
{%- else -%}
# Check: the external network {{ vars.get("public_network", "public") }} and its subnet with the floating range exist.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
. /root/admin-openrc
[ "$(openstack network show {{ vars.public_network | quote }} -f value -c router:external)" = True ]
openstack subnet show {{ (vars.public_network ~ "-subnet") | quote }} -f value -c allocation_pools \
  | grep -F {{ vars.floating_range[0] | quote }}
[ -e /sys/class/net/br-public/brif/{{ vars.network_public_interface | quote }} ]
{%- endif %}
{%- endif %}
