{%- import "_lib.j2" as lib -%}
{%- set loop_gb = vars.get("volume_loop_file_gb", 0) | int -%}
{%- if loop_gb > 0 -%}
# volume-node: as the RDO course (packstack) makes it, without a disk of its own: a sparse
# file of {{ loop_gb }} GB on the root file system, attached as a loop device, becomes the
# LVM volume group cinder-volumes. A unit attaches it (and activates the group) at every
# boot, before tgt and cinder-volume, so the group and its volumes survive a reboot.
set -eu
file={{ lib.volume_loop_file() }}
mkdir -p "$(dirname "$file")"
[ -e "$file" ] || truncate -s {{ loop_gb }}G "$file"
cat > /etc/systemd/system/gridka-cinder-loop.service <<CONF
[Unit]
Description=Loop device of the LVM volume group cinder-volumes ($file)
RequiresMountsFor=$file
Before=tgt.service cinder-volume.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'losetup -j $file | grep -q . || losetup --find $file'
ExecStart=-/sbin/vgchange -a ay cinder-volumes

[Install]
WantedBy=multi-user.target
CONF
systemctl daemon-reload
systemctl enable gridka-cinder-loop.service
systemctl start gridka-cinder-loop.service
disk=$(losetup -j "$file" | cut -d: -f1 | head -n 1)
[ -n "$disk" ] || { echo "$file is attached to no loop device" >&2; exit 1; }
{%- else -%}
# volume-node: the extra disk becomes the LVM volume group cinder-volumes.
set -eu
disk={{ node.disks[0].device }}
{%- endif %}
pvs "$disk" >/dev/null 2>&1 || pvcreate "$disk"
vgs cinder-volumes >/dev/null 2>&1 || vgcreate cinder-volumes "$disk"
vgs cinder-volumes
