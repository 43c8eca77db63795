//! Shared output shapes: the stable JSON view of a certificate and plain-text tables.

use certhost::inventory::CertificateRecord;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 UTC timestamp for Unix seconds.
pub fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t).ok().and_then(|d| d.format(&Rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

/// Whole days from `now` until `t` (negative when past).
pub fn days_until(t: i64, now: i64) -> i64 {
    (t - now).div_euclid(86_400)
}

/// Unix seconds now.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The `--json` shape of a certificate. Field names are a contract with scripts: add, never rename.
#[derive(Debug, Serialize)]
pub struct CertView<'a> {
    pub id: i64,
    pub status: &'static str,
    pub common_name: Option<&'a str>,
    pub subject: &'a str,
    pub issuer: &'a str,
    pub serial: &'a str,
    pub sha1: &'a str,
    pub sha256: &'a str,
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub key_type: String,
    pub key_bits: u32,
    pub has_private_key: bool,
    pub source: &'a str,
    pub profile: Option<&'a str>,
    pub account: Option<&'a str>,
    pub predecessor_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<&'a str>,
}

impl<'a> CertView<'a> {
    /// The view of `r`; `with_pem` adds the PEM texts (for `show`).
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
            pem: with_pem.then_some(r.pem.as_str()),
            chain_pem: with_pem.then_some(r.chain_pem.as_str()),
        }
    }
}

/// Prints rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{:<w$}  ", cell, w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
