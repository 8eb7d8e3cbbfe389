# A login banner that says which lab, team and node this is.
set -eu
printf '%s team %s: %s (roles: %s)\n' {{ lab | quote }} {{ team | quote }} {{ node.name | quote }} \
    {{ node.roles | join(', ') | quote }} > /etc/motd
echo "motd written"
