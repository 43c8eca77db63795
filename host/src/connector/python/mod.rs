//! Python script connectors: the VMware Avi contract `certificate_request(csr, common_name,
//! args_dict)` plus certhost's optional operations, run in worker processes.
//!
//! Layers: `protocol` (frames), `worker` (the child: pyo3 + `bootstrap.py`), `process`
//! (spawn/kill one worker), `cache` (the
//! account's `certhost.cache_*`, kept across workers), and this file: [`PythonConnector`], one
//! worker per CA account, started lazily, reused, and replaced after a crash, a kill or a
//! timeout.
//!
//! Optional functions and their Python signatures (see `plugin-sdk/python/certhost.pyi`):
//! `poll(order_id, args_dict)`, `renew(prior_certificate, ca_order_id, csr, common_name,
//! args_dict)`, `revoke(certificate, serial, reason, comment, args_dict)`,
//! `test_connection(args_dict)`, `list_certificates(args_dict, cursor)`,
//! `update_order(order_id, action, args_dict)`.

mod cache;
mod descendants;
mod keeper;
mod process;
mod protocol;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

pub use process::{SITE_DIRS_ENV, WORKER_SUBCOMMAND};
pub use worker::main as worker_main;

use self::process::{RequestError, WorkerProcess};
use self::protocol::{CacheEntry, Request};
use super::cache::AccountCache;
use super::redact::Redactor;
use super::{
    Args, CertificatePage, CertificateRequest, Connector, ConnectorError, Description, Disposition, Limits,
    ListedCertificate, Operation, OrderAction, ParameterSpec, RenewRequest, RevokeRequest,
};

/// A loaded script connector for one CA account.
pub struct PythonConnector {
    name: String,
    path: PathBuf,
    worker_exe: PathBuf,
    limits: Limits,
    description: Description,
    /// [`Connector::declared_sensitive`], from `description`.
    declared: Vec<String>,
    /// The account's one worker, between calls. Shared with the task that stops it once idle
    /// ([`stop_when_idle`]), which ends with the connector.
    worker: Arc<tokio::sync::Mutex<Option<WorkerProcess>>>,
    /// When the worker last finished a call (or was started), as `Instant` ticks since `epoch`.
    used: Arc<std::sync::atomic::AtomicU64>,
    /// The account's `certhost.cache_*` entries: a worker gets them when it starts and with
    /// every call.
    cache: AccountCache,
}

/// How long a script's worker may sit unused before it is stopped; the next call starts a new
/// one (as Avi runs a script afresh for each request). What a script left running in the
/// background — a daemon, a session's thread — lived as long as the worker, and the worker of
/// a deleted account as long as `serve` (hostile-script review of stop 40).
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Seconds since the process's first call of this, for [`PythonConnector::used`].
fn ticks() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_secs()
}

/// Stops the worker in `slot` once it has been idle for [`IDLE_LIMIT`], checking every
/// minute; ends when the connector does (the slot is gone). A worker in a call is left alone.
fn stop_when_idle(
    slot: std::sync::Weak<tokio::sync::Mutex<Option<WorkerProcess>>>,
    used: Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    used.store(ticks(), Ordering::Relaxed);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            let Some(slot) = slot.upgrade() else { return };
            if ticks().saturating_sub(used.load(Ordering::Relaxed)) < IDLE_LIMIT.as_secs() {
                continue;
            }
            let idle = slot.try_lock().ok().and_then(|mut held| held.take());
            drop(slot);
            if let Some(worker) = idle {
                tracing::debug!("a script worker idle for {} s is stopped", IDLE_LIMIT.as_secs());
                worker.kill().await;
            }
        }
    });
}

/// What `bootstrap.py` answers.
#[derive(Debug, Default, Deserialize)]
struct Reply {
    kind: String,
    #[serde(default, rename = "type")]
    value_type: Option<String>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    mro: Vec<String>,
    /// Where in the script an exception came from: "line 42 of ca.py, in certificate_request".
    #[serde(default, rename = "where")]
    raised_at: Option<String>,
    /// The exception's whole traceback, for the debug log.
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    stdout: String,
    /// Characters the script printed before `stdout` in the call, which the worker did not
    /// keep (it keeps the last 64 KiB).
    #[serde(default)]
    stdout_dropped: u64,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    logs: Vec<(String, String)>,
    /// Cache entries the script set.
    #[serde(default)]
    cache: Vec<CacheEntry>,
    /// The call's redaction rules (host side).
    #[serde(skip)]
    redactor: Redactor,
}

