#!/usr/bin/env bash
# Checks the running hub against its OpenAPI contract (docs/openapi.json) with schemathesis
# (an independent, property-based API tester from PyPI): a fresh hub on a temp dir, an agency
# certificate, every operation fuzzed. Fails on any server error other than the documented
# 503/507, any status, content type or body the document does not allow.
#
#   scripts/schemathesis.sh [examples-per-operation]   (default 20: ~800 requests in all)
#
# Needs the debug binary (cargo build) and python3; scripts/pyenv.sh installs schemathesis
# into a venv under $HOME/.cache on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-20}"
target="${CARGO_TARGET_DIR:-target}"
bin="$target/debug/lienthong"
python="$(scripts/pyenv.sh)"

work="$(mktemp -d)"
hub_pid=""
cleanup() {
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null || true; wait "$hub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

A=000.00.01.H13
B=000.00.02.H13
cat > "$work/agencies.toml" <<TOML
[[agency]]
id = "$A"
name = "Sở A"
[[agency]]
id = "$B"
name = "Sở B"
TOML
# Long polls end within a second here (the document allows any `wait`; the hub clamps it).
printf '[queue]\nmax_wait_secs = 1\n' > "$work/lienthong.toml"
"$bin" pki init --dir "$work/certs" --agencies "$work/agencies.toml" >/dev/null
(cd "$work" && exec "$bin" serve --config "$work/lienthong.toml" --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 \
  --data "$work/data" --agencies "$work/agencies.toml" \
  --tls-cert certs/server.pem --tls-key certs/server.key --client-ca certs/ca.pem \
  --trust certs/trust) 2>"$work/hub.log" &
hub_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/data/bound.json" ] && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$work/hub.log"; echo "hub exited"; exit 1; }
  sleep 0.1
done
https=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["https"])' "$work/data/bound.json")
url="https://$https"
tls=(--cacert "$work/certs/ca.pem" --cert "$work/certs/agencies/$B.pem" --key "$work/certs/agencies/$B.key")
# Something to find: a signed document from B to A, and one from A to B.
for from in $B $A; do
  to=$([ "$from" = "$A" ] && echo $B || echo $A)
  "$bin" edxml new --from "$from" --to "$to" --subject "schemathesis" -o "$work/p.edxml"
  "$bin" sign "$work/p.edxml" --cert "$work/certs/signing/$from.pem" --key "$work/certs/signing/$from.key" -o "$work/p.signed"
  curl -sS --fail-with-body --cacert "$work/certs/ca.pem" --cert "$work/certs/agencies/$from.pem" \
    --key "$work/certs/agencies/$from.key" --data-binary @"$work/p.signed" "$url/v1/documents" >/dev/null
done

"$(dirname "$python")/schemathesis" run docs/openapi.json --url "$url" \
  --tls-verify "$work/certs/ca.pem" \
  --request-cert "$work/certs/agencies/$B.pem" --request-cert-key "$work/certs/agencies/$B.key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "$examples" --no-shrink --seed 1 --request-timeout 30 \
  --report-ndjson-path "$work/events.ndjson" 2>&1 | tee "$work/out.txt"
status=${PIPESTATUS[0]}
echo "schemathesis exit status $status"
exit "$status"
