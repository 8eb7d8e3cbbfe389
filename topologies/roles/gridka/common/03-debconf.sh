# Course step "all nodes", Debian edition: Debian's OpenStack packages can configure
# themselves through debconf (databases with dbconfig-common, RabbitMQ, keystone_authtoken,
# keystone's admin and endpoint registration, Horizon's vhost). The roles write every file
# themselves, so every such question is answered "no" here, before any package is
# installed; the answers are marked seen, so no front end asks them, at any priority.
# The string answers (addresses, region, volume group) are the lab's, though the roles
# write those settings themselves too.
set -eu
debconf-set-selections <<'SEL'
dbconfig-common dbconfig-common/remember-admin-pass boolean false
dbconfig-common dbconfig-common/remote-questions-default boolean false
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
placement-common placement/configure_db boolean false
placement-common placement/configure_ksat boolean false
placement-api placement/configure_api-endpoint boolean false
nova-common nova/configure_db boolean false
nova-common nova/configure_rabbit boolean false
nova-common nova/configure_ksat boolean false
nova-common nova/configure_neutron boolean false
nova-common nova/configure_placement boolean false
nova-common nova/my-ip string {{ node.ips[vars.internal_network] }}
nova-common nova/cinder_os_region_name string {{ vars.get("region", "RegionOne") }}
nova-api novaapi/configure_db boolean false
nova-api nova/configure_api-endpoint boolean false
nova-consoleproxy nova-consoleproxy/daemon_type select novnc
neutron-common neutron/configure_db boolean false
neutron-common neutron/configure_rabbit boolean false
neutron-common neutron/configure_ksat boolean false
neutron-common neutron/configure_nova boolean false
neutron-api neutron/configure_api-endpoint boolean false
neutron-metadata-agent neutron-metadata/configure boolean false
cinder-common cinder/configure_db boolean false
cinder-common cinder/configure_rabbit boolean false
cinder-common cinder/configure_ksat boolean false
cinder-common cinder/my-ip string {{ node.ips[vars.internal_network] }}
cinder-common cinder/volume_group string cinder-volumes
cinder-common cinder/glance-api-servers string http://{{ groups.get("image", ["127.0.0.1"])[0] }}:9292
cinder-api cinder/configure_api-endpoint boolean false
openstack-dashboard horizon/allowed-hosts string *
openstack-dashboard-apache horizon/activate_vhost boolean false
openstack-dashboard-apache horizon/use_ssl boolean false
SEL
# nova-consoleproxy's own config script resets daemon_type from /etc/default/nova-consoleproxy
# (SPICE on a new install): the answer above only keeps the question away; the api role
# switches that file to noVNC.
echo "debconf: Debian's OpenStack questions answered (configure nothing)"
