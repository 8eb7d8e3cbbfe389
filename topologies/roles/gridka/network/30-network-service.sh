# network-node: the course ran nova-network here; it is gone from current OpenStack (and
# Debian 12), so the service is neutron's linuxbridge agent on br100 (needs a package mirror).
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (the network service comes from the package mirror)"
{%- else %}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent
crudini --set /etc/neutron/plugins/ml2/linuxbridge_agent.ini linux_bridge physical_interface_mappings \
  'provider:{{ vars.network_public_interface }}'
systemctl restart neutron-linuxbridge-agent neutron-l3-agent neutron-dhcp-agent
{%- endif %}
