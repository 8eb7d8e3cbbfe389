{%- set br100 = vars.get("br100", true) -%}
# Check: the network node forwards IPv4{% if br100 %} and its br100 holds {{ vars.network_flat_interface }}{% endif %}.
{% import "_lib.j2" as lib -%}
set -eu
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
{%- if br100 %}
[ -e /sys/class/net/br100/brif/{{ vars.network_flat_interface | quote }} ]
{%- endif %}
