//! Challenge answers the host publishes for connectors (contract 0.2, interface
//! `challenges`): http-01 key authorizations that `certhost serve` answers on its ACME
//! listener, and dns-01 TXT values set by running the configured hook command.
//!
//! One board per process ([`Challenges::global`]): every connector call writes to it and the
//! listener reads from it. Until `serve` enables the listener or sets a hook, publishing fails
//! with an error that says what to configure.
//!
//! A component is untrusted, and the operator's DNS hook and port-80 listener can prove control
//! of any name they serve to any CA. So a call publishes only for the names of the order it is
//! made for, as the profile approved them ([`Scope`]): the hook runs only for those names, and
//! an http-01 answer is given only to a request whose `Host` is one of them. Answers belong to
//! the CA account that published them (no other account replaces or withdraws one), each
//! account holds at most [`MAX_ANSWERS_PER_ACCOUNT`], and an answer nobody withdrew lapses
//! after [`ANSWER_LIFETIME`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::clock::unix_now;

/// What a one-shot command says of a challenge it cannot answer.
const ONLY_SERVE: &str = " in this command: only `certhost serve` answers ACME challenges (its http-01 listener, its \
     dns-01 hook); issue through its API (POST /v1/certificates), or let its renewals do it";

/// Why a challenge could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No http-01 listener runs in this process. (The ACME connector tells this and
    /// `NoDns01Hook` from a failed publication by how they begin: keep the first words.)
    /// `outside_serve`: the process is a one-shot command, which never answers challenges,
    /// whatever the configuration says (ACME walkthrough of stop 46: `issue` sent the operator
    /// to set what was set).
    #[error(
        "no http-01 challenge listener runs{}",
        if *outside_serve { ONLY_SERVE } else { ": start `certhost serve` with [server] acme_http01_listen or --acme-http01-listen" }
    )]
    NoHttp01Listener {
        /// Whether the call runs in a command other than `serve`.
        outside_serve: bool,
    },
    /// The token is not base64url.
    #[error("the http-01 token is not a base64url string of at most 256 characters")]
    BadToken,
    /// No dns-01 hook is configured (`outside_serve`: as for [`Self::NoHttp01Listener`]).
    #[error(
        "no dns-01 hook is configured{}",
        if *outside_serve { ONLY_SERVE } else { ": set [server] dns01_hook in certhost.toml" }
    )]
    NoDns01Hook {
        /// Whether the call runs in a command other than `serve`.
        outside_serve: bool,
    },
    /// The domain or value has characters a hook argument must not have.
    #[error("the dns-01 domain must be a DNS name and the value 1-255 base64url characters (RFC 8555 §8.4)")]
    BadDnsArgument,
    /// The call is not made for an order (`test_connection`, `revoke`, a listing).
    #[error(
        "challenges are published only in a call for an order (a certificate request, renewal, poll or order update)"
    )]
    NoOrder,
    /// The dns-01 domain is not one of the order's names.
    #[error(
        "{domain} is not a DNS name of the order this call is for; challenges are published only for the order's names"
    )]
    NotOrderName {
        /// The domain the connector gave.
        domain: String,
    },
    /// Another CA account published an answer under this token.
    #[error("the http-01 token is already published by another CA account")]
    TokenTaken,
    /// The account holds as many answers as it may.
    #[error(
        "this CA account already has {MAX_ANSWERS_PER_ACCOUNT} http-01 answers published: withdraw each answer once its authorization is decided"
    )]
    TooManyAnswers,
    /// The board holds as many answers as the process keeps.
    #[error("the host already serves {MAX_ANSWERS} http-01 answers; try again once some are withdrawn")]
    BoardFull,
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

/// An http-01 answer as it is kept across restarts: a `serve` restarted while a CA was about
/// to validate answered 404 and the order failed (black-box review of stop 35).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedAnswer {
    /// The challenge token.
    pub token: String,
    /// What is served for it (public by design: anyone may fetch it).
    pub key_authorization: String,
    /// The CA account whose call published it.
    pub account: String,
    /// The order's names it is served for.
    pub names: Vec<String>,
    /// When it lapses, Unix seconds.
    pub expires_at: i64,
}

