#!/usr/bin/env bash
# A PostgreSQL primary and one synchronous standby on 127.0.0.1, for tests and benchmarks
# (docs/ha.md). Debian's PostgreSQL 15; run as root (servers run as `postgres`) or as an
# unprivileged user.
#
#   scripts/pg-cluster.sh start DIR PORT   # primary on PORT, standby on PORT+1; prints the URL
#   scripts/pg-cluster.sh stop DIR
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start|stop}
dir=${2:?DIR}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
  port=${3:?PORT}
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
synchronous_standby_names = 'ANY 1 (standby1)'
CONF
  echo "host replication all 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  as_pg "$BIN/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/standby" -R -X stream -c fast --no-sync
  cat >>"$dir/standby/postgresql.auto.conf" <<CONF
port = $((port + 1))
primary_conninfo = 'host=127.0.0.1 port=$port user=postgres application_name=standby1'
CONF
  as_pg "$BIN/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE lienthong" >/dev/null
  # The standby must be synchronous before the first commit is trusted.
  for _ in $(seq 1 100); do
    state=$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc \
      "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
    [ "$state" = quorum ] || [ "$state" = sync ] && break
    sleep 0.1
  done
  echo "postgresql://postgres@127.0.0.1:$port/lienthong"
  ;;
stop)
  for node in standby primary; do
    [ -d "$dir/$node" ] && as_pg "$BIN/pg_ctl" -D "$dir/$node" -m fast -w stop >/dev/null 2>&1 || true
  done
  ;;
*)
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
  ;;
esac
