"""certhost / VMware Avi certificate connector: sign with `openssl x509 -req` as a file-based CA.

Parameters (args_dict, all strings):
  ca_cert            path of the CA certificate (PEM)
  ca_key             path of the CA private key (PEM, may be encrypted)
  ca_key_passphrase  passphrase of ca_key (sensitive; never on a command line)
  validity_days      certificate lifetime in days (default 90)
  openssl            the openssl binary (default: openssl on PATH)

The certificate gets the extensions below and the CSR's subjectAltName, nothing else the CSR
requests: a CA that copies requested extensions (`-copy_extensions copy`) lets the requester
choose CRL and OCSP addresses, name constraints or a CA flag.

Errors are written to stderr followed by sys.exit(1), as Avi scripts do.
"""
import base64
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


# Object identifiers as DER bytes: PKCS#9 extensionRequest and X.509 subjectAltName.
_EXTENSION_REQUEST = bytes.fromhex("2a864886f70d01090e")
_SUBJECT_ALT_NAME = bytes.fromhex("551d11")


def _der_items(data):
    """(tag, contents) of each DER element in `data`, one after another."""
    items, i = [], 0
    while i < len(data):
        tag, length, i = data[i], data[i + 1], i + 2
        if length & 0x80:
            n = length & 0x7F
            length, i = int.from_bytes(data[i:i + n], "big"), i + n
        items.append((tag, data[i:i + length]))
        i += length
    return items


def requested_san(csr_pem):
    """The CSR's subjectAltName as an openssl config line, or "" when it requests none.

    The extension's bytes are written as they are (`DER:`), so the certificate names exactly
    what certhost checked against the profile.
    """
    body = "".join(line for line in csr_pem.splitlines() if line and not line.startswith("-----"))
    request_info = _der_items(_der_items(base64.b64decode(body))[0][1])[0][1]
    for tag, attributes in _der_items(request_info):
        if tag != 0xA0:  # [0] attributes
            continue
        for _, attribute in _der_items(attributes):
            (_, oid), (_, values) = _der_items(attribute)[:2]
            if oid != _EXTENSION_REQUEST:
                continue
            for _, extension in _der_items(_der_items(values)[0][1]):
                parts = _der_items(extension)
                if parts[0][1] == _SUBJECT_ALT_NAME:
                    critical = "critical, " if len(parts) == 3 and parts[1][1] == b"\xff" else ""
                    return "subjectAltName = %sDER:%s\n" % (critical, parts[-1][1].hex(":"))
    return ""


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
            f.write(EXTENSIONS + requested_san(csr))
        result = _openssl(args_dict, [
            "x509", "-req", "-in", csr_path, "-CA", args_dict["ca_cert"], "-CAkey", args_dict["ca_key"],
            "-set_serial", "0x" + os.urandom(16).hex(), "-days", days, "-sha256",
            "-extfile", ext_path, "-out", out_path,
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
