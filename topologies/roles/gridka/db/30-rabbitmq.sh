# db-node: RabbitMQ for the services' messages; the course uses the guest account with
# its own password, from the other nodes (so not only from localhost).
{% import "_lib.j2" as lib -%}
set -eu
mkdir -p /etc/rabbitmq
cat > /etc/rabbitmq/rabbitmq.conf <<'CONF'
loopback_users = none
CONF
systemctl enable rabbitmq-server
systemctl restart rabbitmq-server
rabbitmqctl await_startup --timeout 300
rabbitmqctl change_password guest {{ vars.rabbit_password | quote }}
rabbitmqctl list_users
