# Check: every lab node resolves to its internal address; the clock's only source is the lab host.
set -eu
{%- for name, host in hostvars.items() %}
{%- set ip = host.ips.get(vars.internal_network) %}
{%- if ip %}
[ "$(getent hosts {{ name }} | awk '{print $1}')" = {{ ip }} ]
{%- endif %}
{%- endfor %}
chronyc -n sources | grep -q ' {{ networks[vars.ntp_network].gateway }} '
! chronyc -n sources | grep -v ' {{ networks[vars.ntp_network].gateway }} ' | grep -q '^\^'
echo "{{ node.name }}: names and clock ok"
