//! Notifications: a webhook (JSON with an HMAC-SHA256 signature header) and email over SMTP,
//! for renewal failures, certificates expiring without auto-renew, and revocations.
//!
//! Events are queued in the inventory (`notifications` table) in the same transaction as the
//! change they report, and `certhost serve` delivers them, so a crash never loses one.

use std::path::PathBuf;

use serde::Deserialize;

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
