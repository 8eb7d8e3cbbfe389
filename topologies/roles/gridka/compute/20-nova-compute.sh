# compute node: nova-compute with plain qemu (the course's nodes are VMs: no nested KVM),
# talking to RabbitMQ on the db-node (needs a package mirror).
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (nova-compute comes from the package mirror)"
{%- else %}
{%- set dbhost = hostvars[groups.db[0]].ips[vars.internal_network] %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q nova-compute nova-compute-qemu
conf=/etc/nova/nova.conf
crudini --set $conf DEFAULT transport_url 'rabbit://guest:{{ vars.rabbit_password }}@{{ dbhost }}'
crudini --set $conf DEFAULT my_ip {{ node.ips[vars.internal_network] }}
crudini --set $conf libvirt virt_type qemu
crudini --set $conf glance api_servers http://{{ groups.image[0] }}:9292 || true
systemctl restart nova-compute
{%- endif %}
