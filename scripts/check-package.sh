#!/usr/bin/env bash
# CI check of the Debian package: builds it, checks its file list, verifies the systemd unit
# with systemd-analyze (against the built binary), and checks that the packaged configuration
# parses: with nothing installed under /etc/lienthong the hub must stop on those missing
# files, not on the configuration's keys.
set -euo pipefail
cd "$(dirname "$0")/.."
deb="$(scripts/build-deb.sh | tail -1)"
echo "built $deb"
contents="$(dpkg-deb -c "$deb")"
for f in ./usr/bin/lienthong ./etc/lienthong/lienthong.toml ./lib/systemd/system/lienthong.service \
         ./usr/share/doc/lienthong/operations.md ./usr/share/doc/lienthong/alerts.yml; do
  grep -q " $f\$" <<<"$contents" || { echo "missing $f in $deb"; exit 1; }
done
dpkg-deb -f "$deb" Package Version Architecture
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
# The unit as installed, pointed at the extracted binary (systemd-analyze checks it exists).
sed "s#/usr/bin/lienthong#$work/usr/bin/lienthong#" packaging/lienthong.service > "$work/lienthong.service"
systemd-analyze verify "$work/lienthong.service"
for key in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes "ReadWritePaths=/var/lib/lienthong" LimitNOFILE= "ExecReload=/bin/kill -HUP"; do
  grep -q "^$key" packaging/lienthong.service || { echo "the unit lacks $key"; exit 1; }
done
# The packaged configuration parses; with nothing under /etc/lienthong it stops on that.
set +e
msg="$("$work/usr/bin/lienthong" serve --config packaging/lienthong.toml 2>&1 </dev/null)"
rc=$?
set -e
if [ $rc -eq 0 ] || ! grep -q "/etc/lienthong" <<<"$msg" || grep -qi "config" <<<"$msg"; then
  echo "the packaged config should parse and stop on the files missing under /etc/lienthong, got ($rc): $msg"
  exit 1
fi
echo "package ok: $(basename "$deb")"
