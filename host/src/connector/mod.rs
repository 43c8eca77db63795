//! The connector contract (DESIGN.md, "The connector contract") as host-side Rust types.
//!
//! A connector is plugin code for one kind of CA. Two runtimes implement [`Connector`]:
//! `connector::wasm` (WebAssembly components) and `connector::python` (Avi-style scripts).
//! Everything above this module (the issuance pipeline, `plugin check`, the API) talks to
//! connectors only through this trait, so the two runtimes stay interchangeable.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub mod cache;
pub mod challenges;
pub mod check;
pub mod gate;
pub mod python;
pub(crate) mod redact;
mod registry;
pub mod wasm;

pub use registry::Registry;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Shortest value read from a reference that [`Args::redact`] hides: a key, token or
/// certificate is longer, and shorter values (`30`, `true`, a host name) would only mangle
/// error text.
pub const MIN_READ_REDACTED: usize = 16;

/// Arguments handed to a connector: the `args_dict` of the Avi contract.
///
/// Values are strings, as Avi passes them. The set of names whose values are sensitive travels
/// with the args so every layer that logs or reports an error can redact them.
#[derive(Clone, Default)]
pub struct Args {
    values: BTreeMap<String, String>,
    sensitive: Vec<String>,
    /// Parameters whose values were read from a file or variable without being marked
    /// sensitive: redacted from what the host reports ([`Self::redact`]), nothing else.
    read: Vec<String>,
    /// The names of the order the call is made for, as its profile approved them.
    order_names: std::sync::Arc<[String]>,
    /// The connector cache's scope of the call ([`cache::scope_of`]).
    cache_scope: Option<String>,
    /// Sensitive parameters the request itself gave (dynamic ones): no cache scope covers
    /// them, so the cache keeps nothing that holds one ([`cache::AccountCache::for_call`]).
    request_sensitive: Vec<String>,
}

/// Values are wiped when the args are dropped or a value is replaced: sensitive ones (a CA's
/// private key, an API password) are resolved for each call and should not outlive it in
/// freed memory. Best effort: copies handed to a Python worker or a WASM guest are theirs.
impl Drop for Args {
    fn drop(&mut self) {
        self.values.values_mut().for_each(zeroize::Zeroize::zeroize);
    }
}

