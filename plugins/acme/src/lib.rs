//! acme: a connector for ACME (RFC 8555) CAs — Let's Encrypt, ZeroSSL, and the ACME endpoints
//! of commercial CAs with external account binding.
//!
//! One call runs the whole flow: directory, account (created once per account key and
//! cached by the host), new-order for the CSR's DNS and IP names (RFC 8738), authorizations,
//! challenges, finalize with the host's CSR, polling the order (Retry-After honoured) and the
//! chain download. When the CA takes longer than `wait_seconds`, the call returns `pending`
//! with the order URL; the host's poller then calls `poll`, which carries on from the order's
//! state. Pure Rust (RustCrypto p256, sha2, hmac), so it builds for wasm32-wasip2.

mod client;
mod jws;

use certhost_plugin_sdk::*;
use serde_json::{Value, json};
use x509_parser::prelude::*;

use client::{AccountParams, Session};

struct Acme;

/// What can go wrong talking to an ACME CA; each becomes a [`ConnectorError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// A parameter has a wrong value.
    #[error("{0}")]
    Misconfigured(String),
    /// account_key does not parse.
    #[error("account_key is not a P-256 private key in PKCS#8 or SEC1 PEM")]
    BadAccountKey,
    /// eab_hmac_key does not decode.
    #[error("eab_hmac_key is not base64url")]
    BadEabKey,
    /// The HTTP layer failed (already a connector error: unreachable, denied...).
    #[error("HTTP request failed")]
    Http(ConnectorError),
    /// The directory is missing or malformed.
    #[error("the ACME directory is unusable: {0}")]
    Directory(String),
    /// The CA answered something RFC 8555 does not allow.
    #[error("the ACME server broke the protocol: {0}")]
    Protocol(String),
    /// A signed request needed an account that does not exist yet.
    #[error("no ACME account URL is known for the account key")]
    NoAccount,
    /// The CA refused a request with a problem document (§6.7).
    #[error("the ACME server refused the request ({kind}, HTTP {status}): {detail}")]
    Problem { status: u16, kind: String, detail: String },
    /// The CA refused to create the account.
    #[error("the ACME server refused the new account ({kind}): {detail}")]
    Account { kind: String, detail: String },
    /// The CA tried an authorization's challenge and it failed: the CA's decision, so the
    /// order is rejected whether the issuing call or a later poll sees it.
    #[error("{0}")]
    ValidationFailed(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl AcmeError {
    fn account(e: AcmeError) -> AcmeError {
        match e {
            AcmeError::Problem { kind, detail, .. } => AcmeError::Account { kind, detail },
            other => other,
        }
    }
}

impl From<AcmeError> for ConnectorError {
    fn from(e: AcmeError) -> Self {
        let message = e.to_string();
        match e {
            AcmeError::Http(inner) => inner,
            AcmeError::Misconfigured(_) | AcmeError::BadAccountKey | AcmeError::BadEabKey | AcmeError::Directory(_) => {
                ConnectorError::Misconfigured(message)
            }
            AcmeError::Account { ref kind, .. } if kind == "externalAccountRequired" => ConnectorError::Misconfigured(
                "the ACME server requires external account binding: set eab_kid and eab_hmac_key".into(),
            ),
            AcmeError::Account { ref kind, .. } if kind == "unauthorized" => ConnectorError::Unauthorized(message),
            AcmeError::Problem { ref kind, .. } if kind == "unauthorized" => ConnectorError::Unauthorized(message),
            _ => ConnectorError::Internal(message),
        }
    }
}

fn param(name: &str, description: &str, required: bool, sensitive: bool, default: Option<&str>) -> ParameterSpec {
    ParameterSpec {
        name: name.into(),
        description: description.into(),
        required,
        sensitive,
        default: default.map(Into::into),
    }
}

fn account_params(args: &[Param]) -> Result<AccountParams<'_>, AcmeError> {
    let directory_url =
        arg(args, "directory_url").map_err(|_| AcmeError::Misconfigured("missing parameter directory_url".into()))?;
    let eab = match (optional_arg(args, "eab_kid"), optional_arg(args, "eab_hmac_key")) {
        (Some(kid), Some(key)) => Some((kid, key)),
        (None, None) => None,
        _ => return Err(AcmeError::Misconfigured("eab_kid and eab_hmac_key must be set together".into())),
    };
    Ok(AccountParams {
        directory_url,
        contact_email: optional_arg(args, "contact_email"),
        eab,
        account_key: optional_arg(args, "account_key"),
    })
}

