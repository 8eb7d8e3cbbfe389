# api-node: nova-api, nova-scheduler and nova-conductor on the db-node's nova database
# and RabbitMQ (needs a package mirror).
{% import "_lib.j2" as lib -%}
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (nova comes from the package mirror)"
{%- else %}
{%- set db = vars.databases.nova %}
{%- set dbhost = hostvars[groups.db[0]].ips[vars.internal_network] %}
{%- set auth = groups.auth[0] %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q nova-api nova-scheduler nova-conductor
conf=/etc/nova/nova.conf
crudini --set $conf DEFAULT transport_url 'rabbit://guest:{{ vars.rabbit_password }}@{{ dbhost }}'
crudini --set $conf DEFAULT my_ip {{ node.ips[vars.internal_network] }}
crudini --set $conf api_database connection 'mysql+pymysql://{{ db.user }}:{{ db.password }}@{{ dbhost }}/nova_api'
crudini --set $conf database connection 'mysql+pymysql://{{ db.user }}:{{ db.password }}@{{ dbhost }}/nova'
crudini --set $conf api auth_strategy keystone
{{ lib.authtoken(auth, vars.admin_password, "/") }}
crudini --set $conf glance api_servers http://{{ groups.image[0] }}:9292
su -s /bin/sh -c 'nova-manage api_db sync' nova
su -s /bin/sh -c 'nova-manage cell_v2 map_cell0' nova
su -s /bin/sh -c 'nova-manage cell_v2 create_cell --name=cell1' nova || true
su -s /bin/sh -c 'nova-manage db sync' nova
systemctl restart nova-api nova-scheduler nova-conductor
{%- endif %}
