# Course step "all nodes": every lab node by its name (and its FQDN where the lab's
# network has a domain) on the internal network (eth1), as the course's /etc/hosts has
# them. A marked block, replaced on every run.
set -eu
begin="# BEGIN labbuilder {{ lab }} nodes"
end="# END labbuilder {{ lab }} nodes"
sed -i "/^$begin\$/,/^$end\$/d" /etc/hosts
{%- if node.ips.get(vars.internal_network) %}
# The node's own name must not resolve to 127.0.1.1 first: MariaDB, RabbitMQ and the
# services would then bind or advertise loopback instead of eth1.
sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
{%- endif %}
{
  echo "$begin"
{%- for name, host in hostvars.items() %}
{%- set ip = host.ips.get(vars.internal_network) %}
{%- if ip %}
  echo "{{ ip }} {% if host.fqdn != name %}{{ host.fqdn }} {% endif %}{{ name }}"
{%- endif %}
{%- endfor %}
  echo "$end"
} >> /etc/hosts
{%- for name in hostvars %}
getent hosts {{ name }} >/dev/null
{%- endfor %}
echo "hosts: {{ hostvars | length }} lab nodes"
