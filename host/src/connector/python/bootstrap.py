# certhost's side of a Python script connector, run inside the worker process.
# The worker (Rust, pyo3) loads the script with `load`, then calls `call` once per request;
# both return JSON text. Everything a script prints is captured per call; SystemExit and any
# other exception become data, never the end of the worker.
import errno
import importlib.machinery
import importlib.util
import io
import json
import logging
import math
import os
import re
import signal
import sys
import time
import traceback
import types

_state = {"module": None, "request_id": None}

# The worker's own pid. A script that forks and lets the child return (no os._exit) would
# have that child answer the host too, on the same pipes: a process that is not the worker
# leaves at once, without a word, when the script's function returns to it.
_WORKER_PID = os.getpid()


def _leave_if_forked():
    if os.getpid() != _WORKER_PID:
        os._exit(0)


# --- output capture ---------------------------------------------------------------------------
# sys.stdout and sys.stderr are one pair of proxies for the worker's whole life, forwarding to
# whatever capture the current load or call set. A script that keeps a reference to them at
# import (logging.basicConfig's StreamHandler, a saved `out = sys.stdout`) writes into the
# current call's capture, not into a buffer of the import that nobody reads.


class _Proxy(io.TextIOBase):
    def __init__(self, name, fallback):
        self._name = name
        self._fallback = fallback
        self.target = None

    def _current(self):
        return self.target if self.target is not None else self._fallback

    def write(self, text):
        return self._current().write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._current().flush()
        except Exception:
            pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def fileno(self):
        # The worker's real stderr, which the host logs line by line, redacted: a script's
        # `subprocess.run(..., stdout=sys.stdout)` and faulthandler need a descriptor.
        return 2

    @property
    def buffer(self):
        return _Bytes(self)

    def reconfigure(self, **_settings):
        # Scripts call it to force UTF-8 (`sys.stdout.reconfigure(encoding="utf-8")`); the
        # capture is text already.
        pass

    @property
    def line_buffering(self):
        return False

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    @property
    def name(self):
        return "<" + self._name + ">"


class _Bytes(io.RawIOBase):
    """`sys.stdout.buffer`: bytes written are decoded (UTF-8, undecodable bytes replaced) into
    the text capture."""

    def __init__(self, text):
        self._text = text

    def writable(self):
        return True

    def write(self, data):
        self._text.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        self._text.flush()


_stdout = _Proxy("stdout", sys.__stdout__)
_stderr = _Proxy("stderr", sys.__stderr__)
sys.stdout, sys.stderr = _stdout, _stderr


class _Capture:
    """Points the proxies at `out` and `err` for one load or call."""

    def __init__(self, out, err):
        self.out, self.err = out, err

    def __enter__(self):
        self.saved = _stdout.target, _stderr.target
        _stdout.target, _stderr.target = self.out, self.err
        return self

    def __exit__(self, *exc):
        _stdout.target, _stderr.target = self.saved
        # A script that replaced sys.stdout or sys.stderr gets the proxies back, as it got
        # the real streams back before.
        sys.stdout, sys.stderr = _stdout, _stderr
        return False


# --- redaction (the rules of `connector/redact.rs`) -----------------------------------------

MIN_FRAGMENT = 8
# Values (and forms) shorter than this are replaced only where no letter or digit touches
# them (`MIN_ANYWHERE` in redact.rs): replaced everywhere, a one-letter secret gave itself
# away by the words it cut up.
MIN_ANYWHERE = 8


def _replace_standalone(text, value):
    out, start, n = [], 0, len(value)
    at = text.find(value)
    while at != -1:
        before = text[at - 1] if at > 0 else ""
        after = text[at + n] if at + n < len(text) else ""
        if before.isalnum() or after.isalnum():
            at = text.find(value, at + 1)
            continue
        out.append(text[start:at])
        out.append("***")
        start = at + n
        at = text.find(value, start)
    out.append(text[start:])
    return "".join(out)


