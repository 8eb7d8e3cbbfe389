# network-node: it routes the instances' traffic, so IP forwarding is on (and stays on).
set -eu
echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/60-gridka.conf
sysctl -p /etc/sysctl.d/60-gridka.conf
