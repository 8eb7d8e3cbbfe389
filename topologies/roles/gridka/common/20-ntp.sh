# Course step "all nodes": NTP. The time source is the lab host (the gateway of eth0's
# network), never the internet.
set -eu
cat > /etc/chrony/conf.d/labbuilder.conf <<'CONF'
server {{ networks[vars.ntp_network].gateway }} iburst
CONF
# Only the lab host: drop the distribution's internet pools.
sed -i 's/^pool /#pool /' /etc/chrony/chrony.conf
systemctl enable chrony
systemctl restart chrony
chronyc -n sources
