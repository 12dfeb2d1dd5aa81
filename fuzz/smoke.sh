#!/usr/bin/env bash
# Fuzz smoke: builds every target and runs each for a few seconds from its committed seeds;
# fails on the first crash, leak, timeout or out-of-memory (the input is left in
# fuzz/artifacts/<target>/). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`).
#
#   FUZZ_SMOKE_SECONDS   seconds per target (default 5)
#   FUZZ_SMOKE_SEED      libFuzzer's random seed (default 1: the same mutations every run, so a
#                        red smoke is reproducible and a green one does not turn red by chance)
#   FUZZ_BUILD           extra `cargo fuzz build/run` flags (default `--dev`: an unoptimised build
#                        takes a fraction of the optimised build's time and is fast enough for a
#                        smoke; use FUZZ_BUILD= for the optimised build campaigns use)
#
# Campaigns: see README.md beside this file.
set -euo pipefail
cd "$(dirname "$0")"

# cargo-fuzz passes -Z flags (sanitizer, coverage passes) that only nightly rustc accepts; the
# stable compiler accepts them too when told it is building itself.
export RUSTC_BOOTSTRAP=1

seconds="${FUZZ_SMOKE_SECONDS:-5}"
if [ -z "${FUZZ_BUILD+set}" ]; then
  build=(--dev)
else
  read -r -a build <<<"$FUZZ_BUILD"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/smoke.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

start=$(date +%s)
cargo fuzz build "${build[@]}"
built=$(date +%s)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for t in $(cargo fuzz list); do
  mkdir -p "$work/$t"
  # The grown corpus goes to a scratch folder: the committed seeds are only read.
  if ! cargo fuzz run "${build[@]}" "$t" "$work/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -seed="${FUZZ_SMOKE_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work/$t.log" 2>&1; then
    echo "fuzz smoke: $t FAILED; its output:" >&2
    tail -n 60 "$work/$t.log" >&2
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
  echo "fuzz smoke: $t ok (${runs:-?} executions in ${seconds} s)"
done
echo "fuzz smoke: build $((built - start)) s, runs $(($(date +%s) - built)) s"
exit "$failed"
