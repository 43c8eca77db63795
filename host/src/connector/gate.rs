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
//!
//! The gate also remembers when an account's CA could not be reached: for a while after, the
//! pipeline tries that account after its profile's other accounts ([`Gate::tried_last`]), so
//! a dead primary CA — a black-holed host costs each call its connect timeout — does not delay
//! every issuance and renewal of its profiles before they fail over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Args, CertificatePage, CertificateRequest, Connector, ConnectorError, Description, Disposition, OrderAction,
    RenewRequest, RevokeRequest,
};

/// Calls one component account may have in flight: a third of the pool's share for calls
/// (24 of 32), so two accounts whose CAs hang leave a third to every other; far above what a
/// CA that answers needs (a local-ca call takes under a millisecond, two cores run two).
pub const WASM_CALLS_PER_ACCOUNT: usize = 8;

/// Calls one script account may have in flight: its one worker runs one at a time and the
/// rest queue for it (`WORKER_WAIT_LIMITS`), so a call beyond these is refused at once as
/// "busy" instead of queueing here too (which would also outlast the call's backstop).
pub const SCRIPT_CALLS_PER_ACCOUNT: usize = 6;

/// How long a component account with every call slot taken may go without finishing a call
/// before further calls are refused instead of queued — at least; an account whose calls
/// have been seen to take longer gets twice its slowest answered call, up to its deadline.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// How long an account whose CA was just found unreachable is tried after its profile's
/// other accounts; doubled each time it is found unreachable again once that has passed, up
/// to [`TRIED_LAST_AT_MOST`]. Short enough that a CA back from a blip is first again soon;
/// a profile with a single account is unaffected (it has no other to try first).
pub const TRIED_LAST_FOR: Duration = Duration::from_secs(10);

/// The longest an unreachable account is tried last before it is tried first again.
pub const TRIED_LAST_AT_MOST: Duration = Duration::from_secs(300);

/// How long an account found unreachable for the `times`-th time in a row is tried last.
fn tried_last_for(times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    TRIED_LAST_FOR.saturating_mul(1 << doublings).min(TRIED_LAST_AT_MOST)
}

/// One account's call slots.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Whether a call beyond the limit waits (components) or is refused at once (scripts,
    /// whose worker has a queue of its own).
    queues: bool,
    marks: Arc<Mutex<Marks>>,
}

/// What the gate knows of an account's calls.
#[derive(Debug)]
struct Marks {
    /// When the account last answered a call, or started one while idle: the last sign that
    /// its calls move.
    progress: Instant,
    /// The longest call it answered: how long a healthy call of this CA may take.
    slowest: Duration,
    /// Times in a row its CA was found unreachable, each after the last one's stretch of
    /// being tried last had passed (calls failing together count once); 0 once it answers.
    unreachable: u32,
    /// Until when it is tried after its profile's other accounts.
    tried_last_until: Option<Instant>,
    /// When (Unix seconds) a call other than a connection test last succeeded: the CA issued,
    /// took an order or refused one request, which says the account works whatever its last
    /// test said.
    succeeded_at: Option<i64>,
}

/// A call slot, held for the call.
#[derive(Debug)]
struct Pass {
    _permit: OwnedSemaphorePermit,
    marks: Arc<Mutex<Marks>>,
    started: Instant,
}

impl Pass {
    /// Ends the call with `result`: progress, unless the CA was not reached or the call ran
    /// out of time. Calls that time out one after another are no sign that the account moves:
    /// counted, a round of them every timeout kept the queue behind them alive.
    ///
    /// A CA found unreachable puts the account last in failover order for a while (a call
    /// refused by the gate itself never got this far, and says nothing of the CA); an answer
    /// from the CA (a certificate, a pending order, a rejection, a refusal of the credentials)
    /// puts it back in its place.
    fn done<T>(self, result: Result<T, ConnectorError>) -> Result<T, ConnectorError> {
        self.settle(result, true)
    }

