{%- import "_lib.j2" as lib -%}
{%- if vars.get("volume_loop_file_gb", 0) | int > 0 -%}
# Check: the volume group cinder-volumes lives on the loop device of {{ lib.volume_loop_file() }},
# which a unit attaches at boot.
set -eu
systemctl is-enabled --quiet gridka-cinder-loop.service
disk=$(losetup -j {{ lib.volume_loop_file() }} | cut -d: -f1 | head -n 1)
[ -n "$disk" ]
pvs --noheadings -o pv_name,vg_name | grep -Eq "^ *$disk +cinder-volumes\$"
{%- else -%}
# Check: the volume group cinder-volumes lives on {{ node.disks[0].device if node.disks else "the extra disk" }}.
set -eu
pvs --noheadings -o pv_name,vg_name | grep -Eq '^ *{{ node.disks[0].device if node.disks else "/dev/" }} +cinder-volumes$'
{%- endif %}
