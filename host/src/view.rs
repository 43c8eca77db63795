//! The public JSON shapes of certificates, accounts and profiles, shared by the CLI's
//! `--json` output and the HTTP API. Field names are a contract: add, never rename.
//! Sensitive parameters appear only as `sensitive: true, set: bool`.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::account::Account;
use crate::inventory::{CertificateRecord, Inventory, InventoryError, SecretOwner};
use crate::profile::ProfileDef;

/// RFC 3339 UTC timestamp for Unix seconds.
pub fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t).ok().and_then(|d| d.format(&Rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

/// Whether `c` is one of the bidirectional formatting characters that reorder what a terminal
/// or a log viewer shows (the "Trojan Source" set: ALM, LRM, RLM, LRE…RLO, LRI…PDI): a name
/// holding U+202E shows `www.example.com` for one that is not. The CLI's human output and the
/// log's one-line form both escape these, beside control characters.
pub fn reorders_text(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Unix seconds written as RFC 3339 (`#[serde(serialize_with = "crate::view::time_text")]`):
/// every time certhost answers with, in the API and in `--json`, is one form. Orders, tokens,
/// the audit log and the renewal schedule answered Unix seconds where certificates answered
/// RFC 3339, and `next_poll_at` was each on two endpoints (API review of stop 38).
pub fn time_text<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// [`time_text`] for a time that may be absent (`null`).
pub fn time_text_opt<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// A time a client sends: Unix seconds, or RFC 3339 text as certhost answers with.
pub fn time_input<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a time: Unix seconds, or RFC 3339 like 2027-01-31T00:00:00Z")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(|_| E::custom("the time is too far in the future"))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            OffsetDateTime::parse(v, &Rfc3339)
                .map(|t| Some(t.unix_timestamp()))
                .map_err(|_| E::custom("not a time: give Unix seconds, or RFC 3339 like 2027-01-31T00:00:00Z"))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Visitor)
}

/// Client input quoted back in an error, cut to 64 characters: a 900 KB "profile name" came
/// back whole in the 404 that refused it (review of stop 33).
pub fn echoed(input: &str) -> String {
    const SHOWN: usize = 64;
    match input.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &input[..at]),
        None => input.to_owned(),
    }
}

/// Whole days from `now` until `t` (negative when past).
pub fn days_until(t: i64, now: i64) -> i64 {
    (t - now).div_euclid(86_400)
}

/// A certificate as the API and `--json` show it: the stored facts plus what is derived at
/// read time (days left, deployments), one shape for both so scripts can use either.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertView<'a> {
    /// Inventory id.
    pub id: i64,
    /// Status.
    #[schema(value_type = crate::inventory::CertStatus)]
    pub status: &'static str,
    /// CN.
    pub common_name: Option<&'a str>,
    /// Subject DN.
    pub subject: &'a str,
    /// Issuer DN.
    pub issuer: &'a str,
    /// Serial, hex.
    pub serial: &'a str,
    /// SHA-1 thumbprint.
    pub sha1: &'a str,
    /// SHA-256 thumbprint.
    pub sha256: &'a str,
    /// SANs as `TYPE:value`.
    pub sans: Vec<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub not_before: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub not_after: String,
    /// Days until notAfter.
    pub days_left: i64,
    /// Key family.
    pub key_type: String,
    /// Key size.
    pub key_bits: u32,
    /// The inventory holds its private key (encrypted).
    pub has_private_key: bool,
    /// `import`, `issue`, ...
    pub source: &'a str,
    /// Profile.
    pub profile: Option<&'a str>,
    /// CA account.
    pub account: Option<&'a str>,
    /// Predecessor id.
    pub predecessor_id: Option<i64>,
    /// What replaced it (detail views of a renewed or reissued certificate only): of the
    /// certificates that renewed it, and theirs in turn, the newest active one, else the newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successor_id: Option<i64>,
    /// Leaf PEM (detail views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem: Option<&'a str>,
    /// Chain PEM (detail views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<&'a str>,
    /// Where it was deployed and when, newest first (detail views only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentView>,
    /// Targets whose last deployment failed, which `serve` tries again (detail views only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deploy_retries: Vec<DeployRetryView>,
    /// Why and when it was revoked (detail views of a revoked certificate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationView>,
    /// When it renews automatically, and how its renewal has gone (detail views of a
    /// certificate with a renewal scheduled only): "why didn't it renew?" had no answer
    /// outside `certhost renewals` (operator review of stop 41).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal: Option<RenewalView>,
}

