#!/usr/bin/env bash
# Builds target/debian/lienthong_<version>_<arch>.deb from a release build (dpkg-deb, no
# cargo-deb needed): /usr/bin/lienthong, /etc/lienthong/lienthong.toml (a conffile),
# /lib/systemd/system/lienthong.service, docs in /usr/share/doc/lienthong. packaging/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin lienthong
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$target/release/lienthong" "$root/usr/bin/lienthong"
strip "$root/usr/bin/lienthong" 2>/dev/null || true
install -D -m 0640 packaging/lienthong.toml "$root/etc/lienthong/lienthong.toml"
install -D -m 0644 packaging/lienthong.service "$root/lib/systemd/system/lienthong.service"
install -D -m 0644 config/lienthong.toml "$root/usr/share/doc/lienthong/lienthong.defaults.toml"
install -D -m 0644 config/alerts.yml "$root/usr/share/doc/lienthong/alerts.yml"
install -D -m 0644 config/agencies.toml "$root/usr/share/doc/lienthong/agencies.example.toml"
for f in README.md docs/operations.md docs/pdf-signatures.md docs/security.md; do
  install -D -m 0644 "$f" "$root/usr/share/doc/lienthong/$(basename "$f")"
done
install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control > "$root/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm "$root/DEBIAN/"
mkdir -p "$target/debian"
out="$target/debian/lienthong_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