impl Args {
    /// Empty args.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a non-sensitive parameter.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.replace(name.into(), value.into());
    }

    /// Adds a sensitive parameter: its value will be redacted from logs, output and errors.
    pub fn insert_sensitive(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if !self.sensitive.contains(&name) {
            self.sensitive.push(name.clone());
        }
        self.replace(name, value.into());
    }

    /// Adds a sensitive parameter the request itself gave (a dynamic one): as
    /// [`Self::insert_sensitive`], and never cached for other calls to read (another
    /// request's call, whose redaction does not know this value, would show it; red-team
    /// walkthrough of stop 48).
    pub fn insert_request_sensitive(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if !self.request_sensitive.contains(&name) {
            self.request_sensitive.push(name.clone());
        }
        self.insert_sensitive(name, value);
    }

    /// The values of [`Self::insert_request_sensitive`] parameters.
    pub fn request_sensitive_values(&self) -> impl Iterator<Item = &str> {
        self.request_sensitive.iter().filter_map(|n| self.values.get(n)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Adds a parameter read from a file or variable but not marked sensitive. The reference
    /// can name any file the host reads, so a value of [`MIN_READ_REDACTED`] bytes or more is
    /// kept out of the errors the host reports and stores ([`Self::redact`]): a connector's
    /// error quoting it ("Invalid URL '-----BEGIN PRIVATE KEY-----…'") put another account's
    /// CA key in `last_test.message`, which every role reads (review of stop 31). It stays an
    /// ordinary value otherwise (order ids may contain it; shorter values such as `30` are not
    /// worth a secret's treatment).
    pub fn insert_read(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if !self.read.contains(&name) {
            self.read.push(name.clone());
        }
        self.replace(name, value.into());
    }

    fn replace(&mut self, name: String, value: String) {
        if let Some(mut old) = self.values.insert(name, value) {
            zeroize::Zeroize::zeroize(&mut old);
        }
    }

    /// Binds the call to an order's names (its CN and SANs): the only names a connector may
    /// publish ACME challenges for (`challenges::Scope`). A call without them publishes none.
    pub fn set_order_names(&mut self, names: Vec<String>) {
        self.order_names = names.into();
    }

    /// Gives the call the cache scope of the sensitive values its profile adds to the
    /// account's ([`cache::scope_of`]): what the connector caches under one profile's
    /// credentials is not another profile's.
    pub fn set_cache_scope(&mut self, scope: Option<String>) {
        self.cache_scope = scope;
    }

    /// The call's cache scope; `None` is the account's own.
    pub fn cache_scope(&self) -> Option<&str> {
        self.cache_scope.as_deref()
    }

    /// The names of the order this call is made for; empty outside an order.
    pub fn order_names(&self) -> &[String] {
        &self.order_names
    }

    /// The value of one parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// All parameters, sorted by name. Hand these to the connector, never to a log.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether the named parameter is sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.iter().any(|s| s == name)
    }

    /// The sensitive values of this call, for redaction of captured output.
    pub fn sensitive_values(&self) -> impl Iterator<Item = &str> {
        self.sensitive.iter().filter_map(|n| self.values.get(n)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// [`Self::sensitive_values`], and the values of the parameters the connector declares
    /// sensitive (`declared`, [`Connector::declared_sensitive`]), whatever their definition
    /// says: those given with `{ env }` or `{ file }` reach here as plain args.
    pub fn sensitive_values_for<'a>(&'a self, declared: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(|(k, _)| self.is_sensitive(k) || declared.iter().any(|d| d == *k))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// [`Self::redact`] with the parameters the connector declares sensitive counted too.
    pub fn redact_for(&self, declared: &[String], text: &str) -> String {
        self.redactor_for(declared).redact(text)
    }

    /// The rules of [`Self::redact_for`], built once for many texts (every encoded form of
    /// every value is computed when they are made).
    pub(crate) fn redactor_for(&self, declared: &[String]) -> redact::Redactor {
        redact::Redactor::new(self.sensitive_values_for(declared).chain(self.read_values()))
    }

    /// Replaces every sensitive value of these args inside `text` by `***`, with the rules of
    /// `connector::redact`: its encoded forms (repr, JSON, percent-encoded) too, and the lines
    /// of a multi-line value. Values read from a reference ([`Self::insert_read`]) as well.
    pub fn redact(&self, text: &str) -> String {
        redact::Redactor::new(self.sensitive_values().chain(self.read_values())).redact(text)
    }

    /// Values of [`Self::insert_read`] parameters long enough to be worth redacting.
    pub(crate) fn read_values(&self) -> impl Iterator<Item = &str> {
        self.read.iter().filter_map(|n| self.values.get(n)).map(String::as_str).filter(|v| v.len() >= MIN_READ_REDACTED)
    }
}

impl fmt::Debug for Args {
    /// Sensitive values never reach a Debug string (and so never a log line through `?args`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.values {
            if self.is_sensitive(k) || self.read.contains(k) {
                map.entry(k, &"***");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

/// How many call limits a call may wait for its account's script worker, which runs one call
/// at a time, before it is told the account is busy. The limit of a call counts from when it
/// has the worker, so a call queued behind a slow one is not cut short. Each limit waited adds
/// one to the backstop and to the lease of an order's attempt (`issue::backstop`), which is
/// how long a crashed process's call keeps its order from the operator.
pub const WORKER_WAIT_LIMITS: u32 = 1;

/// Longest text the host keeps from a connector's answer, in bytes. A CA order id longer than
/// this is refused; a rejection reason or an error message is cut here, with a marker. They go
/// into orders, append-only audit events and API answers: a CA needs far less, and a plugin
/// must not fill the audit log (or a client) with megabytes.
pub const MAX_CONNECTOR_TEXT: usize = 4096;

/// `text` cut to [`MAX_CONNECTOR_TEXT`] bytes (at a character boundary), with a marker.
/// Cut only redacted text: a cut through a secret would keep its start.
pub(crate) fn cut_to_size(text: String) -> String {
    cut_at(text, MAX_CONNECTOR_TEXT)
}

/// `text` cut to `max` bytes (at a character boundary), with a marker saying where.
pub(crate) fn cut_at(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    text.truncate(end);
    // Under a KiB the size is said in bytes: " [cut at 0 KiB]" (code review of stop 39).
    let size = if max < 1024 { format!("{max} bytes") } else { format!("{} KiB", max / 1024) };
    text.push_str(&format!(" [cut at {size}]"));
    text
}

/// What a connector call returns, held to the sizes the host keeps ([`MAX_CONNECTOR_TEXT`])
/// and to its rule for secrets: an order id, stored in the open and shown to every role, may
/// not hold a sensitive value. Applied once, where the pipeline calls connectors
/// (`issue::call_with_deadline`), for both runtimes.
pub(crate) trait Bounded: Sized {
    /// The value within the limits, or why it cannot be kept; `connector` labels the error,
    /// `sensitive` are the call's sensitive values.
    fn bounded(self, connector: &str, sensitive: &[&str]) -> Result<Self, ConnectorError>;
}

/// Whether `text` holds one of `sensitive` in a form redaction would replace (the value, its
/// encoded forms, a line of a multi-line one).
fn holds_sensitive(sensitive: &[&str], text: &str) -> bool {
    redact::might_hold_any(sensitive.iter().copied(), text)
        && redact::Redactor::new(sensitive.iter().copied()).redact(text) != text
}

/// A connector's answer held to the sizes and rules of what the host stores (no order id
/// holding a sensitive value), whichever runtime answered: where the pipeline calls connectors
/// (`issue::call_with_deadline`) and in `plugin check`, which passed an order id the host
/// refuses, so an author learnt of it in production (author review of stop 40).
pub(crate) fn held<T: Bounded>(
    connector: &dyn Connector,
    args: &Args,
    answer: Result<T, ConnectorError>,
) -> Result<T, ConnectorError> {
    let sensitive: Vec<&str> = args.sensitive_values_for(connector.declared_sensitive()).collect();
    answer.and_then(|v| v.bounded(&connector.label(), &sensitive)).map_err(ConnectorError::bounded)
}

impl Bounded for Disposition {
    fn bounded(self, connector: &str, sensitive: &[&str]) -> Result<Self, ConnectorError> {
        // An order id is a handle the CA is asked about again: a cut one would be a wrong one.
        let too_long = |id: &Option<&String>| id.is_some_and(|id| id.len() > MAX_CONNECTOR_TEXT);
        let id = match &self {
            Disposition::Issued { ca_order_id, .. } => ca_order_id.as_ref(),
            Disposition::Pending { ca_order_id, .. } => Some(ca_order_id),
            Disposition::Rejected { .. } => None,
        };
        if too_long(&id) {
            return Err(ConnectorError::Internal {
                connector: connector.to_owned(),
                message: format!("returned an order id longer than {MAX_CONNECTOR_TEXT} bytes"),
            });
        }
        // An order id is stored and shown as it is: one holding a secret is not kept (redacted,
        // it would be a wrong handle for the CA). An issued certificate is kept without it —
        // the CA did issue — and a pending order, which needs its id to be polled, is refused.
        if id.is_some_and(|id| holds_sensitive(sensitive, id)) {
            if let Disposition::Issued { certificate, chain, .. } = self {
                tracing::warn!(
                    connector,
                    "the connector's order id holds the value of a sensitive parameter: the certificate is kept without it"
                );
                return Ok(Disposition::Issued { certificate, chain, ca_order_id: None });
            }
            return Err(ConnectorError::Internal {
                connector: connector.to_owned(),
                message:
                    "returned an order id that holds the value of a sensitive parameter, which the host does not store"
                        .into(),
            });
        }
        Ok(match self {
            Disposition::Rejected { reason } => Disposition::Rejected { reason: cut_to_size(reason) },
            other => other,
        })
    }
}

impl Bounded for () {
    fn bounded(self, _: &str, _: &[&str]) -> Result<Self, ConnectorError> {
        Ok(self)
    }
}

/// A page is shown, never stored: its items are left as they are here, and redacted where it
/// is shown (`Pipeline::list_account_certificates`).
impl Bounded for CertificatePage {
    fn bounded(self, _: &str, _: &[&str]) -> Result<Self, ConnectorError> {
        Ok(self)
    }
}

/// What a connector says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Connector name, e.g. `local-ca`.
    pub name: String,
    /// Connector version, free-form (semver recommended).
    pub version: String,
    /// The parameters the connector reads from its args.
    pub parameters: Vec<ParameterSpec>,
    /// Optional operations the connector implements, beyond `certificate_request`.
    pub operations: Vec<Operation>,
}

impl Description {
    /// The names of the parameters it calls sensitive.
    pub fn declared_sensitive(&self) -> Vec<String> {
        self.parameters.iter().filter(|p| p.sensitive).map(|p| p.name.clone()).collect()
    }

    /// Why a component's own description cannot be used, or `None`. Its name labels every
    /// error, log line and metric of the account: a 10 MB or multi-line name went into each
    /// order's error and audit event, forged log lines and swelled `/metrics`.
    pub fn unusable(&self) -> Option<String> {
        const MAX_TEXT: usize = 1024;
        if !self.name.is_empty() && !crate::param::is_plain_name(&self.name) {
            return Some(format!(
                "it names itself {:?}, which is not a connector name (1-64 letters, digits, '.', '_' and '-')",
                self.name.chars().take(64).collect::<String>()
            ));
        }
        if self.version.len() > 64 || self.version.chars().any(char::is_control) {
            return Some("its version is not a short line of text (at most 64 characters)".into());
        }
        if self.parameters.len() > 256 {
            return Some(format!("it declares {} parameters; at most 256 are taken", self.parameters.len()));
        }
        for p in &self.parameters {
            if !crate::param::is_plain_name(&p.name) {
                return Some(format!(
                    "it declares a parameter named {:?}, which is not a parameter name",
                    p.name.chars().take(64).collect::<String>()
                ));
            }
            if p.description.len() > MAX_TEXT || p.default.as_ref().is_some_and(|d| d.len() > MAX_TEXT) {
                return Some(format!(
                    "the description or default of its parameter {} is over {MAX_TEXT} bytes",
                    p.name
                ));
            }
        }
        None
    }
}

/// One parameter a connector accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterSpec {
    /// Name as it appears in args.
    pub name: String,
    /// Human description for operators.
    pub description: String,
    /// The connector refuses to work without it.
    pub required: bool,
    /// Must never be displayed, logged or stored in plaintext.
    pub sensitive: bool,
    /// Used when the parameter is absent.
    pub default: Option<String>,
}

/// The optional operations of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Poll a pending order.
    Poll,
    /// Renew a certificate (the host falls back to `certificate_request` without it).
    Renew,
    /// Revoke a certificate.
    Revoke,
    /// Check credentials and reachability.
    TestConnection,
    /// Page through the CA's certificates.
    ListCertificates,
    /// Approve, decline, suspend or resume an order at the CA.
    UpdateOrder,
}

impl Operation {
    /// Every optional operation, in contract order.
    pub const ALL: [Operation; 6] = [
        Operation::Poll,
        Operation::Renew,
        Operation::Revoke,
        Operation::TestConnection,
        Operation::ListCertificates,
        Operation::UpdateOrder,
    ];

    /// The contract's name for it (snake_case, as in Python scripts).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Poll => "poll",
            Operation::Renew => "renew",
            Operation::Revoke => "revoke",
            Operation::TestConnection => "test_connection",
            Operation::ListCertificates => "list_certificates",
            Operation::UpdateOrder => "update_order",
        }
    }
}

