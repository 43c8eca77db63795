//! `certhost list`: the inventory, filtered.

use std::process::ExitCode;

use certhost::inventory::{CertStatus, Inventory, ListFilter};

use super::output::{self, CertView};

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only active certificates expiring within this many days.
    #[arg(long, value_name = "DAYS")]
    expiring_within: Option<u32>,
    /// Only this status: active, superseded, revoked, expired.
    #[arg(long)]
    status: Option<CertStatus>,
    /// Only certificates whose CN or a SAN contains this text.
    #[arg(long)]
    search: Option<String>,
    /// Only certificates whose issuer contains this text.
    #[arg(long)]
    issuer: Option<String>,
    /// Only the certificate with this serial number (hex, as openssl, a browser or the CA
    /// prints it: colons, case and leading zeros do not matter).
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
    /// Only certificates of this profile (its exact name).
    #[arg(long)]
    profile: Option<String>,
    /// Show at most this many (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Start after this id (pagination).
    #[arg(long, value_name = "ID")]
    after: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, inv: &Inventory) -> anyhow::Result<ExitCode> {
    let filter = ListFilter {
        expiring_within_days: args.expiring_within,
        status: args.status,
        search: args.search,
        issuer: args.issuer,
        after_id: args.after,
        serial: args.serial,
        profile: args.profile,
        limit: args.limit,
    };
    let records = inv.list(&filter)?;
    let now = output::now();
    if args.json {
        let views: Vec<CertView<'_>> = records.iter().map(|r| CertView::new(r, now, false)).collect();
        output::json(&views)?;
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        println!("no certificates match");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.status.as_str().to_owned(),
                r.info.common_name.clone().unwrap_or_else(|| "-".into()),
                output::rfc3339(r.info.not_after),
                output::days_until(r.info.not_after, now).to_string(),
                r.info.key.to_string(),
                r.info.sha256[..16].to_owned(),
                r.info.issuer.clone(),
            ]
        })
        .collect();
    output::table(&["ID", "STATUS", "CN", "NOT AFTER", "DAYS", "KEY", "SHA-256", "ISSUER"], &rows);
    Ok(ExitCode::SUCCESS)
}
