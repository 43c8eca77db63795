//! Profiles: named issuance templates (Avi's "certificate management profile").
//!
//! A profile names its CA accounts in failover order, its parameters, the key and subject
//! templates, the policy requests must satisfy, and the renewal policy. `check_request`
//! applies the policy and names the rule a request breaks.

use serde::{Deserialize, Serialize};

use crate::account::{check_name, params_from_specs};
use crate::csr::{MAX_CN, San, Subject};
use crate::key::{HashAlg, KeyAlgorithm, KeyType};
use crate::param::{ParamError, ParamMap};

/// A profile definition (`profiles/NAME.toml`, or created with the CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDef {
    /// For requesters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// CA accounts in failover order: on `unreachable` the next active one is tried.
    pub accounts: Vec<String>,
    /// Parameters: static (value here), sensitive, dynamic (value per request).
    #[serde(default, deserialize_with = "params_from_specs")]
    pub params: ParamMap,
    /// Key template.
    #[serde(default)]
    pub key: KeyTemplate,
    /// Subject defaults and which fields requests may override.
    #[serde(default)]
    pub subject: SubjectTemplate,
    /// SAN policy.
    #[serde(default)]
    pub sans: SanPolicy,
    /// CN policy.
    #[serde(default)]
    pub cn: CnPolicy,
    /// Validity to request from the CA, days (connectors may ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
    /// Renewal policy.
    #[serde(default)]
    pub renewal: RenewalPolicy,
    /// Orders wait in `awaiting_approval` until another person approves them.
    #[serde(default)]
    pub approval_required: bool,
    /// Where certificates of this profile are deployed after issue, renew and reissue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploy: Vec<crate::deploy::DeployTarget>,
    /// Operators may download the private keys of this profile's certificates, and requesters
    /// those of the certificates they requested (admins always may); every download is
    /// audited.
    #[serde(default)]
    pub key_download: bool,
}

/// Key type and signature hash for keys the host generates, and the key types it takes in
/// keys it did not choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTemplate {
    /// Key type.
    #[serde(rename = "type", default = "default_key_type")]
    pub key_type: KeyType,
    /// Signature hash (default per key type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashAlg>,
    /// Other key types an uploaded CSR's key, or a key kept at renewal, may have. The profile's
    /// key policy holds for every certificate it issues, not only for keys the host makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<KeyType>,
}

impl KeyTemplate {
    /// Whether a key of `algorithm` may be certified under this profile: `type`, or one of
    /// `accept`.
    pub fn accepts(&self, algorithm: KeyAlgorithm) -> bool {
        KeyType::ALL
            .into_iter()
            .find(|t| t.algorithm() == algorithm)
            .is_some_and(|t| t == self.key_type || self.accept.contains(&t))
    }

    /// The key types this profile certifies, for a refusal.
    fn accepted_list(&self) -> String {
        std::iter::once(self.key_type)
            .chain(self.accept.iter().copied())
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Refuses a key of `algorithm` this profile does not certify; `whose` names the key
    /// ("the CSR's", "the kept").
    pub fn check_accepts(&self, profile: &str, whose: &str, algorithm: KeyAlgorithm) -> Result<(), PolicyError> {
        if self.accepts(algorithm) {
            return Ok(());
        }
        Err(PolicyError::Request {
            profile: profile.to_owned(),
            rule: format!(
                "{whose} key is {algorithm}; the profile certifies {} keys (list others under [key] accept)",
                self.accepted_list()
            ),
        })
    }
}

fn default_key_type() -> KeyType {
    KeyType::EcP256
}

impl Default for KeyTemplate {
    fn default() -> Self {
        Self { key_type: KeyType::EcP256, hash: None, accept: Vec::new() }
    }
}

/// Subject fields a request may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectField {
    /// O
    O,
    /// OU
    Ou,
    /// L
    L,
    /// ST
    St,
    /// C
    C,
    /// emailAddress
    Email,
}

/// Every O, OU, L, ST and C value of a returned certificate's subject
/// ([`crate::x509::issued_subject_values`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedSubject {
    /// O values.
    pub o: Vec<String>,
    /// OU values.
    pub ou: Vec<String>,
    /// L values.
    pub l: Vec<String>,
    /// ST values.
    pub st: Vec<String>,
    /// C values.
    pub c: Vec<String>,
}

/// The subject fields a profile fixes (O, OU, L, ST, C) and which of them a request may
/// override: what a CSR may not change about who a certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectTemplate {
    /// O.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub o: Vec<String>,
    /// OU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ou: Vec<String>,
    /// L.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
    /// ST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub st: Option<String>,
    /// C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<String>,
    /// Fields a request may override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridable: Vec<SubjectField>,
}

/// The kinds of subjectAltName a profile may allow: a name kind the profile does not list is
/// refused in a request and in what the CA returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SanType {
    /// dNSName
    Dns,
    /// iPAddress
    Ip,
    /// rfc822Name
    Email,
    /// URI
    Uri,
}

/// Which SANs a request may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanPolicy {
    /// Allowed SAN types (default DNS and IP).
    #[serde(default = "default_san_types")]
    pub allowed_types: Vec<SanType>,
    /// DNS names must end with one of these (e.g. `.example.com`); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_suffixes: Vec<String>,
    /// DNS names must match this (anchored) regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_regex: Option<String>,
    /// At most this many SANs.
    #[serde(default = "default_max_sans")]
    pub max: usize,
    /// Add the CN as a DNS SAN when it is a DNS name and not listed (what browsers need).
    #[serde(default = "yes")]
    pub include_cn: bool,
}

fn default_san_types() -> Vec<SanType> {
    vec![SanType::Dns, SanType::Ip]
}
fn default_max_sans() -> usize {
    100
}
fn yes() -> bool {
    true
}

impl Default for SanPolicy {
    fn default() -> Self {
        Self {
            allowed_types: default_san_types(),
            dns_suffixes: Vec::new(),
            dns_regex: None,
            max: 100,
            include_cn: true,
        }
    }
}

/// What a CN may be: its length, a pattern, and whether it must also be a SAN; checked on the
/// request and again on the certificate the CA returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnPolicy {
    /// At most this many characters (≤ 64).
    #[serde(default = "default_cn_len")]
    pub max_length: usize,
    /// The CN must match this (anchored) regex, e.g. `[a-z0-9.-]+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// A CN is mandatory.
    #[serde(default = "yes")]
    pub required: bool,
}

fn default_cn_len() -> usize {
    MAX_CN
}

impl Default for CnPolicy {
    fn default() -> Self {
        Self { max_length: MAX_CN, allowed: None, required: true }
    }
}

