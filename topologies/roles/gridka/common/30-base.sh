# Course step "all nodes": the pieces every OpenStack node needs that need no network
# (the MySQL client library, the management tools), checked rather than installed.
set -eu
python3 -c 'import pymysql'
command -v mysql
ip -br link
echo "{{ node.name }}: base ok"
