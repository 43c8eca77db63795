"""certhost / VMware Avi certificate connector for CFSSL's REST API (`cfssl serve`).

Parameters (args_dict, all strings):
  url        base URL, e.g. http://127.0.0.1:8888 (the /api/v1/cfssl/... paths are added)
  auth_key   hex HMAC key of an authenticated signing profile (sensitive); when set,
             requests go to /authsign with token = base64(HMAC-SHA256(key, request bytes))
  profile    CFSSL signing profile (optional; needed with auth_key when the key belongs
             to a named profile)
  label      CFSSL signer label (optional)
  ca_bundle  CA file to trust for an https url (optional)
"""
import base64
import hashlib
import hmac
import json
import sys

import requests

__version__ = "1.0"

PARAMETERS = [
    {"name": "url", "description": "CFSSL base URL", "required": True},
    {"name": "auth_key", "description": "hex HMAC key for /authsign", "sensitive": True},
    {"name": "profile", "description": "CFSSL signing profile"},
    {"name": "label", "description": "CFSSL signer label"},
    {"name": "ca_bundle", "description": "CA file to trust for https"},
]


def _api(args_dict, endpoint):
    return args_dict["url"].rstrip("/") + "/api/v1/cfssl/" + endpoint


def _post(args_dict, endpoint, body):
    verify = args_dict.get("ca_bundle") or True
    response = requests.post(_api(args_dict, endpoint), data=body, headers={"Content-Type": "application/json"}, timeout=30, verify=verify)
    try:
        payload = response.json()
    except ValueError:
        sys.stderr.write("CFSSL %s answered HTTP %d without JSON\n" % (endpoint, response.status_code))
        sys.exit(1)
    if not payload.get("success"):
        errors = "; ".join("%s (code %s)" % (e.get("message"), e.get("code")) for e in payload.get("errors") or [])
        sys.stderr.write("CFSSL %s refused the request: %s\n" % (endpoint, errors or "HTTP %d" % response.status_code))
        sys.exit(1)
    return payload["result"]


def _info(args_dict):
    request = {}
    if args_dict.get("label"):
        request["label"] = args_dict["label"]
    if args_dict.get("profile"):
        request["profile"] = args_dict["profile"]
    return _post(args_dict, "info", json.dumps(request))


def certificate_request(csr, common_name, args_dict):
    sign_request = {"certificate_request": csr}
    if args_dict.get("profile"):
        sign_request["profile"] = args_dict["profile"]
    if args_dict.get("label"):
        sign_request["label"] = args_dict["label"]
    inner = json.dumps(sign_request).encode()
    key = args_dict.get("auth_key")
    if key:
        try:
            raw_key = bytes.fromhex(key)
        except ValueError:
            sys.stderr.write("auth_key must be hexadecimal\n")
            sys.exit(1)
        token = base64.b64encode(hmac.new(raw_key, inner, hashlib.sha256).digest()).decode()
        body = json.dumps({"token": token, "request": base64.b64encode(inner).decode()})
        result = _post(args_dict, "authsign", body)
    else:
        result = _post(args_dict, "sign", inner)
    certificate = result.get("certificate")
    if not certificate:
        sys.stderr.write("CFSSL returned no certificate\n")
        sys.exit(1)
    chain = _info(args_dict).get("certificate")
    return {"status": "issued", "certificate": certificate, "chain": [chain] if chain else []}


def test_connection(args_dict):
    return bool(_info(args_dict).get("certificate"))


def _authority_key_id(certificate_pem):
    """The certificate's authorityKeyIdentifier as lowercase hex, or "" (a small DER walk:
    scripts for this contract rely on the standard library and requests only)."""
    body = "".join(line for line in certificate_pem.splitlines() if line and not line.startswith("-----"))
    der = base64.b64decode(body)
    marker = bytes([0x06, 0x03, 0x55, 0x1D, 0x23])  # OID 2.5.29.35
    at = der.find(marker)
    if at < 0:
        return ""
    # After the OID: [critical BOOLEAN] OCTET STRING { SEQUENCE { [0] keyIdentifier ... } }
    rest = der[at + len(marker):]
    at = rest.find(b"\x80")
    if at < 0 or at + 2 > len(rest):
        return ""
    length = rest[at + 1]
    return rest[at + 2:at + 2 + length].hex()


def revoke(certificate, serial, reason, comment, args_dict):
    """CFSSL /revoke (needs `cfssl serve -db-config`). CFSSL keys its database by the decimal
    serial and the authority key id; older CFSSL releases store an empty id, so that is tried
    second."""
    decimal_serial = str(int(serial, 16))
    last = None
    for aki in (_authority_key_id(certificate), ""):
        body = json.dumps({"serial": decimal_serial, "authority_key_id": aki, "reason": reason})
        verify = args_dict.get("ca_bundle") or True
        response = requests.post(_api(args_dict, "revoke"), data=body, headers={"Content-Type": "application/json"}, timeout=30, verify=verify)
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if payload.get("success"):
            return True
        last = "; ".join("%s (code %s)" % (e.get("message"), e.get("code")) for e in payload.get("errors") or []) or "HTTP %d" % response.status_code
    sys.stderr.write("CFSSL revoke refused: %s\n" % last)
    sys.exit(1)
