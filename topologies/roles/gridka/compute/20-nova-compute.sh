# compute node: nova-compute with plain qemu (the course's nodes are VMs: no nested KVM)
# under libvirt, talking to RabbitMQ on the db-node, placement and the console proxy on
# the api-node (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("nova-compute") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("nova-compute nova-compute-qemu") }}
conf=/etc/nova/nova.conf
{{ lib.nova_common() }}
{%- if "api" in node.roles %}
# nova.conf is the api role's too (one node runs both): its database settings stay.
{%- else %}
# No database here (nova-compute reaches it through nova-conductor): Debian's file has SQLite.
crudini --del "$conf" database connection
{%- endif %}
crudini --set "$conf" DEFAULT compute_driver libvirt.LibvirtDriver
crudini --set "$conf" libvirt virt_type qemu
crudini --set /etc/nova/nova-compute.conf libvirt virt_type qemu
# An instance's start waits for neutron's word that its port is up: the linuxbridge agent
# here sees the tap device, sets its iptables rules through privsep and reports it, and
# past nova's 5 minutes the instance goes to ERROR. A precaution, not a measured failure:
# that agent takes 11-21 minutes just to start on gridka's compute nodes; the wiring was
# not timed.
crudini --set "$conf" DEFAULT vif_plugging_timeout 1200
# Volumes attach over iSCSI (cinder's LVM on volume-node, exported by tgt). The image has
# iscsid off and GenerateName=yes as its initiator name: iscsid's start makes this clone's
# own name, before nova-compute reports its connector (os-brick reads the name from there).
systemctl enable --now iscsid.socket
systemctl start iscsid.service
grep -q '^InitiatorName=iqn\.' /etc/iscsi/initiatorname.iscsi
{{ lib.restart("libvirtd") }}
virsh -c qemu:///system version
{{ lib.restart("nova-compute") }}
{%- endif %}
