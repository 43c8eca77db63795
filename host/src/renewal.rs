//! The renewal scheduler inside `certhost serve`. Each round: certificates past notAfter
//! become `expired`; due certificates are claimed (with a lease) and renewed through their
//! profile (failover applies); failures back off exponentially (1 minute doubling to 6 hours)
//! and queue a notification; interrupted automatic renewals are resubmitted with their
//! request id; deployments whose last attempt failed are tried again (5 minutes doubling to
//! 6 hours) while their certificate is active; certificates without auto-renew that near
//! expiry queue a notification; queued notifications are delivered.
//!
//! Durable by construction: what is due is read from the database every round.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::connector::ConnectorSource;
use crate::inventory::{Inventory, InventoryError, InventoryPool, OrderState};
use crate::issue::{IssueError, IssueOutcome, Pipeline};
use crate::lifecycle::RenewOptions;
use crate::notify::NotifyConfig;

/// Who the scheduler is in the audit log and in the orders it creates.
pub const ACTOR: &str = crate::inventory::AUTO_RENEWAL_ACTOR;
/// Certificates renewed per round, at most.
const BATCH: u32 = 20;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Certificates marked expired.
    pub expired: usize,
    /// Renewed (certificate ids of the predecessors).
    pub renewed: Vec<i64>,
    /// Renewals waiting at the CA or for approval.
    pub pending: Vec<i64>,
    /// Failed renewals (will retry).
    pub failed: Vec<i64>,
    /// Interrupted renewal orders resubmitted.
    pub resubmitted: Vec<i64>,
    /// Certificates whose failed deployments were tried again, and whether all succeeded.
    pub redeployed: Vec<(i64, bool)>,
}

/// The round in words for the log: what happened, by certificate id ("renewed 1, 5; failed
/// 3"; resubmitted orders by order id), not the struct's debug form.
impl std::fmt::Display for RoundReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if self.expired > 0 {
            parts.push(format!("{} marked expired", self.expired));
        }
        for (what, list) in [
            ("renewed", &self.renewed),
            ("pending", &self.pending),
            ("failed", &self.failed),
            ("resubmitted orders", &self.resubmitted),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", ids(list)));
            }
        }
        if !self.redeployed.is_empty() {
            let done: Vec<String> = self
                .redeployed
                .iter()
                .map(|(id, ok)| format!("{id}{}", if *ok { "" } else { " (failed again)" }))
                .collect();
            parts.push(format!("redeployed {}", done.join(", ")));
        }
        if parts.is_empty() { f.write_str("nothing to do") } else { f.write_str(&parts.join("; ")) }
    }
}

/// One scheduler round on one connection.
pub async fn round(p: &mut Pipeline<'_>, lease_seconds: i64) -> Result<RoundReport, IssueError> {
    round_until(p, lease_seconds, &|| false).await
}

