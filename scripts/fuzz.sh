#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 600) each, then the C14N differential
# test against libxml2 with 20,000 generated documents. Not part of CI (docs/security.md).
# Needs the nightly toolchain (installed here) and cargo-fuzz (installed on first use).
# Findings land in fuzz/artifacts/<target>/; each becomes a regression test before it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-600}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# Seed corpus: the real packets, shared by the XML targets.
for t in edxml_parse c14n verify; do
  mkdir -p "fuzz/corpus/$t"
  cp -n tests/data/edxml/*.edxml "fuzz/corpus/$t/" 2>/dev/null || true
done
# PDF seeds: every signing case scripts/pdf_fixtures.py makes (pyHanko, fpdf2).
mkdir -p fuzz/corpus/pdf_verify
seeds="$(mktemp -d)"
"$(scripts/pyenv.sh)" scripts/pdf_fixtures.py "$seeds"
cp -n "$seeds"/*.pdf fuzz/corpus/pdf_verify/
rm -rf "$seeds"
mkdir -p fuzz/corpus/api_query
printf '/v1/inbox?limit=10&wait=5' > fuzz/corpus/api_query/seed1
printf '/v1/audit/proof/12?tree_size=40' > fuzz/corpus/api_query/seed2
for t in edxml_parse c14n verify api_query pdf_verify; do
  echo "== $t for ${secs}s"
  # -timeout=1: any input slower than 1 s is a finding; -rss_limit_mb bounds memory.
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -timeout=1 -rss_limit_mb=2048 \
    -max_len=4194304 2>&1 | tail -n 5
done
echo "== C14N differential against xmllint (20,000 documents)"
LIENTHONG_C14N_CASES=20000 cargo test --test c14n_differential -- --nocapture
