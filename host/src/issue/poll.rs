//! Polling an order left pending at its CA: one order on request, or every order whose poll
//! time has come (`serve`'s poller).

use std::time::Duration;

use crate::account::AccountStatus;
use crate::clock::unix_now;
use crate::connector::{Args, ConnectorError, Disposition};
use crate::inventory::{Order, OrderState};
use crate::profile::ProfileDef;

use super::{
    IssueError, IssueOutcome, POLL_MAX_S, POLL_MIN_S, Pipeline, backstop, call_with_deadline, connector_of,
    recorded_dynamic,
};

/// What one poll call came back with.
pub(super) enum PollStep {
    /// The CA's answer, with the args used (for redaction).
    Answer(Disposition, Args),
    /// The connector cannot poll: the order fails.
    Unsupported(String),
}

impl Pipeline<'_> {
    /// Polls one pending order at its CA account.
    pub async fn poll(&mut self, order_id: i64) -> Result<IssueOutcome, IssueError> {
        let order = self.load_order(order_id)?;
        let (Some(ca_order_id), Some(account_name)) = (order.ca_order_id.clone(), order.account.clone()) else {
            return Err(IssueError::WrongState {
                order_id,
                state: order.state.as_str(),
                what: "it has no CA order id to poll",
            });
        };
        if order.state != OrderState::Pending {
            return Err(IssueError::WrongState {
                order_id,
                state: order.state.as_str(),
                what: "only pending orders are polled",
            });
        }
        // One poller at a time: two (two `serve`s, or the poller and `orders poll`) each
        // applied the CA's answer, and one pending order became two certificates.
        let timeout =
            self.inventory.account(&account_name)?.map_or(Duration::from_secs(3600), |a| a.def.limits().timeout);
        if !self.inventory.claim_poll(order_id, backstop(timeout).as_secs() as i64 + 10)? {
            return Err(IssueError::WrongState {
                order_id,
                state: order.state.as_str(),
                what: "another process is polling it now",
            });
        }
        // Anything that stops this poll short of the CA's answer is retried with backoff, so a
        // broken account is not hammered every round and the order stays visible.
        match self.poll_once(&order, &ca_order_id, &account_name).await {
            Ok(PollStep::Answer(d, args)) => self.apply(&order, d, &args, None, None).await,
            Ok(PollStep::Unsupported(msg)) => {
                self.fail(order_id, &msg).await?;
                Err(IssueError::Failed { order_id, message: msg })
            }
            Err(msg) => {
                // Transient: exponential backoff from the minimum interval, capped at an hour.
                let shift = order.attempts.clamp(0, 10) as u32;
                let wait = (i64::from(POLL_MIN_S) << shift).min(i64::from(POLL_MAX_S));
                let (reason, actor) = (msg.clone(), self.actor.to_owned());
                self.inventory.write(move |inv| inv.record_retry(order_id, &reason, unix_now() + wait, &actor)).await?;
                // Not "order N failed": it is still pending (hostile-script review of stop 40).
                Err(IssueError::PollFailed { order_id, message: msg, retry_in_s: wait })
            }
        }
    }

    /// One poll call; `Err` is a redacted, retryable reason.
    async fn poll_once(&mut self, order: &Order, ca_order_id: &str, account_name: &str) -> Result<PollStep, String> {
        let account = match self.inventory.account(account_name) {
            Ok(Some(a)) => a,
            Ok(None) => return Err(format!("account {account_name} no longer exists")),
            Err(e) => return Err(e.to_string()),
        };
        if account.def.status != AccountStatus::Active {
            return Err(format!("account {account_name} is inactive; it is not called (activate it to poll)"));
        }
        let profile_name = order.profile.clone().unwrap_or_default();
        let profile = match self.inventory.profile(&profile_name) {
            Ok(Some((p, _))) => p,
            Ok(None) => ProfileDef { accounts: vec![account_name.to_owned()], ..ProfileDef::default() },
            Err(e) => return Err(e.to_string()),
        };
        let recorded = recorded_dynamic(Some(order), &profile);
        let mut args = self.args_for(&account, &profile_name, &profile, &recorded).map_err(|e| e.to_string())?;
        args.set_order_names(order.names());
        let connector = connector_of(self.connectors, &account, &profile_name, &profile.params)
            .await
            .map_err(|e| args.redact(&e.to_string()))?;
        let limits = account.def.limits();
        let started = std::time::Instant::now();
        let result = call_with_deadline(&*connector, limits.timeout, &args, connector.poll(ca_order_id, &args)).await;
        crate::metrics::connector_call(connector.name(), &account.name, "poll", &result, started.elapsed());
        match result {
            Ok(d) => Ok(PollStep::Answer(d, args)),
            Err(e @ ConnectorError::Unsupported { .. }) => Ok(PollStep::Unsupported(args.redact(&e.to_string()))),
            Err(e) => Err(args.redact(&e.to_string())),
        }
    }

    /// Polls every due order; returns each order's result.
    pub async fn poll_due(&mut self) -> Result<Vec<(i64, Result<IssueOutcome, IssueError>)>, IssueError> {
        self.inventory.mark_interrupted(self.actor)?;
        let due = self.inventory.due_polls(100)?;
        let mut out = Vec::new();
        for order in due {
            let r = self.poll(order.id).await;
            out.push((order.id, r));
        }
        Ok(out)
    }
}