/// [`round`], ended early once `stopping` says so: the renewals and deployments it claimed and
/// has not begun are given back, due at once for the next start. A round renews one
/// certificate after another, so one hanging CA held `serve`'s shutdown for each certificate
/// it had claimed (up to 20 calls' deadlines; operator review of stop 36); now for the call
/// in flight at most.
pub async fn round_until(
    p: &mut Pipeline<'_>,
    lease_seconds: i64,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<RoundReport, IssueError> {
    round_keeping(p, lease_seconds, stopping, &mut Vec::new()).await
}

/// [`round_until`] for a scheduler that runs round after round: `stranded` holds the claims
/// (certificate, claim end) a round that failed midway (a database error) could not give
/// back, and the next round gives them back first, each only while it is still that claim.
/// They sat claimed for the whole lease, ten minutes, after the database recovered, and
/// certificates expired meanwhile (operator review of stop 39). The batch is renewed one
/// certificate after another on `p`'s connection; `serve` runs each account's in a lane of
/// its own instead ([`run`]).
pub async fn round_keeping(
    p: &mut Pipeline<'_>,
    lease_seconds: i64,
    stopping: &(dyn Fn() -> bool + Sync),
    stranded: &mut Vec<(i64, i64)>,
) -> Result<RoundReport, IssueError> {
    let mut report = RoundReport::default();
    tidy(p.inventory, stranded, &mut report)?;
    chores(p, lease_seconds, stopping, &mut report).await?;
    if stopping() {
        return Ok(report);
    }
    let (claimed, until) = p.inventory.claim_due_renewals(lease_seconds, BATCH)?;
    renew_batch(p, &claimed, until, lease_seconds, stopping, stranded, &mut report).await?;
    Ok(report)
}

/// What a round does first, quickly and without calling anyone: gives back stranded claims,
/// marks expired certificates and interrupted orders.
fn tidy(inv: &mut Inventory, stranded: &mut Vec<(i64, i64)>, report: &mut RoundReport) -> Result<(), IssueError> {
    stranded.retain(|&(id, until)| inv.release_renewal_claim(id, until).is_err());
    report.expired = inv.mark_expired(ACTOR)?.len();
    inv.mark_interrupted(ACTOR)?;
    Ok(())
}

/// What a round does that calls CAs and hooks: resubmits interrupted automatic renewals and
/// retries failed deployments.
async fn chores(
    p: &mut Pipeline<'_>,
    lease_seconds: i64,
    stopping: &(dyn Fn() -> bool + Sync),
    report: &mut RoundReport,
) -> Result<(), IssueError> {
    // An automatic renewal cut off by a crash is sent again with the same request id: nobody
    // is there to decide, and the id lets an idempotent CA answer with what it issued.
    // Manual orders still wait for an operator.
    for order in p.inventory.orders(Some(OrderState::NeedsAttention), 0)? {
        if stopping() {
            // Still interrupted: the next start sends it.
            break;
        }
        // Interrupted only (never submitted as far as the host knows): one held for an
        // operator (`hold_for_operator`: the CA issued and storing failed) is not asked again.
        if order.requested_by == ACTOR && order.kind == "renew" && !order.submitted {
            match p.inventory.resubmit_order(order.id, ACTOR) {
                Ok(()) => {}
                // Another scheduler resubmitted (or an operator declined) it first.
                Err(InventoryError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            report.resubmitted.push(order.id);
            if let Some(pred) = order.predecessor_id {
                // The certificate's claim is the interrupted process's, and it is not there to
                // record the outcome: this round takes it over by letting go of it, so that
                // closing the order as failed records the failure (no second renewal can be
                // claimed meanwhile: the order is open).
                p.inventory.release_renewal(pred)?;
            }
            // An issued renewal is recorded in the history by the transaction that stores it.
            match p.submit(order.id, &Default::default()).await {
                Ok(_) => {}
                // Closing the order recorded the failure on the certificate (backoff, notification).
                Err(e) => tracing::warn!(order = order.id, error = %e, "resubmitted renewal failed"),
            }
        }
    }
    retry_deployments(p, lease_seconds, report, stopping).await
}

/// Renews the `claimed` certificates (claims ending at `until`) one after another. `stranded`
/// gets each claim first and loses it once it is dealt with: what an error cuts short stays.
async fn renew_batch(
    p: &mut Pipeline<'_>,
    claimed: &[i64],
    until: i64,
    lease_seconds: i64,
    stopping: &(dyn Fn() -> bool + Sync),
    stranded: &mut Vec<(i64, i64)>,
    report: &mut RoundReport,
) -> Result<(), IssueError> {
    stranded.extend(claimed.iter().map(|&id| (id, until)));
    let settled = |stranded: &mut Vec<(i64, i64)>, id: i64| stranded.retain(|&(s, _)| s != id);
    for (n, &id) in claimed.iter().enumerate() {
        if stopping() {
            for &unbegun in &claimed[n..] {
                p.inventory.release_renewal(unbegun)?;
                settled(stranded, unbegun);
            }
            tracing::info!(
                left = claimed.len() - n,
                "renewal round stopped for shutdown; the rest are due at the next start"
            );
            break;
        }
        // Renewed one after another: each claim is checked and extended just before its turn.
        let Some(held_until) = p.inventory.keep_renewal_claim(id, until, lease_seconds)? else {
            tracing::warn!(certificate = id, "not renewed by this round: its claim ran out while earlier ones renewed");
            settled(stranded, id);
            continue;
        };
        if let Some(entry) = stranded.iter_mut().find(|(s, _)| *s == id) {
            entry.1 = held_until;
        }
        if !auto_renews(p.inventory, id)? {
            // A schedule left behind (by an older version, or a profile changed while this
            // round ran) must not outlive `renewal.auto = false`: it is cleared, not retried.
            p.inventory.set_renew_after(id, None)?;
            p.inventory.release_renewal(id)?;
            settled(stranded, id);
            tracing::info!(certificate = id, "not renewed: its profile no longer renews automatically");
            continue;
        }
        let span = tracing::error_span!("renewal", certificate = id);
        match p.renew(id, &RenewOptions::default()).instrument(span).await {
            Ok(IssueOutcome::Issued { certificate, .. }) => {
                // Recorded in the renewal history by the transaction that stored it.
                tracing::info!(certificate = id, successor = certificate.id, "renewed");
                report.renewed.push(id);
            }
            Ok(_) => {
                // Pending at the CA (the poller finishes it) or held for approval. No other
                // renewal of it is claimed while that order is open, and if it ends rejected
                // or failed, closing it records the failure here (backoff, notification).
                p.inventory.release_renewal(id)?;
                report.pending.push(id);
            }
            Err(IssueError::Inventory(InventoryError::Conflict(_) | InventoryError::RenewalOpen { .. })) => {
                // A renewal of this certificate is already open (manual, or pending at the CA).
                p.inventory.release_renewal(id)?;
            }
            Err(e) => {
                let recorded = p.inventory.record_renewal_failure(id, held_until, &e.to_string(), ACTOR)?;
                // A failed order's reason was logged with it, just before: named, not repeated
                // (scale review of stop 43: three WARN lines with one error per attempt).
                let (order, error) = match &e {
                    IssueError::Failed { order_id, .. } => (Some(*order_id), None),
                    other => (None, Some(other.to_string())),
                };
                match recorded {
                    Some(retry_at) => tracing::warn!(
                        certificate = id,
                        order,
                        error,
                        retry_at = %crate::view::rfc3339(retry_at),
                        "renewal failed"
                    ),
                    // The claim ran out during the call: closing the order recorded it.
                    None => tracing::warn!(
                        certificate = id,
                        order,
                        error,
                        "renewal failed (recorded when its order closed)"
                    ),
                }
                report.failed.push(id);
            }
        }
        settled(stranded, id);
    }
    Ok(())
}

/// Deploys again the targets whose last deployment failed, once their retry time has come
/// (black-box review of stop 35: a renewal whose deployment failed left the server on the old
/// certificate until it expired, with one notification and nothing tried again). Only an
/// active certificate's, to its profile's targets as they are now; a target no longer in the
/// profile, or a certificate superseded, revoked or expired meanwhile, is not retried again.
/// What goes wrong with one certificate is logged and costs only its retry, never the round.
async fn retry_deployments(
    p: &mut Pipeline<'_>,
    lease_seconds: i64,
    report: &mut RoundReport,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<(), IssueError> {
    for (id, failed) in p.inventory.claim_deploy_retries(BATCH, lease_seconds)? {
        if stopping() {
            p.inventory.release_deploy_retries(id, &failed)?;
            continue;
        }
        match retry_deployment(p, id, &failed).await {
            Ok(Some(ok)) => report.redeployed.push((id, ok)),
            Ok(None) => {}
            Err(e) => tracing::warn!(certificate = id, error = %e, "a failed deployment could not be tried again"),
        }
    }
    Ok(())
}

/// One certificate's retry: `Some(all succeeded)` when it deployed.
async fn retry_deployment(p: &mut Pipeline<'_>, id: i64, failed: &[String]) -> Result<Option<bool>, IssueError> {
    let Some(cert) = p.inventory.find(&id.to_string())? else { return Ok(None) };
    let profile = match &cert.profile {
        Some(name) if cert.status == crate::inventory::CertStatus::Active => p.inventory.profile(name)?,
        _ => None,
    };
    let Some((profile, _)) = profile else {
        p.inventory.drop_deploy_retry(id, None)?;
        return Ok(None);
    };
    for gone in failed.iter().filter(|t| !profile.deploy.iter().any(|d| &d.describe() == *t)) {
        p.inventory.drop_deploy_retry(id, Some(gone))?;
    }
    let targets: Vec<_> = profile.deploy.iter().filter(|d| failed.contains(&d.describe())).cloned().collect();
    if targets.is_empty() {
        return Ok(None);
    }
    let reports = crate::deploy::deploy(p.inventory, &cert, &targets, p.env, ACTOR, false).await;
    // Renewed while this deployed: the successor's own deployment may have finished first, and
    // this one put the older certificate back. The successor goes out again, last.
    if let Some(now) = p.inventory.find(&id.to_string())?
        && now.status != crate::inventory::CertStatus::Active
        && let Some(successor) = p.inventory.successor(id)?
        && let Some(succ) = p.inventory.find(&successor.to_string())?
        && succ.status == crate::inventory::CertStatus::Active
        && let Some((succ_profile, _)) = match &succ.profile {
            Some(name) => p.inventory.profile(name)?,
            None => None,
        }
    {
        tracing::info!(
            certificate = id,
            successor,
            "renewed while its deployment was retried: deploying the successor again"
        );
        crate::deploy::deploy(p.inventory, &succ, &succ_profile.deploy, p.env, ACTOR, false).await;
    }
    let ok = reports.iter().all(|r| r.ok);
    tracing::info!(certificate = id, ok, "failed deployment tried again");
    Ok(Some(ok))
}

/// Whether certificate `id`'s profile renews it automatically. A certificate whose profile is
/// gone is left to the renewal, which fails with that reason and backs off.
fn auto_renews(inv: &Inventory, id: i64) -> Result<bool, InventoryError> {
    let Some(name) = inv.find(&id.to_string())?.and_then(|c| c.profile) else { return Ok(true) };
    Ok(inv.profile(&name)?.is_none_or(|(profile, _)| profile.renewal.auto))
}

/// Runs rounds every `interval` until `shutdown` turns true, with notifications delivered
/// beside it by `notify::run`. Each round claims what is due and hands each CA account's
/// share (by the certificates' profiles' first account) to a lane of its own, up to [`LANES`]
/// at once, and does not wait for them: a CA that hangs until its deadline holds up the
/// renewals of its own profiles, not every other's for the length of the batch (operator
/// review of stop 41: one hung CA delayed every certificate of the round by 20 deadlines). A
/// busy lane's profiles are left out of the next claims until it ends, and those of the
/// lanes started last round come after the others. The resubmissions and
/// deployment retries run beside the lanes too, one set at a time, so a hook that runs for
/// an hour holds up no renewal.
pub async fn run(
    inventory: InventoryPool,
    connectors: std::sync::Arc<dyn ConnectorSource>,
    env: crate::param::SharedEnvLookup,
    notify: NotifyConfig,
    since: crate::inventory::ChannelsSince,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Long enough for a renewal with failover over slow accounts; a crashed instance's claims
    // come free after it.
    let lease = 600;
    let notifier =
        tokio::spawn(crate::notify::run(inventory.clone(), env.clone(), notify, since, interval, shutdown.clone()));
    let with =
        TaskContext { pool: inventory.clone(), connectors, env, shutdown: shutdown.clone(), lease_seconds: lease };
    let mut state = Scheduler::default();
    loop {
        state.reap(false).await;
        match inventory.get().await {
            Err(e) => tracing::error!(error = %e, "renewal round skipped: no database connection"),
            Ok(mut inv) => {
                let mut report = RoundReport::default();
                match state.round(&mut inv, &with, &mut report) {
                    Ok(()) if report != RoundReport::default() => {
                        tracing::info!(outcome = %quoted(&report), "renewal round")
                    }
                    Ok(()) => {}
                    Err(e) => tracing::error!(error = %e, "renewal round failed"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    // Each lane ends after the call it has in flight and gives back the rest
                    // of its claims; what none could give back is given back here. The
                    // notifier drops its sends in flight and gives their claims back.
                    state.reap(true).await;
                    if !state.stranded.is_empty()
                        && let Ok(mut inv) = inventory.get().await
                    {
                        state.stranded.retain(|&(id, until)| inv.release_renewal_claim(id, until).is_err());
                    }
                    let _ = notifier.await;
                    return;
                }
            }
        }
    }
}

/// CA accounts renewing at once in `serve`, at most. Each lane holds a database connection from
/// the connector calls' share of the pool (`get_for_call`), as an API issuance does.
const LANES: usize = 4;

/// What a lane or the chores task needs to start: cloned into each task.
#[derive(Clone)]
struct TaskContext {
    pool: InventoryPool,
    connectors: std::sync::Arc<dyn ConnectorSource>,
    env: crate::param::SharedEnvLookup,
    shutdown: watch::Receiver<bool>,
    lease_seconds: i64,
}

/// A running lane: its task, and its claims (given back if the task dies).
struct Lane {
    task: JoinHandle<LaneEnd>,
    ids: Vec<i64>,
    until: i64,
}

/// How a lane ended: what it did, and the claims it could not give back (a database error).
struct LaneEnd {
    report: RoundReport,
    stranded: Vec<(i64, i64)>,
}

/// The scheduler's state between rounds.
#[derive(Default)]
struct Scheduler {
    /// By CA account: the first account of the certificates' profile.
    lanes: HashMap<String, Lane>,
    /// The lanes started last round: their profiles come after the others in the next claim,
    /// so that an account with a long backlog and a fast CA does not take every batch.
    served_last: Vec<String>,
    /// The resubmissions and deployment retries in flight, if any.
    chores: Option<JoinHandle<()>>,
    /// Claims (certificate, claim end) a round or lane could not give back.
    stranded: Vec<(i64, i64)>,
}

impl Scheduler {
    /// One round on `inv`: [`tidy`], the chores task when none runs, then the due
    /// certificates of profiles with no lane running are claimed and each account's share
    /// starts a lane. Claims beyond a free lane are given back at once (due again next round).
    fn round(&mut self, inv: &mut Inventory, with: &TaskContext, report: &mut RoundReport) -> Result<(), IssueError> {
        tidy(inv, &mut self.stranded, report)?;
        if *with.shutdown.borrow() {
            return Ok(());
        }
        if self.chores.is_none() {
            self.chores = Some(tokio::spawn(chores_task(with.clone())));
        }
        if self.lanes.len() >= LANES {
            return Ok(());
        }
        // A lane is a CA account's (its profiles' first): profiles that share a hanging
        // account share its one lane, and cannot take every lane (scale review of stop 43:
        // six profiles on one hanging CA held all four, and the healthy ones waited).
        // A stored profile that no longer reads (none should) puts every certificate in the
        // one lane `""`: renewals one after another, as before lanes, rather than none.
        let profiles = inv.profiles().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "renewals run in one lane: the profiles could not be read");
            Vec::new()
        });
        let lane_of: HashMap<String, String> = profiles
            .into_iter()
            .map(|(name, def, _)| (name, def.accounts.first().cloned().unwrap_or_default()))
            .collect();
        let key = |profile: &str| lane_of.get(profile).cloned().unwrap_or_default();
        let profiles_in = |lanes: &[&String]| -> Vec<String> {
            let mut out: Vec<String> =
                lane_of.iter().filter(|(_, lane)| lanes.contains(lane)).map(|(p, _)| p.clone()).collect();
            if lanes.iter().any(|l| l.is_empty()) {
                // The lane of certificates whose profile is gone (or names no account).
                out.push(String::new());
            }
            out
        };
        let busy = profiles_in(&self.lanes.keys().collect::<Vec<_>>());
        let mut later = busy.clone();
        later.extend(profiles_in(&self.served_last.iter().collect::<Vec<_>>()));
        let (mut claimed, until) = inv.claim_due_renewals_except(with.lease_seconds, BATCH, &later)?;
        let room = BATCH.saturating_sub(claimed.len() as u32);
        if room > 0 && !self.served_last.is_empty() {
            // Those just claimed are leased now, so the second claim cannot take them again.
            // It ends with the first: `until` names the claims of both.
            let (more, _) = inv.claim_due_renewals_until(until, room, crate::inventory::ClaimScope::Except(&busy))?;
            claimed.extend(more);
        }
        // Until a lane owns them: a database error before then leaves them for the next round.
        self.stranded.extend(claimed.iter().map(|c| (c.id, until)));
        let mut shares: Vec<(String, Vec<i64>)> = Vec::new();
        for c in claimed {
            let lane = key(&c.profile);
            match shares.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, ids)) => ids.push(c.id),
                None => shares.push((lane, vec![c.id])),
            }
        }
        self.served_last.clear();
        for (lane_key, ids) in shares {
            // Beyond the lanes, or for a lane still running (a certificate whose profile is
            // gone goes to lane `""` whatever its profile's name): due again next round.
            if self.lanes.len() >= LANES || self.lanes.contains_key(&lane_key) {
                for &id in &ids {
                    inv.release_renewal_claim(id, until)?;
                    self.stranded.retain(|&(s, _)| s != id);
                }
                continue;
            }
            self.stranded.retain(|(s, _)| !ids.contains(s));
            // Every line a lane logs — a connector's timeout, an order's failure — names the
            // CA account it renews for (scale review of stop 43: they named neither).
            let span = tracing::error_span!("renewals", account = %lane_key);
            // A lane renews the rest of its account's due certificates after its batch (not
            // for the lane of certificates whose profile is gone: none names them).
            let own = if lane_key.is_empty() { Vec::new() } else { profiles_in(&[&lane_key]) };
            let task = tokio::spawn(lane(with.clone(), ids.clone(), until, own).instrument(span));
            self.served_last.push(lane_key.clone());
            self.lanes.insert(lane_key, Lane { task, ids, until });
        }
        Ok(())
    }

    /// Takes the lanes (and the chores task) that ended — `all`: waits for every one — logs
    /// what each did and keeps the claims they could not give back for the next round.
    async fn reap(&mut self, all: bool) {
        let ended: Vec<String> =
            self.lanes.iter().filter(|(_, lane)| all || lane.task.is_finished()).map(|(p, _)| p.clone()).collect();
        for account in ended {
            let Some(lane) = self.lanes.remove(&account) else { continue };
            match lane.task.await {
                Ok(end) => {
                    if end.report != RoundReport::default() {
                        tracing::info!(account, outcome = %quoted(&end.report), "renewal round");
                    }
                    self.stranded.extend(end.stranded);
                }
                Err(e) => {
                    // Its claims are given back by the next round, each only while it is
                    // still that claim: the one in flight, extended, stays its lease's.
                    // Cancelled is how a stopping runtime ends it: no fault to alert on (day-
                    // two walkthrough of stop 49: a clean SIGTERM logged two ERROR lines).
                    if e.is_cancelled() {
                        tracing::info!(
                            account,
                            "a renewal lane stopped with serve; its certificates are due at the next start"
                        );
                    } else {
                        tracing::error!(account, error = %e, "a renewal lane ended abnormally");
                    }
                    self.stranded.extend(lane.ids.iter().map(|&id| (id, lane.until)));
                }
            }
        }
        if let Some(task) = self.chores.take_if(|t| all || t.is_finished())
            && let Err(e) = task.await
            && !e.is_cancelled()
        {
            tracing::error!(error = %e, "the renewal scheduler's resubmissions and deployment retries ended abnormally");
        }
    }
}

