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
# The unit is Type=notify: restart returns once the broker has started. Each rabbitmqctl
# starts an Erlang VM that compiles its code as it loads it (30-60 s under emulation), so
# the step runs no more of them than it needs.
systemctl restart rabbitmq-server
{%- if user == "guest" %}
rabbitmqctl change_password guest {{ vars.rabbit_password | quote }}
{%- else %}
rabbitmqctl add_user {{ user | quote }} {{ vars.rabbit_password | quote }} 2>/dev/null \
  || rabbitmqctl change_password {{ user | quote }} {{ vars.rabbit_password | quote }}
rabbitmqctl set_permissions {{ user | quote }} '.*' '.*' '.*'
{%- endif %}
