#!/usr/bin/env bash
# Fuzz campaign: one target, bounded by executions and by time, on the optimised build without
# AddressSanitizer (with debug assertions and overflow checks), from its grown corpus and the
# committed seeds. Prints one summary line; the whole libFuzzer log is kept in campaign/.
#
#   bash fuzz/campaign.sh TARGET [EXECUTIONS [SECONDS]] [-- more libFuzzer flags]
#
#   EXECUTIONS   stop after this many (libFuzzer's -runs; default 10000000)
#   SECONDS      stop after this long whatever the count (-max_total_time; default 3600)
#   CAMPAIGN_NO_BUILD=1   use the binary already built (when several campaigns run at once:
#                         build first, once, with `RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a -s none`)
#   CAMPAIGN_SANITIZER    `none` (default) or `address` (about 3-10x slower)
#
# Why without ASan: every crate of the workspace forbids `unsafe`, so a memory-safety bug is out
# of reach of the code under test; what a campaign hunts is panics, broken properties and hangs,
# which the build without the sanitizer finds as well, several times faster. The CI smoke
# (smoke.sh) keeps the sanitizer on. -max_len per target: see README.md.
#
# A run that stops early (crash, timeout, out-of-memory) leaves the input in artifacts/TARGET/
# and exits non-zero. Executions of several runs on the same corpus add up: a campaign may be
# cut into pieces (the summary lines say how many each piece ran).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

t="${1:?usage: campaign.sh TARGET [EXECUTIONS [SECONDS]] [-- libFuzzer flags]}"
shift
runs=10000000
secs=3600
if [ $# -gt 0 ] && [ "$1" != "--" ]; then runs="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then secs="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
san="${CAMPAIGN_SANITIZER:-none}"

# Longest input per target (libFuzzer's default is the longest seed, at least 4096).
case "$t" in
  http1_head) max_len=12288 ;;  # a request head's limit (8 KiB) and a bit: both sides of it
  chunked) max_len=16384 ;;     # several chunk-size lines past their 4 KiB limit, split reads
  h2_headers) max_len=8192 ;;   # a header list past the harness listener's 4 KiB limit
  *) max_len=4096 ;;            # paths, tokens, JWK sets, configs: no limit lies beyond
esac

if [ -z "${CAMPAIGN_NO_BUILD:-}" ]; then
  cargo fuzz build -O -a -s "$san" "$t"
fi
bin="target/x86_64-unknown-linux-gnu/release/$t"
mkdir -p "corpus/$t" "artifacts/$t" campaign
log="campaign/$t-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"
start=$(date +%s)
set +e
"$bin" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" -runs="$runs" -max_total_time="$secs" \
  -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@" >"$log" 2>&1
rc=$?
set -e
wall=$(($(date +%s) - start))
# The final count (stat line at exit; else the last status line, e.g. after a kill).
n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[ -n "$n" ] || n=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
n=${n:-0}
echo "campaign: $t executions=$n wall=${wall}s rate=$((n / (wall > 0 ? wall : 1)))/s sanitizer=$san max_len=$max_len exit=$rc log=fuzz/$log"
exit "$rc"
