# Course step "all nodes": the OpenStack package archive. Needs the guests to reach a
# package mirror, so it runs only where the topology says they do (openstack_packages).
{% import "_lib.j2" as lib -%}
set -eu
{%- if not vars.openstack_packages %}
echo "skipped: openstack_packages is false (guests have no package mirror)"
{%- else %}
export DEBIAN_FRONTEND=noninteractive
{{ lib.install("crudini python3-openstackclient") }}
{%- endif %}
