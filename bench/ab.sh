#!/usr/bin/env bash
# Two certhost builds against each other, interleaved (A, B, A, B, ...): on a shared machine
# one pair proves nothing, the same binary varies ±15% from run to run.
#
#   bench/ab.sh BIN_A BIN_B [PAIRS=3] [SECONDS=8] [CONCURRENCY=8]
#
# Each run starts a fresh `serve` (the bench profile of bench/lib.sh: local-ca, host-made
# P-256 keys), puts wrk on it for SECONDS and prints the build, req/s and the server's CPU
# per issuance (user + system over the run / 201s). Build a baseline with, for example,
#   git stash -u && cargo build --release -p certhost && cp target/release/certhost /tmp/base
#   git stash pop && cargo build --release -p certhost
#   bench/ab.sh /tmp/base target/release/certhost
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); PAIRS=${3:-3}; SECS=${4:-8}; CONC=${5:-8}
. "$(dirname "$0")/lib.sh"

one() { # BIN LABEL
  (
    CERTHOST_BIN=$1
    bench_scratch certhost-ab
    bench_certhost_bin
    bench_start_serve
    read -r _ RPS _ _ BAD CPU _ < <(run_wrk "$SERVE_PID" "http://127.0.0.1:$PORT/v1/certificates" "$TOKEN" \
      '{"profile":"bench","cn":"h{n}.example.com"}')
    printf '%-2s %10s req/s %6s µs/issuance%s\n' "$2" "$RPS" "$CPU" "$([ "$BAD" = 0 ] || echo " ($BAD non-2xx)")"
  )
}

echo "A = $A"
echo "B = $B"
for i in $(seq "$PAIRS"); do
  # Alternate which goes first, so a machine getting busier or quieter favours neither.
  if [ $((i % 2)) = 1 ]; then one "$A" A; one "$B" B; else one "$B" B; one "$A" A; fi
done