/// When and how certificates of this profile renew. With no `before_*` and no `at_percent`,
/// a certificate renews at two thirds of its lifetime (as cert-manager does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalPolicy {
    /// Renew this many days before expiry (1–120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_days: Option<u32>,
    /// Renew this many minutes before expiry, for short-lived certificates (1–10080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_minutes: Option<u32>,
    /// Or renew when this percentage of the lifetime has passed (1–99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_percent: Option<u8>,
    /// Generate a new key on renewal.
    #[serde(default = "yes")]
    pub regenerate_key: bool,
    /// Renew automatically.
    #[serde(default = "yes")]
    pub auto: bool,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self { before_days: None, before_minutes: None, at_percent: None, regenerate_key: true, auto: true }
    }
}

/// When a certificate falls due for renewal, before jitter ([`RenewalPolicy::due_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Unix seconds.
    pub at: i64,
    /// `before_days`/`before_minutes` reached back into the first third of the certificate's
    /// lifetime (or before it began), so two thirds of the lifetime was used instead: at the
    /// policy's own time every successor would be due the moment it was issued, and the
    /// scheduler would renew it again each round, forever.
    pub fell_back: bool,
}

/// How far before it was stored a certificate's notBefore is taken as backdated by its CA
/// ([`lifetime_start`]); a certificate stored later than this after its notBefore (an order
/// polled after an outage) counts its lifetime from notBefore plus this.
pub const MAX_BACKDATE: i64 = 86_400;

/// When a certificate's lifetime counts from for its renewal: its notBefore, or when it was
/// stored if that is later, by [`MAX_BACKDATE`] at most. CAs backdate notBefore against clock
/// skew (local-ca by 5 minutes, Let's Encrypt by an hour): counted from it, two thirds of a
/// 2-minute certificate had passed before it was issued, and the scheduler renewed each
/// successor the round it was stored, forever (API walkthrough of stop 48). The bound keeps a
/// certificate stored days late (its order polled after an outage) due when its notBefore
/// says, rather than pushed towards its end (diff review of stop 48).
pub fn lifetime_start(not_before: i64, stored_at: i64) -> i64 {
    not_before.max(stored_at.min(not_before.saturating_add(MAX_BACKDATE)))
}

impl RenewalPolicy {
    /// When a certificate whose lifetime counts from `start` ([`lifetime_start`]) and ends at
    /// `not_after` is due for renewal (Unix seconds), before jitter; `None` when auto-renew is
    /// off. A `before_*` longer than two thirds of the lifetime gives way to the two-thirds
    /// rule (cert-manager does the same when renewBefore exceeds the duration): a CA that
    /// issues shorter certificates than the profile expected (ACME's six days against
    /// `before_days = 30`) must not make the host renew in a loop.
    pub fn due_at(&self, start: i64, not_after: i64) -> Option<Due> {
        if !self.auto {
            return None;
        }
        let not_before = start;
        let lifetime = (not_after - not_before).max(0);
        let two_thirds = not_before + lifetime * 2 / 3;
        let before = |seconds: i64| {
            let due = not_after - seconds;
            if due <= not_before || due < not_before + lifetime / 3 {
                Due { at: two_thirds, fell_back: true }
            } else {
                Due { at: due, fell_back: false }
            }
        };
        Some(match (self.before_days, self.before_minutes, self.at_percent) {
            (Some(d), _, _) => before(i64::from(d) * 86_400),
            (None, Some(m), _) => before(i64::from(m) * 60),
            (None, None, Some(p)) => Due { at: not_before + lifetime * i64::from(p) / 100, fell_back: false },
            (None, None, None) => Due { at: two_thirds, fell_back: false },
        })
    }

    /// The most jitter (seconds, taken off the due time) for a lifetime counted from `start`:
    /// 1% of it, at most an hour, so a fleet issued together does not renew in one burst —
    /// and at most half the time from `start` to `due`, so `at_percent = 1` is not due the
    /// moment the certificate is stored.
    pub fn max_jitter(start: i64, not_after: i64, due: i64) -> i64 {
        ((not_after - start).max(0) / 100).min(3600).min((due - start).max(0) / 2)
    }
}

/// A request's names and subject overrides, before policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameRequest {
    /// Requested CN.
    pub common_name: Option<String>,
    /// Requested SANs.
    pub sans: Vec<San>,
    /// Requested subject overrides (only fields the profile allows).
    pub subject: Subject,
}

/// Why a profile definition or a request is refused. Each names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Bad profile name.
    #[error("profile name {0:?} is invalid: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// A profile without accounts.
    #[error("profile {0} names no CA account")]
    NoAccounts(String),
    /// A definition rule.
    #[error("profile {profile}: {rule}")]
    Definition {
        /// Profile.
        profile: String,
        /// Rule broken.
        rule: String,
    },
    /// A parameter rule.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A request rule.
    #[error("profile {profile} refuses the request: {rule}")]
    Request {
        /// Profile.
        profile: String,
        /// Rule broken.
        rule: String,
    },
}

impl ProfileDef {
    /// Where this profile's secrets are read from: its sensitive parameters' and its deploy
    /// targets' PKCS#12 passwords' references. Processes certhost starts get none of the
    /// variables, and their output is redacted of what the files hold
    /// ([`crate::param::hide_from_children`]).
    pub fn secret_sources(&self) -> impl Iterator<Item = &crate::param::ValueSource> {
        let passwords = self.deploy.iter().filter_map(|t| t.pkcs12_password.as_ref());
        crate::param::sensitive_sources(&self.params).chain(passwords)
    }

    /// Checks profile `name`'s parameters against the connector of each account it names
    /// (definitions in `accounts`): none that a connector declares sensitive is defined here
    /// as a plain one ([`crate::param::check_declared_sensitive`]). Accounts that are missing
    /// or whose connector does not load are left to [`crate::config::check_links`] and the
    /// first issuance.
    pub async fn check_connectors(
        &self,
        name: &str,
        accounts: &std::collections::BTreeMap<String, crate::account::AccountDef>,
        source: &dyn crate::connector::ConnectorSource,
    ) -> Result<(), PolicyError> {
        if !crate::param::has_plain_values(&self.params) {
            return Ok(());
        }
        for account in &self.accounts {
            let Some(def) = accounts.get(account) else { continue };
            let Ok(connector) = source.connector(account, def).await else { continue };
            crate::account::check_declared(&format!("profile {name}"), &self.params, &*connector).await?;
        }
        Ok(())
    }

    /// What to say about this profile's deploy targets when it changes: a key and its
    /// certificate in different targets, an owner or group this host does not have.
    pub fn deploy_warnings(&self) -> Vec<String> {
        self.split_key_and_certificate()
            .into_iter()
            .chain(self.deploy.iter().filter_map(|t| t.unknown_owner()))
            .chain(self.deploy.iter().filter_map(|t| t.unprotected_pkcs12()))
            .collect()
    }