/// A certificate request as handed to a connector.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// PEM-encoded PKCS#10 CSR.
    pub csr_pem: String,
    /// The requested common name (Avi passes it separately from the CSR).
    pub common_name: String,
    /// Unique per order: a connector may use it to make retries idempotent.
    pub request_id: String,
}

/// What the CA did with a submitted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Disposition {
    /// Issued: leaf PEM plus chain (leaf-first order, the leaf not repeated).
    Issued {
        /// The leaf certificate, PEM.
        certificate: String,
        /// Intermediates (and optionally the root), PEM each, leaf-first order.
        chain: Vec<String>,
        /// The CA's handle for the order, when it has one.
        ca_order_id: Option<String>,
    },
    /// Not decided yet: poll again after `retry_after_s`.
    Pending {
        /// The CA's handle for polling.
        ca_order_id: String,
        /// Seconds the CA asks us to wait.
        retry_after_s: u32,
    },
    /// Permanent refusal by the CA.
    Rejected {
        /// The CA's reason.
        reason: String,
    },
}

/// A page of `list_certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatePage {
    /// Items on this page.
    pub items: Vec<ListedCertificate>,
    /// Cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Why each item the connector listed but the host could not read was left out (a script's
    /// item that is not a dict, has fields of the wrong type, or has neither a certificate nor
    /// an order id), so an import counts it as failed instead of losing it without a word.
    #[serde(default)]
    pub unusable: Vec<String>,
}

