//! The `certhost:connector/host` interface: logging into tracing and the per-account cache
//! (`connector::cache`: what a call sets is stored when it ends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::bindings::certhost::connector::host::{Host, Level};
use super::bindings::certhost::connector::types;
use super::runtime::State;
use crate::connector::cache;
use crate::connector::challenges::Challenges;

/// The shared types interface has no functions; its trait is empty.
impl types::Host for State {}

impl State {
    /// Whether the host may log one more warning about what the guest did: each counts
    /// against the call's log cap like a line of the guest's own, so a loop of ignored
    /// `cache-set`s cannot flood the log either.
    fn host_warning_allowed(&mut self) -> bool {
        use super::runtime::MAX_LOG_BYTES_PER_CALL;
        if self.logged >= MAX_LOG_BYTES_PER_CALL {
            return false;
        }
        self.logged += 128;
        true
    }
}

/// What a challenge holding a sensitive value gets: an http-01 answer is served to anyone
/// who asks and kept in the inventory as it is, and a dns-01 value is handed to the hook on
/// its command line and published in DNS (secrets review of stop 40). A guard against a
/// connector that publishes a secret by mistake, in any form the redaction knows — not
/// against one bent on it, which can disguise it. A dns-01 domain is not checked: it must be
/// one of the order's names anyway, and a short secret that is a word of one (`contoso`)
/// would refuse every order for it.
const REFUSED_CHALLENGE: &str =
    "the challenge holds the value of a sensitive parameter; it is not published (answers are public)";

impl State {
    /// Whether `text` holds one of the call's sensitive values, in any form the redaction
    /// knows.
    fn holds_sensitive(&self, text: &str) -> bool {
        self.redact(text) != text
    }

    /// The account's cache epoch, read when the call first uses the cache — before a
    /// connector that finds no token fetches one — so what it then sets is refused if the
    /// cache was emptied meanwhile (new credentials).
    fn cache_epoch(&mut self) -> Option<i64> {
        *self.cache_epoch.get_or_insert_with(|| self.cache.epoch())
    }
}

impl Host for State {
    fn log(&mut self, level: Level, message: String) {
        use super::runtime::MAX_LOG_BYTES_PER_CALL;
        if self.logged >= MAX_LOG_BYTES_PER_CALL {
            return;
        }
        // The call's `connector_call` span names the connector and the CA account.
        // One line: a guest's newline would start a line of its own that reads as the host's.
        let message: String = crate::connector::redact::one_line(&self.redact(&message)).chars().take(4096).collect();
        self.logged += message.len().max(1);
        if self.logged >= MAX_LOG_BYTES_PER_CALL {
            tracing::warn!(
                "the connector logged {} KiB in this call; its further log lines in this call are dropped",
                MAX_LOG_BYTES_PER_CALL / 1024
            );
            return;
        }
        match level {
            Level::Debug => tracing::debug!("{message}"),
            Level::Info => tracing::info!("{message}"),
            Level::Warn => tracing::warn!("{message}"),
            Level::Error => tracing::error!("{message}"),
        }
    }

    fn cache_get(&mut self, key: String) -> Option<String> {
        self.cache_epoch();
        self.cache.get(&key)
    }

    fn cache_set(&mut self, key: String, value: String, ttl_seconds: u32) {
        let epoch = self.cache_epoch();
        let Some(why) = self.cache.set(cache::Entry::with_ttl(key, value, u64::from(ttl_seconds)), epoch).refusal()
        else {
            self.cache_set = true;
            return;
        };
        if self.host_warning_allowed() {
            tracing::warn!(connector = %self.label, "cache-set ignored: {why}");
        }
    }
}

/// Implements a later contract's `host` interface (the same functions as 0.1's, under the
/// version's own names) by delegating to 0.1's.
macro_rules! host_as_v0_1 {
    ($version:ident) => {
        impl super::bindings::$version::certhost::connector::host::Host for State {
            fn log(&mut self, level: super::bindings::$version::certhost::connector::host::Level, message: String) {
                use super::bindings::$version::certhost::connector::host::Level as L;
                let level = match level {
                    L::Debug => Level::Debug,
                    L::Info => Level::Info,
                    L::Warn => Level::Warn,
                    L::Error => Level::Error,
                };
                Host::log(self, level, message);
            }

            fn cache_get(&mut self, key: String) -> Option<String> {
                Host::cache_get(self, key)
            }

            fn cache_set(&mut self, key: String, value: String, ttl_seconds: u32) {
                Host::cache_set(self, key, value, ttl_seconds);
            }
        }
    };
}