/// A certificate's automatic renewal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RenewalView {
    /// When it is due (RFC 3339); past while a renewal is retried or under way.
    #[schema(format = DateTime)]
    pub renews_at: String,
    /// Failed attempts in a row.
    pub attempts: i64,
    /// The last attempt's error (redacted), while attempts fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// An open renewal order (pending at the CA, awaiting approval, held for an operator),
    /// which decides before another is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_order_id: Option<i64>,
}

/// The revocation of a certificate, as its audit event recorded it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevocationView {
    /// The RFC 5280 reason (`keyCompromise`, `superseded`, ...).
    pub reason: String,
    /// The comment given with it; empty when none.
    pub comment: String,
    /// Who revoked it.
    pub by: String,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// Whether its CA revoked it; false when it was only marked revoked in the inventory
    /// (`revoke --local-only`), and the CA still vouches for it.
    pub at_ca: bool,
}

/// One deployment of a certificate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeploymentView {
    /// The target, e.g. `files:/etc/nginx/tls/web.pem`.
    pub target: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// What happened.
    pub message: String,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
}

/// A target whose last deployment failed: `serve` deploys to it again at `next_at`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeployRetryView {
    /// The target, as in `deployments`.
    pub target: String,
    /// Failed attempts in a row.
    pub failures: i64,
    /// The next attempt (RFC 3339), while the certificate stays active.
    #[schema(format = DateTime)]
    pub next_at: String,
}

impl CertView<'_> {
    /// Adds what the detail views show beyond the row: the certificate's deployments and, when
    /// it is revoked, why.
    pub fn with_history(mut self, inv: &Inventory) -> Result<Self, InventoryError> {
        self.deployments = inv
            .deployments(self.id)?
            .into_iter()
            .map(|(target, outcome, message, at)| DeploymentView { target, outcome, message, at: rfc3339(at) })
            .collect();
        self.deploy_retries = inv
            .deploy_retries(self.id)?
            .into_iter()
            .map(|(target, failures, next_at)| DeployRetryView { target, failures, next_at: rfc3339(next_at) })
            .collect();
        // A superseded certificate named its predecessor, not what replaced it (operator review
        // of stop 36); looked up through `certificates_predecessor`, only for a detail view.
        if self.status != "active" {
            self.successor_id = inv.successor(self.id)?;
        }
        self.renewal = inv.renewal_state(self.id)?.map(|r| RenewalView {
            renews_at: rfc3339(r.renews_at),
            attempts: r.attempts,
            last_error: r.last_error,
            open_order_id: r.open_order_id,
        });
        if self.status == "revoked" {
            self.revocation = inv.revocation(self.id)?.map(|r| RevocationView {
                reason: r.reason,
                comment: r.comment,
                by: r.by,
                at: rfc3339(r.at),
                at_ca: r.at_ca,
            });
        }
        Ok(self)
    }
}

impl<'a> CertView<'a> {
    /// The view of `r`; `with_pem` adds the PEM texts.
    pub fn new(r: &'a CertificateRecord, now: i64, with_pem: bool) -> Self {
        Self {
            id: r.id,
            status: r.status.as_str(),
            common_name: r.info.common_name.as_deref(),
            subject: &r.info.subject,
            issuer: &r.info.issuer,
            serial: &r.info.serial,
            sha1: &r.info.sha1,
            sha256: &r.info.sha256,
            sans: r.info.sans.iter().map(ToString::to_string).collect(),
            not_before: rfc3339(r.info.not_before),
            not_after: rfc3339(r.info.not_after),
            days_left: days_until(r.info.not_after, now),
            key_type: r.info.key.family().to_owned(),
            key_bits: r.info.key.bits(),
            has_private_key: r.key_id.is_some(),
            source: &r.source,
            profile: r.profile.as_deref(),
            account: r.account.as_deref(),
            predecessor_id: r.predecessor_id,
            successor_id: None,
            pem: with_pem.then_some(r.pem.as_str()),
            chain_pem: with_pem.then_some(r.chain_pem.as_str()),
            deployments: Vec::new(),
            renewal: None,
            deploy_retries: Vec::new(),
            revocation: None,
        }
    }
}

