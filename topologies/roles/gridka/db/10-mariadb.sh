# db-node: MySQL (MariaDB) listening on every address, so the other nodes reach it on
# {{ node.ips[vars.internal_network] }}.
set -eu
cat > /etc/mysql/mariadb.conf.d/99-gridka.cnf <<'CONF'
[mysqld]
bind-address = 0.0.0.0
max_connections = 500
CONF
systemctl enable mariadb
systemctl restart mariadb
for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
mysqladmin ping
