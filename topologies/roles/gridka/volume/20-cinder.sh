# volume-node: cinder-volume on the LVM group cinder-volumes, its database on the
# db-node (needs a package mirror).
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (cinder comes from the package mirror)"
{%- else %}
{%- set db = vars.databases.cinder %}
{%- set dbhost = hostvars[groups.db[0]].ips[vars.internal_network] %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q cinder-volume cinder-api cinder-scheduler tgt
conf=/etc/cinder/cinder.conf
crudini --set $conf database connection 'mysql+pymysql://{{ db.user }}:{{ db.password }}@{{ dbhost }}/cinder'
crudini --set $conf DEFAULT transport_url 'rabbit://guest:{{ vars.rabbit_password }}@{{ dbhost }}'
crudini --set $conf DEFAULT my_ip {{ node.ips[vars.internal_network] }}
crudini --set $conf DEFAULT enabled_backends lvm
crudini --set $conf lvm volume_driver cinder.volume.drivers.lvm.LVMVolumeDriver
crudini --set $conf lvm volume_group cinder-volumes
crudini --set $conf lvm target_protocol iscsi
crudini --set $conf lvm target_helper tgtadm
su -s /bin/sh -c 'cinder-manage db sync' cinder
systemctl restart cinder-volume cinder-api cinder-scheduler tgt
{%- endif %}
