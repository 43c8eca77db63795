//! `certhost renewals`, `certhost deploy ID`, `certhost import-from-account ACCOUNT`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use certhost::inventory::{Inventory, NewCertificate};
use certhost::issue::Pipeline;

use super::output;

/// Arguments of `renewals`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RenewalsArgs {
    /// `retry`; without one, the schedule and history are shown.
    #[command(subcommand)]
    action: Option<RenewalsAction>,
    /// At most this many upcoming renewals and history entries (0 = all, as for `list`,
    /// `orders list` and `audit`).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only the renewals whose last attempt failed (retried with backoff).
    #[arg(long)]
    failing: bool,
    /// Only the upcoming renewals of this profile (the history is not filtered).
    #[arg(long)]
    profile: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `renewals` does besides showing the schedule.
#[derive(Debug, clap::Subcommand)]
pub enum RenewalsAction {
    /// Retry failing automatic renewals now instead of at the end of their backoff (up to 6
    /// hours), once their CA or profile is fixed: the certificates given, or every failing
    /// renewal (of --profile). A running `serve` attempts them in its next round.
    Retry(RetryArgs),
}

/// Arguments of `renewals retry`.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Certificate ids whose failing renewal to retry (each must be failing; none: all).
    ids: Vec<i64>,
    /// Only this profile's failing renewals.
    #[arg(long)]
    profile: Option<String>,
    /// Print JSON: {"retried": [ids], "in_progress": [ids], "waiting": [ids]}.
    #[arg(long)]
    json: bool,
}

impl RenewalsArgs {
    /// The action, taken out, and what is left to show the schedule with.
    pub fn take_action(mut self) -> (Option<RenewalsAction>, Self) {
        (self.action.take(), self)
    }
}

