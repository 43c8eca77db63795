"""certhost / VMware Avi certificate connector: sign with `openssl x509 -req` as a file-based CA.

Parameters (args_dict, all strings):
  ca_cert            path of the CA certificate (PEM)
  ca_key             path of the CA private key (PEM, may be encrypted)
  ca_key_passphrase  passphrase of ca_key (sensitive; never on a command line)
  validity_days      certificate lifetime in days (default 90)
  openssl            the openssl binary (default: openssl on PATH)

Errors are written to stderr followed by sys.exit(1), as Avi scripts do.
"""
import os
import subprocess
import sys
import tempfile

__version__ = "1.0"

PARAMETERS = [
    {"name": "ca_cert", "description": "CA certificate PEM file", "required": True},
    {"name": "ca_key", "description": "CA private key PEM file", "required": True},
    {"name": "ca_key_passphrase", "description": "passphrase of the CA key", "sensitive": True},
    {"name": "validity_days", "description": "lifetime in days", "default": "90"},
    {"name": "openssl", "description": "openssl binary", "default": "openssl"},
]

EXTENSIONS = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


def _openssl(args_dict, argv, stdin=None):
    env = dict(os.environ)
    passin = []
    if args_dict.get("ca_key_passphrase"):
        env["CERTHOST_CA_KEY_PASS"] = args_dict["ca_key_passphrase"]
        passin = ["-passin", "env:CERTHOST_CA_KEY_PASS"]
    binary = args_dict.get("openssl") or "openssl"
    return subprocess.run([binary] + argv + passin, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def certificate_request(csr, common_name, args_dict):
    for name in ("ca_cert", "ca_key"):
        if not args_dict.get(name):
            _fail("missing parameter " + name)
    days = args_dict.get("validity_days") or "90"
    if not days.isdigit() or not 1 <= int(days) <= 3650:
        _fail("validity_days must be a number of days between 1 and 3650")
    with tempfile.TemporaryDirectory() as tmp:
        csr_path = os.path.join(tmp, "request.csr")
        ext_path = os.path.join(tmp, "extensions.cnf")
        out_path = os.path.join(tmp, "certificate.pem")
        with open(csr_path, "w") as f:
            f.write(csr)
        with open(ext_path, "w") as f:
            f.write(EXTENSIONS)
        result = _openssl(args_dict, [
            "x509", "-req", "-in", csr_path, "-CA", args_dict["ca_cert"], "-CAkey", args_dict["ca_key"],
            "-set_serial", "0x" + os.urandom(16).hex(), "-days", days, "-sha256",
            "-copy_extensions", "copy", "-extfile", ext_path, "-out", out_path,
        ])
        if result.returncode != 0:
            _fail("openssl could not sign the request for %s: %s" % (common_name, result.stderr.strip()))
        with open(out_path) as f:
            certificate = f.read()
    with open(args_dict["ca_cert"]) as f:
        chain = f.read()
    return certificate + chain


def test_connection(args_dict):
    result = _openssl(args_dict, ["pkey", "-in", args_dict.get("ca_key", ""), "-noout"])
    if result.returncode != 0:
        _fail("cannot read the CA key: " + result.stderr.strip())
    result = _openssl(args_dict, ["x509", "-in", args_dict.get("ca_cert", ""), "-noout"])
    if result.returncode != 0:
        _fail("cannot read the CA certificate: " + result.stderr.strip())
    return True
