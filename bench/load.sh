#!/usr/bin/env bash
# Load benchmark: Gatehouse (examples/bench.yaml) side by side with nginx (and `direct`, the
# backend alone) in the same run, using the shared harness (../shared/bench/run.sh: wrk for
# throughput, oha at a fixed rate for latency, CPU per request from /proc). Prints the harness's
# table; read "ratio vs nginx" (throughput), "CPU us/req" and "added p99".
#
#   bench/load.sh                 # 5 rounds, pin=shared (1 proxy worker)
#   bench/load.sh --rounds 3      # any run.sh option passes through
#   BENCH_NO_OHA=1 bench/load.sh  # skip the latency phase (no oha build)
#   GATEHOUSE_BENCH_RATELIMIT=1 bench/load.sh   # also Gatehouse with a never-triggering rate limit
#                                               # (examples/bench-ratelimit.yaml), as `gatehouse-rl`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
harness=${GATEHOUSE_BENCH_HARNESS:-$root/../shared/bench/run.sh}
[ -x "$harness" ] || harness="bash $harness"
cargo build --release -p gatehouse --manifest-path "$root/Cargo.toml"
bin="$root/target/release/gatehouse"
cd "$root"
extra=()
if [ "${GATEHOUSE_BENCH_RATELIMIT:-0}" = 1 ]; then
  extra+=(--candidate "name=gatehouse-rl; cmd=$bin run --config $root/examples/bench-ratelimit.yaml --workers \$PROXY_THREADS --log-level warn")
fi
exec $harness --only direct,nginx "$@" \
  --candidate "name=gatehouse; cmd=$bin run --config $root/examples/bench.yaml --workers \$PROXY_THREADS --log-level warn" \
  "${extra[@]}"
