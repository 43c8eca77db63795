//! `certhost orders`: list, show, poll, approve, decline, resubmit.

use std::process::ExitCode;

use anyhow::anyhow;
use certhost::inventory::{Inventory, OrderState};
use certhost::issue::{Decision, Pipeline};

use super::output;

/// Order subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List orders, newest first.
    List {
        /// Only this state: awaiting_approval, pending, issued, rejected, failed, needs_attention.
        #[arg(long)]
        state: Option<OrderState>,
        /// At most this many (0 = all).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one order.
    Show {
        /// Order id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Poll one pending order now, or every due order when no id is given.
    Poll {
        /// Order id.
        id: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve an order held for approval (someone other than the requester), then submit it.
    Approve {
        /// Order id.
        id: i64,
        /// Sensitive dynamic parameters again (they are never stored).
        #[command(flatten)]
        params: super::DynamicParams,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decline an order held for approval or for an operator, or abandon one pending at the CA
    /// (the host stops polling it; the CA may still issue it).
    Decline {
        /// Order id.
        id: i64,
        /// Why.
        #[arg(long, default_value = "declined")]
        reason: String,
    },
    /// Resend an interrupted order (same request id), after checking the CA did not issue it.
    Resubmit {
        /// Order id.
        id: i64,
        /// Sensitive dynamic parameters again.
        #[command(flatten)]
        params: super::DynamicParams,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The dynamic parameters the command reads, if any.
    pub(super) fn dynamic_params(&self) -> Option<&super::DynamicParams> {
        match self {
            Command::Approve { params, .. } | Command::Resubmit { params, .. } => Some(params),
            _ => None,
        }
    }

    /// Whether the command only reads the inventory (and so needs one to exist).
    pub fn reads_only(&self) -> bool {
        matches!(self, Command::List { .. } | Command::Show { .. })
    }

    /// Whether the command may run on the inventory as stored when the configuration file
    /// does not load: a decline calls no CA and reads no definition.
    pub fn works_as_stored(&self) -> bool {
        matches!(self, Command::Decline { .. })
    }
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let registry = super::registry(&env.data_dir, env);
    match cmd {
        Command::List { state, limit, json } => {
            let orders = inv.orders(state, limit)?;
            if json {
                output::json(&orders)?;
            } else if orders.is_empty() {
                println!("no orders");
            } else {
                let rows: Vec<Vec<String>> = orders
                    .iter()
                    .map(|o| {
                        // The kind tells a scheduler's renewal from a new issue (operator
                        // review of stop 36); the requester, who asked.
                        vec![
                            o.id.to_string(),
                            o.kind.clone(),
                            o.state.as_str().to_owned(),
                            o.profile.clone().unwrap_or_default(),
                            o.account.clone().unwrap_or_else(|| "-".into()),
                            o.common_name.clone().unwrap_or_else(|| "-".into()),
                            o.certificate_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                            output::rfc3339(o.updated_at),
                            o.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "KIND", "STATE", "PROFILE", "ACCOUNT", "CN", "CERT", "UPDATED", "MESSAGE"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id, json } => {
            let o = inv.order(id)?.ok_or_else(|| anyhow!("order {id} does not exist"))?;
            if json {
                output::json(&o)?;
            } else {
                // The `Idempotency-Key` an API client sent, shown only when there is one.
                let client_key = o.idempotency_key.clone().map(|k| ("Client key", k));
                for (k, v) in [
                    ("ID", o.id.to_string()),
                    ("State", o.state.as_str().to_owned()),
                    ("Kind", o.kind.clone()),
                    ("Profile", o.profile.clone().unwrap_or_default()),
                    ("CA account", o.account.clone().unwrap_or_else(|| "-".into())),
                    ("CN", o.common_name.clone().unwrap_or_else(|| "-".into())),
                    ("SANs", o.sans.join(", ")),
                    ("Parameters", o.params.to_string()),
                    ("Request id", o.request_id.clone()),
                    ("CA order id", o.ca_order_id.clone().unwrap_or_else(|| "-".into())),
                    ("Certificate", o.certificate_id.map(|c| c.to_string()).unwrap_or_else(|| "-".into())),
                    ("Requested by", o.requested_by.clone()),
                    ("Decided by", o.decided_by.clone().unwrap_or_else(|| "-".into())),
                    ("Attempts", o.attempts.to_string()),
                    ("Next poll", o.next_poll_at.map(output::rfc3339).unwrap_or_else(|| "-".into())),
                    ("Message", o.error.clone().unwrap_or_else(|| "-".into())),
                ]
                .into_iter()
                .chain(client_key)
                {
                    println!("{:<13} {}", format!("{k}:"), output::terminal_safe(&v));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Poll { id, json } => super::runtime()?.block_on(async {
            let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
            match id {
                Some(id) => {
                    let outcome = p.poll(id).await?;
                    super::issue::report(p.inventory, &outcome, None, json)
                }
                None => {
                    // Each order as `orders poll ID` reports it; the exit code is the worst of
                    // them: 1 when a poll failed, else 3 when a deployment did.
                    let results = p.poll_due().await?;
                    let (mut failed, mut deploy_failed) = (false, false);
                    let mut items = Vec::new();
                    for (id, r) in &results {
                        match r {
                            Ok(o) if json => {
                                let mut item = super::issue::outcome_json(p.inventory, o)?;
                                if let certhost::issue::IssueOutcome::Issued {
                                    certificate, on_compromised_key, ..
                                } = o
                                {
                                    deploy_failed |= *on_compromised_key
                                        || super::issue::failed_deployment(p.inventory, certificate.id)?.is_some();
                                }
                                item["order_id"] = (*id).into();
                                items.push(item);
                            }
                            Ok(o) => {
                                let code = super::issue::report(p.inventory, o, None, false)?;
                                deploy_failed |= code == ExitCode::from(super::issue::DEPLOY_FAILED);
                            }
                            Err(e) => {
                                failed = true;
                                if json {
                                    items.push(serde_json::json!({ "order_id": id, "error": e.to_string() }));
                                } else {
                                    eprintln!("order #{id}: {}", output::terminal_safe(&e.to_string()));
                                }
                            }
                        }
                    }
                    if json {
                        output::json(&items)?;
                    } else if results.is_empty() {
                        println!("no orders due for polling");
                    }
                    Ok(match (failed, deploy_failed) {
                        (true, _) => ExitCode::from(1),
                        (false, true) => ExitCode::from(super::issue::DEPLOY_FAILED),
                        (false, false) => ExitCode::SUCCESS,
                    })
                }
            }
        }),
        Command::Approve { id, params, json } => submit(inv, &registry, env, id, &params, json, Decision::Approve),
        Command::Decline { id, reason } => {
            inv.decline_order(id, &reason, &env.actor)?;
            println!("order #{id} declined");
            Ok(ExitCode::SUCCESS)
        }
        Command::Resubmit { id, params, json } => submit(inv, &registry, env, id, &params, json, Decision::Resubmit),
    }
}

/// Records the decision, sends the order to its CA and reports the outcome. The arguments
/// are parsed and checked first, so a mistyped one changes nothing.
fn submit(
    inv: &mut Inventory,
    registry: &certhost::connector::Registry,
    env: &super::Env,
    id: i64,
    params: &super::DynamicParams,
    json: bool,
    decision: Decision,
) -> anyhow::Result<ExitCode> {
    let profile = inv.order(id).ok().flatten().and_then(|o| o.profile);
    params.warn_sensitive_on_command_line(inv, profile.as_deref());
    let params = params.resolve()?;
    super::runtime()?.block_on(async {
        let mut p = Pipeline { inventory: inv, connectors: registry, env: &super::env_lookup, actor: &env.actor };
        let outcome = p.decide(id, decision, &params).await?;
        super::issue::report(p.inventory, &outcome, None, json)
    })
}