class _Redactor:
    """Replaces each sensitive value of the call by ***; the lines of a multi-line value (a PEM
    key) too: those of MIN_FRAGMENT characters or more wherever they occur, shorter ones where
    they make up a whole line. Applied to the full text, before anything is cut to size.
    The host sends each value with its encoded forms (repr, JSON, percent-encoded: computed
    once, in `redact.rs`); they are replaced like the values, longest first."""

    def __init__(self, values, percent=None):
        self.whole, self.fragments, self.short = [], [], []
        # Each value percent-encoded however an encoder chose (redact.rs's `percent_pattern`,
        # in the syntax Python's re reads as Rust's regex does).
        self.percent = []
        for p in percent or []:
            try:
                self.percent.append(re.compile(p))
            except (re.error, TypeError):
                pass
        for v in values or []:
            if not isinstance(v, str) or not v:
                continue
            if v not in self.whole:
                self.whole.append(v)
            if "\n" in v:
                for line in v.split("\n"):
                    line = line.strip()
                    if not line:
                        continue
                    target = self.fragments if len(line) >= MIN_FRAGMENT else self.short
                    if line not in target:
                        target.append(line)
        self.whole.sort(key=len, reverse=True)
        self.fragments.sort(key=len, reverse=True)

    def __call__(self, text):
        if not self.whole or not text:
            return text
        for v in self.whole:
            if v in text:
                text = text.replace(v, "***") if len(v) >= MIN_ANYWHERE else _replace_standalone(text, v)
        if self.percent and ("%" in text or "+" in text):
            for rx in self.percent:
                text = rx.sub("***", text)
        for f in self.fragments:
            if f in text:
                text = text.replace(f, "***")
        if self.short:
            text = "\n".join("***" if line.strip() in self.short else line for line in text.split("\n"))
        return text


_redact = _Redactor([])


# --- the host module scripts may import: `import certhost` ----------------------------------

certhost = types.ModuleType("certhost")
certhost.__doc__ = "Host services for certhost script connectors: log, cache_get, cache_set, request_id."
_logs = []
# Log text one call keeps, as a component's (`MAX_LOG_BYTES_PER_CALL`): a script that logged
# a response a hundred thousand times made a reply past the host's limit, and the certificate
# the CA had issued was lost with it.
_LOG_BUDGET = 1024 * 1024
_logged = [0]


