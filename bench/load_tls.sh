#!/usr/bin/env bash
# HTTPS and HTTP/2 load benchmark: Gatehouse (examples/bench-tls.yaml) side by side with nginx,
# both terminating TLS with the same throwaway certificate, in the same run. The shared harness
# (../shared/bench/run.sh) only loads http:// targets, so this runner mirrors it for TLS
# (bench/load_tls.py: same backend, same `shared` pinning, CPU from /proc, paired rounds).
#
#   bench/load_tls.sh                        # 3 rounds x 10 s, rows https-h1 (wrk) and h2 (h2load)
#   bench/load_tls.sh --rounds 5             # options pass through to load_tls.py (--help)
#   bench/load_tls.sh --protocols https-h1   # one row only
#   BENCH_NO_INSTALL=1 bench/load_tls.sh     # do not apt-get install missing tools
#   BENCH_NO_BUILD=1 bench/load_tls.sh       # use the existing target/release/gatehouse
#
# Rows: `https-h1` = HTTP/1.1 over TLS, wrk -c50 keep-alive (closed loop); `h2` = h2load -c50
# -m4 (200 streams in flight) with ALPN h2 only. A Gatehouse that does not offer h2 in ALPN shows
# "n/a (no h2)".
# Needs: nginx, wrk, h2load (Debian nghttp2-client), openssl, python3; installs the missing ones
# with apt-get unless BENCH_NO_INSTALL=1. Results: bench/results/<stamp>-tls.{json,md}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have /usr/sbin/nginx || need+=(nginx)
have wrk             || need+=(wrk)
have h2load          || need+=(nghttp2-client)
have openssl         || need+=(openssl)
have python3         || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
    echo "missing: ${need[*]} (BENCH_NO_INSTALL=1: not installing)" >&2
  else
    echo "installing: ${need[*]}" >&2
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >&2
  fi
fi

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p gatehouse --manifest-path "$root/Cargo.toml"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-tlsbench-cert.XXXXXX")
pypid=""
cleanup() { rm -rf "$tmp"; }
forward() {  # Ctrl-C / TERM: let the Python side stop what it started, then clean up
  if [ -n "$pypid" ]; then kill -TERM "$pypid" 2>/dev/null || true; wait "$pypid" 2>/dev/null || true; fi
  cleanup
  exit 130
}
trap cleanup EXIT
trap forward INT TERM HUP

# A throwaway self-signed certificate (ECDSA P-256) for 127.0.0.1 and localhost, used by both.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
export TLS_CERT="$tmp/cert.pem" TLS_KEY="$tmp/key.pem"

cd "$root"
# In the background so the INT/TERM trap runs at once; python stops its targets on TERM.
python3 "$here/load_tls.py" "$@" &
pypid=$!
set +e
wait "$pypid"
rc=$?
set -e
pypid=""
exit "$rc"
