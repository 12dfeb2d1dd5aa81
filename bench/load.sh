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
#   GATEHOUSE_BENCH_AUTH=1 bench/load.sh        # also Gatehouse with a JWT RS256 policy
#                                               # (examples/bench-auth.yaml), as `gatehouse-jwt`
#
# HTTPS and HTTP/2 rows (Gatehouse on examples/bench-tls.yaml vs nginx, same certificate, same
# run): bench/load_tls.sh, a separate runner, since the harness only loads http:// targets.
#
# With GATEHOUSE_BENCH_AUTH=1 every request of every target carries
# `Authorization: Bearer <the RS256 fixture token>`: the harness has no header option, so wrk and
# oha are wrapped (a `wrk` first in PATH, OHA=) to add it. Every target thus gets the same bytes,
# and `gatehouse` vs `gatehouse-jwt` differ only by the policy. A token the gateway refused would
# be a 401, counted in the `errors` column.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
harness=${GATEHOUSE_BENCH_HARNESS:-$root/../shared/bench/run.sh}
[ -x "$harness" ] || harness="bash $harness"
cargo build --release -p gatehouse --manifest-path "$root/Cargo.toml"
bin="$root/target/release/gatehouse"
cd "$root"
extra=()
if [ "${GATEHOUSE_BENCH_AUTH:-0}" = 1 ]; then
  token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["RS256"])' \
    "$root/crates/gatehouse/tests/fixtures/jwt/tokens.json")
  wrap=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-auth.XXXXXX")
  trap 'rm -rf "$wrap"' EXIT
  real_wrk=$(command -v wrk || true)
  if [ -n "$real_wrk" ]; then
    printf '#!/usr/bin/env bash\nexec %q -H %q "$@"\n' "$real_wrk" "Authorization: Bearer $token" >"$wrap/wrk"
    chmod +x "$wrap/wrk"
    export PATH="$wrap:$PATH"
  fi
  tools=${XDG_CACHE_HOME:-$HOME/.cache}/proxy-bench-tools/bin/oha
  real_oha=${OHA:-$(command -v oha || true)}
  [ -n "$real_oha" ] || { [ -x "$tools" ] && real_oha=$tools; } || true
  [ -n "$real_oha" ] || { [ -x "$root/../shared/bench/.tools/bin/oha" ] && real_oha=$root/../shared/bench/.tools/bin/oha; } || true
  if [ -n "$real_oha" ]; then
    printf '#!/usr/bin/env bash\nexec %q -H %q "$@"\n' "$real_oha" "Authorization: Bearer $token" >"$wrap/oha"
    chmod +x "$wrap/oha"
    export OHA="$wrap/oha"
  fi
  extra+=(--candidate "name=gatehouse-jwt; cmd=$bin run --config $root/examples/bench-auth.yaml --workers \$PROXY_THREADS --log-level warn")
fi
if [ "${GATEHOUSE_BENCH_RATELIMIT:-0}" = 1 ]; then
  extra+=(--candidate "name=gatehouse-rl; cmd=$bin run --config $root/examples/bench-ratelimit.yaml --workers \$PROXY_THREADS --log-level warn")
fi
# Not `exec`: the EXIT trap removes the wrappers afterwards.
$harness --only direct,nginx --out "$root/bench/results" "$@" \
  --candidate "name=gatehouse; cmd=$bin run --config $root/examples/bench.yaml --workers \$PROXY_THREADS --log-level warn" \
  "${extra[@]}"
