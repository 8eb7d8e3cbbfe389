# api-node: Horizon, the dashboard, on Apache at http://{{ node.name }}/horizon/ (as in the
# course), logging in with keystone on {{ groups.get("auth", ["the auth node"])[0] }}; sessions in memcached (needs a package mirror).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("horizon") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("openstack-dashboard openstack-dashboard-apache apache2 libapache2-mod-wsgi-py3 memcached python3-memcache python3-pymemcache") }}
# Debian's local_settings.py reads local_settings.d/*.py last: the lab's settings go there.
cat > /etc/openstack-dashboard/local_settings.d/_90_gridka.py <<'PY'
OPENSTACK_HOST = "{{ lib.host("auth") }}"
OPENSTACK_KEYSTONE_URL = "{{ lib.keystone_url() }}/v3"
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "member"
OPENSTACK_API_VERSIONS = {"identity": 3, "image": 2, "volume": 3}
ALLOWED_HOSTS = ["*"]
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:11211",
    },
}
PY
{{ lib.apache_wsgi() }}
a2ensite -q openstack-dashboard-alias-only
apache2ctl configtest
{{ lib.restart("memcached apache2") }}
{{ lib.wait_port("127.0.0.1", 80) }}
# The first request loads Django and Horizon: slow under emulation.
code=
for _ in $(seq 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 120 http://127.0.0.1/horizon/auth/login/ || true)
  [ "$code" = 200 ] && break
  sleep 10
done
echo "http://{{ node.name }}/horizon/auth/login/: HTTP $code"
[ "$code" = 200 ]
{%- endif %}
