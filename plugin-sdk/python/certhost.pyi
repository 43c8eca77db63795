"""Typing stub for certhost Python script connectors.

A connector script is a plain module. Only `certificate_request` is required; it has the
VMware Avi certificate-management signature, so Avi scripts run unmodified. Every
`args_dict` value is a string. Return a PEM string (certificate, optionally followed by
its chain) or a status dict. Report failure Avi's way — write to stderr and
`sys.exit(code)` — or raise: the message is what the script wrote to stderr (or the
exception), with every sensitive value replaced by ***. Exceptions from `requests`
connection errors and timeouts mean "CA unreachable": the host fails over to the profile's
next CA account.

    import certhost   # this module, provided by the host at run time

Module-level state persists between calls of the same CA account (one worker process per
account), so "reuse a token if one exists, else authenticate" works as in Avi. A returned
`bytes` holding PEM (e.g. `response.content`) is accepted like a str.
"""
from typing import Any, Dict, List, Optional, TypedDict, Union

# PARAMETERS (a module-level list of these) tells operators and `certhost plugin check` what
# the script reads. `sensitive` binds the host: the value is redacted from everything the
# script prints or raises, and a definition giving it a plain value is refused. `required`
# and `default` describe the script: the host neither fills in a default nor refuses a call
# without a required parameter (read them with `args_dict.get(name, default)`).
class Parameter(TypedDict, total=False):
    name: str
    description: str
    required: bool
    sensitive: bool
    default: str
    dynamic: bool  # accepted, no effect: the profile decides what each request supplies

# An order_id may be a str or an int (most CA APIs number their orders); an int reaches
# poll/renew/update_order as its decimal text.
class Issued(TypedDict, total=False):
    status: str  # "issued"
    certificate: str  # PEM
    chain: Union[str, List[str]]  # PEM, leaf-first order, without the leaf
    order_id: Union[str, int]

class Pending(TypedDict, total=False):
    status: str  # "pending"
    order_id: Union[str, int]
    retry_after: int  # seconds; clamped to 5..3600

class Rejected(TypedDict, total=False):
    status: str  # "rejected"
    reason: str

Disposition = Union[str, Issued, Pending, Rejected]

# list_certificates returns one page: {"items": [ListedCertificate, ...], "next_cursor": ...}.
# next_cursor is a str, an int or None (the last page); the next call gets it back as a str.
# Each item is a dict with a certificate (imported, deduplicated by thumbprint), an order_id,
# or both; an item with neither, one that is not a dict, or a field of another type is counted
# as failed by `certhost import-from-account`, with its position on the page.
class ListedCertificate(TypedDict, total=False):
    certificate: str  # PEM: the certificate, optionally followed by its chain
    order_id: Union[str, int]
    status: str  # the CA's word for it, shown as it is

class CertificatePage(TypedDict):
    items: List[ListedCertificate]
    next_cursor: Optional[Union[str, int]]

# --- host services -------------------------------------------------------------------------

def log(level: str, message: str) -> None:
    """Log through the host ("trace", "debug", "info", "warn", "error"; Python's "warning",
    "critical" and "fatal" map to warn and error); sensitive values are redacted. Another level
    is logged at info, naming it."""

# The cache has the semantics of the WASM connectors' cache-get / cache-set:
# - one cache per CA account, shared by all its calls; the host keeps it sealed in its
#   inventory, so it outlives the account's worker process, restarts of certhost, and is
#   shared by every certhost command on the data directory (each call starts with what the
#   store holds then); a new connector or new parameters of the account,
#   or a new secret given with `certhost secret set`, empty it (a `{ file }` or `{ env }` value
#   whose content changes does not); a value set during a call that
#   is killed at its deadline is lost;
# - ttl is in whole seconds (a fraction is rounded up); 0 (or None) means no expiry;
# - a value over 64 KiB or a key over 1 KiB (UTF-8 bytes) is not stored (a warning is logged);
# - at most 256 entries: setting a new key when full first drops expired entries, and is
#   ignored (with a warning) if the cache is still full. Existing keys can always be replaced;
# - a key or value holding a sensitive value the request gave (a dynamic parameter, such as a
#   PIN) is not stored (a warning is logged): other requests' calls would read it.

def cache_get(key: str) -> Optional[str]:
    """A value cached for this CA account, or None when absent or expired."""

def cache_set(key: str, value: str, ttl: Optional[int] = 0) -> None:
    """Cache `value` under `key` for this CA account for `ttl` seconds; 0 or None: no expiry.
    Raises TypeError unless key and value are str and ttl a number; ValueError for a ttl
    outside 0..4294967295."""

def request_id() -> Optional[str]:
    """The order's request id during certificate_request/renew: use it to make retries idempotent."""

# --- what a connector script defines -------------------------------------------------------

PARAMETERS: List[Union[str, Parameter]]

def certificate_request(csr: str, common_name: str, args_dict: Dict[str, str]) -> Disposition: ...
def poll(order_id: str, args_dict: Dict[str, str]) -> Disposition: ...
def renew(prior_certificate: str, ca_order_id: Optional[str], csr: str, common_name: str, args_dict: Dict[str, str]) -> Disposition: ...
def revoke(certificate: str, serial: str, reason: str, comment: str, args_dict: Dict[str, str]) -> Any: ...
def test_connection(args_dict: Dict[str, str]) -> bool: ...
def list_certificates(args_dict: Dict[str, str], cursor: Optional[str]) -> CertificatePage: ...
def update_order(order_id: str, action: str, args_dict: Dict[str, str]) -> Disposition: ...
