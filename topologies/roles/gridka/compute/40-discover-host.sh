# compute node: once this node's nova-compute reports up, map it into cell1 (what the
# course runs on the api-node as `nova-manage cell_v2 discover_hosts`). The runner runs a
# role's steps on its own nodes, so the node maps itself: nova-manage needs only nova's
# API database for it, through a file beside nova.conf that nova-compute never reads
# (the scheduler on the api-node would also find the node within 2 minutes).
{% import "_lib.j2" as lib with context -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("nova-compute") }}
{%- else %}
{{ lib.wait_listing("openstack compute service list --service nova-compute -f value -c Binary -c Host -c State",
                    ["^nova-compute " ~ node.name ~ " up$"]) }}
umask 027
cat > /etc/nova/nova-manage-cells.conf <<'CONF'
[api_database]
connection = {{ lib.db_url("nova_api") }}
CONF
chgrp nova /etc/nova/nova-manage-cells.conf
# Both compute nodes may map themselves at once: a clash on the unique host mapping
# fails one, and its next try finds the node mapped.
for _ in 1 2 3 4 5; do
  runuser -u nova -- nova-manage --config-file /etc/nova/nova.conf \
    --config-file /etc/nova/nova-manage-cells.conf cell_v2 discover_hosts --verbose && break
  sleep $((RANDOM % 10 + 5))
done
hosts=$(runuser -u nova -- nova-manage --config-file /etc/nova/nova.conf \
  --config-file /etc/nova/nova-manage-cells.conf cell_v2 list_hosts)
echo "$hosts"
grep -Eq '\| +{{ node.name }} +\|' <<<"$hosts"
{#- libvirt names the hypervisor by the node's host name, or its FQDN where it has one. #}
{{ lib.wait_listing("openstack hypervisor list -f value -c 'Hypervisor Hostname' -c State",
                    ["^" ~ node.name ~ "(\\.[^ ]*)? up$"]) }}
{%- endif %}
