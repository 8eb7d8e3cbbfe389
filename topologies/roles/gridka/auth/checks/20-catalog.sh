# Check: the catalog has every service of the lab, and each service user can log in.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
. /root/admin-openrc
types=$(openstack service list -f value -c Type)
{#- the services the auth role registers: identity, and those whose role has a node -#}
{%- set types = ["identity"] %}
{%- for type, role in [("image", "image"), ("compute", "api"), ("placement", "api"), ("network", "network"),
                       ("volumev3", "volume")] if groups.get(role) %}
{%- set _ = types.append(type) %}
{%- endfor %}
for t in {{ types | join(" ") }}; do
  grep -qx "$t" <<<"$types" || { echo "no $t service in the catalog" >&2; exit 1; }
done
{%- for user, password in vars.service_passwords.items() %}
OS_USERNAME={{ user | quote }} OS_PASSWORD={{ password | quote }} OS_PROJECT_NAME=service \
  openstack token issue -f value -c user_id >/dev/null
{%- endfor %}
echo "catalog complete; {{ vars.service_passwords | length }} service users log in"
{%- endif %}
