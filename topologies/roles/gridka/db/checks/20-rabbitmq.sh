# Check: RabbitMQ runs and takes the services' account and password.
{% import "_lib.j2" as lib with context -%}
{% set user = lib.rabbit_user() -%}
set -eu
# (one rabbitmqctl: it reaches the running broker or fails)
rabbitmqctl -q authenticate_user {{ user | quote }} {{ vars.rabbit_password | quote }}
echo "rabbitmq: {{ user }} authenticates"
