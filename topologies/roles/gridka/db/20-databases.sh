# db-node: one database and user per service, with the course's credentials, allowed
# from every host (the services connect over the internal network).
set -eu
mysql <<'SQL'
{%- for db, cred in vars.databases.items() %}
CREATE DATABASE IF NOT EXISTS {{ db }};
CREATE USER IF NOT EXISTS '{{ cred.user }}'@'%' IDENTIFIED BY '{{ cred.password }}';
CREATE USER IF NOT EXISTS '{{ cred.user }}'@'localhost' IDENTIFIED BY '{{ cred.password }}';
ALTER USER '{{ cred.user }}'@'%' IDENTIFIED BY '{{ cred.password }}';
ALTER USER '{{ cred.user }}'@'localhost' IDENTIFIED BY '{{ cred.password }}';
GRANT ALL PRIVILEGES ON {{ db }}.* TO '{{ cred.user }}'@'%';
GRANT ALL PRIVILEGES ON {{ db }}.* TO '{{ cred.user }}'@'localhost';
{%- endfor %}
FLUSH PRIVILEGES;
SQL
mysql -e 'SHOW DATABASES'
