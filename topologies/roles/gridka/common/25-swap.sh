# Every node: a swap file of vars.swap_mb MiB (0 or unset: none). The course's nodes are
# small (512 MiB - 1 GiB) and Debian's OpenStack services are Python processes of about
# 100 MiB each; idle pages go to swap instead of the OOM killer ending a service.
set -eu
size={{ vars.get("swap_mb", 0) | int }}
if [ "$size" -le 0 ]; then
  echo "no swap file (vars.swap_mb is not set)"
  exit 0
fi
if ! swapon --show=NAME --noheadings | grep -qx /swapfile; then
  if [ "$(stat -c %s /swapfile 2>/dev/null || echo 0)" -ne $((size * 1024 * 1024)) ]; then
    rm -f /swapfile
    fallocate -l "${size}M" /swapfile
    chmod 600 /swapfile
    mkswap /swapfile
  fi
  swapon /swapfile
fi
grep -q '^/swapfile ' /etc/fstab || echo '/swapfile none swap sw 0 0' >> /etc/fstab
echo 'vm.swappiness = 10' > /etc/sysctl.d/60-gridka-swap.conf
sysctl -q -p /etc/sysctl.d/60-gridka-swap.conf
swapon --show
