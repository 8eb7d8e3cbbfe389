# Check: Horizon's login page, and the noVNC proxy listens.
{% import "_lib.j2" as lib -%}
set -euo pipefail
{%- if not vars.openstack_packages %}
{{ lib.skipped("horizon") }}
{%- else %}
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 120 http://127.0.0.1/horizon/auth/login/)
echo "horizon login page: HTTP $code"
[ "$code" = 200 ]
(exec 3<>/dev/tcp/127.0.0.1/6080)
{%- endif %}
