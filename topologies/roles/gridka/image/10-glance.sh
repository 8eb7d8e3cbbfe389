# image-node: glance (api) on the db-node's glance database, registered with keystone
# (needs a package mirror).
{% import "_lib.j2" as lib -%}
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (glance comes from the package mirror)"
{%- else %}
{%- set db = vars.databases.glance %}
{%- set dbhost = hostvars[groups.db[0]].ips[vars.internal_network] %}
{%- set auth = groups.auth[0] %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q glance
conf=/etc/glance/glance-api.conf
crudini --set $conf database connection 'mysql+pymysql://{{ db.user }}:{{ db.password }}@{{ dbhost }}/glance'
{{ lib.authtoken(auth, vars.admin_password, "") }}
crudini --set $conf paste_deploy flavor keystone
su -s /bin/sh -c 'glance-manage db_sync' glance
systemctl restart glance-api
{%- endif %}