/// Where published http-01 answers are kept for the next `serve` (the inventory). Called
/// under the board's lock, so an implementation hands the write off rather than doing it.
pub trait AnswerStore: Send + Sync {
    /// Keeps `answer` (replacing one of its token).
    fn save(&self, answer: SavedAnswer);
    /// Forgets `token`'s answer.
    fn remove(&self, token: &str);
}

/// The process's challenge board.
#[derive(Default)]
pub struct Challenges {
    store: Mutex<Option<Arc<dyn AnswerStore>>>,
    http01: Mutex<HashMap<String, Answer>>,
    http01_served: AtomicBool,
    /// Set by `serve`: another command never answers a challenge.
    serving: AtomicBool,
    dns01_hook: Mutex<Option<PathBuf>>,
    /// Reads the variables secrets come from, to redact the hook's output of them (the
    /// library never reads the environment itself).
    env: Mutex<Option<crate::param::SharedEnvLookup>>,
}

/// One published http-01 answer.
struct Answer {
    key_authorization: String,
    /// The CA account whose call published it.
    account: String,
    /// The names of that call's order: whom the answer is given to.
    names: Arc<[Name]>,
    expires: Instant,
}

/// How long a dns-01 hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an http-01 answer is served unless withdrawn sooner: a CA validates within
/// minutes of being asked, and a call that died (killed at its deadline) withdraws nothing.
pub const ANSWER_LIFETIME: Duration = Duration::from_secs(3600);

/// http-01 answers the process serves at once, for every account.
pub const MAX_ANSWERS: usize = 10_000;

/// http-01 answers one CA account may have published at once: one account cannot fill the
/// board for the others.
pub const MAX_ANSWERS_PER_ACCOUNT: usize = 1_000;

/// A name of an order, as challenges compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    /// A DNS name, lower case, without a trailing dot; a wildcard's `*.` kept.
    Dns(String),
    Ip(IpAddr),
}

impl Name {
    /// The name as [`Name::parse`] reads it back.
    fn text(&self) -> String {
        match self {
            Name::Dns(d) => d.clone(),
            Name::Ip(ip) => ip.to_string(),
        }
    }

    fn parse(text: &str) -> Option<Name> {
        let text = text.trim().trim_end_matches('.');
        if text.is_empty() {
            return None;
        }
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        Some(match bare.parse::<IpAddr>() {
            Ok(ip) => Name::Ip(ip),
            Err(_) => Name::Dns(text.to_ascii_lowercase()),
        })
    }
}

/// What one connector call may publish: the CA account it runs for and the names of its
/// order (empty for a call made for no order).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    account: String,
    names: Arc<[Name]>,
}

impl Scope {
    /// The scope of a call of `account`'s connector for an order of `names` (DNS names, IP
    /// addresses, a CN; anything else is ignored).
    pub fn new<'a>(account: &str, names: impl IntoIterator<Item = &'a str>) -> Scope {
        let mut parsed: Vec<Name> = Vec::new();
        for name in names.into_iter().filter_map(Name::parse) {
            if !parsed.contains(&name) {
                parsed.push(name);
            }
        }
        Scope { account: account.to_owned(), names: parsed.into() }
    }

    /// Whether an http-01 validation request for `host` (a `Host` header: a name or IP
    /// address, maybe with a port) may be answered: it is one of the names, exactly (ACME
    /// has no http-01 for a wildcard).
    fn answers_host(names: &[Name], host: &str) -> bool {
        let host = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            // One colon: a port. More: a bare IPv6 address.
            None => match host.split_once(':') {
                Some((name, port)) if !port.contains(':') => name,
                _ => host,
            },
        };
        Name::parse(host).is_some_and(|h| names.contains(&h))
    }

    /// Whether the TXT record `_acme-challenge.{domain}` answers for one of the names: the
    /// domain is a DNS name of the order, or the name a wildcard of it stands on.
    fn covers_domain(&self, domain: &str) -> bool {
        let Some(Name::Dns(domain)) = Name::parse(domain) else { return false };
        let base = |d: &str| d.strip_prefix("*.").unwrap_or(d).to_owned();
        let domain = base(&domain);
        self.names.iter().any(|n| matches!(n, Name::Dns(d) if base(d) == domain))
    }
}

