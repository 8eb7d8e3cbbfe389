# db-node: RabbitMQ for the services' messages, reached from the other nodes. The 2013
# course gives the guest account its own password and lets it in from anywhere; the later
# edition makes an account of its own (vars.rabbit_user) and leaves guest on loopback.
{% import "_lib.j2" as lib with context -%}
{% set user = lib.rabbit_user() -%}
set -eu
mkdir -p /etc/rabbitmq
{%- if user == "guest" %}
cat > /etc/rabbitmq/rabbitmq.conf <<'CONF'
loopback_users = none
CONF
{%- else %}
rm -f /etc/rabbitmq/rabbitmq.conf
{%- endif %}
systemctl enable rabbitmq-server
systemctl restart rabbitmq-server
rabbitmqctl await_startup --timeout 300
{%- if user == "guest" %}
rabbitmqctl change_password guest {{ vars.rabbit_password | quote }}
{%- else %}
rabbitmqctl add_user {{ user | quote }} {{ vars.rabbit_password | quote }} 2>/dev/null \
  || rabbitmqctl change_password {{ user | quote }} {{ vars.rabbit_password | quote }}
rabbitmqctl set_permissions {{ user | quote }} '.*' '.*' '.*'
{%- endif %}
rabbitmqctl list_users
