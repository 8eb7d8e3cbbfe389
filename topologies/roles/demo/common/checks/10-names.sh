# Every lab node resolves by name, and the login banner names this node.
set -eu
{% for name, host in hostvars.items() %}
getent hosts {{ name }} >/dev/null || { echo "{{ name }} does not resolve"; exit 1; }
{% endfor %}
grep -q "{{ node.name }}" /etc/motd || { echo "/etc/motd does not name {{ node.name }}"; exit 1; }
echo "all {{ hostvars | length }} lab nodes resolve; motd names {{ node.name }}"
