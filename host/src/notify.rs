//! Notifications: a webhook (JSON with an HMAC-SHA256 signature header) and email over SMTP
//! (plain text for a person), for renewal failures, failed deployments, certificates expiring
//! without auto-renew, revocations and orders waiting on someone.
//!
//! Events are queued in the inventory (`notifications` table) in the same transaction as the
//! change they report, and `certhost serve` delivers them, so a crash never loses one. Each
//! channel's delivery is recorded on its own, and a batch is claimed before it is sent, so two
//! `serve` processes on one data directory do not both send it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::inventory::{Channel, ChannelsSince, Notification};
use crate::param::ValueSource;

/// `[notify]` in certhost.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// POST each event as JSON here.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Mail each event.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Report certificates without auto-renew this many days before they expire (default 14).
    #[serde(default = "default_expiring_days")]
    pub expiring_within_days: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self { webhook: None, email: None, expiring_within_days: default_expiring_days() }
    }
}

fn default_expiring_days() -> u32 {
    14
}

/// A webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://...` (or `http://` on loopback).
    pub url: String,
    /// HMAC-SHA256 key for the `X-Certhost-Signature: sha256=HEX` header: `{ env = "VAR" }`
    /// or `{ file = "PATH" }` (never a literal in the file).
    pub secret: Option<ValueSource>,
    /// Extra trusted CA PEM for the receiver's TLS.
    pub extra_ca_pem: Option<PathBuf>,
}

/// An SMTP relay and the recipients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Relay host.
    pub smtp_host: String,
    /// Relay port (default 25).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// `none` (plain, for a local relay), `starttls` or `tls`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP user, when the relay wants one.
    pub username: Option<String>,
    /// Its password: `{ env = "VAR" }` or `{ file = "PATH" }`.
    pub password: Option<ValueSource>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

fn default_smtp_port() -> u16 {
    25
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// No TLS (a relay on loopback).
    #[default]
    None,
    /// Plain connection upgraded with STARTTLS.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Why a delivery failed (the notification is retried later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The webhook receiver failed or refused.
    #[error("webhook {url}: {reason}")]
    Webhook {
        /// Receiver.
        url: String,
        /// Why.
        reason: String,
    },
    /// The SMTP relay failed or refused.
    #[error("email via {host}: {reason}")]
    Email {
        /// Relay.
        host: String,
        /// Why.
        reason: String,
    },
    /// A secret reference did not resolve.
    #[error("{0}")]
    Config(String),
}