/// How long a lane goes on claiming its account's next due certificates once its batch is
/// done. A lane renewed its batch of 20 and ended, and the next came a round later: 40
/// renewals a minute per account however fast the CA, so a storm of 6,000 certificates due
/// at once expired by the thousand (scale walkthrough of stop 50). Bounded, so that with more
/// accounts than lanes the others get theirs within a few minutes.
const LANE_SPAN: Duration = Duration::from_secs(120);

/// Renews one account's claimed certificates, one after another, on a connection of its own;
/// then, for up to [`LANE_SPAN`], the next due ones of `own` (its account's profiles), a
/// batch at a time, until none is due.
async fn lane(with: TaskContext, ids: Vec<i64>, until: i64, own: Vec<String>) -> LaneEnd {
    let mut end = LaneEnd { report: RoundReport::default(), stranded: Vec::new() };
    let mut inv = match with.pool.get_for_call().await {
        Ok(inv) => inv,
        Err(e) => {
            tracing::error!(error = %e, "renewals skipped: no database connection");
            end.stranded = ids.iter().map(|&id| (id, until)).collect();
            return end;
        }
    };
    let mut p = Pipeline { inventory: &mut inv, connectors: &*with.connectors, env: &*with.env, actor: ACTOR };
    let shutdown = with.shutdown.clone();
    let stopping = move || *shutdown.borrow();
    let lease = with.lease_seconds;
    let started = std::time::Instant::now();
    let (mut ids, mut until) = (ids, until);
    loop {
        if let Err(e) = renew_batch(&mut p, &ids, until, lease, &stopping, &mut end.stranded, &mut end.report).await {
            tracing::error!(error = %e, "renewal round failed");
            break;
        }
        if own.is_empty() || stopping() || started.elapsed() >= LANE_SPAN {
            break;
        }
        let next_until = crate::clock::unix_now() + lease;
        match p.inventory.claim_due_renewals_until(next_until, BATCH, crate::inventory::ClaimScope::Only(&own)) {
            Ok((next, _)) if next.is_empty() => break,
            Ok((next, _)) => {
                // `renew_batch` holds them in `stranded` until each is dealt with.
                ids = next.into_iter().map(|c| c.id).collect();
                until = next_until;
            }
            Err(e) => {
                tracing::error!(error = %e, "renewal round failed: the next due certificates could not be claimed");
                break;
            }
        }
    }
    end
}

