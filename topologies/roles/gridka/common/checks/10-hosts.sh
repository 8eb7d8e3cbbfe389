# Check: every lab node resolves to its internal address; the clock's only source is the lab host.
set -eu
{%- for name, host in hostvars.items() %}
{%- set ip = host.ips.get(vars.internal_network) %}
{%- if ip %}
got=$(getent hosts {{ name }} | awk 'NR == 1 {print $1}')
[ "$got" = {{ ip }} ] || { echo "{{ name }} resolves to '$got', not {{ ip }}"; exit 1; }
{%- endif %}
{%- endfor %}
sources=$(chronyc -n sources)
echo "$sources"
grep -q ' {{ networks[vars.ntp_network].gateway }} ' <<<"$sources" || { echo "chrony does not use the lab host"; exit 1; }
if grep -v ' {{ networks[vars.ntp_network].gateway }} ' <<<"$sources" | grep -q '^\^'; then
  echo "chrony uses a source other than the lab host"; exit 1
fi
echo "{{ node.name }}: names and clock ok"
