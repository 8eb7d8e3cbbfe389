# Check: the catalog has every service of the lab, and each service user can log in.
# What the course checks with `openstack service list` and `openstack token issue` as
# each user, in one Python process: each `openstack` command starts Python anew, 30-60 s
# under emulation (six of them took 280 s here).
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
. /root/admin-openrc
{#- the services the auth role registers: identity, and those whose role has a node -#}
{%- set types = ["identity"] %}
{%- for type, role in [("image", "image"), ("compute", "api"), ("placement", "api"), ("network", "network"),
                       ("volumev3", "volume")] if groups.get(role) %}
{%- set _ = types.append(type) %}
{%- endfor %}
GRIDKA_TYPES={{ types | tojson | quote }} GRIDKA_USERS={{ vars.service_passwords | tojson | quote }} python3 - <<'PY'
{{ lib.keystone_py() }}


registered = {s.type for s in admin_keystone().services.list()}
missing = [t for t in json.loads(os.environ["GRIDKA_TYPES"]) if t not in registered]
if missing:
    raise SystemExit(f"no {', '.join(missing)} service in the catalog")
users = json.loads(os.environ["GRIDKA_USERS"])
for name, password in users.items():
    try:
        login(name, password, "service").get_token()
    except Exception as e:  # keystoneauth1's Unauthorized, a refused connection …
        raise SystemExit(f"service user {name} cannot log in to project service: {e}")
print(f"catalog complete; {len(users)} service users log in")
PY
{%- endif %}
