# Course step "all nodes": /root/admin-openrc, the credentials of keystone's admin
# (`. /root/admin-openrc` before any `openstack` command; the checks use it too).
{% import "_lib.j2" as lib -%}
set -eu
{%- if not groups.get("auth") %}
echo "no admin-openrc: this lab has no auth node"
{%- else %}
umask 077
cat > /root/admin-openrc.new <<'RC'
export OS_USERNAME=admin
export OS_PASSWORD={{ vars.admin_password | quote }}
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_AUTH_URL=http://{{ groups.auth[0] }}:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME={{ vars.get("region", "RegionOne") | quote }}
RC
mv /root/admin-openrc.new /root/admin-openrc
echo "/root/admin-openrc: admin on {{ groups.auth[0] }}"
{%- endif %}
