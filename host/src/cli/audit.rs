//! `certhost audit`: the audit log.

use std::process::ExitCode;

use certhost::inventory::{AuditFilter, Inventory};

use super::output;

/// Arguments of `audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events about this object type (certificate, order, account, profile, token, inventory).
    #[arg(long)]
    object_type: Option<String>,
    /// Only events about this object id.
    #[arg(long)]
    object_id: Option<String>,
    /// Only actions starting with this (e.g. certificate.).
    #[arg(long)]
    action: Option<String>,
    /// Show at most this many, newest first (0 = all).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, inv: &Inventory) -> anyhow::Result<ExitCode> {
    let events = inv.audit_events(&AuditFilter {
        object_type: args.object_type,
        object_id: args.object_id,
        action_prefix: args.action,
        limit: args.limit,
        before_id: None,
    })?;
    if args.json {
        let view: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id, "at": output::rfc3339(e.at), "actor": e.actor, "action": e.action,
                    "object_type": e.object_type, "object_id": e.object_id, "outcome": e.outcome, "detail": e.detail,
                })
            })
            .collect();
        output::json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no audit events");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                output::rfc3339(e.at),
                e.actor.clone(),
                e.action.clone(),
                format!("{} {}", e.object_type, e.object_id.as_deref().unwrap_or("")),
                e.outcome.clone(),
                e.detail.to_string(),
            ]
        })
        .collect();
    output::table(&["ID", "AT", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "DETAIL"], &rows);
    Ok(ExitCode::SUCCESS)
}
