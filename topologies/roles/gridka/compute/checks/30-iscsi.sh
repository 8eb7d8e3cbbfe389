# Check: iscsid runs with this node's own initiator name (volumes attach over iSCSI).
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("open-iscsi") }}
{%- else %}
systemctl is-active --quiet iscsid.service
name=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)
echo "$name"
[[ "$name" == iqn.*:* ]]
{%- endif %}
