{%- set loop = vars.get("volume_loop_file_gb", 0) | int > 0 -%}
# Check: a 1 GB volume becomes available as a logical volume in cinder-volumes on
# {{ "a loop device" if loop else node.disks[0].device if node.disks else "the extra disk" }}; then it is deleted again.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("cinder") }}
{%- else %}
. /root/admin-openrc
name=gridka-check-$$
id=$(openstack volume create --size 1 -f value -c id "$name")
trap 'openstack volume delete "$id" >/dev/null 2>&1 || true' EXIT
status=
for _ in $(seq 60); do
  status=$(openstack volume show "$id" -f value -c status)
  case "$status" in available|error) break;; esac
  sleep 5
done
echo "volume $name ($id): $status"
[ "$status" = available ]
lvs=$(lvs --noheadings -o lv_name,vg_name,devices cinder-volumes)
echo "$lvs"
grep -q "volume-$id .*cinder-volumes .*{{ "/dev/loop" if loop else node.disks[0].device if node.disks else "/dev/" }}" <<<"$lvs"
openstack volume delete "$id"
trap - EXIT
for _ in $(seq 60); do
  lvs "cinder-volumes/volume-$id" >/dev/null 2>&1 || break
  sleep 5
done
if lvs "cinder-volumes/volume-$id" >/dev/null 2>&1; then
  echo "volume-$id is still in cinder-volumes after its deletion" >&2
  exit 1
fi
echo "volume created on LVM and deleted"
{%- endif %}
