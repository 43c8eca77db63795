# Shared by the bench scripts that load `certhost serve` with local-ca issuance. Source it,
# set CONC and SECS; it defines functions only.
#
#   bench_scratch NAME   — W, a scratch directory removed on exit, and PIDS, stopped on exit
#   bench_certhost_bin   — CERTHOST_BIN, or a release build (and the connectors) made now
#   bench_start_serve    — CA, local-ca account, profile `bench`, token; starts serve and
#                          issues one certificate; sets SERVE_PID, PORT, TOKEN
#   run_wrk PID URL TOKEN BODY — "reqs rps p50 p99 non2xx cpu-µs-per-request
#                                  wrk-cpu-µs-per-request" (the server's, then wrk's own)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Decimal points, not commas, in what `times` and printf write.
export LC_NUMERIC=C
WASM=$ROOT/plugins/dist/local-ca.wasm

# A scratch directory W for one run, removed on exit (BENCH_KEEP=1 keeps it) after every
# process in PIDS is stopped.
bench_scratch() {
  W=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

bench_certhost_bin() {
  command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
  if [ -z "${CERTHOST_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p certhost --bin certhost >&2)
    CERTHOST_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/certhost
  fi
  [ -f "$WASM" ] || (cd "$ROOT" && cargo xtask build-plugins >&2)
}

# wrk POSTs a body with a per-request CN ({n} in BENCH_BODY); the first few failures are shown.
write_post_lua() {
  cat > "$W/post.lua" <<'LUA'
local counter = 0
local prefix = tostring(math.random(1, 1e9))
function request()
  counter = counter + 1
  local body = (os.getenv("BENCH_BODY"):gsub("{n}", prefix .. "-" .. counter))
  return wrk.format("POST", nil, nil, body)
end
local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write("HTTP " .. status .. ": " .. body:sub(1, 300) .. "\n")
  end
end
LUA
}

# CPU time (user + system, clock ticks) a process has used: the server's CPU per request
# is a steadier figure than req/s on a shared machine (wrk competes for the same cores).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() { # pid url token body-format → prints "reqs rps p50 p99 non2xx cpu-µs-per-request wrk-cpu-µs-per-request"
  local pid=$1 url=$2 auth=$3 body=$4 out before after
  [ -f "$W/post.lua" ] || write_post_lua
  before=$(cpu_ticks "$pid")
  # `times` in the same subshell: its second line is the CPU its children (wrk) used. Only
  # after a wrk that succeeded, so a failed run still stops the script.
  out=$(BENCH_BODY=$body wrk -t2 -c"$CONC" -d"${SECS}s" --latency -s "$W/post.lua" \
        -H 'content-type: application/json' ${auth:+-H "Authorization: Bearer $auth"} "$url" && times)
  after=$(cpu_ticks "$pid")
  echo "$out" >> "$W/wrk.log"
  echo "$out" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    function secs(t, p) { sub(/s$/, "", t); split(t, p, "m"); return p[1] * 60 + p[2] }
    /requests in/ {reqs=$1}
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2}
    /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    /^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ {wrk=secs($1) + secs($2)}
    END {printf "%s %s %s %s %s %.0f %.0f\n", reqs, rps, p50, p99, (bad==""?0:bad),
         (reqs > 0 ? 1e6*ticks/hz/reqs : 0), (reqs > 0 ? 1e6*wrk/reqs : 0)}'
}

bench_start_serve() {
  export CERTHOST_DATA_DIR=$W/data CERTHOST_CONFIG=$W/certhost.toml RUST_LOG=warn
  CERTHOST_MASTER_KEY=$(head -c32 /dev/urandom | base64)
  export CERTHOST_MASTER_KEY
  "$CERTHOST_BIN" ca init --out "$W/ca" --cn "Bench CA" >/dev/null
  mkdir -p "$W/profiles"
  cat > "$W/certhost.toml" <<TOML
profile_dirs = ["profiles"]
[accounts.bench-local]
connector = "$WASM"
params.validity_days = "90"
params.ca_certificate = { file = "ca/ca.pem" }
params.ca_private_key = { sensitive = true, value = { file = "ca/ca.key" } }
TOML
  cat > "$W/profiles/bench.toml" <<'TOML'
description = "load test"
accounts = ["bench-local"]
[key]
type = "ec-p256"
[sans]
allowed_types = ["DNS"]
dns_suffixes = [".example.com"]
TOML
  # BENCH_PROFILE_EXTRA: TOML appended to the profile (after its [sans] table), to measure a
  # profile with more rules, e.g. $'dns_regex = "[a-z0-9-]+[.]example[.]com"\n[cn]\nallowed = "[a-z0-9.-]+"'.
  printf '%s\n' "${BENCH_PROFILE_EXTRA:-}" >> "$W/profiles/bench.toml"
  TOKEN=$(cd "$W" && "$CERTHOST_BIN" token create --name bench --role admin)
  PORT=$(free_port)
  (cd "$W" && exec "$CERTHOST_BIN" serve --listen "127.0.0.1:$PORT" >"$W/serve.log" 2>&1) &
  SERVE_PID=$!
  PIDS+=("$SERVE_PID")
  wait_http "http://127.0.0.1:$PORT/healthz"
  # One request first: the component is instantiated and the account synced before timing.
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"profile":"bench","cn":"warm.example.com"}' "http://127.0.0.1:$PORT/v1/certificates" \
    || { echo "warm-up issue failed:" >&2; cat "$W/serve.log" >&2; exit 1; }
}