impl Reply {
    /// Whether `function` returned what [`PythonConnector::disposition`] can only refuse: no
    /// status dict and no text with a certificate in it. Its error then quotes the stderr of
    /// the process, as a failed call's does.
    fn plainly_not_an_answer(&self, function: &str) -> bool {
        if self.kind != "ok" || !matches!(function, "certificate_request" | "renew" | "poll" | "update_order") {
            return false;
        }
        match &self.value {
            Value::String(text) => !text.contains("-----BEGIN CERTIFICATE-----"),
            // What `disposition` refuses of a dict, roughly: it decides, this only waits.
            Value::Object(map) => match map.get("status").and_then(Value::as_str) {
                Some("issued") => !map
                    .get("certificate")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.contains("-----BEGIN CERTIFICATE-----")),
                Some("pending") => map.get("order_id").is_none_or(Value::is_null),
                Some("rejected") => false,
                _ => true,
            },
            _ => true,
        }
    }

    /// Whether the worker, not only the call, failed: it ran out of memory (the script's
    /// exception or the worker's own capture), or answered a kind the protocol has no word
    /// for.
    fn failed_worker(&self) -> bool {
        match self.kind.as_str() {
            "ok" | "unsupported" | "exit" => false,
            "exception" => self.mro.iter().any(|c| c == "MemoryError"),
            // An answer the worker could not send (a value JSON cannot hold) is the script's
            // mistake, not the worker's: its module state stays.
            "error" => !self.message.as_deref().is_some_and(|m| m.starts_with("the script's answer cannot be sent")),
            _ => true,
        }
    }
}

/// What a worker's stderr says when its address-space cap stopped it: Python's exception,
/// the loader failing to map a module, Rust's allocator.
const OUT_OF_MEMORY: &[&str] = &["MemoryError", "failed to map segment", "memory allocation of"];

/// Exception classes that mean "the CA could not be reached": fail over, retry later.
const UNREACHABLE: &[&str] = &[
    "ConnectionError",
    "ConnectTimeout",
    "Timeout",
    "TimeoutError",
    "NewConnectionError",
    "MaxRetryError",
    "gaierror",
];

impl PythonConnector {
    /// Starts a worker for `path`, imports the script and reads its description. A script
    /// that does not import, or defines no `certificate_request`, is refused here with the
    /// Python error and line number. `cache` is the account's cache
    /// ([`AccountCache::in_memory`] for one of the connector's own).
    pub async fn load(
        path: &Path,
        worker_exe: &Path,
        limits: Limits,
        cache: AccountCache,
    ) -> Result<Self, ConnectorError> {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("script").to_owned();
        let label = format!("script {name}");
        if !path.is_file() {
            // A directory, a FIFO or a link to a device was "does not exist" too.
            let what = match std::fs::metadata(path) {
                Err(_) => "does not exist",
                Ok(_) => "is not a regular file",
            };
            return Err(ConnectorError::Misconfigured {
                connector: label,
                message: format!("{} {what}", path.display()),
            });
        }
        let mut me = Self {
            name: name.clone(),
            path: path.to_owned(),
            worker_exe: worker_exe.to_owned(),
            limits,
            description: Description {
                name: name.clone(),
                version: "0".into(),
                parameters: vec![],
                operations: vec![],
            },
            declared: vec![],
            worker: Arc::default(),
            used: Arc::default(),
            cache,
        };
        let (worker, described) = me.start(None).await?;
        me.declared = described.declared_sensitive();
        me.description = described;
        *me.worker.lock().await = Some(worker);
        stop_when_idle(Arc::downgrade(&me.worker), Arc::clone(&me.used));
        Ok(me)
    }

    /// What to change when the script ran out of memory in words that do not say so: a
    /// MemoryError at import, a thread that could not start (each thread's stack counts against
    /// the cap). Empty otherwise.
    fn memory_hint(&self, said: &str) -> String {
        if said.contains("MemoryError") || said.contains("can't start new thread") {
            format!(
                "; the worker is capped at {} MiB of address space (the account's memory_mib), each thread's stack \
                 included: raise memory_mib",
                self.limits.memory_bytes / (1024 * 1024)
            )
        } else {
            String::new()
        }
    }

    fn err_label(&self) -> String {
        format!("script {}", self.name)
    }

