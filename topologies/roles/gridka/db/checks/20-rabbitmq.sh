# Check: RabbitMQ runs and takes the course's guest password.
{% import "_lib.j2" as lib -%}
set -eu
rabbitmqctl -q status >/dev/null
rabbitmqctl -q authenticate_user guest {{ vars.rabbit_password | quote }}
echo "rabbitmq: guest authenticates"
