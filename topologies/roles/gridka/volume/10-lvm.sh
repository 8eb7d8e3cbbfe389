# volume-node: the extra disk becomes the LVM volume group cinder-volumes.
set -eu
disk={{ node.disks[0].device }}
pvs "$disk" >/dev/null 2>&1 || pvcreate "$disk"
vgs cinder-volumes >/dev/null 2>&1 || vgcreate cinder-volumes "$disk"
vgs cinder-volumes