impl Challenges {
    /// The board of this process.
    pub fn global() -> &'static Challenges {
        static BOARD: OnceLock<Challenges> = OnceLock::new();
        BOARD.get_or_init(Challenges::default)
    }

    /// Marks this process as `serve`, which answers challenges as configured.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    fn outside_serve(&self) -> bool {
        !self.serving.load(Ordering::SeqCst)
    }

    /// Marks the http-01 listener as running (set by `serve` once it is bound).
    pub fn set_http01_served(&self, on: bool) {
        self.http01_served.store(on, Ordering::SeqCst);
    }

    /// Keeps published answers in `store` from now on, and serves again those `saved` (what
    /// an earlier `serve` published and did not withdraw) until they lapse.
    pub fn set_store(&self, store: Arc<dyn AnswerStore>, saved: Vec<SavedAnswer>) {
        let now_unix = unix_now();
        let now = Instant::now();
        let mut map = self.http01.lock().unwrap_or_else(|p| p.into_inner());
        for a in saved {
            let Ok(left) = u64::try_from(a.expires_at - now_unix) else { continue };
            if left == 0 || map.contains_key(&a.token) || map.len() >= MAX_ANSWERS {
                continue;
            }
            let names: Arc<[Name]> = a.names.iter().filter_map(|n| Name::parse(n)).collect::<Vec<_>>().into();
            let expires = now + Duration::from_secs(left).min(ANSWER_LIFETIME);
            map.insert(a.token, Answer { key_authorization: a.key_authorization, account: a.account, names, expires });
        }
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    fn store(&self) -> Option<Arc<dyn AnswerStore>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets (or clears) the dns-01 hook command.
    pub fn set_dns01_hook(&self, hook: Option<PathBuf>) {
        *self.dns01_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// The lookup of the variables secrets are read from, for redacting the dns-01 hook's
    /// output of their values.
    pub fn set_env(&self, env: crate::param::SharedEnvLookup) {
        *self.env.lock().unwrap_or_else(|p| p.into_inner()) = Some(env);
    }

    /// Serves `key_authorization` for `token` to validation requests for the scope's names,
    /// until withdrawn or [`ANSWER_LIFETIME`] has passed.
    pub fn publish_http01(&self, scope: &Scope, token: &str, key_authorization: &str) -> Result<(), ChallengeError> {
        if !self.http01_served.load(Ordering::SeqCst) {
            return Err(ChallengeError::NoHttp01Listener { outside_serve: self.outside_serve() });
        }
        if !is_b64url(token) || token.len() > 256 || key_authorization.len() > 1024 {
            return Err(ChallengeError::BadToken);
        }
        if scope.names.is_empty() {
            return Err(ChallengeError::NoOrder);
        }
        let now = Instant::now();
        let mut map = self.http01.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, a| a.expires > now);
        if map.get(token).is_some_and(|a| a.account != scope.account) {
            return Err(ChallengeError::TokenTaken);
        }
        if !map.contains_key(token) {
            if map.values().filter(|a| a.account == scope.account).count() >= MAX_ANSWERS_PER_ACCOUNT {
                return Err(ChallengeError::TooManyAnswers);
            }
            if map.len() >= MAX_ANSWERS {
                return Err(ChallengeError::BoardFull);
            }
        }
        let answer = Answer {
            key_authorization: key_authorization.to_owned(),
            account: scope.account.clone(),
            names: scope.names.clone(),
            expires: now + ANSWER_LIFETIME,
        };
        map.insert(token.to_owned(), answer);
        if let Some(store) = self.store() {
            store.save(SavedAnswer {
                token: token.to_owned(),
                key_authorization: key_authorization.to_owned(),
                account: scope.account.clone(),
                names: scope.names.iter().map(Name::text).collect(),
                expires_at: unix_now() + ANSWER_LIFETIME.as_secs() as i64,
            });
        }
        Ok(())
    }

    /// Stops serving `token`, when the scope's account published it.
    pub fn withdraw_http01(&self, scope: &Scope, token: &str) {
        let mut map = self.http01.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(token).is_some_and(|a| a.account == scope.account) {
            map.remove(token);
            if let Some(store) = self.store() {
                store.remove(token);
            }
        }
    }

    /// The key authorization published for `token`, when `host` (the validation request's
    /// `Host` header) is one of the names it was published for and it has not lapsed.
    pub fn http01_answer(&self, token: &str, host: &str) -> Option<String> {
        let map = self.http01.lock().unwrap_or_else(|p| p.into_inner());
        let answer = map.get(token).filter(|a| a.expires > Instant::now())?;
        Scope::answers_host(&answer.names, host).then(|| answer.key_authorization.clone())
    }

    /// Runs the dns-01 hook: `HOOK present|cleanup DOMAIN VALUE`, under [`HOOK_TIMEOUT`], its
    /// output logged, for a domain of the scope's order only.
    /// `within` is what is left of the calling connector's deadline: a hook that waits for DNS
    /// propagation no longer holds a call (and its order's lease) past it.
    pub fn dns01(
        &self,
        scope: &Scope,
        action: &'static str,
        domain: &str,
        value: &str,
        within: Duration,
    ) -> Result<(), ChallengeError> {
        let hook = self
            .dns01_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ChallengeError::NoDns01Hook { outside_serve: self.outside_serve() })?;
        let dns_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '*')
            && !domain.starts_with('-');
        // A dns-01 value is base64url (RFC 8555 §8.4: 43 characters of a SHA-256 digest; other
        // domain validations use shorter random tokens). It may start with `-`, as one ACME
        // digest in 64 does: the hook gets it as a variable too, to read without an option
        // parser (see the README).
        if !dns_ok || value.len() > MAX_DNS01_VALUE || !is_b64url(value) {
            return Err(ChallengeError::BadDnsArgument);
        }
        if scope.names.is_empty() {
            return Err(ChallengeError::NoOrder);
        }
        if !scope.covers_domain(domain) {
            return Err(ChallengeError::NotOrderName { domain: domain.to_owned() });
        }
        let failed = |reason: String| ChallengeError::Hook { hook: hook.display().to_string(), action, reason };
        let mut command = Command::new(&hook);
        // The variables secrets are read from, as for deploy hooks and Python workers.
        for name in crate::param::hidden_from_children() {
            command.env_remove(name);
        }
        command
            .args([action, domain, value])
            // The same as variables: a value may start with `-` (one in 64 digests does), which
            // a hook parsing options would misread; one reading these never sees an option.
            .env("CERTHOST_DNS01_ACTION", action)
            .env("CERTHOST_DNS01_DOMAIN", domain)
            .env("CERTHOST_DNS01_VALUE", value)
            .env_remove("CERTHOST_MASTER_KEY");
        let limit = within.min(HOOK_TIMEOUT);
        let done = crate::hook::run(&mut command, limit, HOOK_OUTPUT_KEPT)
            .map_err(|e| failed(format!("it cannot be started ({e})")))?;
        let status = match done.ended {
            crate::hook::Ended::Exited(status) => status,
            crate::hook::Ended::TimedOut if limit < HOOK_TIMEOUT => {
                return Err(failed(format!(
                    "it ran past the connector call's deadline ({} s left when it started) and was killed",
                    limit.as_secs()
                )));
            }
            crate::hook::Ended::TimedOut => {
                return Err(failed(format!("it ran longer than {} s and was killed", HOOK_TIMEOUT.as_secs())));
            }
            crate::hook::Ended::WaitFailed(e) => return Err(failed(format!("waiting for it failed ({e})"))),
        };
        let text = String::from_utf8_lossy(&done.output);
        // Redacted as a deploy hook's output is: of what the hook could inherit or read.
        let env = self.env.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let secrets = crate::param::registered_secret_values(&|name| env.as_ref().and_then(|env| env(name)));
        let redactor = super::redact::Redactor::new(secrets.iter().map(|v| v.as_str()));
        let lines = logged_lines(&text, &redactor);
        for line in &lines {
            tracing::info!(hook = %hook.display(), action, domain, "{line}");
        }
        if status.success() {
            return Ok(());
        }
        // Where its words are (ACME walkthrough of stop 46: the error did not say). Not the
        // words themselves: the order's error is shown to every role and sent in notifications,
        // and a hook's own credentials (a DNS API token in its environment) are not among the
        // values redacted, as for deploy hooks.
        let said = if lines.is_empty() { "" } else { "; what it printed is in serve's log (at -v, level info)" };
        Err(failed(format!("it exited with {status}{said}")))
    }
}