/// Implements a contract's `challenges` interface (new in 0.2, unchanged since) over the
/// process's challenge board.
macro_rules! challenges {
    ($version:ident) => {
        impl super::bindings::$version::certhost::connector::challenges::Host for State {
            fn publish_http01(&mut self, token: String, key_authorization: String) -> Result<(), String> {
                // An ACME order has at most a few hundred names; more in one call would only
                // crowd other accounts' answers off the process's board.
                self.http01_published += 1;
                if self.http01_published > super::runtime::MAX_HTTP01_PER_CALL {
                    return Err(format!(
                        "at most {} http-01 answers may be published in one call",
                        super::runtime::MAX_HTTP01_PER_CALL
                    ));
                }
                if self.holds_sensitive(&token) || self.holds_sensitive(&key_authorization) {
                    return Err(REFUSED_CHALLENGE.into());
                }
                Challenges::global().publish_http01(&self.challenge_scope, &token, &key_authorization).map_err(|e| e.to_string())?;
                // Logged once the board has checked it: a token is base64url, at most 256 characters.
                tracing::debug!(token = %token, "http-01 answer published");
                Ok(())
            }

            fn withdraw_http01(&mut self, token: String) {
                Challenges::global().withdraw_http01(&self.challenge_scope, &token);
            }

            fn dns01_present(&mut self, domain: String, txt_value: String) -> Result<(), String> {
                if self.holds_sensitive(&txt_value) {
                    return Err(REFUSED_CHALLENGE.into());
                }
                let within = self.deadline.saturating_duration_since(std::time::Instant::now());
                crate::blocking::off_the_runtime(|| Challenges::global().dns01(&self.challenge_scope, "present", &domain, &txt_value, within).map_err(|e| e.to_string()))
            }

            fn dns01_cleanup(&mut self, domain: String, txt_value: String) -> Result<(), String> {
                if self.holds_sensitive(&txt_value) {
                    return Err(REFUSED_CHALLENGE.into());
                }
                let within = self.deadline.saturating_duration_since(std::time::Instant::now());
                crate::blocking::off_the_runtime(|| Challenges::global().dns01(&self.challenge_scope, "cleanup", &domain, &txt_value, within).map_err(|e| e.to_string()))
            }
        }
    };
}

host_as_v0_1!(v0_2);
host_as_v0_1!(v0_3);
challenges!(v0_2);
challenges!(v0_3);

/// Largest private key PEM `crypto.sign` reads.
const MAX_SIGNING_KEY: usize = 64 << 10;
/// Largest message `crypto.sign` signs (a TBSCertificate is a few KiB).
const MAX_SIGNED_MESSAGE: usize = 1 << 20;

/// Parsed signing keys, by the SHA-256 of their PEM text, at most this many.
const SIGNING_KEY_CACHE: usize = 16;

/// The parsed key for a PEM text `crypto.sign` received.
///
/// A connector passes the same CA key on every call; parsing it costs a P-256 scalar
/// multiplication (ring checks the public point), as much as the signature itself. Parsed keys
/// are kept by the digest of their text, in this process's memory only, which holds the key
/// during each call anyway. Only keys that parsed are kept; the cache is emptied when full.
fn signing_key(pem: &str) -> Result<Arc<crate::key::PrivateKey>, String> {
    static KEYS: std::sync::OnceLock<Mutex<HashMap<[u8; 32], Arc<crate::key::PrivateKey>>>> =
        std::sync::OnceLock::new();
    let mut id = [0u8; 32];
    id.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, pem.as_bytes()).as_ref());
    let keys = KEYS.get_or_init(Default::default);
    let lock = || keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(key) = lock().get(&id) {
        return Ok(key.clone());
    }
    let key =
        Arc::new(crate::key::PrivateKey::from_pem(pem).map_err(|e| format!("the private key cannot be used: {e}"))?);
    let mut keys = lock();
    if keys.len() >= SIGNING_KEY_CACHE {
        keys.clear();
    }
    keys.insert(id, key.clone());
    Ok(key)
}

/// Contract 0.3's `crypto` interface: signing in native code (ring) with a key the component
/// passes. Errors name what was wrong, never the key.
impl super::bindings::v0_3::certhost::connector::crypto::Host for State {
    fn sign(
        &mut self,
        private_key_pem: String,
        message: Vec<u8>,
    ) -> Result<super::bindings::v0_3::certhost::connector::crypto::Signature, String> {
        if private_key_pem.len() > MAX_SIGNING_KEY {
            return Err(format!("the private key is larger than {} KiB", MAX_SIGNING_KEY >> 10));
        }
        if message.len() > MAX_SIGNED_MESSAGE {
            return Err(format!("the message is larger than {} MiB", MAX_SIGNED_MESSAGE >> 20));
        }
        let key = signing_key(&private_key_pem)?;
        let signature = key.sign(&message, None).map_err(|e| format!("signing failed: {e}"))?;
        let oid = signature.oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        // The certificate built around this signature is verified before it is stored; this
        // spares that verification when nothing was changed (see `host_signatures`).
        crate::host_signatures::record(&key.subject_public_key_info(), &oid, &message, &signature.bytes);
        Ok(super::bindings::v0_3::certhost::connector::crypto::Signature { value: signature.bytes, algorithm_oid: oid })
    }
}