/// One certificate known to the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedCertificate {
    /// The CA's order handle, when it gave one: many CAs number their orders, and some list
    /// certificates without any (the certificate alone is enough to import).
    pub ca_order_id: Option<String>,
    /// The CA's status word for it.
    pub status: String,
    /// The certificate PEM, when the CA returns it.
    pub certificate: Option<String>,
}

/// RFC 5280 CRLReason values accepted by `revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    #[serde(rename = "cACompromise")]
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    #[serde(rename = "aACompromise")]
    AaCompromise,
}

impl RevocationReason {
    /// The RFC 5280 reason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }
}

/// Input of `revoke`.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// The certificate to revoke, PEM.
    pub certificate_pem: String,
    /// Its serial, lowercase hex.
    pub serial: String,
    /// RFC 5280 reason.
    pub reason: RevocationReason,
    /// Free-text comment for the CA.
    pub comment: String,
}

/// Input of `renew`.
#[derive(Debug, Clone)]
pub struct RenewRequest {
    /// The certificate being renewed, PEM.
    pub prior_certificate_pem: String,
    /// The CA's order id of the prior certificate, when known.
    pub prior_ca_order_id: Option<String>,
    /// The new CSR and names.
    pub request: CertificateRequest,
}

/// Actions of `update_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    /// Approve a held order.
    Approve,
    /// Decline a held order.
    Decline,
    /// Suspend an order or certificate.
    Suspend,
    /// Resume a suspended one.
    Resume,
}

