#!/usr/bin/env bash
# Benchmark (not a test): 20 sequential and 20 concurrent issuances through `certhost serve`
# (plugins/dist/acme.wasm) against Debian's pebble, then the same with Debian's lego against
# the same pebble, in one run; prints both and the ratio.
#
#   cargo build -p certhost && cargo xtask build-plugins
#   bench/acme-vs-lego.sh            # CERTHOST=path/to/certhost to pick another binary
#
# Needs: pebble, lego, openssl, curl (apt-get install pebble lego openssl curl).
set -euo pipefail
N=${N:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CERTHOST=${CERTHOST:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/certhost}
WASM=$ROOT/plugins/dist/acme.wasm
for tool in pebble lego openssl curl "$CERTHOST"; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
[ -f "$WASM" ] || { echo "missing $WASM: run cargo xtask build-plugins" >&2; exit 2; }

W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# pebble on free ports, with a TLS certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -addext extendedKeyUsage=serverAuth -keyout "$W/tls.key" -out "$W/tls.pem" 2>/dev/null
PORT=$(free_port); MPORT=$(free_port)
cat > "$W/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PORT", "managementListenAddress": "127.0.0.1:$MPORT",
 "certificate": "$W/tls.pem", "privateKey": "$W/tls.key", "httpPort": $(free_port), "tlsPort": $(free_port),
 "ocspResponderURL": "", "externalAccountBindingRequired": false, "retryAfter": {"authz": 0, "order": 0}}}
JSON
PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 pebble -config "$W/pebble.json" >"$W/pebble.log" 2>&1 &
PIDS+=($!)
DIR=https://127.0.0.1:$PORT/dir
for _ in $(seq 50); do curl -sf --cacert "$W/tls.pem" "$DIR" >/dev/null && break; sleep 0.1; done

# certhost serve with an account on the acme component.
mkdir -p "$W/conf/profiles"
cat > "$W/conf/certhost.toml" <<TOML
[accounts.pebble]
connector = "$WASM"
allowed_hosts = ["https://127.0.0.1:$PORT"]
extra_ca_pems = ["$W/tls.pem"]
timeout_seconds = 60
params.directory_url = "$DIR"
TOML
printf 'accounts = ["pebble"]\n[key]\ntype = "ec-p256"\n[sans]\nallowed_types = ["DNS"]\n' > "$W/conf/profiles/web.toml"
export CERTHOST_DATA_DIR=$W/data CERTHOST_MASTER_KEY=$(openssl rand -base64 32)
API=127.0.0.1:$(free_port)
"$CERTHOST" --config "$W/conf/certhost.toml" serve --listen "$API" >"$W/serve.out" 2>"$W/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://$API/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$("$CERTHOST" --config "$W/conf/certhost.toml" token create --name bench --role admin)
certhost_one() {
  local code
  code=$(curl -s -o "$W/c.$1.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"profile\": \"web\", \"cn\": \"$1.example.com\"}" "http://$API/v1/certificates")
  [ "$code" = 201 ] || [ "$code" = 200 ] || { echo "certhost issuance $1: HTTP $code $(cat "$W/c.$1.json")" >&2; return 1; }
}
lego_one() {  # $1 name, $2 lego directory (its account lives there)
  LEGO_CA_CERTIFICATES=$W/tls.pem lego --server "$DIR" --email bench@example.com --accept-tos \
    --path "$2" --domains "$1.example.com" --http --http.port "127.0.0.1:$(free_port)" run >"$2.$1.log" 2>&1 \
    || { echo "lego issuance $1 failed: $(tail -n 3 "$2.$1.log")" >&2; return 1; }
}
export -f certhost_one lego_one free_port
export TOKEN API DIR W

certhost_one warmup   # account creation and component compilation, not timed
t0=$(now); for i in $(seq "$N"); do certhost_one "seq$i"; done; t1=$(now)
seq "$N" | xargs -P "$N" -I{} bash -c 'certhost_one par{}' || true; t2=$(now)
CFAIL=$(grep -L '"id"' "$W"/c.par*.json | wc -l)

lego_one warmup "$W/lego-seq"
t3=$(now); for i in $(seq "$N"); do lego_one "lseq$i" "$W/lego-seq"; done; t4=$(now)
seq "$N" | xargs -P "$N" -I{} bash -c 'lego_one lpar{} $W/lego-par{}' || true; t5=$(now)
LFAIL=$(( N - $(ls "$W"/lego-par*/certificates/*.crt 2>/dev/null | grep -vc issuer) ))

echo "concurrent failures: certhost $CFAIL of $N, lego $LFAIL of $N"
python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
n = int(sys.argv[1]); t = [float(x) for x in sys.argv[2:]]
cs, cp, ls, lp = t[1]-t[0], t[2]-t[1], t[4]-t[3], t[5]-t[4]
print(f"{'':12}{'sequential':>22}{'concurrent':>22}")
print(f"{'certhost':12}{cs:>10.2f} s {1000*cs/n:>6.0f} ms/cert{cp:>10.2f} s {1000*cp/n:>6.0f} ms/cert")
print(f"{'lego':12}{ls:>10.2f} s {1000*ls/n:>6.0f} ms/cert{lp:>10.2f} s {1000*lp/n:>6.0f} ms/cert")
print(f"{'lego/certhost':12}{ls/cs:>19.1f} x{lp/cp:>21.1f} x")
PY