    /// Spawns a worker and loads the script into it. `values` are the call's sensitive values
    /// when a call starts it (a worker replaced mid-use): what the import writes is redacted of
    /// them from the start, not held (`process::StderrLog`).
    async fn start(&self, values: Option<&[&str]>) -> Result<(WorkerProcess, Description), ConnectorError> {
        let label = self.err_label();
        let mut worker = WorkerProcess::spawn(&self.worker_exe, self.limits.memory_bytes, &label).map_err(|e| {
            ConnectorError::Internal { connector: label.clone(), message: format!("cannot start a Python worker: {e}") }
        })?;
        if let Some(values) = values {
            worker.learn(values);
        }
        let snapshot = self.cache.entries().await;
        let epoch = snapshot.as_ref().and_then(|(epoch, _)| *epoch);
        let cache = cache::for_worker(snapshot.map(|(_, e)| e).unwrap_or_default());
        let req = Request::Load { path: self.path.display().to_string(), cache };
        // Importing a script (and what it imports) is not the call: it gets at least 30 s.
        let load_deadline = self.limits.timeout.max(std::time::Duration::from_secs(30));
        let bytes = match tokio::time::timeout(load_deadline, worker.request(&req)).await {
            Ok(Ok(b)) => b,
            Ok(Err(RequestError::OutOfTurn)) => {
                worker.kill().await;
                return Err(out_of_turn(label, "importing the script"));
            }
            Ok(Err(RequestError::Pipe)) => {
                let how = worker.ended().await;
                let tail = worker.take_stderr_tail();
                // The interpreter and the modules a script imports (requests, cryptography)
                // take address space the cap counts; too small a cap fails the import in many
                // words, none of them the setting to change.
                if OUT_OF_MEMORY.iter().any(|m| tail.contains(m)) {
                    return Err(ConnectorError::Misconfigured {
                        connector: label,
                        message: format!(
                            "the worker ran out of its {} MiB (the account's memory_mib) while importing the script; \
                             raise memory_mib (a script importing requests and cryptography needs about 160 MiB; the default is 512){}",
                            self.limits.memory_bytes / (1024 * 1024),
                            suffix(&tail)
                        ),
                    });
                }
                return Err(ConnectorError::Internal {
                    connector: label,
                    message: format!("the worker {how} while importing the script{}", suffix(&tail)),
                });
            }
            Err(_) => {
                worker.kill().await;
                // Not "timed out after 30s", which reads as a CA call: no call was made.
                return Err(ConnectorError::Misconfigured {
                    connector: label,
                    message: format!(
                        "importing {} took longer than {} s (its module-level code: imports, network calls) and was \
                         stopped; no CA call was made",
                        self.path.display(),
                        load_deadline.as_secs()
                    ),
                });
            }
        };
        let mut reply: Reply = serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Internal {
            connector: label.clone(),
            message: format!("bad reply from the worker: {e}"),
        })?;
        if keep_cache(&self.cache, &mut reply, epoch) {
            self.cache.flush().await;
        }
        if reply.kind != "ok" {
            worker.kill().await;
            let said = reply.message.unwrap_or_default();
            let message = format!(
                "cannot load {}: {said}{}{}{}",
                self.path.display(),
                suffix(reply.stderr.trim()),
                missing_module_hint(&said),
                self.memory_hint(&said)
            );
            return Err(ConnectorError::Misconfigured { connector: label, message });
        }
        Ok((worker, describe_from(&self.name, &reply.value)))
    }

    /// Calls `function` in the account's worker under the call's deadline.
    async fn invoke(
        &self,
        function: &str,
        argv: Vec<Value>,
        args: &Args,
        request_id: Option<&str>,
    ) -> Result<Reply, ConnectorError> {
        let label = self.err_label();
        // The account's one worker runs one call at a time; the others wait their turn
        // (`WORKER_WAIT_LIMITS`), and the limit of a call starts when it has the worker.
        let wait = self.limits.timeout * super::WORKER_WAIT_LIMITS;
        let Ok(mut guard) = tokio::time::timeout(wait, self.worker.lock()).await else {
            return Err(ConnectorError::Unreachable {
                connector: label,
                message: format!(
                    "the account is busy: its script worker stayed taken by other calls for {}s, so this request was not sent",
                    wait.as_secs()
                ),
            });
        };
        // This call's sensitive values, and values read from a `{ file }` or `{ env }`
        // reference, which are redacted from reports like them.
        let values: Vec<&str> = args.sensitive_values_for(&self.declared).chain(args.read_values()).collect();
        let mut worker = match guard.take() {
            Some(w) if !w.has_exited() && !w.would_overflow(&values) && !w.holds_values_beyond(&values) => w,
            // Killed while idle (the OOM killer, an operator): replaced, as after a crash. One
            // given too many sensitive values to keep redacting is replaced too, and so is one
            // holding a value this call was not given, whose redaction could tell a requester
            // their guess was another call's secret.
            Some(old) => {
                old.kill().await;
                self.start(Some(&values)).await?.0
            }
            None => self.start(Some(&values)).await?.0,
        };
        let redactor = worker.learn(&values);
        // The call's view of the account's cache (its profile's scope).
        let scoped = self.cache.for_call(args);
        // Read before the call: what it sets is refused if the cache is emptied meanwhile.
        let cache = scoped.entries().await;
        let epoch = cache.as_ref().and_then(|(epoch, _)| *epoch);
        worker.clear_stderr_tail();
        let req = Request::Call {
            function: function.to_owned(),
            argv,
            request_id: request_id.map(str::to_owned),
            sensitive: redactor.patterns().to_vec(),
            percent: redactor.percent_patterns().to_vec(),
            cache: cache.map(|(_, e)| cache::for_worker(e)),
        };
        let result = tokio::time::timeout(self.limits.timeout, worker.request(&req)).await;
        let bytes = match result {
            Ok(Ok(b)) => b,
            Ok(Err(RequestError::OutOfTurn)) => {
                worker.kill().await;
                return Err(out_of_turn(label, &format!("the call of {function}")));
            }
            Ok(Err(RequestError::Pipe)) => {
                // The worker died mid-call (os._exit, a crash, an OOM kill): the next call gets a
                // fresh one. The script may have reached the CA first, as a call past its deadline
                // may: failed, the order let a retry ask the CA again (hostile-script review of
                // stop 40: two certificates for one Idempotency-Key).
                let how = worker.ended().await;
                let tail = redactor.redact(&worker.take_stderr_tail());
                return Err(ConnectorError::Interrupted {
                    connector: label,
                    message: format!("the script's worker {how} during the call of {function}{}", suffix(&tail)),
                });
            }
            Err(_) => {
                worker.kill().await;
                return Err(ConnectorError::TimedOut {
                    connector: label,
                    after: self.limits.timeout,
                    nothing_sent: false,
                });
            }
        };
        let mut reply: Reply = match serde_json::from_slice(&bytes) {
            Ok(reply) => reply,
            Err(e) => {
                worker.kill().await;
                return Err(ConnectorError::Internal {
                    connector: label,
                    message: format!("bad reply from the worker: {e}"),
                });
            }
        };
        let cached = keep_cache(&scoped, &mut reply, epoch);
        // What a failing script wrote to file descriptor 2 itself — `os.write(2, …)`, or a
        // subprocess sharing its stderr (Avi scripts run `openssl`, then `sys.exit(1)`) —
        // passes the capture of `sys.stderr`: quoted from the worker's own stderr when the
        // capture is empty (hostile-script review of stop 40: only "exited with code 1").
        if (matches!(reply.kind.as_str(), "exit" | "exception") || reply.plainly_not_an_answer(function))
            && reply.stderr.trim().is_empty()
        {
            // The pipe's last lines were written before the reply; its reader may lag, more so
            // under load: waited for up to a quarter second, and a moment more once lines come.
            let mut tail = String::new();
            for _ in 0..25 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                let more = worker.take_stderr_tail();
                if !more.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    tail = format!("{more}\n{}", worker.take_stderr_tail());
                    break;
                }
            }
            reply.stderr = tail;
        }
        // A worker that ran out of memory, or failed outside the script (its own capture),
        // is not trusted with the next call: what filled it may still be held.
        if reply.failed_worker() {
            worker.kill().await;
        } else {
            *guard = Some(worker);
        }
        self.used.store(ticks(), std::sync::atomic::Ordering::Relaxed);
        drop(guard);
        if cached {
            scoped.flush().await;
        }
        reply.redactor = redactor;
        let redactor = &reply.redactor;
        self.log_output(&reply);
        match reply.kind.as_str() {
            "ok" => Ok(reply),
            "unsupported" => {
                Err(ConnectorError::Unsupported { connector: label, message: super::unsupported_message(function) })
            }
            "exit" => {
                let code = reply.code.unwrap_or(1);
                let stderr = redactor.redact(reply.stderr.trim());
                if code == 0 && matches!(function, "test_connection" | "revoke") {
                    return Ok(Reply { kind: "ok".into(), value: Value::Null, ..Reply::default() });
                }
                // A clean exit still answered nothing: said, or "exited with code 0" reads as success.
                let nothing = if code == 0 { format!(" without returning from {function}") } else { String::new() };
                Err(ConnectorError::Internal {
                    connector: label,
                    message: format!(
                        "exited with code {code}{nothing}{}{}",
                        suffix(&super::redact::without_key_material(&stderr)),
                        stdout_suffix(&super::redact::without_key_material(&redactor.redact(&reply.stdout)))
                    ),
                })
            }
            "exception" => {
                let ty = reply.mro.first().cloned().unwrap_or_else(|| "Exception".into());
                if let Some(tb) = &reply.traceback {
                    // Each line indented and escaped: an exception's message holding "\r\n"
                    // and a log line's start posed as a line of serve's own (red-team
                    // walkthrough of stop 48).
                    let tb: Vec<String> = redactor
                        .redact(tb.trim_end())
                        .lines()
                        .map(|line| format!("    | {}", super::redact::one_line(line)))
                        .collect();
                    tracing::debug!(plugin = %label, "{function} raised:\n{}", tb.join("\n"));
                }
                let at = reply.raised_at.as_deref().map(|at| format!(" ({})", redactor.redact(at))).unwrap_or_default();
                let at = format!("{at}{}", self.memory_hint(reply.message.as_deref().unwrap_or_default()));
                // Redacted before `suffix` cuts the stderr to size.
                // "raised KeyboardInterrupt (line 3 …)", not "raised KeyboardInterrupt:  (line 3 …)".
                let said = redactor.redact(reply.message.as_deref().unwrap_or_default());
                let said = if said.trim().is_empty() { String::new() } else { format!(": {said}") };
                let detail = format!(
                    "raised {ty}{said}{at}{}{}",
                    suffix(&super::redact::without_key_material(&redactor.redact(reply.stderr.trim()))),
                    stdout_suffix(&super::redact::without_key_material(&redactor.redact(&reply.stdout)))
                );
                if reply.mro.iter().any(|c| c == "MemoryError") {
                    return Err(ConnectorError::MemoryExceeded {
                        connector: label,
                        limit_bytes: self.limits.memory_bytes,
                    });
                }
                // Sent and unanswered (`bootstrap.py` marks requests' ReadTimeout of a request
                // other than GET): held as a timeout is, never failed over (author review of
                // stop 40: the next CA issued a second certificate).
                if reply.mro.iter().any(|c| c == "certhost.NoAnswer") {
                    return Err(ConnectorError::Interrupted {
                        connector: label,
                        message: format!("{detail} (the request was sent and no answer came in time)"),
                    });
                }
                if reply.mro.iter().any(|c| UNREACHABLE.contains(&c.as_str())) {
                    return Err(ConnectorError::Unreachable { connector: label, message: detail });
                }
                Err(ConnectorError::Internal { connector: label, message: detail })
            }
            // Out of memory outside the script's own code (its answer being serialised):
            // "worker failure: MemoryError: " named nothing to change.
            _ if reply.message.as_deref().is_some_and(|m| m.contains("MemoryError")) => {
                Err(ConnectorError::MemoryExceeded { connector: label, limit_bytes: self.limits.memory_bytes })
            }
            _ => Err(ConnectorError::Internal {
                connector: label,
                message: redactor.redact(reply.message.as_deref().unwrap_or("the worker failed")),
            }),
        }
    }

    /// Logs what the script printed and logged during the call, redacted.
    fn log_output(&self, reply: &Reply) {
        let label = self.err_label();
        // The whole text is redacted before it is split into lines.
        let stdout = reply.redactor.redact(&reply.stdout);
        if reply.stdout_dropped > 0 {
            // Said, or the log's first stdout line reads as where the script began.
            tracing::info!(
                plugin = %label,
                "stdout: the script printed {} characters in this call before what follows (only the last 64 KiB are kept)",
                reply.stdout_dropped
            );
        }
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            let line = super::redact::one_line(line);
            tracing::info!(plugin = %label, "stdout: {line}");
        }
        // stderr is logged as it arrives by the worker's stderr reader (see `process`).
        for (level, msg) in &reply.logs {
            let msg = super::redact::one_line(&reply.redactor.redact(msg));
            // Python's `logging` level names too: a script ported from Avi logs "critical".
            match level.to_ascii_lowercase().as_str() {
                "error" | "critical" | "fatal" | "exception" => tracing::error!(plugin = %label, "{msg}"),
                "warn" | "warning" => tracing::warn!(plugin = %label, "{msg}"),
                "debug" => tracing::debug!(plugin = %label, "{msg}"),
                "trace" => tracing::trace!(plugin = %label, "{msg}"),
                "info" | "notice" => tracing::info!(plugin = %label, "{msg}"),
                other => {
                    let other: String = reply.redactor.redact(other).chars().take(32).collect();
                    tracing::info!(plugin = %label, "(unknown log level {other:?}) {msg}")
                }
            }
        }
    }

    /// Maps a returned value to a disposition.
    fn disposition(&self, reply: &Reply) -> Result<Disposition, ConnectorError> {
        let label = self.err_label();
        let redactor = &reply.redactor;
        // What the script wrote says why more often than the value: a script that returned an
        // `openssl` run's empty output had its reason on stderr (walkthrough of stop 46).
        // Read only for a refusal: redacting 64 KiB of output twice costs every good call.
        let bad = |what: String| ConnectorError::Internal {
            connector: label.clone(),
            message: format!(
                "{}{}{}",
                redactor.redact(&what),
                suffix(&super::redact::without_key_material(&redactor.redact(reply.stderr.trim()))),
                stdout_suffix(&super::redact::without_key_material(&redactor.redact(&reply.stdout)))
            ),
        };
        match (&reply.value, reply.value_type.as_deref()) {
            // bytes are PEM text as well (`response.content`); the worker decoded them as UTF-8.
            (Value::String(text), Some(ty @ ("str" | "bytes"))) => {
                if text.contains("-----BEGIN CERTIFICATE-----") {
                    Ok(Disposition::Issued { certificate: text.clone(), chain: vec![], ca_order_id: None })
                } else if ty == "bytes" {
                    Err(bad("returned bytes that are not a PEM certificate".into()))
                } else if text.trim().is_empty() {
                    Err(bad("returned an empty string instead of a PEM certificate".into()))
                } else {
                    Err(bad("returned a string that is not a PEM certificate".into()))
                }
            }
            (_, Some("bytes")) => Err(bad("returned bytes that are not a PEM certificate (not UTF-8 text)".into())),
            (Value::Object(map), _) => {
                let s = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
                match s("status").as_deref() {
                    Some("issued") => {
                        let certificate = s("certificate")
                            .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
                            .ok_or_else(|| {
                                // A key under another name (`cert`) was not named (author review
                                // of stop 38).
                                let known = ["status", "certificate", "chain", "order_id"];
                                let others: Vec<String> = map
                                    .keys()
                                    .filter(|k| !known.contains(&k.as_str()))
                                    .take(5)
                                    .map(|k| format!("{:?}", redactor.redact(k).chars().take(32).collect::<String>()))
                                    .collect();
                                let hint = if others.is_empty() {
                                    String::new()
                                } else {
                                    format!(" (it also had {}, which certhost does not read)", others.join(", "))
                                };
                                bad(format!(
                                    "returned status issued without a PEM certificate under \"certificate\"{hint}"
                                ))
                            })?;
                        let chain = match map.get("chain") {
                            Some(Value::String(c)) => vec![c.clone()],
                            // An item that is not a string keeps its place as text with no
                            // certificate in it, which verification leaves out and says
                            // (`ignored_chain_entries`): refusing it would lose a certificate
                            // the CA has issued (diff review of stop 38).
                            Some(Value::Array(items)) => items
                                .iter()
                                .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
                                .collect(),
                            _ => vec![],
                        };
                        Ok(Disposition::Issued {
                            certificate,
                            chain,
                            ca_order_id: map.get("order_id").and_then(id_text),
                        })
                    }
                    Some("pending") => {
                        let ca_order_id = map
                            .get("order_id")
                            .and_then(id_text)
                            .ok_or_else(|| bad("returned status pending without an order_id".into()))?;
                        let retry_after_s = map
                            .get("retry_after")
                            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                            .unwrap_or(60);
                        Ok(Disposition::Pending {
                            ca_order_id,
                            retry_after_s: u32::try_from(retry_after_s).unwrap_or(u32::MAX),
                        })
                    }
                    Some("rejected") => Ok(Disposition::Rejected {
                        reason: redactor.redact(&s("reason").unwrap_or_else(|| "no reason given".into())),
                    }),
                    Some(other) => {
                        Err(bad(format!("returned an unknown status {other:?} (expected issued, pending or rejected)")))
                    }
                    None => Err(bad("returned a dict without a status".into())),
                }
            }
            (Value::Null, _) => Err(bad("returned None instead of a certificate".into())),
            _ => Err(bad(format!(
                "returned a value of type {} instead of a certificate (a PEM string or a status dict)",
                reply.value_type.clone().unwrap_or_else(|| "value".into())
            ))),
        }
    }
}