/// Why a connector call failed. Every message is already redacted of sensitive values.
///
/// `connector` is the label the runtime gives the plugin — `connector local-ca` for a
/// component, `script cfssl` for a Python script — so messages read
/// `script cfssl: timed out after 30s`.
///
/// The first five variants are the contract's error kinds (a connector reports them); the
/// rest are raised by the host around the call (limits, sandbox, garbage returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The CA could not be reached: retry with backoff, fail over to the next CA account.
    #[error("{connector}: CA unreachable: {message}")]
    Unreachable {
        /// Connector name.
        connector: String,
        /// What the connector said.
        message: String,
    },
    /// The CA refused the credentials.
    #[error("{connector}: unauthorized: {message}")]
    Unauthorized {
        /// Connector name.
        connector: String,
        /// What the connector said.
        message: String,
    },
    /// The CA account is configured wrongly (e.g. a missing parameter).
    #[error("{connector}: misconfigured: {message}")]
    Misconfigured {
        /// Connector name.
        connector: String,
        /// What the connector said.
        message: String,
    },
    /// The connector does not implement the operation.
    #[error("{connector}: {message}")]
    Unsupported {
        /// Connector name.
        connector: String,
        /// Which operation, in a sentence: the host's ([`unsupported_message`]) or, for a
        /// component, the guest's own (the SDK's says "`op` is not implemented by this connector").
        message: String,
    },
    /// The connector failed in some other way (its own bug, a crash, a trap, garbage output).
    #[error("{connector}: {message}")]
    Internal {
        /// Connector name.
        connector: String,
        /// What went wrong.
        message: String,
    },
    /// The connector ended abruptly during the call (a script's worker killed by a signal,
    /// `os._exit`, the OOM killer): like a call past its deadline, it may have reached the CA
    /// first, so what it asked for is not known to have failed.
    #[error("{connector}: {message}")]
    Interrupted {
        /// Connector name.
        connector: String,
        /// How it ended.
        message: String,
    },
    /// The call ran past its deadline and was stopped.
    #[error(
        "{connector}: timed out after {}s{}",
        .after.as_secs(),
        if *.nothing_sent { " without sending the CA any request it could act on (none, or only GET, HEAD or OPTIONS)" } else { "" }
    )]
    TimedOut {
        /// Connector name.
        connector: String,
        /// The deadline that passed.
        after: Duration,
        /// Known to have sent nothing the CA could act on: a component's call (the host sends
        /// its every request) that made no request other than GET, HEAD or OPTIONS. Such a
        /// timeout fails its order, where another is held for an operator, since the CA may
        /// have the request (walkthrough of stop 46: a component's CPU loop was held).
        nothing_sent: bool,
    },
    /// The plugin tried to use more memory than its limit allows.
    #[error("{connector}: exceeded its {} MiB memory limit (the account's memory_mib)", .limit_bytes / (1024 * 1024))]
    MemoryExceeded {
        /// Connector name.
        connector: String,
        /// The limit in bytes.
        limit_bytes: u64,
    },
}

