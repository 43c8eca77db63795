//! Challenge answers the host publishes for connectors (contract 0.2, interface
//! `challenges`): http-01 key authorizations that `certhost serve` answers on its ACME
//! listener, and dns-01 TXT values set by running the configured hook command.
//!
//! One board per process ([`Challenges::global`]): every connector call writes to it and the
//! listener reads from it. Until `serve` enables the listener or sets a hook, publishing fails
//! with an error that says what to configure.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a challenge could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No http-01 listener runs in this process.
    #[error(
        "no http-01 challenge listener runs: start `certhost serve` with [server] acme_http01_listen or --acme-http01-listen"
    )]
    NoHttp01Listener,
    /// The token is not base64url.
    #[error("the http-01 token is not a base64url string of at most 256 characters")]
    BadToken,
    /// No dns-01 hook is configured.
    #[error("no dns-01 hook is configured: set [server] dns01_hook in certhost.toml")]
    NoDns01Hook,
    /// The domain or value has characters a hook argument must not have.
    #[error("the dns-01 domain or value has characters outside a DNS name and base64url")]
    BadDnsArgument,
    /// The hook failed.
    #[error("the dns-01 hook {hook} {action} failed: {reason}")]
    Hook {
        /// The hook command.
        hook: String,
        /// `present` or `cleanup`.
        action: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// The process's challenge board.
#[derive(Default)]
pub struct Challenges {
    http01: Mutex<HashMap<String, String>>,
    http01_served: AtomicBool,
    dns01_hook: Mutex<Option<PathBuf>>,
}

/// How long a dns-01 hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

impl Challenges {
    /// The board of this process.
    pub fn global() -> &'static Challenges {
        static BOARD: OnceLock<Challenges> = OnceLock::new();
        BOARD.get_or_init(Challenges::default)
    }

    /// Marks the http-01 listener as running (set by `serve` once it is bound).
    pub fn set_http01_served(&self, on: bool) {
        self.http01_served.store(on, Ordering::SeqCst);
    }

    /// Sets (or clears) the dns-01 hook command.
    pub fn set_dns01_hook(&self, hook: Option<PathBuf>) {
        *self.dns01_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Serves `key_authorization` for `token` until withdrawn.
    pub fn publish_http01(&self, token: &str, key_authorization: &str) -> Result<(), ChallengeError> {
        if !self.http01_served.load(Ordering::SeqCst) {
            return Err(ChallengeError::NoHttp01Listener);
        }
        if !is_b64url(token) || token.len() > 256 || key_authorization.len() > 1024 {
            return Err(ChallengeError::BadToken);
        }
        let mut map = self.http01.lock().unwrap_or_else(|p| p.into_inner());
        // A bound on what guests can make the host hold.
        if map.len() >= 10_000 && !map.contains_key(token) {
            map.clear();
        }
        map.insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    /// Stops serving `token`.
    pub fn withdraw_http01(&self, token: &str) {
        self.http01.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }

    /// The key authorization published for `token`.
    pub fn http01_answer(&self, token: &str) -> Option<String> {
        self.http01.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }

    /// Runs the dns-01 hook: `HOOK present|cleanup DOMAIN VALUE`, under [`HOOK_TIMEOUT`], its
    /// output logged.
    /// `within` is what is left of the calling connector's deadline: a hook that waits for DNS
    /// propagation no longer holds a call (and its order's lease) past it.
    pub fn dns01(
        &self,
        action: &'static str,
        domain: &str,
        value: &str,
        within: Duration,
    ) -> Result<(), ChallengeError> {
        let hook =
            self.dns01_hook.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(ChallengeError::NoDns01Hook)?;
        let dns_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '*')
            && !domain.starts_with('-');
        if !dns_ok || !is_b64url(value) {
            return Err(ChallengeError::BadDnsArgument);
        }
        let failed = |reason: String| ChallengeError::Hook { hook: hook.display().to_string(), action, reason };
        let mut command = Command::new(&hook);
        // The variables secrets are read from, as for deploy hooks and Python workers.
        for name in crate::param::hidden_from_children() {
            command.env_remove(name);
        }
        let mut child = command
            .args([action, domain, value])
            .env_remove("CERTHOST_MASTER_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, killed whole at the deadline.
            .process_group(0)
            .spawn()
            .map_err(|e| failed(format!("it cannot be started ({e})")))?;
        // Read while it runs: a hook that writes more than a pipe holds (64 KiB) would block
        // until killed at the deadline if its output were read only after it exits.
        let readers: Vec<_> = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|pipe| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(read_capped(pipe));
            });
            rx
        })
        .collect();
        let started = Instant::now();
        let limit = within.min(HOOK_TIMEOUT);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= limit => {
                    // The group the hook leads (`process_group(0)`), before it is reaped.
                    crate::process_group::signal_unreaped_group(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    let why = if limit < HOOK_TIMEOUT {
                        format!(
                            "it ran past the connector call's deadline ({} s left when it started) and was killed",
                            limit.as_secs()
                        )
                    } else {
                        format!("it ran longer than {} s and was killed", HOOK_TIMEOUT.as_secs())
                    };
                    return Err(failed(why));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(failed(format!("waiting for it failed ({e})"))),
            }
        };
        // A process the hook left in the background may hold the pipes: not waited for long.
        let text: String = readers
            .into_iter()
            .map(|rx| {
                String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()).into_owned()
            })
            .collect();
        for line in text.lines().take(50) {
            tracing::info!(hook = %hook.display(), action, domain, "{line}");
        }
        if status.success() { Ok(()) } else { Err(failed(format!("it exited with {status}"))) }
    }
}

/// Everything `pipe` yields until it closes, of which the first 64 KiB are kept.
fn read_capped(mut pipe: Box<dyn Read + Send>) -> Vec<u8> {
    const KEEP: usize = 64 * 1024;
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = KEEP.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
    kept
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the hook's output was read only after it exited, so a hook writing more than
    /// a pipe holds blocked until it was killed at the deadline (120 s), and failed.
    #[test]
    fn a_hook_writing_more_than_a_pipe_holds_finishes() {
        let dir = tempfile::tempdir().expect("tmp");
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, "#!/bin/sh\nhead -c 300000 /dev/zero | tr '\\\\0' x\necho done >&2\n").expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let board = Challenges::default();
        board.set_dns01_hook(Some(hook));
        let started = Instant::now();
        board.dns01("present", "www.example.com", "abc_DEF-123", HOOK_TIMEOUT).expect("the hook succeeds");
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    }

    /// Regression (review of stop 30): the hook ran for up to 120 s whatever was left of the
    /// calling connector's deadline, holding the call (and its order's lease) past it.
    #[test]
    fn a_hook_is_held_to_what_is_left_of_the_call() {
        let dir = tempfile::tempdir().expect("tmp");
        let hook = dir.path().join("hook.sh");
        std::fs::write(
            &hook,
            "#!/bin/sh
sleep 30
",
        )
        .expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let board = Challenges::default();
        board.set_dns01_hook(Some(hook));
        let err = board.dns01("present", "www.example.com", "abc_DEF-123", Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("it ran past the connector call's deadline (1 s left when it started) and was killed"),
            "{err}"
        );
    }
}