/// The error of a call whose reply came out of turn. The worker is replaced; whether the script
/// acted on the request is unknown, so it is not sent again.
fn out_of_turn(connector: String, during: &str) -> ConnectorError {
    ConnectorError::Internal {
        connector,
        message: format!(
            "the script's worker answered out of turn during {during} (a process the script forked wrote to its pipe); it was replaced"
        ),
    }
}

/// The end of a script's stderr, for its error: the last three lines that say something,
/// joined into one line and at most [`STDERR_IN_ERROR`] characters, cut at a word. The whole
/// text, one line at a time, is in the log; a script logging through `logging.basicConfig`
/// made the error a kilobyte of INFO lines that started mid-word, with raw line breaks in the
/// API's `detail` (black-box review of stop 36).
///
/// Python's warnings (`file.py:12: UserWarning: …` and the source line under it) are left out:
/// a library's deprecation banner took all three lines and hid why the call failed (Avi script
/// review of stop 39: the Avi SDK warns on every import).
fn suffix(stderr: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = stderr.lines().peekable();
    while let Some(line) = lines.next() {
        if is_python_warning(line) {
            if lines.peek().is_some_and(|next| next.starts_with(' ')) {
                lines.next();
            }
            continue;
        }
        kept.push(line);
    }
    match last_lines(&kept, 3, STDERR_IN_ERROR) {
        Some(tail) => format!("; stderr: {tail}"),
        None => String::new(),
    }
}