impl ConnectorError {
    /// This error with its message cut to [`MAX_CONNECTOR_TEXT`] bytes.
    pub(crate) fn bounded(self) -> Self {
        use ConnectorError::*;
        match self {
            Unreachable { connector, message } => Unreachable { connector, message: cut_to_size(message) },
            Unauthorized { connector, message } => Unauthorized { connector, message: cut_to_size(message) },
            Misconfigured { connector, message } => Misconfigured { connector, message: cut_to_size(message) },
            Unsupported { connector, message } => Unsupported { connector, message: cut_to_size(message) },
            Internal { connector, message } => Internal { connector, message: cut_to_size(message) },
            Interrupted { connector, message } => Interrupted { connector, message: cut_to_size(message) },
            other @ (TimedOut { .. } | MemoryExceeded { .. }) => other,
        }
    }

    /// True when the next CA account of a profile should be tried (DESIGN.md: `unreachable`).
    pub fn is_failover(&self) -> bool {
        matches!(self, ConnectorError::Unreachable { .. })
    }
}

/// Per-call limits; defaults per CA account (issue 3: 30 s, 64 MiB, 4 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Memory cap for the plugin.
    pub memory_bytes: u64,
    /// Cap on one outgoing HTTP response body.
    pub http_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), memory_bytes: 64 * 1024 * 1024, http_body_bytes: 4 * 1024 * 1024 }
    }
}

/// The operations of DESIGN.md's connector contract, implemented by each runtime.
///
/// Only `certificate_request` is mandatory; the default bodies of the optional operations
/// answer `Unsupported`, which is what a runtime reports when the plugin does not declare one.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector's name (from `describe`, or the file stem before describe ran).
    fn name(&self) -> &str;

    /// How errors and logs name this plugin: `connector NAME` or `script NAME`.
    fn label(&self) -> String {
        format!("connector {}", self.name())
    }

    /// Name, version, parameter schema and supported operations.
    async fn describe(&self) -> Result<Description, ConnectorError>;

    /// The names of the parameters this connector's description calls sensitive, read once
    /// at load: their values are redacted whatever the account's definition says.
    fn declared_sensitive(&self) -> &[String] {
        &[]
    }

    /// Submit a CSR.
    async fn certificate_request(
        &self,
        request: &CertificateRequest,
        args: &Args,
    ) -> Result<Disposition, ConnectorError>;

    /// Poll a pending order.
    async fn poll(&self, ca_order_id: &str, args: &Args) -> Result<Disposition, ConnectorError> {
        let _ = (ca_order_id, args);
        Err(self.unsupported(Operation::Poll))
    }

    /// Renew; the host falls back to `certificate_request` on `Unsupported`.
    async fn renew(&self, request: &RenewRequest, args: &Args) -> Result<Disposition, ConnectorError> {
        let _ = (request, args);
        Err(self.unsupported(Operation::Renew))
    }

    /// Revoke a certificate.
    async fn revoke(&self, request: &RevokeRequest, args: &Args) -> Result<(), ConnectorError> {
        let _ = (request, args);
        Err(self.unsupported(Operation::Revoke))
    }

    /// Check that the CA is reachable and the credentials work.
    async fn test_connection(&self, args: &Args) -> Result<(), ConnectorError> {
        let _ = args;
        Err(self.unsupported(Operation::TestConnection))
    }

    /// One page of the CA's certificates.
    async fn list_certificates(&self, args: &Args, cursor: Option<&str>) -> Result<CertificatePage, ConnectorError> {
        let _ = (args, cursor);
        Err(self.unsupported(Operation::ListCertificates))
    }

    /// Approve, decline, suspend or resume an order.
    async fn update_order(
        &self,
        ca_order_id: &str,
        action: OrderAction,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let _ = (ca_order_id, action, args);
        Err(self.unsupported(Operation::UpdateOrder))
    }

    /// The `Unsupported` error for `operation` on this connector.
    fn unsupported(&self, operation: Operation) -> ConnectorError {
        ConnectorError::Unsupported {
            connector: self.name().to_owned(),
            message: unsupported_message(operation.as_str()),
        }
    }
}

/// The sentence of an [`ConnectorError::Unsupported`] the host makes for `operation`.
pub fn unsupported_message(operation: &str) -> String {
    format!("{operation} is not implemented by this connector")
}

