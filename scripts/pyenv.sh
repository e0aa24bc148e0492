#!/usr/bin/env bash
# Prints the path of a python3 that has what the repository's Python tools need
# (schemathesis, cryptography, pyHanko, fpdf2, aioquic), creating a venv under $HOME/.cache on first use (PyPI).
set -euo pipefail
venv="${LIENTHONG_VENV:-$HOME/.cache/lienthong-venv}"
mkdir -p "$(dirname "$venv")"
# Test binaries call this concurrently: one creates or updates the venv, the others wait.
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/python" -c 'import cryptography, schemathesis, pyhanko, fpdf, aioquic' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'schemathesis>=4,<5' 'cryptography>=42' 'pyhanko==0.38.0' 'pyhanko-cli==0.6.0' 'fpdf2>=2.8,<3' 'aioquic>=1.2,<2' >&2
fi
echo "$venv/bin/python"