/// What a mail says about `n`, for a person: what happened, what to do about it, then the
/// facts (the webhook's JSON, one per line). The body was the pretty-printed JSON before (stop
/// 37 left it so): readable to a program, not to the operator it was sent to.
fn mail_text(n: &Notification) -> String {
    let order = n.detail.get("order_id").and_then(serde_json::Value::as_i64);
    let cert = n.certificate_id;
    let (what, next) = match n.kind.as_str() {
        "renewal_failed" => (
            "An automatic renewal failed.",
            "certhost retries it with backoff and says so again at most once a day while it fails; certhost renewals --failing shows its last error and next attempt.".to_owned(),
        ),
        "renewal_failed_digest" => (
            "Automatic renewals of one profile are failing in numbers: a profile's first five failures in an hour are sent one by one, the rest are gathered here (certificate_ids).",
            match n.detail.get("profile").and_then(serde_json::Value::as_str) {
                Some(p) => format!("certhost renewals --failing --profile {p} lists them with their errors; certhost renewals retry --profile {p} retries them now once the cause is fixed."),
                None => "certhost renewals --failing lists them with their errors; certhost renewals retry followed by their ids retries them now once the cause is fixed.".to_owned(),
            },
        ),
        "renewal_recovered_digest" => (
            "Certificates whose automatic renewal had failed renewed: a profile's first five in an hour are sent one by one, the rest are gathered here (certificate_ids).",
            "certhost renewals shows the history.".to_owned(),
        ),
        "renewal_recovered" => (
            if n.detail.get("failed_attempts").and_then(serde_json::Value::as_i64) == Some(0) {
                "This certificate, which had expired, renewed: its successor is in service."
            } else {
                "This certificate's renewal, which had failed, succeeded: its successor is in service."
            },
            n.detail
                .get("successor_id")
                .and_then(serde_json::Value::as_i64)
                .map(|s| format!("certhost show {s} shows the new certificate."))
                .unwrap_or_default(),
        ),
        "expiring" => (
            "This certificate expires soon and is not renewed automatically.",
            cert.map(|c| format!("Renew it with certhost renew {c}, or let it expire.")).unwrap_or_default(),
        ),
        "expired" => ("This certificate has expired.", "certhost renewals shows how its renewal stands.".to_owned()),
        "revoked" => ("This certificate was revoked.", String::new()),
        "deploy_failed" => (
            "Deploying this certificate failed.",
            cert.map(|c| format!("certhost serve tries again with backoff; certhost deploy {c} tries now.")).unwrap_or_default(),
        ),
        "awaiting_approval" => (
            "An order waits for approval by someone other than its requester.",
            order
                .map(|o| format!("Approve it with certhost orders approve {o}, or decline it with certhost orders decline {o} (or POST /v1/orders/{o}/approve)."))
                .unwrap_or_default(),
        ),
        "needs_attention" => (
            "An order is held for an operator: the CA may have acted on it.",
            order
                .map(|o| format!("Check at the CA, then send it again with certhost orders resubmit {o} or drop it with certhost orders decline {o}."))
                .unwrap_or_default(),
        ),
        _ => ("", String::new()),
    };
    let mut text = format!("{}\n\n", clean(&n.subject));
    for line in [what, next.as_str()].into_iter().filter(|l| !l.is_empty()) {
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    if let Some(c) = cert {
        text.push_str(&format!("certificate: {c} (certhost show {c}; GET /v1/certificates/{c})\n"));
    }
    if let Some(o) = order {
        text.push_str(&format!("order: {o} (certhost orders show {o}; GET /v1/orders/{o})\n"));
    }
    if let Some(fields) = n.detail.as_object() {
        for (name, value) in fields.iter().filter(|(name, value)| name.as_str() != "order_id" && !value.is_null()) {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // A multi-line value (a connector's error) stays under its name.
            text.push_str(&format!("{name}: {}\n", clean(&value).replace('\n', "\n    ")));
        }
    }
    text.push_str(&format!(
        "queued: {}\n\nNotification {} ({}); a webhook receives the same as JSON.\n",
        crate::view::rfc3339(n.created_at),
        n.id,
        n.kind
    ));
    text
}

/// `text` without control characters other than line ends and tabs (a connector's error may
/// carry any byte).
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c }).collect()
}

/// The JSON a webhook receives.
fn payload(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "delivery_id": n.delivery_id,
        "kind": n.kind,
        "certificate_id": n.certificate_id,
        "subject": n.subject,
        "detail": n.detail,
        "created_at": crate::view::rfc3339(n.created_at),
    })
}

/// The signature header value for `body` under `secret`: `sha256=` + hex HMAC-SHA256.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
}

impl NotifyConfig {
    /// Whether any channel is configured.
    pub fn enabled(&self) -> bool {
        self.webhook.is_some() || self.email.is_some()
    }

    /// The configured channels notification `n` has not reached yet, of those configured
    /// since it was queued.
    fn channels_left(&self, n: &Notification, since: &ChannelsSince) -> Vec<Channel> {
        let webhook =
            (self.webhook.is_some() && !n.webhook_sent && since.wants(Channel::Webhook, n)).then_some(Channel::Webhook);
        let email = (self.email.is_some() && !n.email_sent && since.wants(Channel::Email, n)).then_some(Channel::Email);
        webhook.into_iter().chain(email).collect()
    }

    /// Sends notification `n` on one channel; a send that hangs past its own timeouts still
    /// ends after [`SEND_TIMEOUT`].
    async fn send(
        &self,
        channel: Channel,
        n: &Notification,
        env: crate::param::EnvLookup<'_>,
    ) -> Result<(), NotifyError> {
        match (channel, &self.webhook, &self.email) {
            (Channel::Webhook, Some(w), _) => {
                tokio::time::timeout(SEND_TIMEOUT, send_webhook(w, n, env)).await.unwrap_or_else(|_| {
                    Err(NotifyError::Webhook { url: origin(&w.url), reason: "no answer in time".into() })
                })
            }
            (Channel::Email, _, Some(e)) => {
                tokio::time::timeout(SEND_TIMEOUT, send_email(e, n, env)).await.unwrap_or_else(|_| {
                    Err(NotifyError::Email { host: e.smtp_host.clone(), reason: "no answer in time".into() })
                })
            }
            // `channels_left` only names configured channels.
            _ => Ok(()),
        }
    }
}

