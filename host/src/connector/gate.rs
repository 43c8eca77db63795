//! How many calls one CA account may have in flight, so that one account whose CA hangs (or
//! whose connector does) cannot take every connection the server keeps for connector calls.
//!
//! Requests that call a connector share three quarters of the inventory pool
//! (`InventoryPool::get_for_call`), first come first served. Eighty requests for an account
//! whose CA never answers held them all for the account's whole timeout, round after round,
//! and an issuance at a healthy account waited a minute behind them. Each account now passes
//! a [`Gate`]: at most [`Gate::limit`] of its calls run at once; a call beyond that waits
//! while the account's calls are finishing, and is refused at once — as the CA being
//! unreachable, so a profile fails over — when none of them has finished for [`STUCK_AFTER`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Args, CertificatePage, CertificateRequest, Connector, ConnectorError, Description, Disposition, OrderAction,
    RenewRequest, RevokeRequest,
};

/// Calls one component account may have in flight. Below the pool's share for calls (24 of
/// 32), so another account always finds some; far above what a CA that answers needs (a
/// local-ca call takes under a millisecond, and two cores run two at a time).
pub const WASM_CALLS_PER_ACCOUNT: usize = 16;

/// Calls one script account may have in flight: its one worker runs one at a time, and the
/// rest wait for it (`WORKER_WAIT_LIMITS`) holding a connection each.
pub const SCRIPT_CALLS_PER_ACCOUNT: usize = 4;

/// How long an account with every call slot taken may go without finishing a call before
/// further calls are refused instead of queued.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// One account's call slots.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    limit: usize,
    /// When the account last finished a call, or started one while idle: the last sign that
    /// its calls move.
    progress: Arc<Mutex<Instant>>,
}

/// A call slot, held for the call.
#[derive(Debug)]
struct Pass {
    _permit: OwnedSemaphorePermit,
    progress: Arc<Mutex<Instant>>,
}

impl Pass {
    /// Ends the call with `result`: progress, unless the CA was not reached or the call ran
    /// out of time. Calls that time out one after another are no sign that the account moves:
    /// counted, a round of them every timeout kept the queue behind them alive.
    fn done<T>(self, result: Result<T, ConnectorError>) -> Result<T, ConnectorError> {
        if !matches!(result, Err(ConnectorError::TimedOut { .. } | ConnectorError::Unreachable { .. })) {
            *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        result
    }
}

impl Gate {
    /// A gate letting `limit` calls through at once.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            progress: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// How many calls may be in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn since_progress(&self) -> Duration {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// A call slot for `connector`, waited for while the account's calls finish, refused
    /// when they stopped finishing ([`STUCK_AFTER`]) or after `deadline`.
    async fn enter(&self, connector: &str, deadline: Duration) -> Result<Pass, ConnectorError> {
        let started = Instant::now();
        loop {
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                if self.permits.available_permits() + 1 == self.limit {
                    // The first call after a quiet spell: the quiet was no lack of progress.
                    *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                }
                return Ok(Pass { _permit: permit, progress: Arc::clone(&self.progress) });
            }
            let stuck_in = STUCK_AFTER.saturating_sub(self.since_progress());
            let left = deadline.saturating_sub(started.elapsed());
            if stuck_in.is_zero() || left.is_zero() {
                return Err(ConnectorError::Unreachable {
                    connector: connector.to_owned(),
                    message: format!(
                        "the account already has {} calls in flight and none finished in the last {} s (its CA is slow or not answering), so this request was not sent; retry later",
                        self.limit,
                        STUCK_AFTER.as_secs()
                    ),
                });
            }
            // Woken by a finishing call, or when the account would count as stuck.
            if let Ok(Ok(permit)) =
                tokio::time::timeout(stuck_in.min(left), Arc::clone(&self.permits).acquire_owned()).await
            {
                return Ok(Pass { _permit: permit, progress: Arc::clone(&self.progress) });
            }
        }
    }
}

/// A connector whose calls pass its account's [`Gate`].
pub struct Gated {
    inner: Arc<dyn Connector>,
    gate: Arc<Gate>,
    /// How long a call may wait for a slot: the account's call deadline.
    wait: Duration,
}

impl Gated {
    /// `inner` behind `gate`; a call waits at most `wait` for a slot.
    pub fn new(inner: Arc<dyn Connector>, gate: Arc<Gate>, wait: Duration) -> Self {
        Self { inner, gate, wait }
    }

    async fn pass(&self) -> Result<Pass, ConnectorError> {
        self.gate.enter(&self.inner.label(), self.wait).await
    }
}

#[async_trait]
impl Connector for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn label(&self) -> String {
        self.inner.label()
    }

    async fn describe(&self) -> Result<Description, ConnectorError> {
        self.inner.describe().await
    }

    fn declared_sensitive(&self) -> &[String] {
        self.inner.declared_sensitive()
    }

    async fn certificate_request(
        &self,
        request: &CertificateRequest,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.certificate_request(request, args).await)
    }

    async fn poll(&self, ca_order_id: &str, args: &Args) -> Result<Disposition, ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.poll(ca_order_id, args).await)
    }

    async fn renew(&self, request: &RenewRequest, args: &Args) -> Result<Disposition, ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.renew(request, args).await)
    }

    async fn revoke(&self, request: &RevokeRequest, args: &Args) -> Result<(), ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.revoke(request, args).await)
    }

    async fn test_connection(&self, args: &Args) -> Result<(), ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.test_connection(args).await)
    }

    async fn list_certificates(&self, args: &Args, cursor: Option<&str>) -> Result<CertificatePage, ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.list_certificates(args, cursor).await)
    }

    async fn update_order(
        &self,
        ca_order_id: &str,
        action: OrderAction,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let pass = self.pass().await?;
        pass.done(self.inner.update_order(ca_order_id, action, args).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review of stop 32): calls at an account whose CA hangs queued without end,
    /// holding the connections every other account's calls need.
    #[tokio::test(start_paused = true)]
    async fn an_account_whose_calls_stopped_finishing_refuses_more_and_one_that_moves_queues() {
        let gate = Gate::new(2);
        let a = gate.enter("connector c", Duration::from_secs(60)).await.expect("first");
        let b = gate.enter("connector c", Duration::from_secs(60)).await.expect("second");
        // Full, but a call finishes within the wait: the third gets its slot.
        let freeing = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            a.done(Ok(())).expect("a call that finished");
        };
        let (third, ()) = tokio::join!(gate.enter("connector c", Duration::from_secs(60)), freeing);
        let third = third.expect("queued, then let through");
        // Full, and nothing finishes: refused once STUCK_AFTER has passed since the last finish.
        let started = tokio::time::Instant::now();
        let err = gate.enter("connector c", Duration::from_secs(60)).await.expect_err("stuck");
        assert!(started.elapsed() <= STUCK_AFTER, "{:?}", started.elapsed());
        assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("already has 2 calls in flight and none finished in the last 5 s"), "{err}");
        // A call that timed out is no progress; one that finished is.
        let _ = b.done::<()>(Err(ConnectorError::TimedOut {
            connector: "connector c".into(),
            after: Duration::from_secs(60),
        }));
        let b = gate.enter("connector c", Duration::from_secs(60)).await.expect("a free slot is taken at once");
        let err = gate.enter("connector c", Duration::from_secs(60)).await.expect_err("still stuck");
        assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err}");
        drop((b, third));
        gate.enter("connector c", Duration::from_secs(60)).await.expect("free again");
    }
}
