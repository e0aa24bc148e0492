#!/usr/bin/env bash
# lienthong beside RabbitMQ on this machine, in one run (issue 20; docs/performance.md).
#
#   tools/sidebyside.sh [ROUNDS]     # default 3; prints each run and the medians and ratios
#
# Starts Debian's rabbitmq-server on 127.0.0.1 (state in a temp dir, stopped by its PID
# afterwards; `apt-get install rabbitmq-server` if missing) and, ROUNDS times, alternating:
#   RabbitMQ: a durable quorum queue, persistent messages, publisher confirms, window 256
#             (tools/amqp-load): publish N × 4 KiB, then consume them with one ack each
#             (4 consumers, prefetch 256);
#             then the same with 1 MiB messages;
#   lienthong: `bench --mode submit --clients 64 --size 4096 --http2` (signed, verified,
#             durable 2xx), `bench --mode pull --clients 32 --http2`, and 1 MiB submits
#             (`--clients 8 --size 1048576`), each on a fresh hub on a temp dir.
# Env: CARGO_TARGET_DIR (default target), AMQP_COUNT (default 200000), DURATION (default 10),
# PRESIGN (default 1500): packets each lienthong client signs before the clock starts, as
# amqp-load's messages are made before it publishes — the rate is then the hub's, not the
# clients' signing on the same two cores (PRESIGN=0 signs during the run); SIGNING_KEY
# (default rsa: RSA-2048, what agencies' tokens hold; p256 for the dev PKI's keys).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
target=${CARGO_TARGET_DIR:-target}
count=${AMQP_COUNT:-200000}
duration=${DURATION:-10}
presign=${PRESIGN:-1500}
key=${SIGNING_KEY:-rsa}
# Debian's /usr/sbin wrappers switch to the rabbitmq user; the server and rabbitmqctl run
# here as the caller, with their state and Erlang cookie in the temp dir.
rmq=/usr/lib/rabbitmq/bin
[ -x "$rmq/rabbitmq-server" ] || { echo "needs Debian's rabbitmq-server" >&2; exit 2; }

cargo build --release --quiet --bin lienthong
cargo build --release --quiet --manifest-path tools/amqp-load/Cargo.toml --target-dir "$target"
hub="$target/release/lienthong"
amqp="$target/release/amqp-load"

work=$(mktemp -d /tmp/lienthong-sidebyside.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
dist=$(free_port)
export RABBITMQ_NODENAME="lt$$@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port
export RABBITMQ_DIST_PORT=$dist RABBITMQ_MNESIA_BASE="$work/mnesia" RABBITMQ_LOG_BASE="$work/log"
export RABBITMQ_ENABLED_PLUGINS_FILE="$work/enabled_plugins" RABBITMQ_CONFIG_FILE="$work/rabbitmq"
export RABBITMQ_PID_FILE="$work/rabbit.pid" ERL_EPMD_ADDRESS=127.0.0.1 HOME="$work"
echo "[]." >"$work/enabled_plugins"
echo "loopback_users = none" >"$work/rabbitmq.conf"
"$rmq/rabbitmq-server" >"$work/rabbit.out" 2>&1 &
rabbit=$!
cleanup() {
  "$rmq/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || kill "$rabbit" 2>/dev/null || true
  wait "$rabbit" 2>/dev/null || true
  epmd -kill >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$rmq/rabbitmqctl" -n "$RABBITMQ_NODENAME" wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null
url="amqp://guest:guest@127.0.0.1:$port/%2f"

results="$work/results.jsonl"
run() { # label command…
  local label=$1
  shift
  local out
  out=$("$@" | python3 -c 'import json, sys; print(json.dumps(json.loads(sys.stdin.read())))')
  echo "$label $out"
  echo "{\"label\": \"$label\", \"result\": $out}" >>"$results"
}
for r in $(seq 1 "$rounds"); do
  echo "# round $r"
  run amqp_publish_4k "$amqp" publish --url "$url" --queue "q4k$r" --count "$count" --size 4096 --window 256
  run amqp_consume_4k "$amqp" consume --url "$url" --queue "q4k$r" --count "$count" --size 4096 --prefetch 256 --consumers 4
  run hub_submit_4k "$hub" bench --json --mode submit --clients 64 --size 4096 --duration "$duration" --http2 --presign "$presign" --signing-key "$key"
  run hub_pull "$hub" bench --json --mode pull --clients 32 --items 4000 --duration "$duration" --http2 --signing-key "$key"
  run amqp_publish_1m "$amqp" publish --url "$url" --queue "q1m$r" --count 3000 --size 1048576 --window 256
  run amqp_consume_1m "$amqp" consume --url "$url" --queue "q1m$r" --count 3000 --size 1048576 --prefetch 16 --consumers 4
  run hub_submit_1m "$hub" bench --json --mode submit --clients 8 --size 1048576 --duration "$duration" --http2 --signing-key "$key"
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, key):
    vals = [r["result"][key] for r in rows if r["label"] == label and key in r["result"]]
    return statistics.median(vals) if vals else float("nan")
def rate(label):  # amqp-load: rate; lienthong bench: throughput per second
    return med(label, "rate") if label.startswith("amqp") else med(label, "packets_per_sec")
pub, con = rate("amqp_publish_4k"), rate("amqp_consume_4k")
sub, pull = rate("hub_submit_4k"), rate("hub_pull")
mb_amqp, mb_hub = med("amqp_publish_1m", "mb_per_s"), med("hub_submit_1m", "mb_per_sec")
print(f"\nmedians of {len([r for r in rows if r['label'] == 'hub_pull'])} rounds")
print(f"4 KiB publish/submit: RabbitMQ {pub:,.0f}/s  lienthong {sub:,.0f}/s  ratio {sub / pub:.2f}")
print(f"consume/pull+ack:     RabbitMQ {con:,.0f}/s  lienthong {pull:,.0f}/s  ratio {pull / con:.2f}")
print(f"1 MiB MB/s:           RabbitMQ {mb_amqp:,.1f}  lienthong {mb_hub:,.1f}  ratio {mb_hub / mb_amqp:.2f}")
print(f"lienthong submit p99 {med('hub_submit_4k', 'p99_ms'):.1f} ms, RSS {med('hub_submit_4k', 'hub_peak_rss_mb'):.0f} MiB")
for label in ("hub_submit_4k", "hub_pull", "hub_submit_1m"):
    print(f"{label}: hub CPU {med(label, 'hub_cpu_percent'):.0f} %, load tool CPU "
          f"{med(label, 'tool_cpu_percent'):.0f} %, p99 {med(label, 'p99_ms'):.1f} ms, "
          f"peak RSS {med(label, 'hub_peak_rss_mb'):.0f} MiB")
PY