/// Where the issuance pipeline gets a ready connector for a CA account.
///
/// The production source loads `.wasm` and `.py` connectors and caches them per account;
/// keeping it behind a trait lets the pipeline stay independent of the two runtimes.
#[async_trait]
pub trait ConnectorSource: Send + Sync {
    /// The connector for account `name` with definition `def` (loaded once, then reused).
    /// Loading checks the plugin: a script that does not import is refused here.
    async fn connector(
        &self,
        name: &str,
        def: &crate::account::AccountDef,
    ) -> Result<std::sync::Arc<dyn Connector>, ConnectorError>;

    /// How much longer account `name`, defined as `def`, is tried after its profile's other
    /// accounts because its CA was found unreachable (see [`gate`]); `None` when it is tried
    /// in its place — as it is at once when its definition changed since.
    fn tried_last(&self, _name: &str, _def: &crate::account::AccountDef) -> Option<Duration> {
        None
    }

    /// When (Unix seconds) a call of account `name`, defined as `def`, other than a connection
    /// test last succeeded in this process; `None` when none did since it started or since
    /// the definition changed. `/readyz` weighs it against the account's last test.
    fn succeeded_at(&self, _name: &str, _def: &crate::account::AccountDef) -> Option<i64> {
        None
    }

    /// Why the connector of account `name`, defined as `def`, did not load when last tried,
    /// while neither the definition nor the connector file changed since; `None` when it
    /// loaded or was not tried. `/readyz` counts such an account failing: a connector file
    /// moved by an upgrade failed every issuance while `/readyz` said all was well (upgrade
    /// walkthrough of stop 49).
    fn load_failure(&self, _name: &str, _def: &crate::account::AccountDef) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review of stop 30): a component's declared name labelled every error, log
    /// line and metric unchecked, whatever its size or line breaks.
    #[test]
    fn a_description_whose_name_or_parameters_cannot_label_anything_is_unusable() {
        let spec = |name: &str| ParameterSpec {
            name: name.into(),
            description: String::new(),
            required: false,
            sensitive: false,
            default: None,
        };
        let good = Description {
            name: "local-ca".into(),
            version: "1.2.0".into(),
            parameters: vec![spec("ca_private_key"), spec("validity.days")],
            operations: vec![],
        };
        assert_eq!(good.unusable(), None);
        assert_eq!(Description { name: String::new(), ..good.clone() }.unusable(), None, "unnamed: the file's");
        let forged = Description { name: "local-ca\nWARN forged line".into(), ..good.clone() };
        assert!(forged.unusable().expect("refused").contains("which is not a connector name"));
        let huge = Description { name: "x".repeat(10_000_000), ..good.clone() };
        let why = huge.unusable().expect("refused");
        assert!(why.len() < 200, "the refusal quotes at most 64 characters: {}", why.len());
        let version = Description { version: "1\r\n2".into(), ..good.clone() };
        assert!(version.unusable().is_some());
        let params = Description { parameters: vec![spec("api key")], ..good.clone() };
        assert!(params.unusable().expect("refused").contains("parameter named \"api key\""));
        let many = Description { parameters: (0..257).map(|i| spec(&format!("p{i}"))).collect(), ..good };
        assert!(many.unusable().expect("refused").contains("257 parameters"));
    }

    #[test]
    fn debug_and_redact_hide_sensitive_values() {
        let mut args = Args::new();
        args.insert("url", "https://ca.example");
        args.insert_sensitive("token", "s3cr3t-value");
        assert!(!format!("{args:?}").contains("s3cr3t-value"));
        assert!(format!("{args:?}").contains("https://ca.example"));
        assert_eq!(args.redact("auth s3cr3t-value failed"), "auth *** failed");
    }

    /// Review of stop 31: a value read from a reference is kept out of reported errors when
    /// long enough to be a secret, and is no secret anywhere else (an order id may hold it).
    #[test]
    fn a_long_value_read_from_a_reference_is_redacted_from_reports_only() {
        let mut args = Args::new();
        args.insert_read("url", "-----BEGIN PRIVATE KEY-----MIGHAgEAMBMG");
        args.insert_read("days", "30");
        assert_eq!(
            args.redact("Invalid URL '-----BEGIN PRIVATE KEY-----MIGHAgEAMBMG' for 30 days"),
            "Invalid URL '***' for 30 days"
        );
        assert_eq!(args.sensitive_values().count(), 0);
        assert!(!format!("{args:?}").contains("MIGHAgEAMBMG"));
    }
}