/// The scheme, host and port of a webhook URL, for errors: the path and query of a chat
/// webhook (`https://hooks.slack.com/services/T…/B…/SECRET`) are its credential, and errors
/// reach the log and the notification's stored `last_error` (review of stop 31).
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "(the configured URL)".to_owned(),
    }
}

async fn send_webhook(
    w: &WebhookConfig,
    n: &Notification,
    env: crate::param::EnvLookup<'_>,
) -> Result<(), NotifyError> {
    let err = |reason: String| NotifyError::Webhook { url: origin(&w.url), reason };
    let body = payload(n).to_string();
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = &w.extra_ca_pem {
        let bytes = std::fs::read(pem).map_err(|e| err(format!("{}: {e}", pem.display())))?;
        let cert = reqwest::Certificate::from_pem(&bytes).map_err(|e| err(format!("{}: {e}", pem.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().map_err(|e| err(e.to_string()))?;
    let mut req = client
        .post(&w.url)
        .header("content-type", "application/json")
        .header("x-certhost-event", n.kind.as_str())
        .header("x-certhost-delivery", n.delivery_id.as_str());
    if let Some(src) = &w.secret {
        let secret =
            crate::param::resolve(src, "secret", "the webhook", env).map_err(|e| NotifyError::Config(e.to_string()))?;
        req = req.header("x-certhost-signature", signature(secret.as_bytes(), body.as_bytes()));
    }
    // With its causes: "error sending request" alone did not say the connection was refused
    // (day-2 walkthrough of stop 46). The URL is left out: it may carry the receiver's token.
    let resp = req.body(body).send().await.map_err(|e| {
        let e = e.without_url();
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why.push_str(": ");
            why.push_str(&c.to_string());
            cause = c.source();
        }
        err(why)
    })?;
    if !resp.status().is_success() {
        return Err(err(format!("answered HTTP {}", resp.status().as_u16())));
    }
    Ok(())
}

async fn send_email(e: &EmailConfig, n: &Notification, env: crate::param::EnvLookup<'_>) -> Result<(), NotifyError> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let err = |reason: String| NotifyError::Email { host: e.smtp_host.clone(), reason };
    let from = e.from.parse().map_err(|x| err(format!("from address: {x}")))?;
    let mut message = Message::builder().from(from).subject(n.subject.clone());
    for to in &e.to {
        message = message.to(to.parse().map_err(|x| err(format!("recipient {to}: {x}")))?);
    }
    let message = message
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(mail_text(n))
        .map_err(|x| err(x.to_string()))?;
    let mut transport = match e.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.smtp_host),
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&e.smtp_host).map_err(|x| err(x.to_string()))?
        }
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&e.smtp_host).map_err(|x| err(x.to_string()))?
        }
    }
    .port(e.smtp_port)
    .timeout(Some(std::time::Duration::from_secs(15)));
    if let Some(user) = &e.username {
        let password = match &e.password {
            Some(src) => crate::param::resolve(src, "password", "the SMTP relay", env)
                .map_err(|x| NotifyError::Config(x.to_string()))?,
            None => String::new(),
        };
        transport =
            transport.credentials(lettre::transport::smtp::authentication::Credentials::new(user.clone(), password));
    }
    transport.build().send(message).await.map_err(|x| err(x.to_string()))?;
    Ok(())
}

/// Notifications claimed at a time; a round goes on to the next batch while each is
/// delivered whole, for up to [`ROUND_BUDGET`] or the round interval.
const BATCH: u32 = 100;
/// Sent at once: a slow receiver holds a few of them, not the round.
const CONCURRENCY: usize = 8;
/// No send starts after this much of a round.
const ROUND_BUDGET: Duration = Duration::from_secs(60);
/// The longest one channel's send may take, whatever its own timeouts say.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A claim outlives the longest round (budget, then the sends in flight on both channels),
/// so no other process sends a claimed notification while this one may still be at it.
const LEASE_SECONDS: i64 = 180;