def _log(level, message):
    if _logged[0] >= _LOG_BUDGET:
        return
    message = str(message)
    _logged[0] += len(message) + 1
    if _logged[0] >= _LOG_BUDGET:
        _logs.append(["warn", "the script logged %d KiB in this call; its further log lines are dropped" % (_LOG_BUDGET // 1024)])
        return
    _logs.append([str(level), message])


# The CA account's cache, with the host store's rules (connector/cache.rs): ttl in whole
# seconds, 0 (or None) = no expiry; values over 64 KiB and keys over 1 KiB (UTF-8 bytes) are
# ignored with a warning; at 256 entries a new key first purges expired entries and is ignored
# with a warning if the cache is still full. The host stores it (in the inventory, sealed) so it
# outlives this worker and the process: each reply reports the keys set, `load` receives the
# account's live entries.
MAX_ENTRIES = 256
MAX_VALUE = 64 * 1024
MAX_KEY = 1024
_cache = {}
_cache_changed = set()


def _text(what, value):
    if not isinstance(value, str):
        raise TypeError(f"certhost.cache: {what} must be a str, not {type(value).__name__}")
    return value


def _ttl_seconds(ttl):
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"certhost.cache_set: ttl must be a number of seconds, not {type(ttl).__name__}")
    if not (0 <= ttl <= 0xFFFFFFFF):
        raise ValueError("certhost.cache_set: ttl must be 0 (no expiry) or 1..4294967295 seconds")
    return math.ceil(ttl)


def _cache_get(key):
    key = _text("key", key)
    entry = _cache.get(key)
    if entry is None:
        return None
    value, expires = entry
    if expires is not None and expires <= time.monotonic():
        del _cache[key]
        return None
    return value


def _cache_set(key, value, ttl=0):
    key, value, seconds = _text("key", key), _text("value", value), _ttl_seconds(ttl)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY:
        _log("warn", "cache-set ignored: key or value too large")
        return
    if key.startswith("\0"):
        _log("warn", "cache-set ignored: a key may not start with a NUL character")
        return
    if len(_cache) >= MAX_ENTRIES and key not in _cache:
        now = time.monotonic()
        for k in [k for k, (_, exp) in _cache.items() if exp is not None and exp <= now]:
            del _cache[k]
        if len(_cache) >= MAX_ENTRIES:
            _log("warn", "cache-set ignored: cache full")
            return
    _cache[key] = (value, None if seconds == 0 else time.monotonic() + seconds)
    _cache_changed.add(key)


def _cache_seed(entries):
    now = time.monotonic()
    for e in entries or []:
        ms = e.get("expires_in_ms")
        _cache[e["key"]] = (e["value"], None if ms is None else now + ms / 1000.0)


def _cache_report():
    """The entries set since the last report, as the host's `CacheEntry`."""
    now = time.monotonic()
    out = []
    for key in sorted(_cache_changed):
        entry = _cache.get(key)
        if entry is not None:
            value, expires = entry
            ms = None if expires is None else max(0, int((expires - now) * 1000))
            out.append({"key": key, "value": value, "expires_in_ms": ms})
    _cache_changed.clear()
    return out


certhost.log = _log
certhost.cache_get = _cache_get
certhost.cache_set = _cache_set
certhost.request_id = lambda: _state["request_id"]
sys.modules["certhost"] = certhost


def add_site_dirs(dirs):
    """The site-packages of the virtual environment certhost was built from (`site_dirs.py`).
    Workers run with PYTHONHOME = the base interpreter, which does not see them: add them, with
    their .pth files, ahead of the base site-packages, as inside the venv."""
    import site

    before = list(sys.path)
    for d in dirs:
        if d:
            site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    if not added:
        return
    rest = [p for p in sys.path if p not in added]
    base = set(site.getsitepackages())
    at = next((i for i, p in enumerate(rest) if p in base), len(rest))
    sys.path[:] = rest[:at] + added + rest[at:]


class _LogHandler(logging.Handler):
    """Sends log records to the call's log (`certhost.log`), which the host writes at the
    record's level, redacted."""

    def emit(self, record):
        level = "error" if record.levelno >= logging.ERROR else "warn" if record.levelno >= logging.WARNING else \
            "info" if record.levelno >= logging.INFO else "debug"
        try:
            _log(level, self.format(record))
        except Exception:
            pass


def _avi_root_logger(*_args, **_kwargs):
    """`avi.infrastructure.avi_logging.get_root_logger(name, logfile_path, level)` (and
    `get_logger`): the Avi controller's logger, whose records go to the call's log here; no
    file is written (a log file in clear is where a script's secrets would land)."""
    logger = logging.getLogger("avi_script")
    if not any(isinstance(h, _LogHandler) for h in logger.handlers):
        logger.addHandler(_LogHandler())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


# Socket errors that mean the CA was not reached, whatever exception class carries them.
# (A reset is not among them: the CA may have read the request. requests reports one as a
# ConnectionError all the same, and that rule is older than this one.)
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


# http.client's functions that read an answer: a timeout raised inside one came after the
# request was sent. urllib raises it bare (a TimeoutError), requests as ReadTimeout or, through
# a Retry adapter or while reading the body, as a ConnectionError whose causes hold it.
_READING_ANSWER = {"getresponse", "begin", "_read_status", "read", "readinto", "read1", "readline", "peek",
                   "_safe_read", "_safe_readinto", "_read_chunked", "_readinto_chunked", "_get_chunk_left",
                   "_read_next_chunk_size"}
_TIMEOUTS = {"TimeoutError", "timeout", "ReadTimeout", "ReadTimeoutError"}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _sent_unanswered(e):
    """Whether `e`, or an exception it was raised from, is a timeout inside http.client's
    reading of the answer to a request other than GET, HEAD or OPTIONS: the CA may have acted
    on it. A connect that timed out never reached http.client's reading, and fails over."""
    seen = set()
    timed_out, method = False, None
    while e is not None and id(e) not in seen and len(seen) < 32:
        seen.add(id(e))
        if any(c.__name__ in _TIMEOUTS for c in type(e).__mro__):
            timed_out = True
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            code = frame.f_code
            if code.co_name in _READING_ANSWER and code.co_filename.replace("\\", "/").endswith("/http/client.py"):
                found = getattr(frame.f_locals.get("self"), "_method", None)
                if isinstance(found, str):
                    method = found
            tb = tb.tb_next
        following = e.__cause__ or e.__context__
        if following is None:
            # urllib3's MaxRetryError holds the error it gave up on as `reason`.
            reason = getattr(e, "reason", None)
            following = reason if isinstance(reason, BaseException) else None
        e = following
    return timed_out and method is not None and method.upper() not in _SAFE_METHODS


class _AviStandIn:
    """Scripts written for Avi import `avi.infrastructure.avi_logging`, a module of the
    controller that no package provides. This finder, last on `sys.meta_path`, supplies it —
    and the `avi` and `avi.infrastructure` packages around it — only where no installed package
    does: with the Avi SDK (`pip install avisdk`, whose `avi` package has `sdk` but no
    `infrastructure`) installed, Avi's own Let's Encrypt script imports both."""

    NAMES = ("avi", "avi.infrastructure", "avi.infrastructure.avi_logging")

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.NAMES:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, self, is_package=fullname != "avi.infrastructure.avi_logging")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "avi.infrastructure.avi_logging":
            module.get_root_logger = _avi_root_logger
            module.get_logger = _avi_root_logger


def _avi_shim():
    if not any(isinstance(f, _AviStandIn) for f in sys.meta_path):
        sys.meta_path.append(_AviStandIn())


class _Terminated(BaseException):
    """Raised in the script when the host ends the worker at a deadline (SIGTERM), so that
    its `finally:` blocks and context managers run in the grace before SIGKILL: Avi scripts
    delete the key files they wrote to /tmp there. A BaseException, so that a script's
    `except Exception` does not swallow it."""


def _on_sigterm(_signum, _frame):
    # Shown before the script's cleanup runs, not after: a cleanup that waits (a
    # ThreadPoolExecutor's exit joining a thread in time.sleep) outlasts the grace, and the
    # lines went with the SIGKILL (Avi script review of stop 39).
    _show_stdout_at_deadline()
    raise _Terminated("the host ended the call at its deadline")


def _show_stdout_at_deadline():
    """At the deadline the host reads no reply, and what the script printed to stdout went with
    it: a call that hung left nothing to tell where (operator review of stop 36). Its last lines
    go to the worker's stderr, which the host logs, redacted as all of it is. Once per call."""
    out = _state.pop("out", None)
    if out is None:
        return
    try:
        # The reply's cut, with the same margin: _Tail's own cut of a line that never ends may
        # split a value redaction must see whole, and 64 KiB on is past it (diff review of
        # stop 39: the whole buffer showed the end of a token).
        for line in _redact(out.getvalue())[-65536:].splitlines()[-50:]:
            sys.__stderr__.write("stdout before the deadline: " + line + "\n")
        sys.__stderr__.flush()
    except BaseException:
        pass


def _leave_if_terminated(e):
    """Once the script's cleanup has run, the worker ends as SIGTERM would have ended it: the
    host is waiting for it to go, not for an answer."""
    if isinstance(e, _Terminated):
        try:
            sys.__stderr__.flush()
        finally:
            os._exit(128 + signal.SIGTERM)


OPTIONAL = ["poll", "renew", "revoke", "test_connection", "list_certificates", "update_order"]
_BOOLEAN_FIELDS = ("sensitive", "dynamic", "required")


def _flag(value):
    """A PARAMETERS flag as a bool: `1` and `"true"` mean what they say (a script's
    `"sensitive": 1` was silently not sensitive)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class _BadDeclaration(Exception):
    """What the script declares (PARAMETERS) is not what the contract reads."""


_PARAMETER_KEYS = ("name", "description", "required", "sensitive", "dynamic", "default")


def _describe(module):
    params = []
    declared = getattr(module, "PARAMETERS", None)
    if declared is None:
        declared = []
    # A string is iterable too: PARAMETERS = "token" declared "t", "o", "k", "e", "n".
    if not isinstance(declared, (list, tuple)):
        raise _BadDeclaration(
            "PARAMETERS must be a list of parameter names or {\"name\": ...} dicts, not a %s" % type(declared).__name__)
    for n, p in enumerate(declared, 1):
        if isinstance(p, str) and p:
            params.append({"name": p})
        elif isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"]:
            # A misspelt flag ("sensitve") would leave a secret parameter plain.
            unknown = sorted(str(k) for k in p if k not in _PARAMETER_KEYS)
            if unknown:
                raise _BadDeclaration(
                    "PARAMETERS entry %d (%s) has the unknown key %r; the keys are %s"
                    % (n, p["name"], unknown[0], ", ".join(_PARAMETER_KEYS)))
            params.append({k: (_flag(v) if k in _BOOLEAN_FIELDS and v is not None else
                               v if isinstance(v, (bool, type(None))) else str(v)) for k, v in p.items()})
        else:
            found = "an empty name" if p == "" or (isinstance(p, dict) and p.get("name") == "") else type(p).__name__
            raise _BadDeclaration(
                "PARAMETERS entry %d is neither a parameter name nor a dict with a \"name\" (found %s)" % (n, found))
        if any(q["name"] == params[-1]["name"] for q in params[:-1]):
            raise _BadDeclaration("PARAMETERS declares %s twice" % params[-1]["name"])
    ops = [name for name in OPTIONAL if callable(getattr(module, name, None))]
    return {"parameters": params, "operations": ops, "version": str(getattr(module, "__version__", "0"))}


def load(path, cache=None):
    _state["path"] = path
    _cache_seed(cache)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    out, err = _Tail(), _Tail()
    capture = _Capture(out, err).__enter__()
    try:
        _avi_shim()
        signal.signal(signal.SIGTERM, _on_sigterm)
        # As Python imports a module: the source's encoding (a BOM, a coding line) honoured,
        # and the module in sys.modules, which dataclasses, pickle and multiprocessing look up.
        spec = importlib.util.spec_from_file_location("connector_script", path)
        if spec is None or spec.loader is None:
            return _dumps({"kind": "error", "message": "the script cannot be loaded as a Python module"})
        module = importlib.util.module_from_spec(spec)
        sys.modules["connector_script"] = module
        spec.loader.exec_module(module)
        if not callable(getattr(module, "certificate_request", None)):
            return _dumps({"kind": "error", "message": "the script defines no certificate_request(csr, common_name, args_dict) function"})
        _state["module"] = module
        return _dumps({"kind": "ok", "value": _describe(module), "cache": _cache_report()})
    except SyntaxError as e:
        where = f" (line {e.lineno})" if e.lineno else ""
        return _dumps({"kind": "error", "message": f"SyntaxError: {e.msg}{where}"})
    except _BadDeclaration as e:
        return _dumps({"kind": "error", "message": str(e)})
    except BaseException as e:
        _leave_if_terminated(e)
        own = _innermost_in(e.__traceback__, path)
        where = f" (line {own[0]})" if own else ""
        return _dumps({"kind": "error", "message": f"{type(e).__name__}: {e}{where}", "stderr": err.getvalue()})
    finally:
        _leave_if_forked()
        capture.__exit__()


class _Tail(io.StringIO):
    """What the script prints in one call, its last part only: the reply keeps the last 64 KiB
    (after redaction), so a script printing without end holds at most twice that here instead
    of its whole output (which ran the worker out of memory). The cut keeps a 64 KiB margin
    above what the reply keeps, so a value cut in two here is never in the part sent."""

    KEEP = 128 * 1024

    def __init__(self):
        super().__init__()
        # Characters cut off the front so far: the host says how much it was not shown.
        self.dropped = 0

    def write(self, text):
        n = super().write(text)
        if self.tell() > 2 * self.KEEP:
            whole = self.getvalue()
            tail = whole[-self.KEEP:]
            # From the next line on: the cut may have split a value redaction must see whole.
            tail = tail[tail.find("\n") + 1:]
            self.dropped += len(whole) - len(tail)
            self.seek(0)
            self.truncate()
            super().write(tail)
        return n


class _Tee(_Tail):
    """Keeps what the script writes to stderr for its error message and passes it on to the
    worker's real stderr at once, so the host still sees it if the process dies mid-call."""

    def write(self, text):
        try:
            sys.__stderr__.write(_redact(text))
            sys.__stderr__.flush()
        except Exception:
            pass
        return super().write(text)


def _dumps(reply):
    """A reply as JSON text the host can read whatever the script produced: a lone surrogate
    (a non-UTF-8 file name printed, bytes decoded with surrogateescape) becomes "?" instead
    of making the whole reply unreadable — and with it a certificate the CA already issued."""
    try:
        text = json.dumps(reply, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as e:
        text = json.dumps({"kind": "error", "message": f"the script's answer cannot be sent to the host: {e}"})
    return text.encode("utf-8", "replace").decode("utf-8")


def _plain(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        # Beyond what a JSON reader takes as a number: its digits.
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)[:200]


def _result(result):
    """A returned value as (type name, JSON value). bytes (Avi scripts often return
    `response.content`) are decoded as text, "bytes" if they are not UTF-8."""
    if isinstance(result, (bytes, bytearray)):
        try:
            return "bytes", bytes(result).decode("utf-8")
        except UnicodeDecodeError:
            return "bytes", None
    if isinstance(result, str):
        # A str subclass (lxml's XPath text, a StrEnum, markupsafe's Markup) is text too.
        return "str", str(result)
    return type(result).__name__, _plain(result)


def _innermost_in(tb, filename):
    """(line, function) of the innermost frame of `tb` in `filename`, or None. Walked without
    reading source lines: `traceback.extract_tb` reads one per frame, and a script that raised
    300,000 frames deep spent its deadline there, not in its own code (hostile-script review of
    stop 40)."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            found = (tb.tb_lineno, code.co_name)
        tb = tb.tb_next
    return found


def _add_traceback(reply, e):
    """Where in the script the exception came from ("line 42 of ca.py, in certificate_request":
    the innermost frame of the script's own file), and the whole traceback for the host's debug
    log, both redacted. Without them an author saw only "raised KeyError: 'url'" (author review
    of stop 38)."""
    try:
        script = _state.get("path")
        own = _innermost_in(e.__traceback__, script)
        if own:
            reply["where"] = _redact(f"line {own[0]} of {os.path.basename(script)}, in {own[1]}")
        # The innermost 100 frames: what the log keeps is the last 16 KiB anyway.
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-100))
        reply["traceback"] = _redact(text)[-16384:]
    except BaseException:
        # A traceback is a help, never a second failure (an exception whose str() raises).
        pass


def call(function, argv_json, request_id, sensitive=None, cache_json=None, percent=None):
    global _redact
    module = _state["module"]
    fn = getattr(module, function, None)
    if not callable(fn):
        return _dumps({"kind": "unsupported"})
    argv = json.loads(argv_json)
    if cache_json is not None:
        # The store's entries as they are now: set by other processes, or emptied since.
        _cache.clear()
        _cache_changed.clear()
        _cache_seed(json.loads(cache_json))
    _state["request_id"] = request_id
    _redact = _Redactor(sensitive, percent)
    del _logs[:]
    _logged[0] = 0
    out, err = _Tail(), _Tee()
    _state["out"] = out
    capture = _Capture(out, err).__enter__()
    try:
        result = fn(*argv)
        try:
            value_type, value = _result(result)
        except RecursionError:
            # The answer's conversion failed, not the script: said so (hostile-connector
            # review of stop 41: "script raised RecursionError" sent its author looking in
            # their own code).
            reply = {"kind": "error", "message": "the script's answer cannot be sent to the host: it is nested "
                                                 "deeper than Python's recursion limit"}
        else:
            reply = {"kind": "ok", "type": value_type, "value": value}
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            # As a process would: True is 1 and False 0 (bool is an int); a code no exit
            # status can hold is a failure, 1.
            code = int(code or 0)
            reply = {"kind": "exit", "code": code if -(2**31) <= code < 2**31 else 1}
        else:
            # With its newline, as the interpreter prints it at exit: a line left open
            # would run into what the next call writes.
            err.write(str(code) + "\n")
            reply = {"kind": "exit", "code": 1}
    except BaseException as e:
        if isinstance(e, _Terminated):
            _show_stdout_at_deadline()
        _leave_if_terminated(e)
        try:
            message = str(e)
        except BaseException:
            message = "(the exception's str() failed)"
        mro = [c.__name__ for c in type(e).__mro__]
        reason = getattr(e, "reason", None)
        if "URLError" in mro and "HTTPError" not in mro and isinstance(reason, BaseException):
            # urllib wraps a refused connection, a timeout or a failed DNS look-up in URLError
            # (Avi's Let's Encrypt script uses urllib): the CA was not reached, as with
            # requests' ConnectionError, so the profile's next account is tried.
            mro += [c.__name__ for c in type(reason).__mro__]
        if ("URLError" in mro and isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNOS):
            # urllib's connect failed with a plain OSError ("No route to host", "Network is
            # unreachable"). Only there: the same errno on a bare OSError may come from reading
            # the answer to a request the CA already has (stop 36's review).
            mro.append("ConnectionError")
        if _sent_unanswered(e):
            # Sent, and its answer did not come: a request that may change something at the CA
            # (a POST) may have been acted on, so it is not "unreachable", which would ask the
            # next CA for a second certificate.
            mro.append("certhost.NoAnswer")
        reply = {"kind": "exception", "type": type(e).__name__, "module": type(e).__module__,
                 "message": _redact(message)[:2000], "mro": mro}
        _add_traceback(reply, e)
    finally:
        _state.pop("out", None)
        _leave_if_forked()
        capture.__exit__()
    # Redact the whole text first, then cut: a cut must never leave part of a secret.
    stdout = _redact(out.getvalue())
    reply["stdout"] = stdout[-65536:]
    reply["stdout_dropped"] = out.dropped + max(0, len(stdout) - 65536)
    reply["stderr"] = _redact(err.getvalue())[-65536:]
    reply["logs"] = [[level, _redact(message)] for level, message in _logs]
    reply["cache"] = _cache_report()
    return _dumps(reply)
