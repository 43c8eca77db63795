#!/usr/bin/env bash
# How long `certhost master-key rotate` takes over an inventory of N private keys (default
# 100,000), and how much the database and its WAL grow. The keys are sealed straight into a
# fresh inventory with Python's `cryptography` (AES-256-GCM, the host's format and associated
# data), so building the fixture does not take N issuances.
#
#   bench/master-key-rotation.sh [N]      (CERTHOST_BIN=path skips the cargo build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
W=$(mktemp -d /tmp/certhost-rotate-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
if [ -z "${CERTHOST_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p certhost --bin certhost >&2)
  CERTHOST_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/certhost
fi
export CERTHOST_DATA_DIR=$W/data RUST_LOG=warn
unset CERTHOST_MASTER_KEY CERTHOST_NEW_MASTER_KEY
"$CERTHOST_BIN" init >/dev/null
python3 - "$W/data" "$N" <<'PY'
import base64, hashlib, os, sqlite3, sys
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization
data, n = sys.argv[1], int(sys.argv[2])
aes = AESGCM(base64.b64decode(open(os.path.join(data, "master.key")).read()))
# One real P-256 key's PKCS#8, sealed under n distinct public-key digests: the rotation opens
# and seals each row by its own associated data, as with n distinct keys.
der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
db = sqlite3.connect(os.path.join(data, "certhost.db"))
rows = []
for i in range(n):
    digest = hashlib.sha256(b"bench-key-%d" % i).hexdigest()
    nonce = os.urandom(12)
    sealed = nonce + aes.encrypt(nonce, der, ("certhost/key/v1/" + digest).encode())
    rows.append(("ec", 256, digest, sealed, 0))
db.executemany("INSERT INTO keys (algorithm, bits, public_sha256, sealed_pkcs8, created_at) VALUES (?,?,?,?,?)", rows)
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
PY
size() { du -k "$W/data/certhost.db" "$W/data/certhost.db-wal" 2>/dev/null | awk '{s+=$1} END {printf "%.1f MiB", s/1024}'; }
echo "keys: $N; database before: $(size)"
/usr/bin/time -f "rotate: %e s wall, %U s user, %S s system, max RSS %M KiB" "$CERTHOST_BIN" master-key rotate
echo "database and WAL after: $(size)"
