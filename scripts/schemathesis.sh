#!/usr/bin/env bash
# Property-based API testing of a real keyhost with schemathesis, against the OpenAPI document it
# serves (GET /v1/openapi.json). Not part of CI or scripts/test.sh.
#
#   PYTHON=/path/to/venv/bin/python bash scripts/schemathesis.sh [MAX_EXAMPLES] [extra schemathesis args]
#
# Starts `ghostpii keyhost serve` on a fresh data dir (with the failed-authentication rate limit
# off, since schemathesis sends many unauthenticated requests on purpose), runs every operation as
# the bootstrap admin with the checks below (except token rotation and revocation, which would
# revoke the admin token the run uses), and stops the keyhost. Installs schemathesis into
# that Python if it is missing. Fails on any 5xx, undocumented status, or response that does not
# match its schema (every refusal must be the typed error body).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
examples="${1:-50}"
shift || true
"$PY" -c "import schemathesis" 2>/dev/null || "$PY" -m pip install --quiet --disable-pip-version-check schemathesis
st="$(dirname "$PY")/schemathesis"
[ -x "$st" ] || st="schemathesis"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
GHOSTPII_AUTH_FAILURES_PER_MINUTE=0 "$PY" -m ghostpii.cli keyhost serve --data "$dir/kh" --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$dir/out" 2>/dev/null && break
    sleep 0.1
done
url=$(grep -o 'http://[0-9.:]*' "$dir/out" | head -1)
[ -n "$url" ] || { echo "keyhost did not start: $(cat "$dir/err")" >&2; exit 1; }
token=$(cat "$dir/kh/admin.token")
echo "keyhost at $url"
status=0
"$st" run "$url/v1/openapi.json" --url "$url" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --generation-with-security-parameters false \
    --exclude-path /v1/tokens/rotate --exclude-path '/v1/tokens/{token_id}' \
    --max-examples "$examples" --workers 1 --request-timeout 30 --no-color "$@" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
    echo "the keyhost died during the run: $(tail -5 "$dir/err")" >&2
    status=1
fi
grep -i "panic" "$dir/err" && { echo "the keyhost panicked" >&2; status=1; }
exit "$status"
