# auth-node: every service of the lab and its public, internal and admin endpoints
# (all three the same URL, on the node that runs the service):
{% import "_lib.j2" as lib with context -%}
{%- if vars.openstack_packages %}
{#- (type, name, description, the role whose node serves it, its URL there); a service
    whose role no node of this lab has is not registered (gridka-cloud has no api node). -#}
{%- set catalog = [
  ("image", "glance", "OpenStack Image", "image", ":9292"),
  ("compute", "nova", "OpenStack Compute", "api", ":8774/v2.1"),
  ("placement", "placement", "Placement API", "api", ":8778"),
  ("network", "neutron", "OpenStack Networking", "network", ":9696"),
  ("volumev3", "cinderv3", "OpenStack Block Storage", "volume", ":8776/v3/%(project_id)s"),
] %}
{%- set services = [{"name": "keystone", "type": "identity", "description": "OpenStack Identity",
                     "url": lib.keystone_url() ~ "/v3/"}] %}
{%- for type, name, description, role, where in catalog if groups.get(role) %}
{%- set _ = services.append({"name": name, "type": type, "description": description,
                             "url": "http://" ~ lib.host(role) ~ where}) %}
{%- endfor %}
{%- for s in services %}
#   {{ s.type }} ({{ s.name }}): {{ s.url }}
{%- endfor %}
{%- endif %}
# What the course types as `openstack service create` and `openstack endpoint create`,
# in one Python process, idempotently: an endpoint whose URL changed is updated.
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("keystone") }}
{%- else %}
. /root/admin-openrc
GRIDKA_SERVICES={{ services | tojson | quote }} python3 - <<'PY'
{{ lib.keystone_py() }}


region = os.environ["OS_REGION_NAME"]
ks = admin_keystone()

for spec in json.loads(os.environ["GRIDKA_SERVICES"]):
    found = [s for s in ks.services.list(type=spec["type"]) if s.name == spec["name"]]
    if len(found) > 1:
        raise SystemExit(f"more than one service {spec['name']} ({spec['type']}) in keystone")
    if found:
        service = found[0]
    else:
        service = ks.services.create(spec["name"], type=spec["type"], description=spec["description"])
        print(f"created service {spec['name']} ({spec['type']})")
    for interface in ("public", "internal", "admin"):
        endpoints = ks.endpoints.list(service=service, interface=interface, region_id=region)
        for extra in endpoints[1:]:
            ks.endpoints.delete(extra)
        if not endpoints:
            ks.endpoints.create(service, spec["url"], interface=interface, region=region)
            print(f"{spec['type']} {interface}: created {spec['url']}")
        elif endpoints[0].url != spec["url"]:
            ks.endpoints.update(endpoints[0], url=spec["url"])
            print(f"{spec['type']} {interface}: {endpoints[0].url} -> {spec['url']}")
        else:
            print(f"{spec['type']} {interface}: {spec['url']}")
PY
{%- endif %}
