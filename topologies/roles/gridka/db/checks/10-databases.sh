# Check: every service's database answers its user over the internal network.
{% import "_lib.j2" as lib -%}
set -eu
{%- for db, cred in vars.databases.items() %}
mysql -h {{ node.ips[vars.internal_network] }} -u {{ cred.user | quote }} -p{{ cred.password | quote }} {{ db | quote }} -N -e 'SELECT 1' >/dev/null
{%- endfor %}
echo "{{ vars.databases | length }} databases answer"
