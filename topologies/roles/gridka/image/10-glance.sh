# image-node: glance-api on the db-node's glance database, images in files under
# /var/lib/glance/images, tokens checked with keystone as user glance (needs a package
# mirror). Its endpoints were registered by the auth role.
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("glance") }}
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("glance") }}
conf=/etc/glance/glance-api.conf
crudini --set "$conf" database connection {{ lib.db_url("glance") | quote }}
crudini --set "$conf" DEFAULT workers 1
# sha256, as image manifests carry it: `labbuilder image upload` checks what Glance stored
crudini --set "$conf" DEFAULT hashing_algorithm sha256
{{ lib.authtoken("glance") }}
crudini --set "$conf" paste_deploy flavor keystone
crudini --set "$conf" glance_store stores file,http
crudini --set "$conf" glance_store default_store file
crudini --set "$conf" glance_store filesystem_store_datadir /var/lib/glance/images/
crudini --set "$conf" oslo_concurrency lock_path /var/lib/glance/tmp
install -d -o glance -g glance /var/lib/glance/images /var/lib/glance/tmp
runuser -u glance -- glance-manage db_sync
{{ lib.restart("glance-api") }}
{{ lib.wait_port("127.0.0.1", 9292) }}
curl -s http://127.0.0.1:9292/ | head -c 300
echo
{%- endif %}
