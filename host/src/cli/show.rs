//! `certhost show`: one certificate in full.

use std::process::ExitCode;

use anyhow::anyhow;
use certhost::inventory::Inventory;

use super::output::{self, CertView};

/// Arguments of `show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Inventory id, or SHA-1 / SHA-256 thumbprint (hex; colons allowed).
    #[arg(value_name = "ID|THUMBPRINT")]
    id: String,
    /// Print the certificate PEM (followed by its chain) instead of the summary.
    #[arg(long, conflicts_with = "json")]
    pem: bool,
    /// Print JSON (including the PEM).
    #[arg(long)]
    json: bool,
    /// Write cert.pem, chain.pem, fullchain.pem and, when a private key is stored, key.pem
    /// (mode 0600; recorded in the audit log as a key download) into DIR, as `issue --out` does.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pem", "json"])]
    out: Option<std::path::PathBuf>,
    /// Replace those files when DIR already holds another certificate's (this certificate's
    /// own files are written again without it).
    #[arg(long, requires = "out")]
    overwrite: bool,
}

pub fn run(args: Args, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let r = inv.find(&args.id)?.ok_or_else(|| anyhow!("no certificate with id or thumbprint {}", args.id))?;
    let now = output::now();
    if args.pem {
        print!("{}{}", r.pem, r.chain_pem);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.out {
        // Its own files, exported before, are written again: refusing them asked for
        // --overwrite to repeat an export (new-user walkthrough of stop 46). Its own means its
        // certificate (public, so anyone's copy) and no key.pem of another key beside it.
        // (A stored record leaves `info.public_key_raw` unset: read from the certificate.)
        let public_key = certhost::cert::pem_certificates(&r.pem)
            .ok()
            .and_then(|ders| ders.into_iter().next())
            .and_then(|der| certhost::cert::CertificateInfo::from_der(&der).ok())
            .map(|info| info.public_key_raw);
        let its_key = match &public_key {
            _ if !dir.join("key.pem").exists() => true,
            Some(public_key) => super::issue::key_file_holds(dir, public_key) == Some(true),
            None => false,
        };
        let its_own = its_key && std::fs::read_to_string(dir.join("cert.pem")).is_ok_and(|pem| pem == r.pem);
        super::issue::prepare_out_dir(dir, None, args.overwrite || its_own, "nothing was written")?;
        let key = match r.key_id {
            Some(_) => Some(inv.download_key(r.id, &env.actor)?),
            None => None,
        };
        super::issue::write_files(key.as_ref(), &r, dir)?;
        println!(
            "wrote {} of certificate #{} to {}",
            super::issue::written_files(&r, key.is_some()),
            r.id,
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let view = CertView::new(&r, now, true).with_history(&*inv)?;
    if args.json {
        output::json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    let sans = if view.sans.is_empty() { "-".to_owned() } else { view.sans.join(", ") };
    let chain_len = certhost::cert::pem_certificates(&r.chain_pem).map(|c| c.len()).unwrap_or(0);
    let lines = [
        ("ID", view.id.to_string()),
        ("Status", view.status.to_owned()),
        ("Subject", view.subject.to_owned()),
        ("Issuer", view.issuer.to_owned()),
        ("SANs", sans),
        ("Serial", view.serial.to_owned()),
        ("Not before", view.not_before.clone()),
        ("Not after", format!("{} ({})", view.not_after, days_left(view.days_left))),
        (
            "Key",
            format!(
                "{} {} bits{}",
                view.key_type,
                view.key_bits,
                if view.has_private_key { ", private key stored (encrypted)" } else { "" }
            ),
        ),
        ("SHA-1", view.sha1.to_owned()),
        ("SHA-256", view.sha256.to_owned()),
        ("Chain", format!("{chain_len} certificate(s)")),
        ("Source", view.source.to_owned()),
        ("Profile", view.profile.unwrap_or("-").to_owned()),
        ("CA account", view.account.unwrap_or("-").to_owned()),
        ("Predecessor", view.predecessor_id.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
        ("Successor", view.successor_id.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
    ];
    for (k, v) in lines {
        println!("{:<12} {}", format!("{k}:"), output::terminal_safe(&v));
    }
    if let Some(r) = &view.revocation {
        let comment = if r.comment.is_empty() { String::new() } else { format!(": {}", r.comment) };
        let line = format!("{} at {} by {}{comment}", r.reason, r.at, r.by);
        println!("{:<12} {}", "Revoked:", output::terminal_safe(&line));
    }
    if let Some(r) = &view.renewal {
        let mut line = format!("renews at {}", r.renews_at);
        if r.attempts > 0 {
            line.push_str(&format!(
                "; {} attempt(s) failed, the last: {}",
                r.attempts,
                r.last_error.as_deref().unwrap_or("-")
            ));
        }
        if let Some(order) = r.open_order_id {
            line.push_str(&format!("; renewal order {order} is open (certhost orders show {order})"));
        }
        println!("{:<12} {}", "Renewal:", output::terminal_safe(&line));
    }
    for d in &view.deployments {
        let line = format!("{} {} at {} ({})", d.outcome, d.target, d.at, d.message);
        println!("{:<12} {}", "Deployed:", output::terminal_safe(&line));
    }
    for r in &view.deploy_retries {
        let line = format!(
            "{} failed {} time(s) in a row; certhost serve tries again at {} (or: certhost deploy {})",
            r.target, r.failures, r.next_at, view.id
        );
        println!("{:<12} {}", "Retrying:", output::terminal_safe(&line));
    }
    Ok(ExitCode::SUCCESS)
}

/// "12 days left", "expires today", "expired 3 days ago": an expired certificate showed
/// "(-1 days left)" (operator review of stop 36).
fn days_left(days: i64) -> String {
    match days {
        0 => "expires within a day".into(),
        1 => "1 day left".into(),
        d if d > 1 => format!("{d} days left"),
        -1 => "expired within the last day".into(),
        -2 => "expired 1 day ago".into(),
        d => format!("expired {} days ago", -d - 1),
    }
}
