# Check: the volume group cinder-volumes lives on {{ node.disks[0].device if node.disks else "the extra disk" }}.
set -eu
pvs --noheadings -o pv_name,vg_name | grep -Eq '^ *{{ node.disks[0].device if node.disks else "/dev/" }} +cinder-volumes$'
