# volume-node: all of cinder, as in the course: cinder-api (uwsgi, port 8776),
# cinder-scheduler and cinder-volume with the LVM volume group cinder-volumes, its
# volumes exported over iSCSI by tgt; the db-node's cinder database and RabbitMQ
# (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("cinder") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("cinder-api cinder-scheduler cinder-volume tgt lvm2") }}
conf=/etc/cinder/cinder.conf
crudini --set "$conf" database connection {{ lib.db_url("cinder") | quote }}
crudini --set "$conf" DEFAULT transport_url {{ lib.transport_url() | quote }}
crudini --set "$conf" DEFAULT auth_strategy keystone
crudini --set "$conf" DEFAULT my_ip {{ node.ips[vars.internal_network] }}
crudini --set "$conf" DEFAULT enabled_backends lvm
crudini --set "$conf" DEFAULT glance_api_servers http://{{ lib.host("image") }}:9292
crudini --set "$conf" DEFAULT osapi_volume_workers 1
# A service counts as down after 3 minutes without a heartbeat, not cinder's 1: on an
# emulated node of a busy host cinder-volume's LVM listings alone take 10-40 s and its
# 10-second heartbeats come late, and the scheduler would then send new volumes nowhere.
crudini --set "$conf" DEFAULT service_down_time 180
{{ lib.authtoken("cinder") }}
crudini --set "$conf" oslo_concurrency lock_path /var/lib/cinder/tmp
crudini --set "$conf" lvm volume_driver cinder.volume.drivers.lvm.LVMVolumeDriver
crudini --set "$conf" lvm volume_group cinder-volumes
# cinder-api waits for cinder-volume's answer when nova attaches a volume (the export's
# tgtadm and LVM commands, through rootwrap): on a busy TCG node that took more than
# oslo.messaging's 60 s, cinder-api answered 500 and nova rolled the attachment back.
crudini --set "$conf" DEFAULT rpc_response_timeout 600
# Plain (thick) logical volumes on the disk, as in the course (cinder's "auto" would make
# a thin pool of the whole group when it can); no zeroing of deleted volumes (slow under
# emulation, pointless in a lab).
crudini --set "$conf" lvm lvm_type default
crudini --set "$conf" lvm volume_clear none
crudini --set "$conf" lvm volume_backend_name lvm
crudini --set "$conf" lvm target_protocol iscsi
crudini --set "$conf" lvm target_helper tgtadm
crudini --set "$conf" lvm target_ip_address {{ node.ips[vars.internal_network] }}
# Debian's file names the same two under their old names.
crudini --del "$conf" lvm iscsi_protocol
crudini --del "$conf" lvm iscsi_helper
{{ lib.uwsgi_processes("/etc/cinder/cinder-api-uwsgi.ini") }}
install -d -o cinder -g cinder /var/lib/cinder/tmp /var/lib/cinder/volumes
vgs cinder-volumes
runuser -u cinder -- cinder-manage db sync
# tgt reads cinder's volume list through /etc/tgt/conf.d/cinder_tgt.conf.
{{ lib.restart("tgt cinder-api cinder-scheduler cinder-volume") }}
{{ lib.wait_port("127.0.0.1", 8776) }}
{{ lib.wait_listing("openstack volume service list -f value -c Binary -c Host -c State",
                    ["^cinder-scheduler " ~ node.name ~ " up$", "^cinder-volume " ~ node.name ~ "@lvm up$"]) }}
# The scheduler places volumes only on backends whose capacity cinder-volume has reported
# to it (once a minute, first after its driver starts: minutes under emulation); until
# then every new volume ends in "No valid backend".
{{ lib.wait_listing("cinder get-pools", [" " ~ node.name ~ "@lvm#lvm "]) }}
{%- endif %}
