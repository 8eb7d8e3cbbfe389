# Every lab node resolves every other one by name (the seed wrote /etc/hosts; check it).
set -eu
{% for name, host in hostvars.items() %}
getent hosts {{ name }} >/dev/null || { echo "{{ name }} does not resolve"; exit 1; }
{% endfor %}
echo "{{ node.name }}: all {{ hostvars | length }} lab nodes resolve"