/// `renewals retry`: failing renewals brought forward to now.
pub fn retry(args: RetryArgs, inv: &mut Inventory, actor: &str) -> anyhow::Result<ExitCode> {
    let done = inv.retry_failing_renewals(args.profile.as_deref(), &args.ids, actor)?;
    if args.json {
        output::json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = |ids: &[i64]| ids.iter().map(|id| format!("#{id}")).collect::<Vec<_>>().join(", ");
    if done.retried.is_empty() && done.in_progress.is_empty() && done.waiting.is_empty() {
        let of = args.profile.as_deref().map(|p| format!(" of profile {p}")).unwrap_or_default();
        println!("no automatic renewal{of} is failing: nothing to retry");
    }
    if !done.retried.is_empty() {
        println!(
            "{} failing renewal(s) due now: {} (certhost serve attempts them in its next round; certhost renewals --failing shows how they stand)",
            done.retried.len(),
            list(&done.retried)
        );
    }
    if !done.in_progress.is_empty() {
        println!("being attempted right now, left to that attempt: {}", list(&done.in_progress));
    }
    if !done.waiting.is_empty() {
        println!(
            "waiting at the CA or for approval, left to their open renewal order (certhost orders list shows it): {}",
            list(&done.waiting)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Upcoming renewals (with failed attempts and the last error) and the auto-renewal history.
pub fn renewals(args: RenewalsArgs, inv: &Inventory) -> anyhow::Result<ExitCode> {
    // 0 showed nothing and then said that nothing was scheduled.
    let limit = if args.limit == 0 { u32::MAX } else { args.limit };
    // One more than shown, to say that there are more (black-box review of stop 35: fifty
    // rows of some hundred due, and no word that it was not all).
    let mut upcoming = inv.listed_renewals(args.failing, args.profile.as_deref(), None, limit.saturating_add(1))?;
    let mut history = inv.auto_renewal_history(limit.saturating_add(1))?;
    let cut = |len: usize| len > limit as usize;
    let (more_upcoming, more_history) = (cut(upcoming.len()), cut(history.len()));
    upcoming.truncate(limit as usize);
    history.truncate(limit as usize);
    if more_upcoming || more_history {
        let which = match (more_upcoming, more_history) {
            (true, true) => "upcoming renewals and history",
            (true, false) => "upcoming renewals",
            _ => "history",
        };
        eprintln!("note: only the first {limit} of the {which} are shown; --limit N shows more, --limit 0 all");
    }
    let now = certhost::clock::unix_now();
    if args.json {
        let up: Vec<serde_json::Value> = upcoming
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "common_name": r.common_name, "profile": r.profile,
                    "renew_after": output::rfc3339(r.renew_after), "not_after": output::rfc3339(r.not_after),
                    "expired": r.not_after <= now, "attempts": r.attempts, "last_error": r.last_error,
                })
            })
            .collect();
        output::json(&serde_json::json!({ "upcoming": up, "history": history }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if upcoming.is_empty() {
        let of = args.profile.as_deref().map(|p| format!(" of profile {p}")).unwrap_or_default();
        if args.failing {
            println!("no automatic renewal{of} is failing");
        } else {
            println!("no automatic renewals{of} scheduled");
        }
    } else {
        let rows: Vec<Vec<String>> = upcoming
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.common_name.clone().unwrap_or_default(),
                    r.profile.clone().unwrap_or_default(),
                    output::rfc3339(r.renew_after),
                    // The ones an operator looks for first (operator review of stop 41).
                    if r.not_after <= now {
                        format!("{} (expired)", output::rfc3339(r.not_after))
                    } else {
                        output::rfc3339(r.not_after)
                    },
                    if r.attempts == 0 {
                        "-".into()
                    } else {
                        format!("{} failed: {}", r.attempts, r.last_error.clone().unwrap_or_default())
                    },
                ]
            })
            .collect();
        output::table(&["ID", "CN", "PROFILE", "RENEWS AT", "NOT AFTER", "ATTEMPTS"], &rows);
    }
    if !history.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|e| {
                let what = match e.detail.get("successor_id") {
                    // The renewal succeeded; its deployment may not have: "success" alone made
                    // an operator believe the server had the new certificate (operator review
                    // of stop 39).
                    Some(s) => match s.as_i64().map(|id| inv.deploy_retries(id)) {
                        Some(Ok(retries)) if !retries.is_empty() => {
                            format!("renewed as #{s}; its deployment failed and is retried (certhost show {s})")
                        }
                        _ => format!("renewed as #{s}"),
                    },
                    None => e.detail.get("error").and_then(|v| v.as_str()).unwrap_or("").to_owned(),
                };
                vec![output::rfc3339(e.at), e.object_id.clone().unwrap_or_default(), e.outcome.clone(), what]
            })
            .collect();
        output::table(&["WHEN", "CERT", "OUTCOME", "RESULT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Certificate id, SHA-1/SHA-256 thumbprint, or the thumbprint prefix `list` shows.
    id: String,
    /// Deploy it even when it is not active (revoked, expired, or replaced by a renewal).
    #[arg(long)]
    force: bool,
    /// Write over files that hold another name's active certificate (refused otherwise).
    #[arg(long)]
    replace_others: bool,
}

/// Runs the profile's deployment targets again for one certificate.
pub fn deploy(args: DeployArgs, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let id = inv.find(&args.id)?.with_context(|| format!("certificate {} not found", args.id))?.id;
    let registry = super::registry(&env.data_dir, env);
    let reports = super::runtime()?
        .block_on(async {
            let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
            p.redeploy(id, args.force, args.replace_others).await
        })
        .map_err(|e| match e {
            certhost::issue::IssueError::NotDeployable { .. } => {
                anyhow::anyhow!("{e} (--force deploys it anyway)")
            }
            e => e.into(),
        })?;
    let mut failed = false;
    for r in &reports {
        // The target comes from a profile and the message from a deploy hook's output.
        println!(
            "{} {}: {}",
            if r.ok { "ok  " } else { "FAIL" },
            output::terminal_safe(&r.target),
            output::terminal_safe(&r.message)
        );
        failed |= !r.ok;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Arguments of `import-from-account`.
#[derive(Debug, clap::Args)]
pub struct ImportFromAccountArgs {
    /// CA account whose connector lists the CA's certificates.
    account: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Most pages `import-from-account` follows; a list longer than this is taken for one that
/// never ends.
const MAX_IMPORT_PAGES: u32 = 100_000;
/// Most empty pages in a row it follows, each pointing to another.
const MAX_EMPTY_PAGES: u32 = 100;

/// Pages through the connector's `list_certificates` and imports every certificate it
/// returns, deduplicated by SHA-256 thumbprint (Entrust's "import existing orders").
pub fn import_from_account(
    args: ImportFromAccountArgs,
    inv: &mut Inventory,
    env: &super::Env,
) -> anyhow::Result<ExitCode> {
    let registry = super::registry(&env.data_dir, env);
    let progress = std::io::stderr().is_terminal() && !args.json;
    let (mut imported, mut duplicate, mut failed, mut without_pem) = (0u64, 0u64, Vec::new(), 0u64);
    let rt = super::runtime()?;
    let mut cursor: Option<String> = None;
    let mut pages = 0u32;
    let (mut empty_in_a_row, mut stopped) = (0u32, None::<String>);
    loop {
        let page = rt.block_on(async {
            let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
            p.list_account_certificates(&args.account, cursor.as_deref()).await
        })?;
        pages += 1;
        empty_in_a_row = if page.items.is_empty() && page.unusable.is_empty() { empty_in_a_row + 1 } else { 0 };
        failed.extend(page.unusable.iter().map(|why| format!("page {pages}: {why}")));
        for item in &page.items {
            let order = match &item.ca_order_id {
                Some(id) => format!("CA order {id}"),
                None => format!("a certificate on page {pages} without an order id"),
            };
            let Some(pem) = &item.certificate else {
                if item.ca_order_id.is_none() {
                    failed.push(format!("page {pages}: an item with neither a certificate nor an order id"));
                } else {
                    without_pem += 1;
                }
                continue;
            };
            // In any order, as `import` reads a bundle: a chain listed root first, or a
            // certificate that is not the others' leaf, is not stored as the item's leaf.
            let ders = certhost::cert::pem_certificates(pem).unwrap_or_default();
            let mut groups = certhost::import::leaves_with_chains(ders);
            let (leaf, chain) = match (groups.pop(), groups.len()) {
                (Some(group), 0) => group,
                (None, _) => {
                    failed.push(format!("{order}: no certificate in the returned PEM"));
                    continue;
                }
                (Some(_), others) => {
                    failed.push(format!(
                        "{order}: the returned PEM holds {} unrelated leaf certificates, not one leaf and its issuers",
                        others + 1
                    ));
                    continue;
                }
            };
            let new = NewCertificate {
                der: &leaf,
                chain: &chain,
                key: None,
                source: "ca-import",
                profile: None,
                account: Some(&args.account),
                predecessor_id: None,
            };
            match inv.insert_certificate(&new, &env.actor) {
                Ok(certhost::inventory::InsertOutcome::Inserted(_)) => imported += 1,
                Ok(certhost::inventory::InsertOutcome::Duplicate(_)) => duplicate += 1,
                Err(e) => failed.push(format!("{order}: {e}")),
            }
        }
        if progress {
            eprint!("\rpage {pages}: {imported} imported, {duplicate} already present, {} failed", failed.len());
        }
        // A connector whose cursor never ends, or comes back the same, was followed
        // silently: "0 imported … 0 failed" and success (hostile-connector review of stop 41).
        match page.next_cursor {
            Some(next) if Some(&next) == cursor.as_ref() => {
                stopped = Some(format!(
                    "stopped at page {pages}: the connector returned the cursor it was given, which would list the \
                     same page again"
                ));
                break;
            }
            Some(_) if empty_in_a_row >= MAX_EMPTY_PAGES => {
                stopped = Some(format!(
                    "stopped at page {pages}: the connector returned {MAX_EMPTY_PAGES} empty pages in a row, each with \
                     a cursor to another"
                ));
                break;
            }
            Some(_) if pages >= MAX_IMPORT_PAGES => {
                stopped = Some(format!("stopped after {MAX_IMPORT_PAGES} pages: the connector's list did not end"));
                break;
            }
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if progress {
        eprintln!();
    }
    if let Some(why) = &stopped {
        eprintln!("warning: {}; what was listed before is imported", output::terminal_safe(why));
    }
    if args.json {
        output::json(&serde_json::json!({
            "imported": imported, "duplicate": duplicate, "without_certificate": without_pem, "failed": failed,
            "stopped": stopped,
        }))?;
    } else {
        println!(
            "{imported} imported, {duplicate} already present, {without_pem} without a certificate, {} failed",
            failed.len()
        );
        for f in &failed {
            // Failures quote what the connector listed.
            println!("  {}", output::terminal_safe(&f.to_string()));
        }
    }
    Ok(if failed.is_empty() && stopped.is_none() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
