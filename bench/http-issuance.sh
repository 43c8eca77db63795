#!/usr/bin/env bash
# HTTP issuance, certhost beside CFSSL, in one invocation on the same machine (issue 9).
#
#   bench/http-issuance.sh [CONCURRENCY=8] [SECONDS=10]
#
# 1. certhost: a P-256 CA (`certhost ca init`), a local-ca account, a profile `bench` with
#    host-generated P-256 leaf keys; `certhost serve` (release build); wrk POSTs
#    {"profile":"bench","cn":...} to /v1/certificates with CONCURRENCY connections for SECONDS.
#    Every 201 is a certificate synced to the inventory (group commit: the WAL is fsynced
#    before any caller hears of its change); the script counts the rows afterwards and
#    compares with the 201s wrk saw (rows may exceed them by the requests in flight when wrk
#    stopped), and prints how many changes each sync carried.
# 2. cfssl: `cfssl serve` with a P-256 CA; the same load on /api/v1/cfssl/newcert
#    (server-side P-256 key + CSR + sign). It stores nothing: the issue's reference.
# 3. cfssl+db: the same with `-db-config` (its SQLite certificate database), for context: a
#    peer that also keeps every certificate it issues.
# Prints req/s, p50, p99 and the server's CPU per request for each, the ratios, and what
# 2x cfssl leaves certhost in CPU per issuance; FLOOR=1 adds the issuance_compute bench (the
# CPU no issuance can skip) beside it. Needs wrk (apt-get install wrk), cfssl (golang-cfssl),
# python3. CERTHOST_BIN=path skips the cargo build; BENCH_PROFILE_EXTRA (TOML) adds rules to
# the bench profile (see bench/lib.sh).
set -euo pipefail
CONC=${1:-8}
SECS=${2:-10}
. "$(dirname "$0")/lib.sh"
bench_scratch certhost-http-bench

command -v cfssl >/dev/null || { echo "cfssl not found: apt-get install golang-cfssl" >&2; exit 1; }
bench_certhost_bin

# --- certhost ---------------------------------------------------------------------------
bench_start_serve
read -r C_REQS C_RPS C_P50 C_P99 C_BAD C_CPU C_WRK < <(run_wrk "${PIDS[0]}" "http://127.0.0.1:$PORT/v1/certificates" "$TOKEN" \
  '{"profile":"bench","cn":"h{n}.example.com"}')
# How many changes each inventory sync carried (group commit), from serve's own metrics.
SYNCS=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" | awk '
  /^certhost_inventory_commit_seconds_count/ {n=$2} /^certhost_inventory_commit_seconds_sum/ {t=$2}
  /^certhost_inventory_committed_changes_total/ {c=$2}
  END { if (n > 0) printf "%d syncs, %.1f changes per sync, %.2f ms per sync", n, c/n, 1000*t/n }')
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
STORED=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from certificates").fetchone()[0])' "$W/data/certhost.db")

# --- cfssl ------------------------------------------------------------------------------
(cd "$W" && echo '{"CN":"Bench cfssl CA","key":{"algo":"ecdsa","size":256}}' | cfssl gencert -initca - 2>/dev/null \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); open("cfssl-ca.pem","w").write(d["cert"]); open("cfssl-ca-key.pem","w").write(d["key"])')
echo '{"signing":{"default":{"expiry":"2160h","usages":["digital signature","key encipherment","server auth"]}}}' > "$W/cfssl.json"
CPORT=$(free_port)
cfssl serve -address 127.0.0.1 -port "$CPORT" -ca "$W/cfssl-ca.pem" -ca-key "$W/cfssl-ca-key.pem" \
  -config "$W/cfssl.json" -loglevel 2 >"$W/cfssl.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CPORT/api/v1/cfssl/info"
NEWCERT='{"request":{"CN":"h{n}.example.com","hosts":["h{n}.example.com"],"key":{"algo":"ecdsa","size":256}}}'
read -r F_REQS F_RPS F_P50 F_P99 F_BAD F_CPU F_WRK < <(run_wrk "${PIDS[1]}" "http://127.0.0.1:$CPORT/api/v1/cfssl/newcert" "" "$NEWCERT")
kill "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true

# --- cfssl with a certificate database (context: a peer that also stores what it issues) --
python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).executescript("""
  CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
    status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
    PRIMARY KEY(serial_number, authority_key_identifier));
  CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
    body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier));""")' "$W/cfssl.db"