/// Delivers the due notifications, each channel of each on its own, [`CONCURRENCY`] sends at
/// a time, starting none after [`ROUND_BUDGET`]. A channel reached is recorded at once; a
/// notification with a failed channel is retried with backoff (1 minute doubling to an hour)
/// on that channel only. When `shutdown` turns true the sends in flight are dropped, and what
/// was not recorded is given back, still queued. Returns (sent, failed) notifications.
pub async fn deliver_pending(
    inv: &mut crate::inventory::Inventory,
    config: &NotifyConfig,
    since: &ChannelsSince,
    env: crate::param::SharedEnvLookup,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(usize, usize), crate::inventory::InventoryError> {
    let claimed = inv.claim_notifications(LEASE_SECONDS, BATCH)?;
    let (mut sent, mut failed) = (0, 0);
    // Per notification: itself, its sends not yet answered, the failures so far.
    let mut open: HashMap<i64, (Notification, usize, Vec<String>)> = HashMap::new();
    let mut sends: VecDeque<(Notification, Channel)> = VecDeque::new();
    let mut before = 0;
    for n in claimed {
        let channels = config.channels_left(&n, since);
        if channels.is_empty() {
            // Everything due went out, or the event predates the channels that are left.
            before += usize::from(!n.webhook_sent && !n.email_sent);
            inv.mark_notification(n.id, Ok(()))?;
            sent += 1;
            continue;
        }
        sends.extend(channels.iter().map(|c| (n.clone(), *c)));
        open.insert(n.id, (n, channels.len(), Vec::new()));
    }
    if before > 0 {
        tracing::info!(
            count = before,
            "notifications queued before the first serve run with a channel configured were not sent (a channel gets \
             what is queued from then on)"
        );
    }
    let deadline = tokio::time::Instant::now() + ROUND_BUDGET;
    let config = std::sync::Arc::new(config.clone());
    let mut sending = tokio::task::JoinSet::new();
    let mut stopping = *shutdown.borrow();
    loop {
        while !stopping && sending.len() < CONCURRENCY && tokio::time::Instant::now() < deadline {
            let Some((n, channel)) = sends.pop_front() else { break };
            let (config, env) = (config.clone(), env.clone());
            sending.spawn(async move { (n.id, channel, config.send(channel, &n, &*env).await) });
        }
        let joined = tokio::select! {
            joined = sending.join_next() => joined,
            // Aborting drops the sends in flight; they are not recorded, so they are sent
            // again later: at least once, never lost.
            changed = shutdown.changed(), if !stopping => {
                stopping = changed.is_err() || *shutdown.borrow();
                if stopping {
                    sending.abort_all();
                }
                continue;
            }
        };
        let Some(joined) = joined else { break };
        // A send that panicked or was aborted leaves its notification open: given back below.
        let Ok((id, channel, result)) = joined else { continue };
        let Some((n, left, errors)) = open.get_mut(&id) else { continue };
        match result {
            Ok(()) => inv.mark_channel_sent(id, channel)?,
            Err(e) => errors.push(e.to_string()),
        }
        *left -= 1;
        if *left > 0 {
            continue;
        }
        if errors.is_empty() {
            inv.mark_notification(id, Ok(()))?;
            sent += 1;
        } else {
            let error = errors.join("; ");
            let wait = (60i64 << n.attempts.clamp(0, 6)).min(3600);
            let retry_at = crate::clock::unix_now() + wait;
            tracing::warn!(notification = id, %error, "notification not delivered; retrying in {wait}s");
            inv.mark_notification(id, Err((&error, retry_at)))?;
            failed += 1;
        }
        open.remove(&id);
    }
    if !open.is_empty() {
        let ids: Vec<i64> = open.into_keys().collect();
        tracing::info!(count = ids.len(), "notifications left for the next round");
        inv.release_notifications(&ids)?;
    }
    Ok((sent, failed))
}

/// Queues and delivers notifications every `interval` until `shutdown` turns true — a task
/// of its own, so a slow receiver never holds up renewals, and shutdown never waits for one.
pub async fn run(
    inventory: crate::inventory::InventoryPool,
    env: crate::param::SharedEnvLookup,
    config: NotifyConfig,
    since: ChannelsSince,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    crate::metrics::notifications_configured(config.enabled());
    loop {
        if *shutdown.borrow() {
            return;
        }
        match inventory.get().await {
            Err(e) => tracing::error!(error = %e, "notifications skipped: no database connection"),
            Ok(mut inv) => {
                if config.enabled() {
                    if let Err(e) = inv.queue_expiring(config.expiring_within_days) {
                        tracing::error!(error = %e, "queueing expiry notifications failed");
                    }
                    // Batch after batch while each was dealt with whole: 100 a round (200 a
                    // minute at the default interval) took half an hour over 5,750 `expired`
                    // events a receiver answered at once (scale walkthrough of stop 50).
                    let started = tokio::time::Instant::now();
                    loop {
                        match deliver_pending(&mut inv, &config, &since, env.clone(), &mut shutdown).await {
                            // A batch that failed any stops the round: a receiver that
                            // refuses at once would otherwise be tried with the whole backlog.
                            Ok((sent, 0)) if sent >= BATCH as usize => {}
                            Ok(_) => break,
                            Err(e) => {
                                tracing::error!(error = %e, "delivering notifications failed");
                                break;
                            }
                        }
                        if *shutdown.borrow() || started.elapsed() >= ROUND_BUDGET.max(interval) {
                            break;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Regression (review of stop 31): a failed delivery logged and stored the whole webhook
    /// URL, whose path is the credential of a chat webhook.
    #[test]
    fn a_webhook_error_names_only_the_origin() {
        assert_eq!(
            super::origin("https://hooks.example.com:8443/services/T0/B0/SECRETxyz?q=1"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(super::origin("not a url SECRET"), "(the configured URL)");
    }

    /// Day-2 walkthrough of stop 46: a receiver that refused the connection was logged as
    /// "error sending request". The causes are said; the URL's path is not.
    #[tokio::test]
    async fn a_refused_connection_is_said_with_its_cause() {
        // A port just bound and let go: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let w = super::WebhookConfig {
            url: format!("http://127.0.0.1:{port}/hooks/T0KEN"),
            secret: None,
            extra_ca_pem: None,
        };
        let n = crate::inventory::Notification {
            id: 1,
            kind: "revoked".into(),
            certificate_id: Some(1),
            subject: "s".into(),
            detail: serde_json::json!({}),
            created_at: 0,
            attempts: 0,
            webhook_sent: false,
            email_sent: false,
            delivery_id: "d".into(),
        };
        let e = super::send_webhook(&w, &n, &|_| None).await.expect_err("nothing listens").to_string();
        assert!(e.to_lowercase().contains("connection refused") && !e.contains("T0KEN"), "{e}");
    }

    /// Stop 37 left the mail body as the webhook's pretty-printed JSON; it says what happened
    /// and what to do, then the facts.
    #[test]
    fn a_mail_says_what_happened_and_what_to_do() {
        let n = crate::inventory::Notification {
            id: 7,
            kind: "awaiting_approval".into(),
            certificate_id: None,
            subject: "certhost: order 12 (www.example.com, profile web) awaits approval by someone other than token:a"
                .into(),
            detail: serde_json::json!({ "order_id": 12, "profile": "web", "requested_by": "token:a\u{1b}[2J" }),
            created_at: 0,
            attempts: 0,
            webhook_sent: false,
            email_sent: false,
            delivery_id: "d".into(),
        };
        let text = super::mail_text(&n);
        assert!(text.starts_with("certhost: order 12 (www.example.com, profile web) awaits approval"), "{text}");
        assert!(text.contains("certhost orders approve 12"), "{text}");
        assert!(text.contains("order: 12 (certhost orders show 12; GET /v1/orders/12)\n"), "{text}");
        assert!(text.contains("profile: web\n"), "{text}");
        assert!(text.contains("requested_by: token:a\u{fffd}[2J\n"), "no control characters: {text}");
        assert!(text.contains("queued: 1970-01-01T00:00:00Z\n"), "{text}");
        assert!(!text.contains('{'), "no JSON: {text}");
        let failed = crate::inventory::Notification {
            kind: "renewal_failed".into(),
            certificate_id: Some(3),
            detail: serde_json::json!({ "error": "the CA said no\nsecond line", "attempt": 2 }),
            ..n
        };
        let text = super::mail_text(&failed);
        assert!(text.contains("An automatic renewal failed.\ncerthost retries it"), "{text}");
        assert!(text.contains("certificate: 3 (certhost show 3; GET /v1/certificates/3)\n"), "{text}");
        assert!(text.contains("error: the CA said no\n    second line\n"), "{text}");
        assert!(text.contains("attempt: 2\n"), "{text}");
        let digest = crate::inventory::Notification {
            kind: "renewal_failed_digest".into(),
            certificate_id: None,
            detail: serde_json::json!({ "profile": "web", "count": 2, "certificate_ids": [8, 9] }),
            ..failed
        };
        let text = super::mail_text(&digest);
        assert!(text.contains("certhost renewals retry --profile web"), "{text}");
        assert!(text.contains("certificate_ids: [8,9]\n"), "{text}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = super::signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
