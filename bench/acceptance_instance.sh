# Run on a node of the GridKa lab (bench/acceptance.py feeds it to `labbuilder ssh …
# bash -s`): the course's first instance. A flavor, a tenant network routed to the public
# network, the uploaded image booted on a compute node until ACTIVE and its console shows
# the guest's kernel (nested TCG: the guest need not finish booting), a 1 GiB volume
# attached, and a floating IP. Idempotent: a second run reuses what the first made.
# $1: the image's name in Glance. $2: `public` (the default) where the lab has the public
# network, `no-public` where it has none (no router gateway, no floating IP).
set -euo pipefail
. /root/admin-openrc
image=${1:?image name}
public=${2:-public}

wait_for() {  # wait_for TRIES "command printing a value" EXPECTED
  local tries=$1 cmd=$2 want=$3 got=
  for _ in $(seq "$tries"); do
    got=$(eval "$cmd" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    case "$got" in error|ERROR) echo "$cmd: $got" >&2; return 1 ;; esac
    sleep 5
  done
  echo "$cmd: '$got' after $((tries * 5)) s, wanted '$want'" >&2
  return 1
}

# The flavor gives the image the memory its Glance min_ram asks for (nova refuses less).
ram=$(openstack image show "$image" -f value -c min_ram)
ram=$(( ram > 256 ? ram : 256 ))
if [ "$(openstack flavor show lab.small -f value -c ram 2>/dev/null || true)" != "$ram" ]; then
  openstack server delete --wait lab-vm >/dev/null 2>&1 || true
  openstack flavor delete lab.small >/dev/null 2>&1 || true
  openstack flavor create --ram "$ram" --disk 4 --vcpus 1 lab.small >/dev/null
fi
openstack network show lab-net >/dev/null 2>&1 || openstack network create lab-net >/dev/null
openstack subnet show lab-subnet >/dev/null 2>&1 \
  || openstack subnet create --network lab-net --subnet-range 192.168.50.0/24 lab-subnet >/dev/null
if [ "$public" = public ] && ! openstack router show lab-router >/dev/null 2>&1; then
  openstack router create lab-router >/dev/null
  openstack router set --external-gateway public lab-router
  openstack router add subnet lab-router lab-subnet
fi

openstack server show lab-vm >/dev/null 2>&1 \
  || openstack server create --flavor lab.small --image "$image" --network lab-net lab-vm >/dev/null
wait_for 120 "openstack server show lab-vm -f value -c status" ACTIVE
echo "server lab-vm: ACTIVE on $(openstack server show lab-vm -f value -c OS-EXT-SRV-ATTR:host)"
for _ in $(seq 60); do
  if openstack console log show lab-vm 2>/dev/null | grep -m1 -E 'Linux version|Booting the kernel'; then
    break
  fi
  sleep 10
done
openstack console log show lab-vm | grep -q -E 'Linux version|Booting the kernel'

openstack volume show lab-vol >/dev/null 2>&1 || openstack volume create --size 1 lab-vol >/dev/null
if [ "$(openstack volume show lab-vol -f value -c status)" != in-use ]; then
  wait_for 60 "openstack volume show lab-vol -f value -c status" available
  openstack server add volume lab-vm lab-vol
fi
wait_for 60 "openstack volume show lab-vol -f value -c status" in-use
echo "volume lab-vol: in-use"

[ "$public" = public ] || exit 0
fip=$(openstack floating ip list --port "$(openstack port list --server lab-vm -f value -c ID | head -1)" \
        -f value -c 'Floating IP Address' | head -1)
if [ -z "$fip" ]; then
  fip=$(openstack floating ip create public -f value -c floating_ip_address)
  openstack server add floating ip lab-vm "$fip"
fi
openstack server show lab-vm -f value -c addresses | grep -q -F "$fip"
echo "floating IP: $fip"
