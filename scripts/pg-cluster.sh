#!/usr/bin/env bash
# A PostgreSQL primary and one synchronous standby on 127.0.0.1, for tests and benchmarks
# (docs/ha.md). Debian's PostgreSQL 15; run as root (servers run as `postgres`) or as an
# unprivileged user.
#
#   scripts/pg-cluster.sh start DIR PORT [STANDBYS]   # prints the URL
#   scripts/pg-cluster.sh stop DIR
#
# The primary listens on PORT, standby N (1..STANDBYS, default 1) on PORT+N, in DIR/primary,
# DIR/standby (the first) and DIR/standbyN; standby N connects as application_name standbyN,
# and the primary waits for ANY 1 of them at COMMIT. Three nodes: STANDBYS = 2.
#
# With PG_TLS_DIR set (holding server.crt and server.key), the primary takes TLS and refuses
# any non-TLS client connection (`hostnossl … reject`); replication connections are
# unaffected.
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start|stop}
dir=${2:?DIR}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
  port=${3:?PORT}
  standbys=${4:-1}
  names=$(seq -s ', ' -f 'standby%g' 1 "$standbys")
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    # The servers run as postgres: they must be able to reach DIR (traverse, not list).
    chmod o+x "$(dirname "$(realpath "$dir")")"
  fi
  as_pg "$BIN/initdb" -D "$dir/primary" -A trust -U postgres --no-sync >"$dir/initdb.log"
  cat >>"$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
synchronous_commit = on
synchronous_standby_names = 'ANY 1 ($names)'
CONF
  echo "host replication all 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  if [ -n "${PG_TLS_DIR:-}" ]; then
    mkdir -p "$dir/tls"
    cp "$PG_TLS_DIR/server.crt" "$PG_TLS_DIR/server.key" "$dir/tls/"
    chmod 600 "$dir/tls/server.key"
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir/tls"
    cat >>"$dir/primary/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
CONF
    sed -i '1i hostnossl all all 127.0.0.1/32 reject' "$dir/primary/pg_hba.conf"
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  for n in $(seq 1 "$standbys"); do
    node=$([ "$n" = 1 ] && echo standby || echo "standby$n")
    as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/$node" -R -X stream -c fast --no-sync
    cat >>"$dir/$node/postgresql.auto.conf" <<CONF
port = $((port + n))
primary_conninfo = 'host=127.0.0.1 port=$port user=postgres application_name=standby$n'
CONF
    as_pg "$BIN/pg_ctl" -D "$dir/$node" -l "$dir/$node.log" -w start >/dev/null
  done
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE lienthong" >/dev/null
  # Every standby must be streaming as a synchronous candidate before the first commit is
  # trusted (ANY 1: each listed standby shows as 'quorum' once connected).
  for _ in $(seq 1 100); do
    ready=$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc \
      "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('quorum', 'sync')")
    [ "$ready" = "$standbys" ] && break
    sleep 0.1
  done
  echo "postgresql://postgres@127.0.0.1:$port/lienthong"
  ;;
stop)
  for node in "$dir"/standby* "$dir"/primary; do
    node=$(basename "$node")
    [ -f "$dir/$node/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$dir/$node" -m fast -w stop >/dev/null 2>&1 || true
  done
  ;;
*)
  echo "usage: $0 start DIR PORT [STANDBYS] | stop DIR" >&2
  exit 2
  ;;
esac
