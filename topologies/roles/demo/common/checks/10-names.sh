# Every lab node resolves by name, and the login banner names this node.
set -eu
node={{ node.name | quote }}
for name in {% for name in hostvars %}{{ name | quote }} {% endfor %}; do
    getent hosts "$name" >/dev/null || { echo "$name does not resolve"; exit 1; }
done
grep -qF -- "$node" /etc/motd || { echo "/etc/motd does not name $node"; exit 1; }
echo "all {{ hostvars | length }} lab nodes resolve; motd names $node"
