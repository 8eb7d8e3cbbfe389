# auth-node: keystone on the db-node's keystone database, bootstrapped with the admin
# user and the endpoints of the course (needs a package mirror).
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (keystone comes from the package mirror)"
{%- else %}
{%- set db = vars.databases.keystone %}
{%- set dbhost = hostvars[groups.db[0]].ips[vars.internal_network] %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q keystone
crudini --set /etc/keystone/keystone.conf database connection \
  'mysql+pymysql://{{ db.user }}:{{ db.password }}@{{ dbhost }}/keystone'
crudini --set /etc/keystone/keystone.conf token provider fernet
su -s /bin/sh -c 'keystone-manage db_sync' keystone
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
keystone-manage bootstrap --bootstrap-password '{{ vars.admin_password }}' \
  --bootstrap-admin-url http://{{ node.name }}:5000/v3/ \
  --bootstrap-internal-url http://{{ node.name }}:5000/v3/ \
  --bootstrap-public-url http://{{ node.name }}:5000/v3/ \
  --bootstrap-region-id RegionOne
systemctl restart apache2 || systemctl restart keystone
{%- endif %}