    /// Why the deploy targets could leave a key beside a certificate it does not match, if they
    /// could: a target is written as a whole (all its files or none), but a key in one target
    /// and its certificate in another are not, and when one fails the other is already
    /// written (operator review of stop 39). Allowed, and said when the profile changes.
    pub fn split_key_and_certificate(&self) -> Option<String> {
        let key_alone = self
            .deploy
            .iter()
            .position(|t| t.key.is_some() && t.cert.is_none() && t.fullchain.is_none() && t.pkcs12.is_none())?;
        let certificate_alone = self
            .deploy
            .iter()
            .position(|t| t.key.is_none() && t.pkcs12.is_none() && (t.cert.is_some() || t.fullchain.is_some()))?;
        Some(format!(
            "deploy target {} writes the key and target {} the certificate: each target is written as a whole, but \
             not the two together, so when one fails the other's file no longer matches; write both in one target",
            key_alone + 1,
            certificate_alone + 1
        ))
    }

    /// Checks the definition of profile `name` on its own (accounts checked by the caller).
    pub fn check(&self, name: &str) -> Result<(), PolicyError> {
        if !check_name(name) {
            return Err(PolicyError::BadName(name.to_owned()));
        }
        if self.accounts.is_empty() {
            return Err(PolicyError::NoAccounts(name.to_owned()));
        }
        let def_err = |rule: String| PolicyError::Definition { profile: name.to_owned(), rule };
        let owner = format!("profile {name}");
        for (pname, def) in &self.params {
            def.check(pname, &owner)?;
        }
        if self.cn.max_length == 0 || self.cn.max_length > MAX_CN {
            return Err(def_err(format!("cn.max_length must be 1-{MAX_CN}")));
        }
        for re in [&self.cn.allowed, &self.sans.dns_regex].into_iter().flatten() {
            crate::pattern::check(re).map_err(|e| def_err(format!("invalid regex {re:?}: {e}")))?;
        }
        // A suffix with a trailing dot or a wildcard matched no name, silently refusing every
        // request (review of stop 31).
        for suffix in &self.sans.dns_suffixes {
            let bare = suffix.strip_prefix('.').unwrap_or(suffix);
            if crate::csr::validate_dns_name(bare).is_err() || bare.contains('*') {
                return Err(def_err(format!(
                    "sans.dns_suffixes entry {suffix:?} is not a DNS name (write \".example.com\": no wildcard, no trailing dot)"
                )));
            }
        }
        if let Some(days) = self.validity_days
            && !(1..=3650).contains(&days)
        {
            return Err(def_err(format!("validity_days {days} must be 1-3650")));
        }
        if let Some(d) = self.renewal.before_days
            && !(1..=120).contains(&d)
        {
            return Err(def_err(format!("renewal.before_days {d} must be 1-120")));
        }
        if let Some(p) = self.renewal.at_percent
            && !(1..=99).contains(&p)
        {
            return Err(def_err(format!("renewal.at_percent {p} must be 1-99")));
        }
        if let Some(m) = self.renewal.before_minutes
            && !(1..=10_080).contains(&m)
        {
            return Err(def_err(format!("renewal.before_minutes {m} must be 1-10080")));
        }
        let set = [
            self.renewal.before_days.is_some(),
            self.renewal.before_minutes.is_some(),
            self.renewal.at_percent.is_some(),
        ];
        if set.iter().filter(|x| **x).count() > 1 {
            return Err(def_err("set one of renewal.before_days, renewal.before_minutes, renewal.at_percent".into()));
        }
        for (i, target) in self.deploy.iter().enumerate() {
            target.check().map_err(|e| def_err(format!("deploy[{i}]: {e}")))?;
        }
        if let Some(hash) = self.key.hash
            && !self.key.key_type.allowed_hashes().contains(&hash)
        {
            return Err(def_err(format!("key type {} cannot sign with {hash}", self.key.key_type)));
        }
        let template = Subject {
            common_name: None,
            organization: self.subject.o.clone(),
            organizational_unit: self.subject.ou.clone(),
            locality: self.subject.l.clone(),
            state: self.subject.st.clone(),
            country: self.subject.c.clone(),
            email: None,
        };
        template.validate().map_err(|e| def_err(format!("subject template: {e}")))?;
        Ok(())
    }

    /// Applies the policy to a request: returns the subject and SANs to put in the CSR.
    pub fn check_request(&self, name: &str, req: &NameRequest) -> Result<(Subject, Vec<San>), PolicyError> {
        let refuse = |rule: String| PolicyError::Request { profile: name.to_owned(), rule };
        // CN.
        match &req.common_name {
            None if self.cn.required => return Err(refuse("a CN is required".into())),
            None => {}
            Some(cn) => {
                let len = cn.chars().count();
                if len > self.cn.max_length {
                    return Err(refuse(format!(
                        "CN is {len} characters long; at most {} are allowed",
                        self.cn.max_length
                    )));
                }
                self.cn_allowed(cn, true).map_err(refuse)?;
            }
        }
        // Subject overrides: the rules an uploaded CSR's subject meets. A field the profile
        // fixes may be given as its own value; one it neither sets nor lets a request give was
        // refused as "fixed by the profile" (new-user walkthrough of stop 46).
        let s = &req.subject;
        self.check_uploaded_subject(name, "the request's", s)?;
        let subject = self.fill_fixed_subject(&Subject { common_name: req.common_name.clone(), ..s.clone() });
        subject.validate().map_err(|e| refuse(e.to_string()))?;
        // SANs.
        let mut sans = req.sans.clone();
        if self.sans.include_cn
            && let Some(cn) = &req.common_name
        {
            crate::csr::include_cn_in_sans(cn, &mut sans);
            // An IP address as the CN becomes an IP SAN where the profile allows those: TLS
            // clients read only SANs, and `cn = "192.0.2.5"` issued a certificate naming no
            // address (API walkthrough of stop 48). Where it does not, the CN stays alone, as
            // before.
            if let Ok(ip) = cn.parse::<std::net::IpAddr>() {
                let san = San::Ip(ip);
                if !sans.contains(&san) && self.san_allowed(&san).is_ok() {
                    sans.insert(0, san);
                }
            }
        }
        // A name given twice is put in the CSR once (DNS names compare without case).
        let mut seen: Vec<String> = Vec::with_capacity(sans.len());
        sans.retain(|san| {
            let key = match san {
                San::Dns(d) => format!("DNS:{}", d.to_ascii_lowercase()),
                other => other.to_string(),
            };
            let first = !seen.contains(&key);
            seen.push(key);
            first
        });
        if sans.len() > self.sans.max {
            // The CN the profile adds as a SAN is counted: said, or 11 names sent came back as
            // "12 SANs requested" (API review of stop 38).
            let cn_added = self.sans.include_cn
                && req
                    .common_name
                    .as_ref()
                    .is_some_and(|cn| !req.sans.iter().any(|s| s.value().eq_ignore_ascii_case(cn)));
            return Err(refuse(format!(
                "{} SANs requested{}; at most {} are allowed",
                sans.len(),
                if cn_added { " (the CN, which the profile adds as a SAN, included)" } else { "" },
                self.sans.max
            )));
        }
        for san in &sans {
            san.validate().map_err(|e| refuse(e.to_string()))?;
            self.san_allowed(san).map_err(refuse)?;
        }
        if subject.common_name.is_none() && sans.is_empty() {
            return Err(refuse("the request names nothing: give a CN or at least one SAN".into()));
        }
        Ok((subject, sans))
    }

