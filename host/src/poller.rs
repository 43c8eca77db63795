//! The order poller inside `certhost serve`: marks interrupted submissions for attention and
//! polls pending orders when they are due. Durable by construction — what is due is read from
//! the database each round, so a restart forgets nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::connector::ConnectorSource;
use crate::inventory::InventoryPool;
use crate::issue::Pipeline;

/// Polls due orders every `interval` until `shutdown` turns true.
pub async fn run(
    inventory: InventoryPool,
    connectors: Arc<dyn ConnectorSource>,
    env: crate::param::SharedEnvLookup,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match inventory.get().await {
            Err(e) => tracing::error!(error = %e, "poller round skipped: no database connection"),
            Ok(mut inv) => {
                let mut p = Pipeline { inventory: &mut inv, connectors: &*connectors, env: &*env, actor: "poller" };
                match p.poll_due().await {
                    Ok(results) => {
                        for (order, result) in results {
                            match result {
                                // One line that says what happened, not the record (a
                                // certificate and its chain in PEM).
                                Ok(crate::issue::IssueOutcome::Issued { certificate, .. }) => {
                                    tracing::info!(order, certificate = certificate.id, "polled order: issued")
                                }
                                Ok(crate::issue::IssueOutcome::Pending { next_poll_at, .. }) => {
                                    tracing::info!(order, next_poll_at, "polled order: still pending")
                                }
                                Ok(crate::issue::IssueOutcome::AwaitingApproval { .. }) => {
                                    tracing::info!(order, "polled order: awaiting approval")
                                }
                                // A CA's refusal is the order's outcome, not a failed poll.
                                Err(e @ crate::issue::IssueError::Rejected { .. }) => {
                                    tracing::warn!(order, reason = %e, "polled order: rejected")
                                }
                                Err(e) => tracing::warn!(order, error = %e, "poll failed"),
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "poller round failed"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                // A closed channel also means the server is going away.
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
