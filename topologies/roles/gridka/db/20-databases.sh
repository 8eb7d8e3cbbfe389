# db-node: one database and user per service, with the course's credentials, allowed
# from every host (the services connect over the internal network). Names and passwords
# come from vars.databases: keystone, glance, nova, nova_api, nova_cell0, placement,
# neutron, cinder on a full GridKa lab.
{% import "_lib.j2" as lib -%}
set -eu
mysql <<'SQL'
{%- for db, cred in vars.databases.items() %}
CREATE DATABASE IF NOT EXISTS {{ db }};
CREATE USER IF NOT EXISTS '{{ lib.sql(cred.user) }}'@'%' IDENTIFIED BY '{{ lib.sql(cred.password) }}';
CREATE USER IF NOT EXISTS '{{ lib.sql(cred.user) }}'@'localhost' IDENTIFIED BY '{{ lib.sql(cred.password) }}';
ALTER USER '{{ lib.sql(cred.user) }}'@'%' IDENTIFIED BY '{{ lib.sql(cred.password) }}';
ALTER USER '{{ lib.sql(cred.user) }}'@'localhost' IDENTIFIED BY '{{ lib.sql(cred.password) }}';
GRANT ALL PRIVILEGES ON {{ db }}.* TO '{{ lib.sql(cred.user) }}'@'%';
GRANT ALL PRIVILEGES ON {{ db }}.* TO '{{ lib.sql(cred.user) }}'@'localhost';
{%- endfor %}
FLUSH PRIVILEGES;
SQL
mysql -e 'SHOW DATABASES'