    /// Checks the names of a CSR the host did not build (an upload, or its renewal) as a
    /// request's: the CN is not added to the SANs — the CSR is signed as it is —, so a profile
    /// that puts the CN among the SANs refuses a CSR whose host-name CN is not one of them
    /// (clients ignore the CN: such a certificate names no host).
    pub fn check_csr_names(&self, name: &str, common_name: Option<&str>, sans: &[San]) -> Result<(), PolicyError> {
        let mut policy = self.clone();
        policy.sans.include_cn = false;
        let names = NameRequest {
            common_name: common_name.map(str::to_owned),
            sans: sans.to_vec(),
            subject: Subject::default(),
        };
        policy.check_request(name, &names)?;
        if let Some(cn) = common_name
            && self.sans.include_cn
            && cn.parse::<std::net::IpAddr>().is_err()
            && self.cn_is_host_like(cn)
            && !sans.iter().any(|s| matches!(s, San::Dns(d) if d.eq_ignore_ascii_case(cn)))
        {
            return Err(PolicyError::Request {
                profile: name.to_owned(),
                rule: format!(
                    "the CSR's CN {cn:?} reads as a host name but is not among its DNS subjectAltNames, and the profile puts the CN there (include_cn): request it as a subjectAltName in the CSR (an internationalized name in its xn-- form)"
                ),
            });
        }
        Ok(())
    }