    /// [`Pass::done`] for `test_connection`, whose "unauthorized" is no sure answer of the CA
    /// (a script's `test_connection` returns False on any exception, a refused connection
    /// too): only a passing test puts the account back in its place.
    fn done_testing<T>(self, result: Result<T, ConnectorError>) -> Result<T, ConnectorError> {
        self.settle(result, false)
    }

    fn settle<T>(self, result: Result<T, ConnectorError>, unauthorized_answers: bool) -> Result<T, ConnectorError> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Err(ConnectorError::TimedOut { .. }) => {}
            Err(ConnectorError::Unreachable { .. }) => {
                let now = Instant::now();
                if marks.tried_last_until.is_none_or(|until| until <= now) {
                    marks.unreachable = marks.unreachable.saturating_add(1);
                    marks.tried_last_until = Some(now + tried_last_for(marks.unreachable));
                }
            }
            other => {
                marks.progress = Instant::now();
                marks.slowest = marks.slowest.max(self.started.elapsed());
                // Only an answer from the CA says it is back: a connector's own failure
                // (a bug, a crash, its memory limit) says nothing of the CA.
                let answered = match other {
                    Ok(_) => true,
                    Err(ConnectorError::Unauthorized { .. }) => unauthorized_answers,
                    Err(_) => false,
                };
                if answered {
                    marks.unreachable = 0;
                    marks.tried_last_until = None;
                }
                // A passing test is recorded as the test; an unauthorized answer says the
                // account does not work.
                if unauthorized_answers && other.is_ok() {
                    marks.succeeded_at = Some(crate::clock::unix_now());
                }
            }
        }
        drop(marks);
        result
    }
}

