# Check: /root/admin-openrc is there for the OpenStack commands (where the lab has keystone).
set -eu
{%- if groups.get("auth") %}
test -s /root/admin-openrc
grep -q '^export OS_AUTH_URL=http://{{ groups.auth[0] }}:5000/v3$' /root/admin-openrc
{%- endif %}
echo "{{ node.name }}: admin-openrc ok"
