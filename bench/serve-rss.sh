#!/usr/bin/env bash
# Resident memory of `certhost serve` (issue 9): idle, then with 10 connectors loaded (ten
# local-ca CA accounts, each used once through its own profile so its component is compiled
# and instantiated). Reads VmRSS (and VmHWM, the peak) from /proc/PID/status.
#
#   bench/serve-rss.sh            (CERTHOST_BIN=path skips the cargo build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/certhost-rss-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
if [ -z "${CERTHOST_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p certhost --bin certhost >&2)
  CERTHOST_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/certhost
fi
WASM=$ROOT/plugins/dist/local-ca.wasm
[ -f "$WASM" ] || (cd "$ROOT" && cargo xtask build-plugins >&2)
export CERTHOST_DATA_DIR=$W/data CERTHOST_CONFIG=$W/certhost.toml RUST_LOG=warn
export CERTHOST_MASTER_KEY=$(head -c32 /dev/urandom | base64)
"$CERTHOST_BIN" ca init --out "$W/ca" >/dev/null
mkdir -p "$W/profiles"
echo 'profile_dirs = ["profiles"]' > "$W/certhost.toml"
for i in $(seq 10); do
  cat >> "$W/certhost.toml" <<TOML
[accounts.local-$i]
connector = "$WASM"
params.validity_days = "90"
params.ca_certificate = { file = "ca/ca.pem" }
params.ca_private_key = { sensitive = true, value = { file = "ca/ca.key" } }
TOML
  printf 'accounts = ["local-%s"]\n[key]\ntype = "ec-p256"\n' "$i" > "$W/profiles/p$i.toml"
done
TOKEN=$(cd "$W" && "$CERTHOST_BIN" token create --name rss --role admin)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$W" && exec "$CERTHOST_BIN" serve --listen "127.0.0.1:$PORT" >"$W/serve.log" 2>&1) &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
sleep 2
rss() { awk '/^(VmRSS|VmHWM|VmSize):/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$PID/status"; echo; }
echo "idle:                $(rss)"
for i in $(seq 10); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"profile\":\"p$i\",\"cn\":\"rss$i.example.com\"}" "http://127.0.0.1:$PORT/v1/certificates" \
    || { echo "issue through p$i failed" >&2; cat "$W/serve.log" >&2; exit 1; }
done
sleep 1
echo "10 connectors loaded: $(rss)"