echo "{\"driver\":\"sqlite3\",\"data_source\":\"$W/cfssl.db\"}" > "$W/cfssl-db.json"
DPORT=$(free_port)
cfssl serve -address 127.0.0.1 -port "$DPORT" -ca "$W/cfssl-ca.pem" -ca-key "$W/cfssl-ca-key.pem" \
  -config "$W/cfssl.json" -db-config "$W/cfssl-db.json" -loglevel 2 >"$W/cfssl-db.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$DPORT/api/v1/cfssl/info"
read -r D_REQS D_RPS D_P50 D_P99 D_BAD D_CPU D_WRK < <(run_wrk "${PIDS[2]}" "http://127.0.0.1:$DPORT/api/v1/cfssl/newcert" "" "$NEWCERT")
D_STORED=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from certificates").fetchone()[0])' "$W/cfssl.db")

printf '%-10s %10s %10s %10s %10s %8s %12s\n' "" "requests" "req/s" "p50" "p99" "non-2xx" "cpu µs/req"
printf '%-10s %10s %10s %10s %10s %8s %12s\n' certhost "$C_REQS" "$C_RPS" "$C_P50" "$C_P99" "$C_BAD" "$C_CPU"
printf '%-10s %10s %10s %10s %10s %8s %12s\n' cfssl "$F_REQS" "$F_RPS" "$F_P50" "$F_P99" "$F_BAD" "$F_CPU"
printf '%-10s %10s %10s %10s %10s %8s %12s\n' cfssl+db "$D_REQS" "$D_RPS" "$D_P50" "$D_P99" "$D_BAD" "$D_CPU"
echo "concurrency $CONC, ${SECS}s each, $(nproc) cores shared with wrk; cpu µs/req = the server's user+system CPU time over the run / requests answered"
echo "certhost rows stored: $STORED (= 1 warm-up + $((C_REQS - C_BAD)) answered 201 expected)"
echo "certhost group commit: $SYNCS"
echo "cfssl+db rows stored: $D_STORED (cfssl's sqlite certdb, journal_mode=delete)"
python3 -c "import sys; print(f'ratio certhost/cfssl req/s: {float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$C_RPS" "$F_RPS"
python3 -c "import sys; print(f'ratio cfssl/certhost server CPU per request: {float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$F_CPU" "$C_CPU"
python3 -c "import sys; print(f'ratio certhost/cfssl+db req/s: {float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$C_RPS" "$D_RPS"
# The target in CPU: answering 2x cfssl's req/s on these cores, with wrk costing what it cost
# against certhost, leaves certhost this much CPU per issuance.
python3 -c "import sys; cores, frps, cwrk, fwrk, ccpu = map(float, sys.argv[1:])
budget = cores * 1e6 / (2 * frps) - cwrk
print(f'2x cfssl leaves certhost {budget:.0f} µs of CPU per issuance ({cores:.0f} cores / (2 x {frps:.0f} req/s) - wrk\'s {cwrk:.0f} µs per request; wrk spent {fwrk:.0f} against cfssl); certhost spent {ccpu:.0f}')" \
  "$(nproc)" "$F_RPS" "$C_WRK" "$F_WRK" "$C_CPU"
if [ -n "${FLOOR:-}" ]; then
  # What no issuance can skip, on one thread (criterion; builds the bench on first use).
  (cd "$ROOT" && cargo bench -p certhost --bench connectors -- --warm-up-time 1 --measurement-time 5 \
    issuance_compute/local_ca >"$W/floor.log" 2>&1) || { cat "$W/floor.log" >&2; echo "the floor bench failed" >&2; exit 1; }
  FLOOR_US=$(awk '{ for (i = 1; i < NF; i++) if ($i == "time:") { v = $(i + 3); u = $(i + 4)
      if (u ~ /^ms/) v *= 1000; else if (u ~ /^ns/) v /= 1000; else if (u == "s") v *= 1e6; printf "%.0f", v } }' "$W/floor.log")
  [ -n "$FLOOR_US" ] || { echo "no time in the floor bench's output ($W/floor.log, kept with BENCH_KEEP=1)" >&2; exit 1; }
  echo "floor (cargo bench ... issuance_compute/local_ca: key + CSR, the local-ca call, verification, sealing; no HTTP, no storage): ${FLOOR_US} µs"
fi