/// The challenge type to answer.
#[derive(Clone, Copy, PartialEq)]
enum Challenge {
    Http01,
    Dns01,
}

impl Challenge {
    fn from_args(args: &[Param]) -> Result<Self, AcmeError> {
        match optional_arg(args, "challenge").unwrap_or("http-01") {
            "http-01" => Ok(Self::Http01),
            "dns-01" => Ok(Self::Dns01),
            other => Err(AcmeError::Misconfigured(format!("challenge must be http-01 or dns-01, not {other:?}"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
        }
    }
}

/// A monotonic deadline for waiting inside one call.
struct Deadline(u64);

impl Deadline {
    fn after_seconds(s: u64) -> Self {
        Self(wasi::clocks::monotonic_clock::now().saturating_add(s.saturating_mul(1_000_000_000)))
    }

    fn remaining_ms(&self) -> u64 {
        self.0.saturating_sub(wasi::clocks::monotonic_clock::now()) / 1_000_000
    }

    /// Sleeps for the CA's Retry-After (or a short backoff without one) if that fits before
    /// the deadline; `false` when it does not (the caller then returns `pending`).
    fn wait(&self, retry_after_s: Option<u64>, attempt: u32) -> bool {
        // Never sooner than the CA asks; without a hint (or "0") a short backoff from 25 ms
        // to 1 s, so a fast CA costs milliseconds, not a fixed polling interval.
        let backoff = (25u64 << attempt.min(6)).min(1000);
        let ms = retry_after_s.map_or(backoff, |s| s.saturating_mul(1000).max(backoff));
        if ms > self.remaining_ms() {
            return false;
        }
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
        true
    }
}

/// The identifiers of a CSR: its CN and subject alternative names, DNS and IP (RFC 8738).
fn identifiers(csr_der: &[u8]) -> Result<Vec<Value>, AcmeError> {
    let (_, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| AcmeError::Internal(format!("the CSR does not parse: {e}")))?;
    let info = &csr.certification_request_info;
    let mut out: Vec<Value> = Vec::new();
    let mut add = |kind: &str, value: String| {
        let v = json!({ "type": kind, "value": value });
        if !out.contains(&v) {
            out.push(v);
        }
    };
    for cn in info.subject.iter_common_name() {
        if let Ok(s) = cn.as_str() {
            match s.parse::<std::net::IpAddr>() {
                Ok(ip) => add("ip", ip.to_string()),
                Err(_) => add("dns", s.to_ascii_lowercase()),
            }
        }
    }
    for attr in info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            for ext in &req.extensions {
                if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => add("dns", d.to_ascii_lowercase()),
                            GeneralName::IPAddress(b) if b.len() == 4 => {
                                let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                                add("ip", std::net::Ipv4Addr::from(a).to_string());
                            }
                            GeneralName::IPAddress(b) if b.len() == 16 => {
                                let mut a = [0u8; 16];
                                a.copy_from_slice(b);
                                add("ip", std::net::Ipv6Addr::from(a).to_string());
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(AcmeError::Misconfigured("the CSR names no DNS name or IP address for ACME".into()));
    }
    Ok(out)
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, AcmeError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| AcmeError::Internal(format!("{what} is not PEM: {e}")))?;
    Ok(block.contents)
}

/// Splits a PEM chain into certificates, leaf first.
fn split_chain(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter_map(|part| part.find("-----BEGIN CERTIFICATE-----").map(|i| format!("{}\n", &part[i..])))
        .filter(|c| c.contains(END))
        .collect()
}

fn csr_cache_key(order_url: &str) -> String {
    format!("acme:csr:{order_url}")
}

/// Answers the authorizations of an order (the configured challenge of each pending one,
/// published through the host) and withdraws the answers once they are decided. While the CA
/// is still validating when the wait ends, they stay published — withdrawn then, the CA found
/// nothing and every slow validation failed — and are remembered for the `poll` that sees
/// the order decided ([`withdraw_remembered`]).
fn authorize(
    session: &mut Session,
    order_url: &str,
    order: &Value,
    challenge: Challenge,
    deadline: &Deadline,
) -> Result<bool, AcmeError> {
    let mut published = Vec::new();
    let result = answer_authorizations(session, order, challenge, deadline, &mut published);
    match result {
        Ok(false) => remember(order_url, published),
        // Decided: every answer goes, this call's and earlier ones'.
        Ok(true) | Err(AcmeError::ValidationFailed(_)) => {
            withdraw(published);
            withdraw_remembered(order_url);
        }
        // Undecided (the CA unreachable for a moment, mid-poll): what this call published
        // goes, as the call fails; what earlier calls left stays for the CA still validating.
        Err(_) => withdraw(published),
    }
    result
}

fn published_cache_key(order_url: &str) -> String {
    format!("acme:published:{order_url}")
}

/// Keeps `published` for the order's later polls (a week, as its CSR), with what is kept.
fn remember(order_url: &str, published: Vec<Published>) {
    if published.is_empty() {
        return;
    }
    let key = published_cache_key(order_url);
    let mut lines = cache_get(&key).unwrap_or_default();
    for p in published {
        match p {
            Published::Http01(token) => lines.push_str(&format!("http-01\t{token}\n")),
            Published::Dns01(domain, value) => lines.push_str(&format!("dns-01\t{domain}\t{value}\n")),
        }
    }
    cache_set(&key, &lines, 7 * 24 * 3600);
}

/// Withdraws the answers an earlier call left published for the order, now decided.
fn withdraw_remembered(order_url: &str) {
    let key = published_cache_key(order_url);
    let Some(lines) = cache_get(&key).filter(|l| !l.is_empty()) else { return };
    let published = lines
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some("http-01"), Some(token), None) => Some(Published::Http01(token.to_owned())),
                (Some("dns-01"), Some(domain), Some(value)) => {
                    Some(Published::Dns01(domain.to_owned(), value.to_owned()))
                }
                _ => None,
            }
        })
        .collect();
    withdraw(published);
    cache_set(&key, "", 1);
}

