# auth-node: the project `service` and a user per service (glance, nova, placement,
# neutron, cinder), each with the admin role in it. What the course types as
#   openstack project create --domain default service
#   openstack user create --domain default --password PASS glance
#   openstack role add --project service --user glance admin
# done in one Python process (each `openstack` command starts Python anew, slow under
# emulation), idempotently: a user that exists gets the password from vars again.
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
. /root/admin-openrc
GRIDKA_USERS={{ vars.service_passwords | tojson | quote }} python3 - <<'PY'
{{ lib.keystone_py() }}


ks = admin_keystone()


def one(found, what):
    if len(found) > 1:
        raise SystemExit(f"more than one {what} in keystone")
    return found[0] if found else None


domain = one(ks.domains.list(name="Default"), "domain Default")
project = one(ks.projects.list(name="service", domain=domain), "project service")
if project is None:
    project = ks.projects.create("service", domain, description="Service Project")
    print("created project service")
admin = one(ks.roles.list(name="admin"), "role admin")
for name, password in json.loads(os.environ["GRIDKA_USERS"]).items():
    user = one(ks.users.list(name=name, domain=domain), f"user {name}")
    if user is None:
        user = ks.users.create(name, domain=domain, password=password)
        print(f"created user {name}")
    else:
        ks.users.update(user, password=password)
        print(f"user {name}: password set")
    ks.roles.grant(admin, user=user, project=project)
    print(f"user {name}: admin in project service")
PY
{%- endif %}
