#!/usr/bin/env bash
# Where an issuance's CPU and disk writes go in `certhost serve` (issue 9's profiling, kept
# runnable): the same local-ca setup as http-issuance.sh, then
#
#   1. CPU per issuance by thread (tokio workers, committer, syncer) under wrk;
#   2. a perf profile of serve under the same load, if perf works here: share by thread,
#      kernel time by system call, the heaviest functions of each thread;
#   3. WAL pages written per issuance, by table or index, for ISSUANCES requests made at
#      CONCURRENCY after a checkpoint (each page is written to the WAL, later copied into
#      the database by a checkpoint, and synced: the inventory's cost per issuance).
#
#   bench/serve-profile.sh [CONCURRENCY=8] [SECONDS=8] [ISSUANCES=100]
#
# Part 3 counts the WAL, which a checkpoint restarts every 4,000 pages: ISSUANCES times the
# pages per issuance (about 20) must stay below that.
#
# Needs wrk, curl, python3; perf (linux-perf) for part 2, which is skipped without it.
# CERTHOST_BIN=path skips the cargo build; BENCH_PROFILE_EXTRA adds rules to the profile
# (see bench/lib.sh). Figures move with the machine: compare builds in one session,
# alternating them.
set -euo pipefail
CONC=${1:-8}
SECS=${2:-8}
ISSUANCES=${3:-100}
. "$(dirname "$0")/lib.sh"
bench_scratch certhost-serve-profile
REPORT=$(dirname "$0")/serve_profile.py

bench_certhost_bin
bench_start_serve
URL=http://127.0.0.1:$PORT/v1/certificates
BODY='{"profile":"bench","cn":"h{n}.example.com"}'
task_ticks() { for t in /proc/"$SERVE_PID"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done; }

SECS=3 run_wrk "$SERVE_PID" "$URL" "$TOKEN" "$BODY" >/dev/null  # warm-up; SECS is back afterwards

echo "== 1. CPU per issuance by thread (concurrency $CONC, ${SECS} s)"
task_ticks > "$W/ticks.before"
read -r REQS RPS _ _ BAD _ _ < <(run_wrk "$SERVE_PID" "$URL" "$TOKEN" "$BODY")
task_ticks > "$W/ticks.after"
echo "$REQS issuances, $RPS req/s, $BAD not 2xx"
python3 "$REPORT" threads "$W/ticks.before" "$W/ticks.after" "$REQS"

echo "== 2. perf profile"
if command -v perf >/dev/null && perf record -o "$W/probe.data" -- true >/dev/null 2>&1; then
  run_wrk "$SERVE_PID" "$URL" "$TOKEN" "$BODY" >/dev/null &
  WRK=$!
  sleep 1
  perf record -F 499 --call-graph dwarf,16384 -p "$SERVE_PID" -o "$W/perf.data" -- sleep $((SECS - 2 > 1 ? SECS - 2 : 1)) 2>/dev/null
  wait "$WRK"
  perf script -i "$W/perf.data" 2>/dev/null > "$W/perf.txt"
  python3 "$REPORT" perf "$W/perf.txt"
else
  echo "skipped: perf is missing or not permitted (kernel.perf_event_paranoid)"
fi

echo "== 3. WAL pages per issuance ($ISSUANCES issuances at concurrency $CONC)"
DB=$W/data/certhost.db
python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)")' "$DB"
seq "$ISSUANCES" | xargs -P "$CONC" -I{} curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"profile":"bench","cn":"wal{}.example.com"}' "$URL"
python3 "$REPORT" wal "$DB" "$ISSUANCES"