/// [`chores`] on a connection of its own, beside the lanes.
async fn chores_task(with: TaskContext) {
    let mut inv = match with.pool.get_for_call().await {
        Ok(inv) => inv,
        Err(e) => {
            return tracing::error!(error = %e, "resubmissions and deployment retries skipped: no database connection");
        }
    };
    let mut p = Pipeline { inventory: &mut inv, connectors: &*with.connectors, env: &*with.env, actor: ACTOR };
    let shutdown = with.shutdown.clone();
    let stopping = move || *shutdown.borrow();
    let mut report = RoundReport::default();
    match chores(&mut p, with.lease_seconds, &stopping, &mut report).await {
        Ok(()) if report != RoundReport::default() => tracing::info!(outcome = %quoted(&report), "renewal round"),
        Ok(()) => {}
        Err(e) => tracing::error!(error = %e, "resubmissions and deployment retries failed"),
    }
}

/// A round's report as one quoted log value: its words and comma-separated ids
/// (`renewed 1034, 1035`) unquoted broke logfmt parsers at the first space (day-two
/// walkthrough of stop 49).
fn quoted(report: &RoundReport) -> String {
    format!("{:?}", report.to_string())
}

#[cfg(test)]
mod tests {
    /// The round's log line names what happened by certificate id, not the struct's fields.
    #[test]
    fn a_round_is_said_in_words() {
        let report = super::RoundReport {
            renewed: vec![1, 5],
            failed: vec![3],
            redeployed: vec![(7, false)],
            ..Default::default()
        };
        assert_eq!(report.to_string(), "renewed 1, 5; failed 3; redeployed 7 (failed again)");
        assert_eq!(super::RoundReport::default().to_string(), "nothing to do");
    }
}