    /// Whether `cn` reads as a host name to a client: it is not an email address, has no
    /// white space (`Acme Inc.`, `Dr. A. Smith` are names of people and companies), and it
    /// has a dot (or a character IDNA maps to one: 。．｡), a wildcard, or is a valid
    /// single-label name (`intranet`, `localhost`: clients that fall back to the CN take it
    /// for that host) while the profile has no CN pattern of its own.
    fn cn_is_host_like(&self, cn: &str) -> bool {
        let single_label_host = self.cn.allowed.is_none() && crate::csr::validate_dns_name(cn).is_ok();
        San::Email(cn.to_owned()).validate().is_err()
            && !cn.chars().any(|c| c.is_whitespace() || c.is_control())
            && (cn.contains(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}', '*']) || single_label_host)
    }

    /// Whether the profile's CN rules admit `cn` (its length already checked): the allowed
    /// pattern, and — when DNS names are limited to suffixes or a pattern — the same limits
    /// for a CN a client could take for a host name ([`Self::cn_is_host_like`]), which must
    /// then be a valid DNS name (or `evil.bank.test.` and `evil_bank.test` would pass where
    /// `evil.bank.test` is refused). A CN that is an IP address must be of a SAN type the
    /// profile allows. `requested`: a request's CN, which `include_cn` would put among the
    /// SANs, so it must be a valid DNS name even without DNS rules; a CN already in a
    /// certificate (a CA's answer, a renewal's) is not held to that.
    fn cn_allowed(&self, cn: &str, requested: bool) -> Result<(), String> {
        if let Some(re) = &self.cn.allowed
            && !crate::pattern::full_match(re, cn)
        {
            return Err(format!("CN {cn:?} does not match the allowed pattern {re}"));
        }
        if let Ok(ip) = cn.parse::<std::net::IpAddr>() {
            return self
                .san_allowed(&San::Ip(ip))
                .map_err(|_| format!("CN {cn:?} is an IP address, and the profile does not allow IP addresses"));
        }
        // A single-label CN the profile's own CN pattern admits (`alice` on a client-certificate
        // profile) is taken as the name the operator allowed, not as a host name.
        let limited = !self.sans.dns_suffixes.is_empty() || self.sans.dns_regex.is_some();
        if !self.cn_is_host_like(cn) || !(limited || (requested && self.sans.include_cn)) {
            return Ok(());
        }
        if let Err(e) = crate::csr::validate_dns_name(cn) {
            let why = match e {
                crate::csr::NameError::DnsName { reason, .. } => reason,
                _ => "it is not a DNS name",
            };
            return Err(if limited {
                let to = match &self.sans.dns_regex {
                    _ if !self.sans.dns_suffixes.is_empty() => self.sans.dns_suffixes.join(", "),
                    Some(re) => format!("the pattern {re}"),
                    None => String::new(),
                };
                format!(
                    "CN {cn:?} reads as a host name but is not a valid one ({why}), and the profile limits host names to {to}"
                )
            } else {
                // Not added to the SANs, it would give a certificate that names no host.
                format!(
                    "CN {cn:?} reads as a host name but is not a valid one ({why}), so it cannot be added to the SANs (include_cn); give an internationalized name in its xn-- form"
                )
            });
        }
        if limited {
            self.dns_name_allowed(cn)?;
        }
        Ok(())
    }

    /// Whether the profile's SAN rules (allowed types, DNS suffixes and pattern) admit `san`;
    /// the error is the rule it breaks.
    fn san_allowed(&self, san: &San) -> Result<(), String> {
        let ty = match san {
            San::Dns(_) => SanType::Dns,
            San::Ip(_) => SanType::Ip,
            San::Email(_) => SanType::Email,
            San::Uri(_) => SanType::Uri,
        };
        if !self.sans.allowed_types.contains(&ty) {
            return Err(format!("SAN {san} is of a type the profile does not allow"));
        }
        if let San::Dns(d) = san {
            self.dns_name_allowed(d)?;
        }
        Ok(())
    }

    /// Whether a DNS name is inside the profile's suffixes and matches its pattern.
    fn dns_name_allowed(&self, d: &str) -> Result<(), String> {
        let lower = d.to_ascii_lowercase();
        if !self.sans.dns_suffixes.is_empty()
            && !self.sans.dns_suffixes.iter().any(|suf| {
                let suf = suf.to_ascii_lowercase();
                let bare = suf.trim_start_matches('.');
                lower == bare || lower.ends_with(&format!(".{bare}"))
            })
        {
            return Err(format!("DNS name {d} is outside the allowed suffixes {}", self.sans.dns_suffixes.join(", ")));
        }
        if let Some(re) = &self.sans.dns_regex
            && !crate::pattern::full_match(re, d)
        {
            return Err(format!("DNS name {d} does not match the allowed pattern {re}"));
        }
        Ok(())
    }

    /// Refuses an uploaded CSR on a profile that deploys the private key (a `key` or
    /// `pkcs12` file): the host never holds that key, so every deployment would fail after
    /// the certificate was issued (review of stop 31).
    pub fn check_deploys_without_key(&self, name: &str) -> Result<(), PolicyError> {
        match self.deploy.iter().position(|t| t.key.is_some() || t.pkcs12.is_some()) {
            Some(i) => Err(PolicyError::Request {
                profile: name.to_owned(),
                rule: format!(
                    "its deploy[{i}] writes the private key, which the host does not hold for an uploaded CSR; use a profile that deploys certificates only"
                ),
            }),
            None => Ok(()),
        }
    }

    /// `s` with each field it leaves empty that this profile fixes (O, OU, L, ST, C) taken
    /// from the profile: what a request is issued with, and what a certificate moving here is
    /// renewed with ([`ProfileDef::check_uploaded_subject`] has already refused a field that
    /// differs).
    pub fn fill_fixed_subject(&self, s: &Subject) -> Subject {
        let t = &self.subject;
        Subject {
            common_name: s.common_name.clone(),
            organization: if s.organization.is_empty() { t.o.clone() } else { s.organization.clone() },
            organizational_unit: if s.organizational_unit.is_empty() {
                t.ou.clone()
            } else {
                s.organizational_unit.clone()
            },
            locality: s.locality.clone().or_else(|| t.l.clone()),
            state: s.state.clone().or_else(|| t.st.clone()),
            country: s.country.clone().or_else(|| t.c.clone()),
            email: s.email.clone(),
        }
    }

    /// Checks a subject the host did not build — an uploaded CSR's, or a certificate's moved to
    /// this profile at renewal — against the profile's subject rules, which a CA copying it
    /// would otherwise skip: a field the profile fixes must be absent or the profile's own
    /// value; only `overridable` fields may say something else. `whose` names the subject
    /// ("the CSR's", "the certificate's").
    pub fn check_uploaded_subject(&self, name: &str, whose: &str, s: &Subject) -> Result<(), PolicyError> {
        let t = &self.subject;
        for (field, as_fixed, set_here) in [
            (SubjectField::O, s.organization.is_empty() || s.organization == t.o, !t.o.is_empty()),
            (SubjectField::Ou, s.organizational_unit.is_empty() || s.organizational_unit == t.ou, !t.ou.is_empty()),
            (SubjectField::L, s.locality.is_none() || s.locality == t.l, t.l.is_some()),
            (SubjectField::St, s.state.is_none() || s.state == t.st, t.st.is_some()),
            (SubjectField::C, s.country.is_none() || s.country == t.c, t.c.is_some()),
            (SubjectField::Email, s.email.is_none(), false),
        ] {
            if !as_fixed && !t.overridable.contains(&field) {
                let field = subject_field_name(field);
                // A profile without the field said it "fixes it" (API review of stop 38).
                let rule = if set_here {
                    format!("{whose} subject field {field} is not the profile's, which fixes it")
                } else {
                    format!(
                        "{whose} subject has field {field}, which the profile neither sets nor lists in [subject] overridable"
                    )
                };
                return Err(PolicyError::Request { profile: name.to_owned(), rule });
            }
        }
        Ok(())
    }

    /// Checks an uploaded CSR's subject: as [`ProfileDef::check_uploaded_subject`], and each
    /// field the profile fixes must be there. A CA signs the CSR's subject as it stands — the
    /// host cannot add to a CSR its requester signed — so a CSR without the fixed O was issued
    /// a certificate without it (black-box review of stop 35). Overridable fields may be left out.
    pub fn check_csr_subject(&self, name: &str, s: &Subject) -> Result<(), PolicyError> {
        self.check_uploaded_subject(name, "the CSR's", s)?;
        let t = &self.subject;
        let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
        for (field, fixed, missing) in [
            (SubjectField::O, t.o.clone(), s.organization.is_empty()),
            (SubjectField::Ou, t.ou.clone(), s.organizational_unit.is_empty()),
            (SubjectField::L, one(&t.l), s.locality.is_none()),
            (SubjectField::St, one(&t.st), s.state.is_none()),
            (SubjectField::C, one(&t.c), s.country.is_none()),
        ] {
            if !fixed.is_empty() && missing && !t.overridable.contains(&field) {
                let field = subject_field_name(field);
                return Err(PolicyError::Request {
                    profile: name.to_owned(),
                    rule: format!(
                        "the CSR's subject has no {field}, which the profile fixes as {:?}: a CA signs the CSR's \
                         subject as it is, so put {field} in the CSR",
                        fixed.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks the names a CA put in a certificate against the profile's SAN rules: a CA may
    /// add names (some add `www.`), but none the profile would have refused in a request.
    /// `other_kinds` are SANs of kinds no rule covers (`CertificateInfo::other_sans`): never
    /// allowed.
    /// Each name must also have the syntax a requested one must have (a NUL, a `/`, a second
    /// wildcard label would otherwise pass the suffix rule by ending in it).
    pub fn check_issued_sans(&self, sans: &[San], other_kinds: &[String]) -> Result<(), String> {
        if let Some(kind) = other_kinds.first() {
            return Err(format!("it names {kind}, a kind of subjectAltName no profile rule allows"));
        }
        sans.iter().try_for_each(|san| {
            san.validate().map_err(|e| format!("its subjectAltName is malformed: {e}"))?;
            self.san_allowed(san)
        })
    }

    /// Whether a returned certificate's subject needs [`ProfileDef::check_issued_subject`]: the
    /// profile fixes a field no request may override.
    pub fn fixes_subject(&self) -> bool {
        let t = &self.subject;
        [
            (!t.o.is_empty(), SubjectField::O),
            (!t.ou.is_empty(), SubjectField::Ou),
            (t.l.is_some(), SubjectField::L),
            (t.st.is_some(), SubjectField::St),
            (t.c.is_some(), SubjectField::C),
        ]
        .iter()
        .any(|(fixed, field)| *fixed && !t.overridable.contains(field))
    }

    /// Checks the subject a CA put in a certificate: a field the profile fixes (and no request
    /// may override) has only the profile's values, in any order, or is absent — a CA may
    /// leave fields out, as public ones leave out all but the CN, and may add fields the
    /// profile does not fix (an OV CA's validated O), but not name another organization than
    /// the one the profile fixes (hostile-connector review of stop 41: `O=Evil Corp` was stored
    /// under `o = ["Example Ltd"]`). A fixed O must match the CA's validated name exactly.
    pub fn check_issued_subject(&self, s: &IssuedSubject) -> Result<(), String> {
        let t = &self.subject;
        let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
        let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        for (field, fixed, issued) in [
            (SubjectField::O, t.o.clone(), &s.o),
            (SubjectField::Ou, t.ou.clone(), &s.ou),
            (SubjectField::L, one(&t.l), &s.l),
            (SubjectField::St, one(&t.st), &s.st),
            (SubjectField::C, one(&t.c), &s.c),
        ] {
            if !fixed.is_empty() && !issued.is_empty() && set(issued) != set(&fixed) && !t.overridable.contains(&field)
            {
                return Err(format!(
                    "its subject's {} is {:?}, not the profile's {:?}",
                    subject_field_name(field),
                    issued.join(", "),
                    fixed.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Refuses a certificate whose CA added more names than the profile's `max` beyond those
    /// `requested`: a request is held to `max`, and a CA adding 50 names was not
    /// (hostile-connector review of stop 41). Counted beyond the request, so a CA adding
    /// `www.` or the CN to a request of `max` names is not refused after it issued (diff
    /// review).
    pub fn check_issued_count(&self, sans: &[San], requested: &[San]) -> Result<(), String> {
        let added = sans.iter().filter(|s| !requested.contains(s)).count();
        if added > self.sans.max {
            return Err(format!(
                "its CA added {added} subjectAltNames to those requested; the profile allows at most {}",
                self.sans.max
            ));
        }
        Ok(())
    }

    /// Checks the subject CN a CA put in a certificate against the profile's CN rules (length,
    /// pattern, host names inside the DNS suffixes), as [`ProfileDef::check_request`] checks a
    /// requested one: a CA may choose the CN, but not one the profile would have refused.
    pub fn check_issued_cn(&self, cn: &str) -> Result<(), String> {
        let len = cn.chars().count();
        if len > self.cn.max_length {
            return Err(format!("its CN is {len} characters long; at most {} are allowed", self.cn.max_length));
        }
        self.cn_allowed(cn, false)
    }
}

fn subject_field_name(f: SubjectField) -> &'static str {
    match f {
        SubjectField::O => "O",
        SubjectField::Ou => "OU",
        SubjectField::L => "L",
        SubjectField::St => "ST",
        SubjectField::C => "C",
        SubjectField::Email => "emailAddress",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> ProfileDef {
        toml::from_str(
            r#"
            accounts = ["a"]
            [subject]
            o = ["Example"]
            c = "CH"
            overridable = ["ou"]
            [sans]
            dns_suffixes = [".example.com"]
            max = 3
            "#,
        )
        .expect("profile")
    }

    #[test]
    fn requests_are_checked_against_each_rule() {
        let p = profile();
        p.check("web").expect("valid");
        let ok = NameRequest { common_name: Some("www.example.com".into()), ..Default::default() };
        let (subject, sans) = p.check_request("web", &ok).expect("ok");
        assert_eq!(subject.organization, vec!["Example".to_owned()]);
        assert_eq!(sans, vec![San::Dns("www.example.com".into())], "CN added as SAN");
        // An IP address CN as an IP SAN (API walkthrough of stop 48: it named no address).
        let by_ip = NameRequest { common_name: Some("192.0.2.5".into()), ..Default::default() };
        let (_, sans) = p.check_request("web", &by_ip).expect("ok");
        assert_eq!(sans, vec![San::Ip("192.0.2.5".parse().expect("ip"))]);

        let outside = NameRequest { common_name: Some("www.evil.com".into()), ..Default::default() };
        assert!(
            p.check_request("web", &outside)
                .unwrap_err()
                .to_string()
                .contains("outside the allowed suffixes .example.com")
        );
        let too_many = NameRequest {
            common_name: Some("a.example.com".into()),
            sans: (0..3).map(|i| San::Dns(format!("h{i}.example.com"))).collect(),
            ..Default::default()
        };
        assert!(
            p.check_request("web", &too_many)
                .unwrap_err()
                .to_string()
                .contains("4 SANs requested (the CN, which the profile adds as a SAN, included); at most 3"),
            "3 sent, and the CN"
        );
        let ip = NameRequest {
            common_name: Some("a.example.com".into()),
            sans: vec![San::Email("x@example.com".into())],
            ..Default::default()
        };
        assert!(p.check_request("web", &ip).unwrap_err().to_string().contains("type the profile does not allow"));
        let mut fixed = ok.clone();
        fixed.subject.organization = vec!["Other".into()];
        let err = p.check_request("web", &fixed).unwrap_err().to_string();
        assert!(err.contains("the request's subject field O is not the profile's, which fixes it"), "{err}");
        // The fixed value itself may be given; a field the profile neither sets nor lets a
        // request give is said to be that, not "fixed".
        fixed.subject.organization = p.subject.o.clone();
        assert_eq!(p.check_request("web", &fixed).expect("its own O").0.organization, p.subject.o);
        let mut email = ok.clone();
        email.subject.email = Some("pki@example.com".into());
        let err = p.check_request("web", &email).unwrap_err().to_string();
        assert!(
            err.contains("the request's subject has field emailAddress, which the profile neither sets nor lists"),
            "{err}"
        );
        let mut ou = ok.clone();
        ou.subject.organizational_unit = vec!["Ops".into()];
        assert_eq!(p.check_request("web", &ou).expect("ou allowed").0.organizational_unit, vec!["Ops".to_owned()]);
        let none = NameRequest::default();
        assert!(p.check_request("web", &none).unwrap_err().to_string().contains("a CN is required"));
        // What a CA put in a certificate meets the same SAN rules, but no count: it may add names.
        let issued = [San::Dns("www.example.com".into()), San::Dns("example.com".into())];
        assert_eq!(p.check_issued_sans(&issued, &[]), Ok(()));
        let added = [San::Dns("www.example.com".into()), San::Dns("evil.bank.test".into())];
        assert!(
            p.check_issued_sans(&added, &[]).unwrap_err().contains("evil.bank.test is outside the allowed suffixes")
        );
        let email = [San::Email("x@example.com".into())];
        assert!(p.check_issued_sans(&email, &[]).unwrap_err().contains("type the profile does not allow"));
        let upn = ["an otherName of type 1.3.6.1.4.1.311.20.2.3".to_owned()];
        assert!(p.check_issued_sans(&issued, &upn).unwrap_err().contains("names an otherName of type"));
    }

    /// A name a CA added ending in an allowed suffix passed on the suffix alone, whatever came
    /// before it: a NUL, a `/`, a second wildcard label.
    #[test]
    fn names_a_ca_adds_must_have_the_syntax_of_requested_ones() {
        let p = profile();
        for bad in ["evil.bank.test\0.example.com", "evil.bank.test/.example.com", "*.*.example.com", "a..example.com"]
        {
            let sans = [San::Dns("www.example.com".into()), San::Dns(bad.into())];
            let err = p.check_issued_sans(&sans, &[]).unwrap_err();
            assert!(err.starts_with("its subjectAltName is malformed: DNS name"), "{bad:?}: {err}");
        }
        let wildcard = [San::Dns("*.example.com".into())];
        assert_eq!(p.check_issued_sans(&wildcard, &[]), Ok(()));
    }

    /// A CN that is not strict DNS syntax skipped the suffix rule: `evil.bank.test.` and
    /// `evil_bank.test` were issued on a profile limited to `.example.com`. With include_cn
    /// off (uploaded CSRs, renewals) even a valid host name CN skipped it.
    #[test]
    fn a_cn_that_reads_as_a_host_name_is_held_to_the_dns_suffixes() {
        let p = profile();
        let request = |cn: &str| NameRequest { common_name: Some(cn.into()), ..Default::default() };
        for bad in ["evil.bank.test.", "evil_bank.test", "evil.bank.test"] {
            let err = p.check_request("web", &request(bad)).unwrap_err().to_string();
            assert!(err.contains("example.com"), "{bad}: {err}");
            assert!(p.check_issued_cn(bad).is_err(), "{bad}");
        }
        assert!(
            p.check_request("web", &request("evil.bank.test."))
                .unwrap_err()
                .to_string()
                .contains("reads as a host name but is not a valid one (it ends with a dot)")
        );
        let mut upload = p.clone();
        upload.sans.include_cn = false;
        let named = NameRequest {
            common_name: Some("evil.bank.test".into()),
            sans: vec![San::Dns("www.example.com".into())],
            ..Default::default()
        };
        assert!(upload.check_request("web", &named).unwrap_err().to_string().contains("outside the allowed suffixes"));
        // Names that are no host names keep working: words with a space, an IP address (the
        // profile allows IP SANs), an email address.
        for fine in ["Ops Team", "192.0.2.7", "ops@example.net", "www.example.com"] {
            assert!(upload.check_request("web", &request(fine)).is_ok(), "{fine}");
            assert_eq!(p.check_issued_cn(fine), Ok(()), "{fine}");
        }
        // Regression (review of stop 30): a single-label host name escaped the suffixes on an
        // upload (clients that fall back to the CN take `intranet` for that host), and an IP
        // address CN escaped allowed_types.
        for single in ["intranet", "localhost"] {
            let err = upload.check_request("web", &request(single)).unwrap_err().to_string();
            assert!(err.contains(&format!("DNS name {single} is outside the allowed suffixes")), "{err}");
            assert!(p.check_issued_cn(single).is_err(), "{single}");
        }
        // A CN pattern of the profile's own admits single-label names (client certificates).
        let mut people = upload.clone();
        people.cn.allowed = Some("[a-z]+".into());
        assert!(people.check_request("web", &request("alice")).is_ok());
        let mut dns_only = upload.clone();
        dns_only.sans.allowed_types = vec![SanType::Dns];
        let err = dns_only.check_request("web", &request("192.0.2.7")).unwrap_err().to_string();
        assert!(
            err.contains("CN \"192.0.2.7\" is an IP address, and the profile does not allow IP addresses"),
            "{err}"
        );
        assert!(p.check_issued_cn(&"a".repeat(65)).unwrap_err().contains("65 characters long"));
    }

    /// Regression (review of stop 31): an uploaded CSR on a profile that deploys the key was
    /// issued, and its every deployment failed.
    #[test]
    fn a_profile_that_deploys_the_key_takes_no_uploaded_csr() {
        let parse = |text: &str| -> ProfileDef { toml::from_str(text).expect("profile") };
        let with_key =
            parse("accounts = [\"lab\"]\n[[deploy]]\ncert = \"/srv/c.pem\"\n[[deploy]]\nkey = \"/srv/k.pem\"\n");
        let err = with_key.check_deploys_without_key("web").unwrap_err().to_string();
        assert!(err.contains("its deploy[1] writes the private key"), "{err}");
        let certs_only = parse("accounts = [\"lab\"]\n[[deploy]]\nfullchain = \"/srv/f.pem\"\n");
        certs_only.check_deploys_without_key("web").expect("certificates only");
    }

    /// Regressions (review of stop 31): a CN escaped `dns_regex` when the profile set no
    /// suffixes; IDNA's other dots (`evil。bank。test`) and a bare `*` did not read as host
    /// names; a non-ASCII host name CN gave a certificate with no SAN; and an uploaded CSR
    /// whose CN was not among its SANs did too.
    #[test]
    fn host_name_cns_are_held_to_every_dns_rule_and_end_up_among_the_sans() {
        let request = |cn: &str| NameRequest { common_name: Some(cn.into()), ..Default::default() };
        let mut by_pattern = profile();
        by_pattern.sans.dns_suffixes.clear();
        by_pattern.sans.dns_regex = Some("[a-z0-9-]+\\.example\\.com".into());
        for bad in [
            "evil.bank.test",
            "evil.bank.test.",
            "evil_bank.test",
            "evil\u{3002}bank\u{3002}test",
            "*",
            "evil\u{ff0e}bank\u{ff0e}test",
        ] {
            assert!(by_pattern.check_request("web", &request(bad)).is_err(), "{bad}");
            assert!(by_pattern.check_issued_cn(bad).is_err(), "{bad}");
        }
        assert!(by_pattern.check_request("web", &request("www.example.com")).is_ok());
        let mut open = by_pattern.clone();
        open.sans.dns_regex = None;
        let err = open.check_request("web", &request("b\u{fc}cher.example.com")).unwrap_err().to_string();
        assert!(err.contains("cannot be added to the SANs (include_cn)"), "{err}");
        assert!(open.check_request("web", &request("xn--bcher-kva.example.com")).is_ok());
        // Names of people and companies are no host names (final review of stop 31).
        for name in ["Acme Inc.", "Dr. A. Smith", "Example Ltd."] {
            assert!(open.check_request("web", &request(name)).is_ok(), "{name}");
            assert!(by_pattern.check_request("web", &request(name)).is_ok(), "{name}");
            assert_eq!(open.check_issued_cn(name), Ok(()), "{name}");
        }
        // A CN already in a certificate is not held to what include_cn needs of a request.
        assert_eq!(open.check_issued_cn("b\u{fc}cher.example.com"), Ok(()));
        // A CSR is signed as it is: its host-name CN must be among its SANs.
        let www = [San::Dns("www.example.com".into())];
        open.check_csr_names("web", Some("www.example.com"), &www).expect("among its SANs");
        open.check_csr_names("web", Some("Ops Team"), &www).expect("no host name");
        let err = open.check_csr_names("web", Some("api.example.com"), &www).unwrap_err().to_string();
        assert!(
            err.contains(
                "the CSR's CN \"api.example.com\" reads as a host name but is not among its DNS subjectAltNames"
            ),
            "{err}"
        );
        assert!(open.check_csr_names("web", Some("api.example.com"), &[]).is_err());
        open.sans.include_cn = false;
        open.check_csr_names("web", Some("api.example.com"), &www).expect("the profile does not put the CN there");
    }

    #[test]
    fn an_uploaded_subject_may_repeat_fixed_fields_and_change_only_overridable_ones() {
        let p = profile();
        let s = |f: &dyn Fn(&mut Subject)| {
            let mut subject = Subject { common_name: Some("www.example.com".into()), ..Subject::default() };
            f(&mut subject);
            subject
        };
        for fine in [
            s(&|_| {}),
            s(&|x| x.organization = vec!["Example".into()]),
            s(&|x| (x.country, x.organizational_unit) = (Some("CH".into()), vec!["Anything".into()])),
        ] {
            assert_eq!(p.check_uploaded_subject("web", "the CSR's", &fine), Ok(()), "{fine:?}");
        }
        for (bad, field) in [
            (s(&|x| x.organization = vec!["Bank Inc".into()]), "O"),
            (s(&|x| x.organization = vec!["Example".into(), "Bank Inc".into()]), "O"),
            (s(&|x| x.country = Some("US".into())), "C"),
        ] {
            let err = p.check_uploaded_subject("web", "the CSR's", &bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("the CSR's subject field {field} is not the profile's, which fixes it")),
                "{err}"
            );
        }
        // A field the profile does not set is not one it "fixes" (API review of stop 38).
        for (bad, field) in [
            (s(&|x| x.locality = Some("Zug".into())), "L"),
            (s(&|x| x.email = Some("a@example.com".into())), "emailAddress"),
        ] {
            let err = p.check_uploaded_subject("web", "the CSR's", &bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "the CSR's subject has field {field}, which the profile neither sets nor lists in [subject] overridable"
                )),
                "{err}"
            );
        }
        // A CSR must carry what the profile fixes: the CA signs its subject as it is.
        let err = p.check_csr_subject("web", &s(&|_| {})).unwrap_err().to_string();
        assert!(err.contains("the CSR's subject has no O, which the profile fixes as \"Example\""), "{err}");
        let fixed = s(&|x| (x.organization, x.country) = (vec!["Example".into()], Some("CH".into())));
        assert_eq!(p.check_csr_subject("web", &fixed), Ok(()), "overridable fields (OU) may be left out");
        let err = p.check_csr_subject("web", &s(&|x| x.organization = vec!["Example".into()])).unwrap_err();
        assert!(err.to_string().contains("has no C, which the profile fixes as \"CH\""), "{err}");
        let err = p.check_csr_subject("web", &s(&|x| x.organization = vec!["Bank Inc".into()])).unwrap_err();
        assert!(err.to_string().contains("subject field O is not the profile's"), "{err}");
    }

    /// Regression: `before_days = 30` with 20-day (or ACME 6-day) certificates made every
    /// successor due the moment it was issued, so the scheduler renewed one per round, forever.
    #[test]
    fn a_before_longer_than_the_lifetime_falls_back_to_two_thirds_of_it() {
        let day = 86_400;
        let policy = |d: Option<u32>, m: Option<u32>| RenewalPolicy {
            before_days: d,
            before_minutes: m,
            ..RenewalPolicy::default()
        };
        let (nb, na) = (1_000 * day, 1_020 * day);
        let two_thirds = nb + 20 * day * 2 / 3;
        // 30 days before a 20-day certificate's end is before it began.
        assert_eq!(policy(Some(30), None).due_at(nb, na), Some(Due { at: two_thirds, fell_back: true }));
        // 15 days before its end is within its first third.
        assert_eq!(policy(Some(15), None).due_at(nb, na), Some(Due { at: two_thirds, fell_back: true }));
        // 10 days before its end is past the first third: the policy's own time.
        assert_eq!(policy(Some(10), None).due_at(nb, na), Some(Due { at: na - 10 * day, fell_back: false }));
        // A six-day ACME certificate and before_minutes = 7 days (10080).
        let acme = nb + 6 * day;
        assert_eq!(policy(None, Some(10_080)).due_at(nb, acme), Some(Due { at: nb + 4 * day, fell_back: true }));
        assert_eq!(policy(None, Some(60)).due_at(nb, acme), Some(Due { at: acme - 3600, fell_back: false }));
        // at_percent and the default are fractions of the lifetime already.
        let pct = RenewalPolicy { at_percent: Some(10), ..RenewalPolicy::default() };
        assert_eq!(pct.due_at(nb, na), Some(Due { at: nb + 2 * day, fell_back: false }));
        assert_eq!(RenewalPolicy::default().due_at(nb, na), Some(Due { at: two_thirds, fell_back: false }));
        assert_eq!(RenewalPolicy { auto: false, ..policy(Some(30), None) }.due_at(nb, na), None);
    }

    /// Regression (API walkthrough of stop 48): local-ca backdates notBefore by 5 minutes, so
    /// two thirds of a 2-minute certificate's lifetime counted from it had passed when it was
    /// stored, and the scheduler renewed every successor the round it was stored. The lifetime
    /// counts from when it was stored, and no jitter reaches back to that moment.
    #[test]
    fn a_backdated_not_before_does_not_make_a_short_certificate_due_when_stored() {
        let stored = 1_000_000;
        let (nb, na) = (stored - 300, stored + 120);
        let start = lifetime_start(nb, stored);
        assert_eq!(start, stored);
        let due = RenewalPolicy::default().due_at(start, na).expect("due");
        assert_eq!(due.at, stored + 80);
        assert_eq!(RenewalPolicy::max_jitter(start, na, due.at), 1);
        // A CA clock running ahead: its notBefore is later than the moment it was stored.
        assert_eq!(lifetime_start(stored + 20, stored), stored + 20);
        // Stored six days after its notBefore (polled after an outage): a day of backdating at
        // most, so a 7-day certificate with before_days = 2 is due at once, as before.
        let nb = stored - 6 * 86_400;
        assert_eq!(lifetime_start(nb, stored), nb + MAX_BACKDATE);
        let two_days = RenewalPolicy { before_days: Some(2), ..RenewalPolicy::default() };
        assert_eq!(two_days.due_at(lifetime_start(nb, stored), nb + 7 * 86_400).expect("due").at, nb + 5 * 86_400);
        // at_percent = 1 of a day: jitter stays within half of the 864 s before it is due.
        let day = stored + 86_400;
        let pct = RenewalPolicy { at_percent: Some(1), ..RenewalPolicy::default() };
        let due = pct.due_at(stored, day).expect("due").at;
        assert_eq!((due, RenewalPolicy::max_jitter(stored, day, due)), (stored + 864, 432));
    }

    #[test]
    fn definitions_are_checked() {
        let mut p = profile();
        p.renewal.before_days = Some(121);
        assert!(p.check("x").unwrap_err().to_string().contains("before_days 121 must be 1-120"));
        let mut p = profile();
        p.accounts.clear();
        assert!(matches!(p.check("x"), Err(PolicyError::NoAccounts(_))));
        assert!(toml::from_str::<ProfileDef>("accounts = [\"a\"]\nbogus = 1").is_err(), "unknown fields are refused");
        // A pattern that would match anything once anchored, or nothing at all, is refused
        // when the profile is saved, not discovered on requests.
        let mut p = profile();
        p.sans.dns_regex = Some("[a-z]+)|(.*".into());
        assert!(p.check("x").unwrap_err().to_string().contains("invalid regex"));
        let mut p = profile();
        p.cn.allowed = Some("(?x)[a-z]+ # lower case".into());
        assert!(p.check("x").unwrap_err().to_string().contains("the form it is matched in"));
    }

    #[test]
    fn a_key_and_its_certificate_in_two_targets_is_said() {
        let split: ProfileDef = toml::from_str(
            "accounts = [\"a\"]\n[[deploy]]\nkey = \"/tls/k.pem\"\n[[deploy]]\nfullchain = \"/tls/f.pem\"\n",
        )
        .expect("profile");
        let why = split.split_key_and_certificate().expect("said");
        assert!(why.starts_with("deploy target 1 writes the key and target 2 the certificate"), "{why}");
        let together: ProfileDef =
            toml::from_str("accounts = [\"a\"]\n[[deploy]]\nkey = \"/tls/k.pem\"\nfullchain = \"/tls/f.pem\"\n")
                .expect("profile");
        assert_eq!(together.split_key_and_certificate(), None);
    }
}
