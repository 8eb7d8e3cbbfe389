# Check: every neutron agent is alive (and the network node runs all four kinds).
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("neutron") }}
{%- else %}
. /root/admin-openrc
# -f value prints the columns in the listing's order: Host, Alive, State, Binary.
listing=$(openstack network agent list -f value -c Host -c Alive -c State -c Binary)
echo "$listing"
[ -n "$listing" ]
if grep -Ev '^[^ ]+ True True ' <<<"$listing"; then
  echo "the agents above are not alive and up" >&2
  exit 1
fi
for b in neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent neutron-metadata-agent; do
  grep -Eq "^{{ node.name }} True True $b\$" <<<"$listing" || { echo "no live $b on {{ node.name }}" >&2; exit 1; }
done
{%- endif %}