fn answer_authorizations(
    session: &mut Session,
    order: &Value,
    challenge: Challenge,
    deadline: &Deadline,
    cleanup: &mut Vec<Published>,
) -> Result<bool, AcmeError> {
    let authz_urls: Vec<String> = order["authorizations"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let thumbprint = session.key.thumbprint();
    // Every authorization is looked at before any challenge is answered: one the configured
    // challenge cannot serve (a wildcard with http-01) must not leave the others answered.
    let mut to_answer = Vec::new();
    let mut waiting = Vec::new();
    for url in authz_urls {
        let (authz, _) = session.fetch(&url)?;
        let value = authz["identifier"]["value"].as_str().unwrap_or("?");
        let wildcard = authz["wildcard"].as_bool() == Some(true);
        let ident = if wildcard { format!("*.{value}") } else { value.to_owned() };
        match authz["status"].as_str() {
            Some("valid") => continue,
            Some("pending") => {}
            Some(other) => {
                return Err(AcmeError::ValidationFailed(format!("the authorization for {ident} is {other}")));
            }
            None => return Err(AcmeError::Protocol(format!("{url} has no status"))),
        }
        let chall = authz["challenges"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"].as_str() == Some(challenge.name())))
            .ok_or_else(|| {
                let hint = if wildcard && challenge == Challenge::Http01 {
                    " (a wildcard is validated by dns-01 only: set challenge = \"dns-01\")"
                } else {
                    ""
                };
                AcmeError::Misconfigured(format!(
                    "the ACME server offers no {} challenge for {ident}{hint}",
                    challenge.name()
                ))
            })?;
        let token = chall["token"].as_str().ok_or_else(|| AcmeError::Protocol("a challenge has no token".into()))?;
        let chall_url = chall["url"].as_str().ok_or_else(|| AcmeError::Protocol("a challenge has no URL".into()))?;
        let pending = chall["status"].as_str() == Some("pending");
        to_answer.push((url, ident, token.to_owned(), chall_url.to_owned(), pending));
    }
    for (url, ident, token, chall_url, pending) in to_answer {
        let mut unpublished = None;
        if pending {
            // The host publishes the answer (contract 0.2). When it has no listener or hook,
            // the CA may still validate by other means (an operator's own web server or DNS,
            // an account pre-authorized by the CA): the challenge is answered, and the reason
            // named should the authorization fail. When publishing failed (the hook exited
            // non-zero), it is not: the CA would find nothing, and failed validations count
            // against the account's rate limit.
            let key_authorization = format!("{token}.{thumbprint}");
            let published = match challenge {
                Challenge::Http01 => {
                    challenges::publish_http01(&token, &key_authorization).map(|()| Published::Http01(token.clone()))
                }
                Challenge::Dns01 => {
                    let domain = ident.trim_start_matches("*.").to_owned();
                    let value = jws::dns01_value(&key_authorization);
                    challenges::dns01_present(&domain, &value).map(|()| Published::Dns01(domain, value))
                }
            };
            match published {
                Ok(p) => cleanup.push(p),
                Err(why) if host_has_no_publisher(&why) => {
                    log(
                        Level::Warn,
                        &format!("the host did not publish the {} answer for {ident}: {why}", challenge.name()),
                    );
                    unpublished = Some(why);
                }
                Err(why) => {
                    return Err(AcmeError::Misconfigured(format!(
                        "the host could not publish the {} answer for {ident}, so the challenge was not answered: {why}",
                        challenge.name()
                    )));
                }
            }
            session.post(&chall_url, Some(&json!({})), false)?;
        }
        waiting.push((url, ident, unpublished));
    }
    for (url, ident, unpublished) in waiting {
        let mut attempt = 0;
        loop {
            let (authz, retry) = session.fetch(&url)?;
            match authz["status"].as_str() {
                Some("valid") => break,
                Some("pending") | Some("processing") => {
                    if !deadline.wait(retry, attempt) {
                        return Ok(false);
                    }
                    attempt += 1;
                }
                other => {
                    let why = authz["challenges"]
                        .as_array()
                        .and_then(|cs| cs.iter().find_map(|c| c["error"]["detail"].as_str()))
                        .unwrap_or("no detail");
                    let host = unpublished
                        .map(|u| format!(" (the host could not publish the answer: {u})"))
                        .unwrap_or_default();
                    return Err(AcmeError::ValidationFailed(format!(
                        "the authorization for {ident} is {}: {why}{host}",
                        other.unwrap_or("without status")
                    )));
                }
            }
        }
    }
    Ok(true)
}

/// Whether the host's refusal to publish says it has no way to publish at all (no http-01
/// listener, no dns-01 hook: `ChallengeError::NoHttp01Listener` and `NoDns01Hook` in the
/// host's `connector/challenges.rs`), rather than that publishing failed.
fn host_has_no_publisher(why: &str) -> bool {
    why.starts_with("no http-01 challenge listener runs") || why.starts_with("no dns-01 hook is configured")
}

/// A challenge answer the host published, to withdraw once the authorizations are decided.
enum Published {
    Http01(String),
    Dns01(String, String),
}

fn withdraw(published: Vec<Published>) {
    for p in published {
        match p {
            Published::Http01(token) => challenges::withdraw_http01(&token),
            Published::Dns01(domain, value) => {
                if let Err(why) = challenges::dns01_cleanup(&domain, &value) {
                    log(Level::Warn, &format!("dns-01 cleanup for {domain} failed: {why}"));
                }
            }
        }
    }
}

/// Carries an order forward until it is issued or the deadline passes.
fn drive(
    session: &mut Session,
    order_url: &str,
    mut order: Value,
    mut retry: Option<u64>,
    csr_der: &[u8],
    challenge: Challenge,
    deadline: &Deadline,
) -> Result<Disposition, AcmeError> {
    let mut attempt = 0;
    let pending = |retry: Option<u64>| {
        Disposition::Pending(Pending {
            ca_order_id: order_url.to_owned(),
            retry_after_s: retry.unwrap_or(1).clamp(1, 3600) as u32,
        })
    };
    loop {
        match order["status"].as_str() {
            Some("pending") => {
                match authorize(session, order_url, &order, challenge, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Ok(pending(retry)),
                    Err(AcmeError::ValidationFailed(why)) => return Ok(Disposition::Rejected(why)),
                    Err(e) => return Err(e),
                }
                (order, retry) = session.fetch(order_url)?;
                continue;
            }
            Some("ready") => {
                let finalize = order["finalize"]
                    .as_str()
                    .ok_or_else(|| AcmeError::Protocol("the order has no finalize URL".into()))?
                    .to_owned();
                let response = session.post(&finalize, Some(&json!({ "csr": jws::b64(csr_der) })), false)?;
                retry = client::retry_after(&response);
                order = client::json_body(&response, &finalize)?;
                continue;
            }
            Some("processing") => {
                if !deadline.wait(retry, attempt) {
                    return Ok(pending(retry));
                }
                attempt += 1;
                (order, retry) = session.fetch(order_url)?;
            }
            Some("valid") => {
                let cert_url = order["certificate"]
                    .as_str()
                    .ok_or_else(|| AcmeError::Protocol("the valid order has no certificate URL".into()))?
                    .to_owned();
                let mut chain = split_chain(&session.download(&cert_url)?);
                if chain.is_empty() {
                    return Err(AcmeError::Protocol(format!("{cert_url} returned no certificate")));
                }
                let certificate = chain.remove(0);
                withdraw_remembered(order_url);
                return Ok(Disposition::Issued(Issued { certificate, chain, ca_order_id: Some(order_url.to_owned()) }));
            }
            Some("invalid") => {
                withdraw_remembered(order_url);
                let why = order["error"]["detail"].as_str().unwrap_or("no detail");
                return Ok(Disposition::Rejected(format!("the ACME order became invalid: {why}")));
            }
            other => {
                return Err(AcmeError::Protocol(format!("the order has an unknown status {other:?}")));
            }
        }
    }
}

fn wait_seconds(args: &[Param]) -> Result<u64, AcmeError> {
    match optional_arg(args, "wait_seconds") {
        None => Ok(20),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 3600)
            .ok_or_else(|| AcmeError::Misconfigured("wait_seconds must be a number of seconds up to 3600".into())),
    }
}

fn issue(request: &IssueRequest, args: &[Param]) -> Result<Disposition, AcmeError> {
    let params = account_params(args)?;
    let challenge = Challenge::from_args(args)?;
    let deadline = Deadline::after_seconds(wait_seconds(args)?);
    let csr_der = pem_der(&request.csr_pem, "the CSR")?;
    let identifiers = identifiers(&csr_der)?;
    let mut session = Session::open(&params)?;
    session.ensure_account(&params)?;
    let new_order = session.url("newOrder")?;
    let response = session.post(&new_order, Some(&json!({ "identifiers": identifiers })), false)?;
    let order_url = client::header(&response, "location")
        .ok_or_else(|| AcmeError::Protocol("new-order gave no order URL (Location)".into()))?;
    let order = client::json_body(&response, &new_order)?;
    let outcome =
        drive(&mut session, &order_url, order, client::retry_after(&response), &csr_der, challenge, &deadline);
    if let Ok(Disposition::Pending(_)) = &outcome {
        // Kept for `poll`, which gets only the order URL — only while the order is pending:
        // the account's cache holds at most 256 entries, and every issuance would fill one.
        cache_set(&csr_cache_key(&order_url), &jws::b64(&csr_der), 7 * 24 * 3600);
    }
    outcome
}

fn poll_order(order_url: &str, args: &[Param]) -> Result<Disposition, AcmeError> {
    use base64::Engine;
    let params = account_params(args)?;
    let challenge = Challenge::from_args(args)?;
    let deadline = Deadline::after_seconds(wait_seconds(args)?);
    let mut session = Session::open(&params)?;
    session.ensure_account(&params)?;
    let (order, retry) = match session.fetch(order_url) {
        // The CA no longer knows the order (it was reset, or the order belongs to an account
        // key that has changed): final. Retried as transient, the order stayed pending for good
        // and a renewal stuck this way let its certificate expire (ACME review of stop 40).
        Err(AcmeError::Problem { status: status @ (403 | 404), kind, detail }) => {
            return Ok(Disposition::Rejected(format!(
                "the ACME server no longer has order {order_url} for this account ({kind}, HTTP {status}: {detail}); \
                 it was lost (a reset of the CA, or a changed account key): request the certificate again"
            )));
        }
        other => other?,
    };
    let cached = cache_get(&csr_cache_key(order_url)).filter(|b| !b.is_empty());
    let csr_der = match &cached {
        Some(b) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b.as_bytes())
            .map_err(|_| AcmeError::Internal("the cached CSR is damaged".into()))?,
        None if matches!(order["status"].as_str(), Some("processing") | Some("valid") | Some("invalid")) => Vec::new(),
        None => {
            return Err(AcmeError::Internal(
                "the CSR of this order is no longer in the host cache (the account's connector, parameters or \
                 secrets changed, the order is over a week old, or the account's cache was full when it \
                 was left pending): resubmit the order"
                    .into(),
            ));
        }
    };
    let outcome = drive(&mut session, order_url, order, retry, &csr_der, challenge, &deadline);
    if cached.is_some() && matches!(outcome, Ok(Disposition::Issued(_) | Disposition::Rejected(_))) {
        // Decided: its entry makes room (set to expire in a second; the host then purges it).
        cache_set(&csr_cache_key(order_url), "", 1);
    }
    outcome
}