/// An account as interfaces show it: sensitive parameters only as `sensitive: true, set`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Name.
    pub name: String,
    /// `active` or `inactive`.
    #[schema(value_type = crate::account::AccountStatus)]
    pub status: &'static str,
    /// Connector file.
    #[schema(value_type = String)]
    pub connector: std::path::PathBuf,
    /// For operators.
    pub description: String,
    /// Parameters by name (values only for non-sensitive ones).
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Outbound hosts a component may reach.
    pub allowed_hosts: Vec<String>,
    /// Extra trusted CA PEM files.
    #[schema(value_type = Vec<String>)]
    pub extra_ca_pems: Vec<std::path::PathBuf>,
    /// Call deadline.
    pub timeout_seconds: u64,
    /// Memory cap.
    pub memory_mib: u64,
    /// `file`, `cli` or `api`.
    pub origin: String,
    /// Last `test_connection` result.
    #[schema(value_type = Option<Object>)]
    pub last_test: Option<serde_json::Value>,
    /// Seconds this account is still tried after its profiles' other active accounts,
    /// because `serve` found its CA unreachable (absent: tried in its place). Only `serve`
    /// knows it, so only the API shows it: an operator asking why a backup CA issues sees
    /// that the first one is sidelined, and for how much longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tried_last_seconds: Option<u64>,
    /// On a creation or update only: what the change did that its author should know (orders
    /// pending at the CA whose connector cache it emptied, as the CLI prints it; `{ env }` and
    /// `{ file }` values serve cannot read now).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The view of an account, sensitive values replaced by `set` flags.
pub fn account(inv: &Inventory, a: &Account) -> Result<AccountView, InventoryError> {
    let mut params = serde_json::Map::new();
    for (name, def) in &a.def.params {
        let stored = def.sensitive && inv.has_secret(SecretOwner::Account, &a.name, name)?;
        params.insert(name.clone(), serde_json::to_value(def.view(stored)).unwrap_or_default());
    }
    Ok(AccountView {
        name: a.name.clone(),
        status: a.def.status.as_str(),
        connector: a.def.connector.clone(),
        description: a.def.description.clone(),
        params,
        allowed_hosts: a.def.allowed_hosts.clone(),
        extra_ca_pems: a.def.extra_ca_pems.clone(),
        timeout_seconds: a.def.limits().timeout.as_secs(),
        memory_mib: a.def.limits().memory_bytes / (1024 * 1024),
        origin: a.origin.clone(),
        last_test: a.last_test.as_ref().and_then(|t| serde_json::to_value(t).ok()),
        tried_last_seconds: None,
        warnings: Vec::new(),
    })
}

/// A profile, sensitive values replaced by `set` flags.
pub fn profile(
    inv: &Inventory,
    name: &str,
    def: &ProfileDef,
    origin: &str,
) -> Result<serde_json::Value, InventoryError> {
    let mut value = serde_json::to_value(def).unwrap_or_default();
    let mut params = serde_json::Map::new();
    for (pname, p) in &def.params {
        let stored = p.sensitive && inv.has_secret(SecretOwner::Profile, name, pname)?;
        params.insert(pname.clone(), serde_json::to_value(p.view(stored)).unwrap_or_default());
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert("params".into(), serde_json::Value::Object(params));
        obj.insert("name".into(), name.into());
        obj.insert("origin".into(), origin.into());
    }
    Ok(value)
}