/// How much of a dns-01 hook's output is read and kept to be redacted.
const HOOK_OUTPUT_KEPT: usize = 128 * 1024;

/// How much of it is logged: a quarter of what was kept, so a secret the keeping cut in two
/// (its head kept, its tail thrown away, and so not recognised by the redaction) is never in
/// what is logged.
const HOOK_OUTPUT_LOGGED: usize = HOOK_OUTPUT_KEPT / 4;

/// The lines of a dns-01 hook's output that are logged: redacted whole, as a deploy hook's is
/// (a key block spans lines), and only then cut to [`HOOK_OUTPUT_LOGGED`] and 50 lines.
fn logged_lines(text: &str, redactor: &super::redact::Redactor) -> Vec<String> {
    let scrubbed = super::redact::without_key_material(&redactor.redact(text));
    let mut end = scrubbed.len().min(HOOK_OUTPUT_LOGGED);
    while !scrubbed.is_char_boundary(end) {
        end -= 1;
    }
    scrubbed[..end].lines().take(50).map(super::redact::one_line).collect()
}

/// Longest dns-01 TXT value taken: a TXT string holds 255 bytes.
const MAX_DNS01_VALUE: usize = 255;

fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A board whose dns-01 hook appends its arguments to the returned file.
    fn recording_board(dir: &std::path::Path) -> (Challenges, std::path::PathBuf) {
        let record = dir.join("ran");
        let hook = dir.join("hook.sh");
        std::fs::write(&hook, format!("#!/bin/sh\necho \"$@\" >> {}\n", record.display())).expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let board = Challenges::default();
        board.set_dns01_hook(Some(hook));
        (board, record)
    }

    /// A dns-01 value as ACME makes it: 43 base64url characters.
    const VALUE: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

    /// ACME walkthrough of stop 46: a failing hook's reason was only in the -v log, and its
    /// error did not say so (its words stay there: they may hold the hook's own credentials).
    #[test]
    fn a_failing_hooks_error_points_at_its_output_in_the_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, "#!/bin/sh\necho adding the record\necho 'nsupdate: REFUSED' >&2\nexit 2\n")
            .expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let board = Challenges::default();
        board.set_dns01_hook(Some(hook));
        let err =
            board.dns01(&www(), "present", "www.example.com", VALUE, HOOK_TIMEOUT).expect_err("fails").to_string();
        assert!(
            err.ends_with("it exited with exit status: 2; what it printed is in serve's log (at -v, level info)"),
            "{err}"
        );
        assert!(!err.contains("REFUSED"), "the output itself stays in the log: {err}");
    }

    /// ACME walkthrough of stop 46: a one-shot `issue` told the operator to configure a
    /// listener or hook that was configured; only `serve` answers challenges, and says so.
    #[test]
    fn a_command_other_than_serve_says_only_serve_answers_challenges() {
        let board = Challenges::default();
        let http = board.publish_http01(&www(), "tok", "tok.ka").expect_err("no listener").to_string();
        let dns =
            board.dns01(&www(), "present", "www.example.com", VALUE, HOOK_TIMEOUT).expect_err("no hook").to_string();
        for e in [&http, &dns] {
            assert!(e.contains("in this command: only `certhost serve` answers ACME challenges"), "{e}");
        }
        // Each keeps its first words, which the ACME connector reads.
        assert!(
            http.starts_with("no http-01 challenge listener runs") && dns.starts_with("no dns-01 hook is configured")
        );
        board.set_serving();
        let http = board.publish_http01(&www(), "tok", "tok.ka").expect_err("no listener").to_string();
        assert!(
            http.ends_with(": start `certhost serve` with [server] acme_http01_listen or --acme-http01-listen"),
            "{http}"
        );
        let dns =
            board.dns01(&www(), "present", "www.example.com", VALUE, HOOK_TIMEOUT).expect_err("no hook").to_string();
        assert!(dns.ends_with(": set [server] dns01_hook in certhost.toml"), "{dns}");
    }

    /// A value is base64url and nothing else (no space, no shell or option syntax beyond a
    /// leading `-`, which a digest may have: the hook reads `CERTHOST_DNS01_VALUE` to be safe
    /// from it, review of stop 32).
    #[test]
    fn a_secret_cut_in_two_by_what_is_kept_is_not_logged() {
        let secret = "S3cr3t-CANARY-7731-and-more";
        let redactor = crate::connector::redact::Redactor::new([secret]);
        // One long line whose end is the head of the secret, as the keeping would cut it.
        let mut text = "x".repeat(HOOK_OUTPUT_KEPT - 10);
        text.push_str(&secret[..10]);
        text.push('\n');
        let logged = logged_lines(&text, &redactor).concat();
        assert!(logged.len() <= HOOK_OUTPUT_LOGGED, "{} bytes logged", logged.len());
        assert!(!logged.contains("S3cr3t"), "the secret's head was logged");
        // A whole secret inside what is logged is redacted.
        let logged = logged_lines(&format!("token {secret} used\n"), &redactor).concat();
        assert!(!logged.contains("S3cr3t") && logged.contains("token"), "{logged}");
    }

    #[test]
    fn a_dns01_value_is_base64url_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tmp");
        let (board, record) = recording_board(dir.path());
        for bad in ["-s attackerns", "a;b", "a=b", &"A".repeat(256), ""] {
            let err = board.dns01(&www(), "present", "www.example.com", bad, HOOK_TIMEOUT).expect_err(bad);
            assert!(matches!(err, ChallengeError::BadDnsArgument), "{bad}: {err}");
        }
        assert!(!record.exists(), "the hook ran for a value that is not base64url");
        board.dns01(&www(), "present", "www.example.com", VALUE, HOOK_TIMEOUT).expect("a digest");
        board
            .dns01(&www(), "present", "www.example.com", "Xk3-random_token-32characters-ok", HOOK_TIMEOUT)
            .expect("a DCV token");
    }

    fn www() -> Scope {
        Scope::new("acme", ["www.example.com"])
    }

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
        board.dns01(&www(), "present", "www.example.com", VALUE, HOOK_TIMEOUT).expect("the hook succeeds");
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
        let err = board.dns01(&www(), "present", "www.example.com", VALUE, Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("it ran past the connector call's deadline (1 s left when it started) and was killed"),
            "{err}"
        );
    }

    /// Regression (left open by stop 30): a component could have the operator's DNS hook set
    /// `_acme-challenge` records for any name, and so obtain certificates for it from any CA.
    #[test]
    fn the_dns01_hook_runs_only_for_the_orders_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let (board, record) = recording_board(dir.path());
        let scope = Scope::new("acme", ["WWW.Example.com.", "*.apps.example.com", "192.0.2.7"]);
        for refused in ["bank.example", "example.com", "x.www.example.com", "192.0.2.7", "other.apps.example.com"] {
            let err = board.dns01(&scope, "present", refused, VALUE, HOOK_TIMEOUT).expect_err(refused);
            assert!(matches!(err, ChallengeError::NotOrderName { .. }), "{refused}: {err}");
        }
        let err = board.dns01(&Scope::new("acme", []), "present", "www.example.com", VALUE, HOOK_TIMEOUT).unwrap_err();
        assert!(matches!(err, ChallengeError::NoOrder), "{err}");
        assert!(!record.exists(), "the hook ran for a name outside the order");
        for allowed in ["www.example.com", "www.EXAMPLE.com.", "apps.example.com", "*.apps.example.com"] {
            board.dns01(&scope, "present", allowed, VALUE, HOOK_TIMEOUT).expect(allowed);
        }
        let ran = std::fs::read_to_string(&record).expect("the hook ran");
        assert_eq!(ran.lines().count(), 4, "{ran}");
    }

    /// Regression (left open by stop 30): any component could publish an answer that the
    /// listener gave to any host, withdraw or replace another account's answers, and clear
    /// the whole board by flooding it.
    #[test]
    fn answers_kept_by_an_earlier_run_are_served_until_they_lapse() {
        struct Nowhere;
        impl AnswerStore for Nowhere {
            fn save(&self, _: SavedAnswer) {}
            fn remove(&self, _: &str) {}
        }
        let board = Challenges::default();
        let saved = |token: &str, expires_at| SavedAnswer {
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
            account: "acme".into(),
            names: vec!["www.example.com".into(), "127.0.0.1".into()],
            expires_at,
        };
        board.set_store(Arc::new(Nowhere), vec![saved("live", unix_now() + 600), saved("lapsed", unix_now() - 1)]);
        assert_eq!(board.http01_answer("live", "www.example.com").as_deref(), Some("live.thumb"));
        assert_eq!(board.http01_answer("live", "127.0.0.1:80").as_deref(), Some("live.thumb"));
        assert_eq!(board.http01_answer("live", "other.example.com"), None, "only for the order's names");
        assert_eq!(board.http01_answer("lapsed", "www.example.com"), None);
        board.withdraw_http01(&Scope::new("acme", ["www.example.com"]), "live");
        assert_eq!(board.http01_answer("live", "www.example.com"), None);
    }

    #[test]
    fn http01_answers_go_to_the_orders_names_and_belong_to_their_account() {
        let board = Challenges::default();
        board.set_http01_served(true);
        let scope = Scope::new("acme", ["www.example.com", "192.0.2.7", "2001:db8::1"]);
        board.publish_http01(&scope, "tok", "tok.thumb").expect("published");
        for host in ["www.example.com", "WWW.example.com.:80", "192.0.2.7:5002", "[2001:db8::1]:80", "2001:db8::1"] {
            assert_eq!(board.http01_answer("tok", host).as_deref(), Some("tok.thumb"), "{host}");
        }
        for host in ["bank.example", "example.com", "192.0.2.8", "", "www.example.com.evil"] {
            assert_eq!(board.http01_answer("tok", host), None, "{host}");
        }
        let other = Scope::new("other", ["bank.example"]);
        assert!(matches!(board.publish_http01(&other, "tok", "x"), Err(ChallengeError::TokenTaken)));
        board.withdraw_http01(&other, "tok");
        assert!(board.http01_answer("tok", "www.example.com").is_some(), "another account withdrew it");
        assert!(matches!(board.publish_http01(&Scope::new("acme", []), "t2", "x"), Err(ChallengeError::NoOrder)));
        // One account cannot crowd out the others.
        for i in 1..MAX_ANSWERS_PER_ACCOUNT {
            board.publish_http01(&scope, &format!("t{i}"), "x").expect("within the account's share");
        }
        let err = board.publish_http01(&scope, "one-more", "x").unwrap_err();
        assert!(matches!(err, ChallengeError::TooManyAnswers), "{err}");
        board.publish_http01(&other, "theirs", "y").expect("another account still publishes");
        assert_eq!(board.http01_answer("tok", "www.example.com").as_deref(), Some("tok.thumb"));
        board.withdraw_http01(&scope, "tok");
        assert_eq!(board.http01_answer("tok", "www.example.com"), None);
    }
}