fn revocation_code(reason: RevocationReason) -> u8 {
    match reason {
        RevocationReason::Unspecified => 0,
        RevocationReason::KeyCompromise => 1,
        RevocationReason::CaCompromise => 2,
        RevocationReason::AffiliationChanged => 3,
        RevocationReason::Superseded => 4,
        RevocationReason::CessationOfOperation => 5,
        RevocationReason::CertificateHold => 6,
        RevocationReason::PrivilegeWithdrawn => 9,
        RevocationReason::AaCompromise => 10,
    }
}

impl Connector for Acme {
    fn describe() -> Description {
        Description {
            name: "acme".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                param(
                    "directory_url",
                    "the ACME directory URL (e.g. https://acme-v02.api.letsencrypt.org/directory)",
                    true,
                    false,
                    None,
                ),
                param("contact_email", "contact address for the ACME account", false, false, None),
                param("eab_kid", "external account binding key id, from the CA", false, false, None),
                param("eab_hmac_key", "external account binding MAC key (base64url), from the CA", false, true, None),
                param("challenge", "http-01 or dns-01", false, false, Some("http-01")),
                param(
                    "account_key",
                    "ACME account key (P-256 PEM); without it one is created and kept in the host cache until this account's parameters or secrets change",
                    false,
                    true,
                    None,
                ),
                param(
                    "wait_seconds",
                    "how long one call waits for the CA before answering pending",
                    false,
                    false,
                    Some("20"),
                ),
            ],
            operations: vec![Operation::Poll, Operation::Revoke, Operation::TestConnection],
        }
    }

    fn certificate_request(request: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Ok(issue(&request, &args)?)
    }

    fn poll(ca_order_id: String, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Ok(poll_order(&ca_order_id, &args)?)
    }

    fn revoke(request: RevokeRequest, args: Vec<Param>) -> Result<(), ConnectorError> {
        let params = account_params(&args)?;
        let der = pem_der(&request.certificate_pem, "the certificate")?;
        let mut session = Session::open(&params)?;
        session.ensure_account(&params)?;
        let url = session.url("revokeCert")?;
        let payload = json!({ "certificate": jws::b64(&der), "reason": revocation_code(request.reason) });
        session.post(&url, Some(&payload), false)?;
        Ok(())
    }

    /// Reads the directory, then finds or registers the ACME account: a CA that requires
    /// external account binding, refuses the contact or has deactivated the account says so
    /// here, not at the first issuance (review of stop 33: only the directory was read).
    fn test_connection(args: Vec<Param>) -> Result<(), ConnectorError> {
        let params = account_params(&args)?;
        let mut session = Session::open(&params)?;
        session.ensure_account(&params).map_err(AcmeError::account)?;
        session.verify_account().map_err(AcmeError::account)?;
        Ok(())
    }
}

register_connector!(Acme);
