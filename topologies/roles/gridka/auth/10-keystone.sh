# auth-node: keystone on the db-node's keystone database, served by Apache (mod_wsgi) on
# port 5000 and bootstrapped with the admin user, project and role, region and the
# identity endpoints (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("keystone apache2 libapache2-mod-wsgi-py3") }}
# Debian runs keystone under uwsgi as a service of its own on port 5000; here Apache
# serves it, as in the course, so that service stays off.
systemctl disable --now keystone

conf=/etc/keystone/keystone.conf
crudini --set "$conf" database connection \
  {{ lib.db_url("keystone") | quote }}
crudini --set "$conf" token provider fernet
runuser -u keystone -- keystone-manage db_sync
# Both keep existing keys (they stop at "already initialized").
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
# keystone-manage, run as root, may have created its log file: Apache's keystone
# processes (user keystone) must write it.
chown -R keystone:keystone /var/log/keystone

# The admin user, project and role, region {{ vars.region }}, the identity service and
# its three endpoints; run again, it changes the password and keeps the rest.
OS_BOOTSTRAP_PASSWORD={{ vars.admin_password | quote }} runuser -u keystone -- keystone-manage bootstrap \
  --bootstrap-admin-url {{ lib.keystone_url() }}/v3/ \
  --bootstrap-internal-url {{ lib.keystone_url() }}/v3/ \
  --bootstrap-public-url {{ lib.keystone_url() }}/v3/ \
  --bootstrap-region-id {{ vars.region | quote }}
chown -R keystone:keystone /var/log/keystone

cat > /etc/apache2/sites-available/keystone.conf <<'CONF'
Listen 5000
<VirtualHost *:5000>
    WSGIDaemonProcess keystone-public processes=2 threads=4 user=keystone group=keystone display-name=%{GROUP}
    WSGIProcessGroup keystone-public
    WSGIScriptAlias / /usr/bin/keystone-wsgi-public
    WSGIApplicationGroup %{GLOBAL}
    WSGIPassAuthorization On
    LimitRequestBody 114688
    ErrorLogFormat "%{cu}t %M"
    ErrorLog /var/log/apache2/keystone.log
    CustomLog /var/log/apache2/keystone_access.log combined
    <Directory /usr/bin>
        Require all granted
    </Directory>
</VirtualHost>
CONF
{{ lib.apache_wsgi() }}
a2ensite -q keystone
# One image for every node: Horizon's site is enabled here too by its package; the api
# role serves Horizon (and enables that site again if both roles share a node).
if [ -e /etc/apache2/sites-enabled/openstack-dashboard-alias-only.conf ]; then
  a2dissite -q openstack-dashboard-alias-only
fi
apache2ctl configtest
{{ lib.restart("apache2") }}
{{ lib.wait_port("127.0.0.1", 5000) }}
for _ in $(seq 60); do
  curl -sf -o /dev/null http://127.0.0.1:5000/v3 && break
  sleep 5
done
curl -sf http://127.0.0.1:5000/v3
echo
{%- endif %}