/// The last line a failed call printed to stdout, for its error: Avi scripts print how far
/// they got there (`Order created! Verifying vs.example.com...`), and Avi's own error shows it.
fn stdout_suffix(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    match last_lines(&lines, 1, STDOUT_IN_ERROR) {
        Some(tail) => format!("; stdout ended: {tail}"),
        None => String::new(),
    }
}

/// The last `n` lines that say something, joined into one line of at most `max` characters,
/// cut at a word: what was cut off is in the log.
fn last_lines(lines: &[&str], n: usize, max: usize) -> Option<String> {
    let mut last: Vec<&str> = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).rev().take(n).collect();
    if last.is_empty() {
        return None;
    }
    last.reverse();
    let joined = last.join(" / ");
    let count = joined.chars().count();
    if count <= max {
        return Some(joined);
    }
    let cut: String = joined.chars().skip(count - max).collect();
    let start = cut.find(' ').map_or(0, |i| i + 1);
    Some(format!("…{}", &cut[start..]))
}

/// Whether `line` is the first line of a warning as Python's `warnings` module prints it:
/// `PATH:LINE: CategoryWarning: message`.
fn is_python_warning(line: &str) -> bool {
    let Some((head, _)) = line.split_once("Warning: ") else { return false };
    let Some((place, category)) = head.rsplit_once(": ") else { return false };
    let Some((_, lineno)) = place.rsplit_once(':') else { return false };
    !lineno.is_empty()
        && lineno.bytes().all(|b| b.is_ascii_digit())
        && category.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// For a script that imports a module not installed: where to install it. The error named the
/// module (`avi.sdk`), not the package (`avisdk`), nor which of the machine's Pythons runs
/// scripts (Avi script review of stop 39).
fn missing_module_hint(message: &str) -> String {
    let Some(rest) = message.strip_prefix("ModuleNotFoundError: No module named '") else { return String::new() };
    let Some(module) = rest.split('\'').next().filter(|m| !m.is_empty()) else { return String::new() };
    let top = module.split('.').next().unwrap_or(module);
    let python = env!("CERTHOST_PYTHON_EXECUTABLE");
    match top {
        // Avi's own scripts import the Avi SDK, published as avisdk.
        "avi" => {
            format!("; install the Avi SDK into the Python certhost runs scripts with: {python} -m pip install avisdk")
        }
        _ => format!(
            "; install the package that provides {top} into the Python certhost runs scripts with: {python} -m pip install PACKAGE"
        ),
    }
}

/// The most of a script's stderr an error quotes.
const STDERR_IN_ERROR: usize = 500;

/// The most of a script's stdout an error quotes.
const STDOUT_IN_ERROR: usize = 200;

/// The `common_name` a script gets. Avi always has one, and scripts send it to their CA
/// (`'common_name': common_name`); a request with SANs only passed "", which CAs refuse. The
/// first DNS name of the CSR stands in (a SAN the host verifies the certificate against).
fn avi_common_name(request: &CertificateRequest) -> String {
    if !request.common_name.is_empty() {
        return request.common_name.clone();
    }
    crate::csr::parse_csr(request.csr_pem.as_bytes())
        .ok()
        .and_then(|csr| {
            csr.sans.into_iter().find_map(|san| match san {
                crate::csr::San::Dns(name) => Some(name),
                _ => None,
            })
        })
        .unwrap_or_default()
}

fn describe_from(name: &str, v: &Value) -> Description {
    let parameters = v["parameters"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| {
                    Some(ParameterSpec {
                        name: p["name"].as_str()?.to_owned(),
                        description: p["description"].as_str().unwrap_or_default().to_owned(),
                        required: p["required"].as_bool().unwrap_or(false),
                        sensitive: p["sensitive"].as_bool().unwrap_or(false),
                        default: p["default"].as_str().map(str::to_owned),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let operations = v["operations"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter_map(Value::as_str)
                .filter_map(|o| Operation::ALL.into_iter().find(|x| x.as_str() == o))
                .collect()
        })
        .unwrap_or_default();
    Description {
        name: name.to_owned(),
        version: v["version"].as_str().unwrap_or("0").to_owned(),
        parameters,
        operations,
    }
}

/// An order id or cursor as text: a str as it is, a number as its decimal text (most CA APIs
/// number their orders). `None` for any other type.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Python name of the type a JSON value came from, for messages about a script's value.
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// One item of a `list_certificates` page, or why it cannot be used (the rest of the sentence
/// after "item N"). An item must be a dict; `order_id` a str or an int, `certificate` a str,
/// each optional, but not both missing.
fn listed_certificate(item: &Value) -> Result<ListedCertificate, String> {
    let Value::Object(map) = item else {
        return Err(format!("is a {}, not a dict", py_type(item)));
    };
    let ca_order_id = match map.get("order_id").unwrap_or(&Value::Null) {
        Value::Null => None,
        v => Some(
            id_text(v).ok_or_else(|| format!("has an order_id of type {}; expected a str or an int", py_type(v)))?,
        ),
    };
    let certificate = match map.get("certificate").unwrap_or(&Value::Null) {
        Value::Null => None,
        Value::String(pem) => Some(pem.clone()),
        v => return Err(format!("has a certificate of type {}; expected a PEM str", py_type(v))),
    };
    if ca_order_id.is_none() && certificate.is_none() {
        return Err("has neither a certificate nor an order_id".into());
    }
    let status = map.get("status").and_then(id_text).unwrap_or_else(|| "unknown".into());
    Ok(ListedCertificate { ca_order_id, status, certificate })
}

fn args_dict(args: &Args) -> Value {
    Value::Object(args.iter().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect())
}

#[async_trait]
impl Connector for PythonConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn declared_sensitive(&self) -> &[String] {
        &self.declared
    }

    fn label(&self) -> String {
        self.err_label()
    }

    async fn describe(&self) -> Result<Description, ConnectorError> {
        Ok(self.description.clone())
    }

    async fn certificate_request(
        &self,
        request: &CertificateRequest,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let argv = vec![json!(request.csr_pem), json!(avi_common_name(request)), args_dict(args)];
        let reply = self.invoke("certificate_request", argv, args, Some(&request.request_id)).await?;
        self.disposition(&reply)
    }

    async fn poll(&self, ca_order_id: &str, args: &Args) -> Result<Disposition, ConnectorError> {
        let reply = self.invoke("poll", vec![json!(ca_order_id), args_dict(args)], args, None).await?;
        self.disposition(&reply)
    }

    async fn renew(&self, request: &RenewRequest, args: &Args) -> Result<Disposition, ConnectorError> {
        let argv = vec![
            json!(request.prior_certificate_pem),
            json!(request.prior_ca_order_id),
            json!(request.request.csr_pem),
            json!(avi_common_name(&request.request)),
            args_dict(args),
        ];
        let reply = self.invoke("renew", argv, args, Some(&request.request.request_id)).await?;
        self.disposition(&reply)
    }

    async fn revoke(&self, request: &RevokeRequest, args: &Args) -> Result<(), ConnectorError> {
        let reason = serde_json::to_value(request.reason).unwrap_or(Value::Null);
        let argv = vec![
            json!(request.certificate_pem),
            json!(request.serial),
            reason,
            json!(request.comment),
            args_dict(args),
        ];
        let reply = self.invoke("revoke", argv, args, None).await?;
        // `return False` is how many Python clients say "it did not work": the inventory must
        // not call a certificate revoked that the CA still vouches for.
        if reply.value == Value::Bool(false) {
            return Err(ConnectorError::Internal {
                connector: self.err_label(),
                message: "revoke returned False: the CA did not revoke the certificate".into(),
            });
        }
        Ok(())
    }

    async fn test_connection(&self, args: &Args) -> Result<(), ConnectorError> {
        let reply = self.invoke("test_connection", vec![args_dict(args)], args, None).await?;
        if reply.value == Value::Bool(false) {
            return Err(ConnectorError::Unauthorized {
                connector: self.err_label(),
                message: "test_connection returned False".into(),
            });
        }
        Ok(())
    }

    async fn list_certificates(&self, args: &Args, cursor: Option<&str>) -> Result<CertificatePage, ConnectorError> {
        let reply = self.invoke("list_certificates", vec![args_dict(args), json!(cursor)], args, None).await?;
        let bad = |message: String| ConnectorError::Internal { connector: self.err_label(), message };
        let listed = reply.value["items"]
            .as_array()
            .ok_or_else(|| bad("list_certificates must return {\"items\": [...], \"next_cursor\": ...}".into()))?;
        let (mut items, mut unusable) = (Vec::new(), Vec::new());
        for (n, item) in listed.iter().enumerate() {
            match listed_certificate(item) {
                Ok(listed) => items.push(listed),
                Err(why) => unusable.push(format!("list_certificates item {n} {why}")),
            }
        }
        let next_cursor = match &reply.value["next_cursor"] {
            Value::Null => None,
            v => Some(id_text(v).ok_or_else(|| {
                bad(format!(
                    "list_certificates returned a next_cursor of type {}; expected a str, an int or None",
                    py_type(v)
                ))
            })?),
        };
        Ok(CertificatePage { items, next_cursor, unusable })
    }

    async fn update_order(
        &self,
        ca_order_id: &str,
        action: OrderAction,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let action = serde_json::to_value(action).unwrap_or(Value::Null);
        let reply = self.invoke("update_order", vec![json!(ca_order_id), action, args_dict(args)], args, None).await?;
        self.disposition(&reply)
    }
}

/// Keeps the cache entries the script set in `cache` (the call's view of it) where the next
/// call sees them, before the worker is handed to it (that call starts with
/// [`AccountCache::entries`]).
fn keep_cache(cache: &AccountCache, reply: &mut Reply, epoch: Option<i64>) -> bool {
    let set = std::mem::take(&mut reply.cache);
    let any = !set.is_empty();
    for e in cache::from_worker(set) {
        // The worker applied the rules already, but for the request's own secrets, which it
        // does not know apart: only that refusal is news.
        let set = cache.set(e, epoch);
        if set == super::cache::Set::RequestSecret {
            tracing::warn!("certhost.cache_set ignored: {}", set.refusal().unwrap_or_default());
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quotes_the_last_lines_of_stderr_on_one_line_cut_at_a_word() {
        assert_eq!(suffix(""), "");
        assert_eq!(suffix("\n  \n"), "");
        assert_eq!(suffix("one\n\ntwo\nthree\nfour\n"), "; stderr: two / three / four");
        let chatty: String = (0..80).map(|i| format!("INFO step {i}: doing some work on the order\n")).collect();
        let quoted = suffix(&format!("{chatty}ERROR the CA refused: quota exceeded\n"));
        assert!(quoted.ends_with("INFO step 79: doing some work on the order / ERROR the CA refused: quota exceeded"));
        assert!(!quoted.contains('\n'));
        let long = format!("{} tail", "word ".repeat(200));
        let quoted = suffix(&long);
        assert!(quoted.starts_with("; stderr: …word ") && quoted.ends_with(" tail"), "{quoted}");
        assert!(quoted.chars().count() <= "; stderr: …".len() + STDERR_IN_ERROR, "{quoted}");
    }

    #[test]
    fn a_missing_module_names_where_to_install_it() {
        assert!(
            missing_module_hint("ModuleNotFoundError: No module named 'avi.sdk' (line 64)")
                .ends_with("-m pip install avisdk")
        );
        let other = missing_module_hint("ModuleNotFoundError: No module named 'yaml'");
        assert!(
            other.contains("provides yaml into the Python certhost runs scripts with: /") && other.ends_with("PACKAGE"),
            "{other}"
        );
        assert_eq!(missing_module_hint("ImportError: cannot import name 'x'"), "");
    }

    #[test]
    fn python_warnings_are_left_out_of_the_quoted_stderr_and_stdout_s_last_line_is_quoted() {
        let stderr = "/usr/lib/python3/site-packages/avi/sdk/avi_api.py:40: UserWarning: Avi SDK 30 is old\n  \
                      warnings.warn(warning_msg)\nthe CA said no\n/x.py:3: DeprecationWarning: gone\n";
        assert_eq!(suffix(stderr), "; stderr: the CA said no");
        assert_eq!(suffix("a.py:1: UserWarning: only this\n  warnings.warn(m)\n"), "");
        assert_eq!(suffix("Warning: the CA is slow\n"), "; stderr: Warning: the CA is slow");
        assert_eq!(
            stdout_suffix("Order created!\nVerifying vs.example.com...\n\n"),
            "; stdout ended: Verifying vs.example.com..."
        );
        assert_eq!(stdout_suffix(""), "");
        let long = stdout_suffix(&format!("{} end", "word ".repeat(100)));
        assert!(long.starts_with("; stdout ended: …word ") && long.chars().count() <= 220, "{long}");
    }
}
