# Every lab node resolves every other one by name (the seed wrote /etc/hosts; check it).
# Values from the topology reach the shell through `quote`: one shell word each.
set -eu
node={{ node.name | quote }}
for name in {% for name in hostvars %}{{ name | quote }} {% endfor %}; do
    getent hosts "$name" >/dev/null || { echo "$name does not resolve"; exit 1; }
done
echo "$node: all {{ hostvars | length }} lab nodes resolve"
