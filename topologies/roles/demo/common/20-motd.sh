# A login banner that says which lab, team and node this is.
set -eu
cat > /etc/motd <<'MOTD'
{{ lab }} team {{ team }}: {{ node.name }} (roles: {{ node.roles | join(', ') }})
MOTD
echo "motd written"
