# Check: every lab node resolves to its internal address, the clock follows the lab host.
set -eu
{%- for name, host in hostvars.items() %}
{%- set ip = host.ips.get(vars.internal_network) %}
{%- if ip %}
[ "$(getent hosts {{ name }} | awk '{print $1}')" = {{ ip }} ]
{%- endif %}
{%- endfor %}
chronyc -n sources | grep -q '^\^[*+]'
echo "{{ node.name }}: names and clock ok"