impl Gate {
    /// A gate letting `limit` calls through at once; beyond that, a call waits when `queues`,
    /// else is refused at once.
    pub fn new(limit: usize, queues: bool) -> Self {
        let marks = Marks {
            progress: Instant::now(),
            slowest: Duration::ZERO,
            unreachable: 0,
            tried_last_until: None,
            succeeded_at: None,
        };
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            queues,
            marks: Arc::new(Mutex::new(marks)),
        }
    }

    /// How many calls may be in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How much longer this account is tried after its profile's other accounts, because its
    /// CA was found unreachable; `None` when it is tried in its place.
    pub fn tried_last(&self) -> Option<Duration> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let left = marks.tried_last_until?.saturating_duration_since(Instant::now());
        Some(left).filter(|d| !d.is_zero())
    }

    /// When (Unix seconds) a call of this account other than a connection test last
    /// succeeded, in this process.
    pub fn succeeded_at(&self) -> Option<i64> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner()).succeeded_at
    }

    /// Forgets what calls found of the account: its definition changed (a fixed URL, say), so
    /// what was found of the old one says nothing of the new. It is tried in its place at once.
    pub fn forget_calls(&self) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.unreachable = 0;
        marks.tried_last_until = None;
        marks.succeeded_at = None;
    }

    fn pass(&self, permit: OwnedSemaphorePermit) -> Pass {
        Pass { _permit: permit, marks: Arc::clone(&self.marks), started: Instant::now() }
    }

    /// A call slot for `connector` whose calls may take `deadline`: waited for while the
    /// account's calls finish, refused when they stopped finishing or after `deadline`.
    async fn enter(&self, connector: &str, deadline: Duration) -> Result<Pass, ConnectorError> {
        let started = Instant::now();
        let busy = |why: String| ConnectorError::Unreachable {
            connector: connector.to_owned(),
            message: format!(
                "the account already has {} calls in flight{why}, so this request was not sent; retry later",
                self.limit
            ),
        };
        loop {
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                if self.permits.available_permits() + 1 == self.limit {
                    // The first call after a quiet spell: the quiet was no lack of progress.
                    self.marks.lock().unwrap_or_else(|p| p.into_inner()).progress = Instant::now();
                }
                return Ok(self.pass(permit));
            }
            if !self.queues {
                return Err(busy(String::new()));
            }
            let (since, slowest) = {
                let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
                (marks.progress.elapsed(), marks.slowest)
            };
            let stuck_after = STUCK_AFTER.max(slowest * 2).min(deadline.max(STUCK_AFTER));
            let stuck_in = stuck_after.saturating_sub(since);
            let left = deadline.saturating_sub(started.elapsed());
            if stuck_in.is_zero() || left.is_zero() {
                return Err(busy(format!(
                    " and none finished in the last {} s (its CA is slow or not answering)",
                    stuck_after.as_secs()
                )));
            }
            // Woken by a finishing call, or when the account would count as stuck.
            if let Ok(Ok(permit)) =
                tokio::time::timeout(stuck_in.min(left), Arc::clone(&self.permits).acquire_owned()).await
            {
                return Ok(self.pass(permit));
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
        pass.done_testing(self.inner.test_connection(args).await)
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
        let gate = Gate::new(2, true);
        let long = Duration::from_secs(60);
        let a = gate.enter("connector c", long).await.expect("first");
        let b = gate.enter("connector c", long).await.expect("second");
        // Full, but a call finishes within the wait: the third gets its slot.
        let freeing = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            a.done(Ok(())).expect("a call that finished");
        };
        let (third, ()) = tokio::join!(gate.enter("connector c", long), freeing);
        let third = third.expect("queued, then let through");
        // Full, and nothing finishes: refused once twice the slowest answered call (1 s) or
        // STUCK_AFTER, the longer, has passed since the last finish.
        let started = tokio::time::Instant::now();
        let err = gate.enter("connector c", long).await.expect_err("stuck");
        assert!(started.elapsed() <= STUCK_AFTER, "{:?}", started.elapsed());
        assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("already has 2 calls in flight and none finished in the last 5 s"), "{err}");
        // A call that timed out is no progress; one that finished is.
        let _ = b.done::<()>(Err(ConnectorError::TimedOut {
            connector: "connector c".into(),
            after: long,
            nothing_sent: false,
        }));
        let b = gate.enter("connector c", long).await.expect("a free slot is taken at once");
        let err = gate.enter("connector c", long).await.expect_err("still stuck");
        assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err}");
        drop((b, third));
        gate.enter("connector c", long).await.expect("free again");
    }

    /// Regression (review of stop 32): calls of a CA that answers slowly (an ACME order with a
    /// dns-01 hook, 8 s) beyond the limit were refused after 5 s as if it hung.
    #[tokio::test(start_paused = true)]
    async fn an_account_known_to_answer_slowly_is_waited_for_longer() {
        let gate = Gate::new(1, true);
        let long = Duration::from_secs(60);
        let first = gate.enter("connector c", long).await.expect("first");
        tokio::time::sleep(Duration::from_secs(8)).await;
        first.done(Ok(())).expect("answered in 8 s");
        let second = gate.enter("connector c", long).await.expect("second");
        let freeing = async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            second.done(Ok(())).expect("answered in 8 s");
        };
        let (third, ()) = tokio::join!(gate.enter("connector c", long), freeing);
        third.expect("waited 8 s: within twice the slowest answer");
    }

    /// A CA found unreachable puts its account last for a while, longer each time it is found
    /// so again; calls failing together count once, a refusal by the gate not at all, and an
    /// answer puts the account back in its place.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_ca_puts_its_account_last_for_a_growing_while_and_an_answer_ends_it() {
        let gate = Gate::new(2, false);
        let long = Duration::from_secs(60);
        let unreachable =
            || Err::<(), _>(ConnectorError::Unreachable { connector: "c".into(), message: "refused".into() });
        assert_eq!(gate.tried_last(), None);
        // Two calls in flight when the CA went away: one stretch of 10 s, not two.
        let (a, b) = (gate.enter("c", long).await.expect("a"), gate.enter("c", long).await.expect("b"));
        // The gate's own refusal (full) is no news of the CA.
        let _ = gate.enter("c", long).await.expect_err("busy");
        assert_eq!(gate.tried_last(), None);
        let _ = a.done(unreachable());
        let _ = b.done(unreachable());
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_FOR));
        // A timed-out call changes nothing either way.
        let c = gate.enter("c", long).await.expect("c");
        let _ = c.done::<()>(Err(ConnectorError::TimedOut { connector: "c".into(), after: long, nothing_sent: false }));
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_FOR));
        tokio::time::sleep(TRIED_LAST_FOR).await;
        assert_eq!(gate.tried_last(), None, "tried first again");
        // Unreachable again: twice as long, then four times, up to the cap.
        for times in [2, 4, 8, 16] {
            let _ = gate.enter("c", long).await.expect("call").done(unreachable());
            assert_eq!(gate.tried_last(), Some(TRIED_LAST_FOR * times));
            tokio::time::sleep(TRIED_LAST_FOR * times).await;
        }
        let _ = gate.enter("c", long).await.expect("call").done(unreachable());
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_AT_MOST));
        // A connector's own failure says nothing of the CA; any answer of the CA, a refusal of
        // the credentials too, ends it and starts the count afresh.
        let crashed = Err::<(), _>(ConnectorError::Internal { connector: "c".into(), message: "boom".into() });
        let _ = gate.enter("c", long).await.expect("call").done(crashed);
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_AT_MOST));
        let refused = || Err::<(), _>(ConnectorError::Unauthorized { connector: "c".into(), message: "no".into() });
        // A failed test_connection is no such answer (a script returns False on any error).
        let _ = gate.enter("c", long).await.expect("call").done_testing(refused());
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_AT_MOST));
        let _ = gate.enter("c", long).await.expect("call").done(refused());
        assert_eq!(gate.tried_last(), None);
        let _ = gate.enter("c", long).await.expect("call").done(unreachable());
        assert_eq!(gate.tried_last(), Some(TRIED_LAST_FOR));
        // An edited account starts afresh.
        gate.forget_calls();
        assert_eq!(gate.tried_last(), None);
    }

    /// What `/readyz` weighs against a failed test: a call that succeeded. Neither a passing
    /// test (recorded as the test), nor a refusal of the credentials, nor a failure is one.
    #[tokio::test]
    async fn a_call_that_succeeded_is_remembered_and_a_test_or_failure_is_not() {
        let gate = Gate::new(2, false);
        let long = Duration::from_secs(60);
        let refused = || Err::<(), _>(ConnectorError::Unauthorized { connector: "c".into(), message: "no".into() });
        let _ = gate.enter("c", long).await.expect("call").done_testing(Ok(()));
        let _ = gate.enter("c", long).await.expect("call").done(refused());
        let _ = gate
            .enter("c", long)
            .await
            .expect("call")
            .done::<()>(Err(ConnectorError::Internal { connector: "c".into(), message: "boom".into() }));
        assert_eq!(gate.succeeded_at(), None);
        let before = crate::clock::unix_now();
        let _ = gate.enter("c", long).await.expect("call").done(Ok(()));
        let at = gate.succeeded_at().expect("a call succeeded");
        assert!(at >= before && at <= crate::clock::unix_now(), "{at}");
        gate.forget_calls();
        assert_eq!(gate.succeeded_at(), None, "the edited account's calls start afresh");
    }

    /// A script account's calls beyond its limit are refused at once: its worker queues them.
    #[tokio::test]
    async fn a_gate_that_does_not_queue_refuses_at_once() {
        let gate = Gate::new(1, false);
        let _held = gate.enter("script s", Duration::from_secs(60)).await.expect("first");
        let err = gate.enter("script s", Duration::from_secs(60)).await.expect_err("busy");
        assert_eq!(
            err.to_string(),
            "script s: CA unreachable: the account already has 1 calls in flight, so this request was not sent; retry later"
        );
    }
}
