//! The issuance pipeline: a request by profile becomes a verified certificate in the inventory.
//!
//! 1. policy (profile rules, dynamic parameters);
//! 2. key + CSR, or the uploaded CSR;
//! 3. the order is written (`pending`, or `awaiting_approval`) before any CA call;
//! 4. the profile's active CA accounts are tried in order, failing over on `unreachable` (one
//!    just found unreachable is tried last for a while: `failover.rs`);
//! 5. an `issued` result is verified (invariant 1);
//! 6. stored with its sealed key, order closed, audited;
//! 7. `pending` results are polled later ([`Pipeline::poll`]).

mod apply;
mod call;
mod error;
mod failover;
mod poll;
mod request;

use call::implements;
pub(crate) use call::{backstop, call_with_deadline, connector_of};
pub use error::IssueError;
use request::still_allowed;
pub(crate) use request::{
    DynamicParams, check_dynamic, check_given_sizes, check_matches_csr, recorded_dynamic, recorded_params,
};

use std::collections::BTreeMap;

use crate::account::{Account, AccountStatus};
use crate::clock::unix_now;
use crate::connector::{
    Args, CertificateRequest, ConnectorError, ConnectorSource, Disposition, Operation, RenewRequest,
};
use crate::csr::{CsrParams, San, Subject, parse_csr, stored_csr_public_key};
use crate::inventory::{CertificateRecord, Inventory, InventoryError, NewOrder, Order, OrderState, SecretOwner};
use crate::param::{EnvLookup, ParamError, ValueSource, resolve};
use crate::profile::{NameRequest, ProfileDef};

/// Poll intervals asked for by connectors are clamped to this range (issue 5: 5 s – 1 h).
pub const POLL_MIN_S: u32 = 5;
/// Upper clamp of poll intervals.
pub const POLL_MAX_S: u32 = 3600;

/// A request for a certificate by profile.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    /// Profile name.
    pub profile: String,
    /// Requested CN. With an uploaded CSR the CSR's names are the ones issued, so a CN given as
    /// well must be the CSR's (see [`check_matches_csr`]).
    pub common_name: Option<String>,
    /// Requested SANs (with a CSR: the CSR's, in any order, or none).
    pub sans: Vec<San>,
    /// Subject overrides the profile allows (with a CSR: each one given must be the CSR's).
    pub subject: Subject,
    /// Dynamic parameters.
    pub params: BTreeMap<String, String>,
    /// An uploaded CSR (PEM or DER) instead of a host-generated key.
    pub csr: Option<Vec<u8>>,
    /// An API client's `Idempotency-Key` ([`crate::idempotency`]): a request with a key its
    /// caller already used is answered with that request's order, not issued again.
    pub idempotency_key: Option<String>,
}

tokio::task_local! {
    /// The order whose CA call a pipeline step began, for an API request that runs the step
    /// in this scope (`api::to_completion`): a request that runs out of time names the order
    /// in its 504, whose outcome it records (API review of stop 40: a client without an
    /// Idempotency-Key could not match the timeout to its order).
    pub static ORDER_SEEN: std::sync::Arc<std::sync::OnceLock<i64>>;
}

/// Where an order stands after a pipeline step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Certificate stored.
    Issued {
        /// Order id.
        order_id: i64,
        /// The stored row (its `id` is the inventory id), as the change that stored it wrote it:
        /// callers answering with it (the API's 201 body) need no second read.
        certificate: Box<CertificateRecord>,
        /// Whether its profile deployed it: only then do answers read its deployments back
        /// (a read per issuance otherwise, on the path issue 9 measures).
        deployed: bool,
        /// Its key was revoked for keyCompromise while the order was at the CA: it is stored
        /// (the CA issued it), not deployed, due for renewal at once where its profile renews
        /// automatically, and an interactive caller is answered with an error, not with it.
        on_compromised_key: bool,
    },
    /// Waiting at the CA; polled at `next_poll_at`.
    Pending {
        /// Order id.
        order_id: i64,
        /// Unix seconds.
        next_poll_at: i64,
    },
    /// Held for approval.
    AwaitingApproval {
        /// Order id.
        order_id: i64,
    },
}

/// What `account test` found. A connector without a connection test is neither a pass nor a
/// failure: reporting it as failed made every Avi script's account look broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountTest {
    /// `test_connection` succeeded.
    Passed,
    /// It failed: the error, redacted.
    Failed(String),
    /// The connector answered that it has no `test_connection`; nothing was tested.
    NotAvailable,
}

impl AccountTest {
    /// The stored result: `None` when nothing was tested.
    pub fn ok(&self) -> Option<bool> {
        match self {
            AccountTest::Passed => Some(true),
            AccountTest::Failed(_) => Some(false),
            AccountTest::NotAvailable => None,
        }
    }

    /// One sentence for the operator and the audit log.
    pub fn message(&self) -> String {
        match self {
            AccountTest::Passed => "ok".into(),
            AccountTest::Failed(why) => why.clone(),
            AccountTest::NotAvailable => {
                "not tested: the connector has no connection test (test_connection is not implemented)".into()
            }
        }
    }
}

/// Everything the pipeline needs, borrowed for one operation.
pub struct Pipeline<'a> {
    /// Where orders, certificates and definitions are read and written; borrowed mutably so
    /// one operation's writes are not interleaved with another's on this connection.
    pub inventory: &'a mut Inventory,
    /// Where a CA account's connector comes from: loaded and cached by `serve`'s registry, or a
    /// test's own.
    pub connectors: &'a dyn ConnectorSource,
    /// Environment lookup for `{ env = ... }` references (injected by the binary).
    pub env: EnvLookup<'a>,
    /// Who acts, for the audit log.
    pub actor: &'a str,
}

/// The log target of an order's bad outcome — held for an operator, failed, rejected by the
/// CA — which a CLI command that reports the outcome as its own error switches off; `serve`
/// logs it at WARN.
pub const OUTCOME_LOG_TARGET: &str = "certhost::outcome";

/// An operator's decision that sends an order to its CA ([`Pipeline::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A held order (`approval_required`) may go.
    Approve,
    /// An interrupted order is sent again, with its request id.
    Resubmit,
}

/// An order as its submission starts.
pub(crate) enum Submission {
    /// Already written (approved, resubmitted or a renewal).
    Written(Order),
    /// Not written yet: it is written with the start of its first attempt (or its failure).
    New(NewOrder),
}

impl Submission {
    fn profile_name(&self) -> &str {
        match self {
            Submission::Written(o) => o.profile.as_deref().unwrap_or_default(),
            Submission::New(n) => &n.profile,
        }
    }
}

/// When a certificate of `profile` valid from `not_before` to `not_after`, stored now, is due
/// for renewal, with its jitter; `None` when the profile does not renew automatically.
pub(crate) fn renewal_due(profile: &ProfileDef, not_before: i64, not_after: i64) -> Option<crate::profile::Due> {
    let start = crate::profile::lifetime_start(not_before, unix_now());
    profile.renewal.due_at(start, not_after).map(|due| {
        let max = crate::profile::RenewalPolicy::max_jitter(start, not_after, due.at);
        crate::profile::Due { at: due.at - rand::Rng::gen_range(&mut rand::thread_rng(), 0..=max), ..due }
    })
}

/// What a renewal order carries to the CA besides its CSR.
#[derive(Debug, Clone)]
pub(crate) struct Renewal {
    /// The certificate being renewed, PEM.
    pub prior_pem: String,
    /// The CA's order id for it, when known.
    pub prior_ca_order_id: Option<String>,
    /// The account that issued it: `renew` is only asked of that account.
    pub prior_account: Option<String>,
}

impl Pipeline<'_> {
    /// Steps 1–7 for a new request.
    pub async fn issue(&mut self, req: &IssueRequest) -> Result<IssueOutcome, IssueError> {
        self.issue_or_replay(req).await.map(|(outcome, _)| outcome)
    }

    /// [`Pipeline::issue`], or — when the request's `Idempotency-Key` is held by an order of
    /// this caller — that order's outcome, with `true`. The key is looked up first, before
    /// the profile is read: the first request's certificate is the answer even when the
    /// profile has changed since (a parameter made required, say).
    pub async fn issue_or_replay(&mut self, req: &IssueRequest) -> Result<(IssueOutcome, bool), IssueError> {
        let Some(key) = &req.idempotency_key else {
            return self.issue_new(req, None).await.map(|o| (o, false));
        };
        if let Some(outcome) = self.replay_held(req, key).await? {
            return Ok((outcome, true));
        }
        match self.issue_new(req, Some(key)).await {
            // Another request with the key made its order since the look-up: it answers.
            Err(IssueError::Inventory(InventoryError::KeyHeld(holder))) => match self.replay_held(req, key).await? {
                Some(outcome) => Ok((outcome, true)),
                None => Err(IssueError::Inventory(InventoryError::KeyHeld(holder))),
            },
            other => other.map(|o| (o, false)),
        }
    }

    /// The outcome of the order that holds `key` for this caller, if one does. Read through
    /// the group committer: the answer then waits for the sync that follows, so a replayed
    /// 201 never names a certificate a crash could still take (its commit is visible to
    /// other connections before it is synced; diff review of stop 36).
    async fn replay_held(&mut self, req: &IssueRequest, key: &str) -> Result<Option<IssueOutcome>, IssueError> {
        // Most keys are new: a read here says so without a round trip through the committer.
        // One committed meanwhile is caught by `create_order`, and then read again below.
        if self.inventory.idempotent_order(self.actor, key)?.is_none() {
            return Ok(None);
        }
        let (actor, key) = (self.actor.to_owned(), key.to_owned());
        let held = self.inventory.write(move |inv| inv.idempotent_order(&actor, &key)).await?;
        let Some((order, stored)) = held else { return Ok(None) };
        let digest = crate::idempotency::digest_as_recorded(req, &order);
        crate::idempotency::replay(self.inventory, order, &stored, &digest).map(Some)
    }

    /// Steps 1–7 for a request no order answers, its key (if any) kept with its order.
    async fn issue_new(&mut self, req: &IssueRequest, key: Option<&String>) -> Result<IssueOutcome, IssueError> {
        let (profile, _) = self
            .inventory
            .profile(&req.profile)?
            .ok_or_else(|| IssueError::NoProfile(crate::view::echoed(&req.profile)))?;
        check_given_sizes(&req.params)?;
        let dynamic = check_dynamic(&req.profile, &profile, &req.params)?;
        let idempotency = key.map(|key| crate::inventory::Idempotency {
            key: key.clone(),
            request_sha256: crate::idempotency::request_digest(req, &|name| {
                dynamic.get(name).is_some_and(|(_, sensitive)| *sensitive)
            }),
        });
        let (csr_pem, key, common_name, sans) = match &req.csr {
            Some(bytes) => {
                let parsed = parse_csr(bytes)?;
                if let Some(certificate_id) = self.inventory.public_key_compromised(&parsed.public_key_raw)? {
                    return Err(IssueError::CompromisedKey { certificate_id });
                }
                check_matches_csr(req, &parsed)?;
                profile.check_csr_names(&req.profile, parsed.common_name.as_deref(), &parsed.sans)?;
                profile.check_csr_subject(&req.profile, &parsed.subject_fields)?;
                profile.key.check_accepts(&req.profile, "the CSR's", parsed.key)?;
                profile.check_deploys_without_key(&req.profile)?;
                (parsed.pem.clone(), None, parsed.common_name, parsed.sans)
            }
            None => {
                let names = NameRequest {
                    common_name: req.common_name.clone(),
                    sans: req.sans.clone(),
                    subject: req.subject.clone(),
                };
                let (subject, sans) = profile.check_request(&req.profile, &names)?;
                let params =
                    CsrParams { subject, sans: sans.clone(), key_type: profile.key.key_type, hash: profile.key.hash };
                let (key, csr) = params.generate()?;
                (csr.pem, Some(key), req.common_name.clone(), sans)
            }
        };
        let new = NewOrder {
            kind: "issue".into(),
            profile: req.profile.clone(),
            common_name,
            sans,
            csr_pem,
            params: recorded_params(&dynamic),
            key,
            predecessor_id: None,
            awaiting_approval: profile.approval_required,
            idempotency,
        };
        if profile.approval_required {
            let actor = self.actor.to_owned();
            let order = self.inventory.write(move |inv| inv.create_order(&new, &actor)).await?;
            crate::metrics::issuance("awaiting_approval");
            return Ok(IssueOutcome::AwaitingApproval { order_id: order.id });
        }
        self.submit_with(Submission::New(new), &profile, &dynamic, None).await
    }

    /// Records an operator's decision on an order — approving a held one, resending an
    /// interrupted one — and submits it. The parameters are checked before the decision is
    /// recorded, so a mistyped one is refused and the order stays as it was for another try.
    pub async fn decide(
        &mut self,
        order_id: i64,
        decision: Decision,
        params: &BTreeMap<String, String>,
    ) -> Result<IssueOutcome, IssueError> {
        let order = self.load_order(order_id)?;
        let awaits = match decision {
            Decision::Approve => OrderState::AwaitingApproval,
            Decision::Resubmit => OrderState::NeedsAttention,
        };
        // In any other state the decision itself is refused below, with the reason.
        if order.state == awaits {
            match self.resupplied(&order, params) {
                Ok(_) => {}
                // For good: left awaiting a decision that can never go through, the order
                // stayed open (diff review of stop 39). It is closed as failed, with why.
                Err(e @ IssueError::CompromisedKey { .. }) => {
                    match decision {
                        Decision::Approve => self.inventory.approve_order(order_id, self.actor)?,
                        Decision::Resubmit => self.inventory.resubmit_order(order_id, self.actor)?,
                    }
                    self.fail(order_id, &e.to_string()).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        match decision {
            Decision::Approve => self.inventory.approve_order(order_id, self.actor)?,
            Decision::Resubmit => self.inventory.resubmit_order(order_id, self.actor)?,
        }
        self.submit(order_id, params).await
    }

    /// Submits an approved or resubmitted order. Dynamic parameters were recorded redacted,
    /// so sensitive dynamic values must be supplied again (`params`).
    pub async fn submit(
        &mut self,
        order_id: i64,
        params: &BTreeMap<String, String>,
    ) -> Result<IssueOutcome, IssueError> {
        let order = self.load_order(order_id)?;
        if order.state != OrderState::Pending || order.submitted {
            return Err(IssueError::WrongState {
                order_id,
                state: order.state.as_str(),
                what: "only approved or resubmitted orders are submitted",
            });
        }
        let (profile, dynamic) = match self.resupplied(&order, params) {
            Ok(checked) => checked,
            Err(e) => {
                // Never leave an approved order pending without a submission: it could not be
                // polled, approved or resubmitted any more. It fails with the reason.
                self.fail(order_id, &e.to_string()).await?;
                return Err(e);
            }
        };
        let renewal = self.renewal_context(&order)?;
        self.submit_with(Submission::Written(order), &profile, &dynamic, renewal.as_ref()).await
    }

    /// The order's profile and its dynamic parameters: the recorded non-sensitive values,
    /// overridden by what the caller gives now, checked against the profile.
    fn resupplied(
        &self,
        order: &Order,
        params: &BTreeMap<String, String>,
    ) -> Result<(ProfileDef, DynamicParams), IssueError> {
        let profile_name = order.profile.clone().unwrap_or_default();
        let (profile, _) = self
            .inventory
            .profile(&profile_name)?
            .ok_or_else(|| IssueError::NoProfile(crate::view::echoed(&profile_name)))?;
        still_allowed(order, &profile_name, &profile)?;
        // An order held for approval, or interrupted, whose key — uploaded, or kept by a renewal
        // — was declared compromised meanwhile is not sent (diff review of stop 39: approving
        // a held renewal certified its kept key after the revoke).
        if let Ok(key) = stored_csr_public_key(&order.csr_pem)
            && let Some(certificate_id) = self.inventory.public_key_compromised(&key)?
        {
            return Err(IssueError::CompromisedKey { certificate_id });
        }
        check_given_sizes(params)?;
        let mut merged: BTreeMap<String, String> =
            recorded_dynamic(Some(order), &profile).into_iter().map(|(k, (v, _))| (k, v)).collect();
        merged.extend(params.clone());
        let dynamic = check_dynamic(&profile_name, &profile, &merged)?;
        Ok((profile, dynamic))
    }

    /// Sends an order to the profile's active accounts in failover order. A renewal goes to
    /// the connector's `renew` at the account that issued the prior certificate (falling back
    /// to `certificate_request` when the connector has no `renew`). A new order is written
    /// in the same synced change as its first attempt, so a request costs two syncs in all.
    pub(crate) async fn submit_with(
        &mut self,
        mut order: Submission,
        profile: &ProfileDef,
        dynamic: &BTreeMap<String, (String, bool)>,
        renewal: Option<&Renewal>,
    ) -> Result<IssueOutcome, IssueError> {
        let profile_name = order.profile_name().to_owned();
        // The key the host just generated is the CSR's: no need to parse the CSR for it.
        let csr_key: Option<Vec<u8>> = match &order {
            Submission::New(new) => new.key.as_ref().map(|k| k.public_key_raw().to_vec()),
            Submission::Written(_) => None,
        };
        let mut last_error: Option<String> = None;
        // The active accounts, resolved first: whether another one follows, and which go
        // last, is a question about them alone (an inactive one is never tried).
        let mut active = Vec::with_capacity(profile.accounts.len());
        for name in &profile.accounts {
            if let Some(account) = self.inventory.account(name)?
                && account.def.status == AccountStatus::Active
            {
                active.push(account);
            }
        }
        let accounts = failover::failover_order(active, |a| self.connectors.tried_last(&a.name, &a.def));
        let tried = accounts.len();
        for (n, (account, tried_last)) in accounts.iter().enumerate() {
            if let Some(left) = tried_last {
                tracing::debug!(
                    account = %account.name,
                    "CA account tried after the profile's others for {} s more: its CA was unreachable",
                    left.as_millis().div_ceil(1000)
                );
            }
            let args = match self.args_for(account, &profile_name, profile, dynamic) {
                Ok(a) => a,
                // Nothing written yet, and nothing to write: the request never reached a CA,
                // and a value the server cannot read (`{ env }` not set where it runs) is the
                // configuration's fault, not the request's — it goes through once that is
                // fixed, as a 503 says (new-user walkthrough of stop 46: each try stored a
                // failed order with a sealed key).
                Err(e @ IssueError::Param(crate::param::ParamError::Unresolvable { .. }))
                    if matches!(order, Submission::New(_)) =>
                {
                    tracing::warn!(target: OUTCOME_LOG_TARGET, "request refused, nothing stored: {e}");
                    return Err(e);
                }
                // An approved or resubmitted order is closed with why, and named.
                Err(IssueError::Param(source @ crate::param::ParamError::Unresolvable { .. })) => {
                    let order_id = self.fail_submission(order, &source.to_string()).await?;
                    return Err(IssueError::Unconfigured { order_id, source });
                }
                Err(e) => {
                    self.fail_submission(order, &e.to_string()).await?;
                    return Err(e);
                }
            };
            let connector = match connector_of(self.connectors, account, &profile_name, &profile.params).await {
                Ok(c) => c,
                Err(e) => {
                    let message = args.redact(&e.to_string());
                    let order_id = self.fail_submission(order, &message).await?;
                    return Err(IssueError::Failed { order_id, message });
                }
            };
            let limits = account.def.limits();
            // The lease outlives the call's backstop deadline by a margin.
            let lease = backstop(limits.timeout).as_secs() as i64 + 10;
            // Durable before the CA hears of it (invariant 5).
            let current = self.begin_attempt(order, &account.name, lease).await?;
            let mut args = args;
            args.set_order_names(current.names());
            let request = CertificateRequest {
                csr_pem: current.csr_pem.clone(),
                common_name: current.common_name.clone().unwrap_or_default(),
                request_id: current.request_id.clone(),
            };
            let started = std::time::Instant::now();
            let fresh_request = || {
                call_with_deadline(&*connector, limits.timeout, &args, connector.certificate_request(&request, &args))
            };
            let result = match renewal.filter(|r| r.prior_account.as_deref() == Some(account.name.as_str())) {
                Some(r) => {
                    let renew = RenewRequest {
                        prior_certificate_pem: r.prior_pem.clone(),
                        prior_ca_order_id: r.prior_ca_order_id.clone(),
                        request: request.clone(),
                    };
                    // A connector without `renew` gets the renewal as a fresh request, under a
                    // lease of its own (review of stop 31: the first call's ran out during the
                    // second, and the order was taken for interrupted).
                    match call_with_deadline(&*connector, limits.timeout, &args, connector.renew(&renew, &args)).await {
                        Err(ConnectorError::Unsupported { .. }) => {
                            let id = current.id;
                            self.inventory.write(move |inv| inv.extend_submit_lease(id, lease)).await?;
                            fresh_request().await
                        }
                        other => other,
                    }
                }
                None => fresh_request().await,
            };
            let operation = if renewal.is_some_and(|r| r.prior_account.as_deref() == Some(account.name.as_str())) {
                "renew"
            } else {
                "request"
            };
            crate::metrics::connector_call(connector.name(), &account.name, operation, &result, started.elapsed());
            match result {
                // Nothing would ever ask for this order again: failed now, with what to do,
                // rather than at the first poll with "poll is not implemented".
                Ok(Disposition::Pending { ca_order_id, .. }) if !implements(&*connector, Operation::Poll).await => {
                    let message = args.redact(&format!(
                        "{} answered pending (CA order {}) but implements no poll, so certhost cannot collect the \
                         certificate: give it a poll operation, or fetch the certificate at the CA and import it \
                         (certhost import)",
                        connector.label(),
                        crate::view::echoed(&ca_order_id)
                    ));
                    // The CA's order id is kept on the order, where an operator looks for it; in
                    // one change with the failure, so no poller ever sees the order pending.
                    let (id, actor) = (current.id, self.actor.to_owned());
                    let (handle, reason) = (ca_order_id.clone(), message.clone());
                    tracing::warn!(target: OUTCOME_LOG_TARGET, order = id, "order failed: {}", crate::connector::redact::one_line(&message));
                    self.inventory
                        .write(move |inv| {
                            inv.record_pending(id, &handle, unix_now(), &actor)?;
                            inv.record_failed(id, &reason, &actor)
                        })
                        .await?;
                    crate::metrics::issuance("failed");
                    return Err(IssueError::Failed { order_id: current.id, message });
                }
                // The profile this request was checked against decides renewal and deployment
                // (no second load); a stand-in for a deleted profile has no name and decides
                // nothing, as when apply finds no stored profile.
                Ok(disposition) => {
                    let known = Some(profile).filter(|_| !profile_name.is_empty());
                    return self.apply(&current, disposition, &args, known, csr_key.as_deref()).await;
                }
                Err(e) if e.is_failover() => {
                    let error = args.redact(&e.to_string());
                    // Said here only when another account is tried: the last one's error is
                    // the order's reason, logged when it fails.
                    if n + 1 < accounts.len() {
                        // Whether it goes last for a while now, as this failure made it or
                        // one a moment before.
                        match self.connectors.tried_last(&account.name, &account.def) {
                            Some(d) => tracing::warn!(
                                order = current.id, account = %account.name, %error,
                                "CA account unreachable; trying the next one (it is tried after its profiles' other accounts for the next {} s)",
                                d.as_millis().div_ceil(1000)
                            ),
                            None => {
                                tracing::warn!(order = current.id, account = %account.name, %error, "CA account unreachable; trying the next one")
                            }
                        }
                    }
                    last_error = Some(format!("account {}: {error}", account.name));
                    order = Submission::Written(current);
                }
                // The CA may have received a request whose call ran out of time, or whose
                // connector died in it: failed, it would be asked again by whoever retries. An
                // automatic renewal fails as before, with its backoff: the scheduler would
                // otherwise resubmit it every round.
                Err(
                    e @ (ConnectorError::TimedOut { nothing_sent: false, .. } | ConnectorError::Interrupted { .. }),
                ) if current.requested_by != crate::inventory::AUTO_RENEWAL_ACTOR => {
                    let id = current.id;
                    let message = format!(
                        "{}; the CA may have received the request, so the order is held, not failed: check at the CA, \
                         then resubmit order {id} (same request id) or decline it",
                        args.redact(&e.to_string())
                    );
                    self.hold(id, &message).await?;
                    return Err(IssueError::NeedsAttention { order_id: id, message });
                }
                Err(e) => {
                    let message = args.redact(&e.to_string());
                    self.fail(current.id, &message).await?;
                    return Err(IssueError::Failed { order_id: current.id, message });
                }
            }
        }
        if tried == 0 {
            let order_id =
                self.fail_submission(order, &format!("profile {profile_name} has no active CA account")).await?;
            return Err(IssueError::NoActiveAccount { order_id, profile: profile_name });
        }
        let message = format!(
            "every CA account of profile {profile_name} was unreachable (last: {})",
            last_error.unwrap_or_default()
        );
        let order_id = self.fail_submission(order, &message).await?;
        Err(IssueError::Failed { order_id, message })
    }

    /// Records the start of an attempt at `account` with its lease — and writes a new order
    /// in the same change, so a request costs one sync before the CA call, not two.
    async fn begin_attempt(&mut self, order: Submission, account: &str, lease: i64) -> Result<Order, IssueError> {
        let (account, actor) = (account.to_owned(), self.actor.to_owned());
        let order = match order {
            Submission::Written(current) => {
                let id = current.id;
                self.inventory.write(move |inv| inv.begin_submit(id, &account, lease, &actor)).await?;
                current
            }
            Submission::New(new) => {
                self.inventory
                    .write(move |inv| {
                        let order = inv.create_order(&new, &actor)?;
                        inv.begin_submit(order.id, &account, lease, &actor)?;
                        Ok(order)
                    })
                    .await?
            }
        };
        let _ = ORDER_SEEN.try_with(|seen| seen.set(order.id));
        Ok(order)
    }

    /// Fails an order before any CA answered; a new order is written failed, so the request
    /// and its reason stay on record. Returns the order id.
    async fn fail_submission(&mut self, order: Submission, reason: &str) -> Result<i64, IssueError> {
        match order {
            Submission::Written(current) => {
                self.fail(current.id, reason).await?;
                Ok(current.id)
            }
            Submission::New(mut new) => {
                // No CA saw this order, so no certificate can ever come for its key: it is
                // not stored (scale walkthrough of stop 50: every renewal attempt of a profile
                // with no active account sealed a new key that nothing would use). An order a
                // CA saw keeps its key, for a certificate fetched there by hand and imported.
                new.key = None;
                let (stored, actor) = (reason.to_owned(), self.actor.to_owned());
                let id = self
                    .inventory
                    .write(move |inv| {
                        let order = inv.create_order(&new, &actor)?;
                        inv.record_failed(order.id, &stored, &actor)?;
                        Ok(order.id)
                    })
                    .await?;
                // Logged as every other failed order is: a script broken by an edit failed every
                // request while serve's log said nothing (hostile-script review of stop 40).
                tracing::warn!(target: OUTCOME_LOG_TARGET, order = id, "order failed: {}", crate::connector::redact::one_line(reason));
                crate::metrics::issuance("failed");
                Ok(id)
            }
        }
    }

    /// Calls `test_connection` on an account and records the result. A connector without a
    /// connection test (an Avi script: that contract has none) answers `NotAvailable`, which is
    /// not a failure: the account may issue fine, and `/readyz` must not call it degraded.
    pub async fn test_account(&mut self, name: &str) -> Result<AccountTest, IssueError> {
        let account =
            self.inventory.account(name)?.ok_or_else(|| InventoryError::NotFound(format!("account {name}")))?;
        if account.def.status != AccountStatus::Active {
            return Err(IssueError::Inactive { account: name.to_owned() });
        }
        let profile = ProfileDef { accounts: vec![name.to_owned()], ..ProfileDef::default() };
        let result = match self.args_for(&account, "", &profile, &BTreeMap::new()) {
            Err(e) => AccountTest::Failed(e.to_string()),
            Ok(args) => match connector_of(self.connectors, &account, "", &profile.params).await {
                Err(e) => AccountTest::Failed(args.redact(&e.to_string())),
                Ok(c) => {
                    match call_with_deadline(&*c, account.def.limits().timeout, &args, c.test_connection(&args)).await {
                        Ok(()) => AccountTest::Passed,
                        Err(ConnectorError::Unsupported { .. }) => AccountTest::NotAvailable,
                        Err(e) => AccountTest::Failed(args.redact(&e.to_string())),
                    }
                }
            },
        };
        self.inventory.record_account_test(name, result.ok(), &result.message(), self.actor)?;
        Ok(result)
    }

    /// Holds an order for an operator (reason already redacted), logged: nothing else tells
    /// anyone until they list orders.
    async fn hold(&mut self, order_id: i64, reason: &str) -> Result<(), InventoryError> {
        tracing::warn!(target: OUTCOME_LOG_TARGET, order = order_id, "order held for an operator: {reason}");
        let (reason, actor) = (reason.to_owned(), self.actor.to_owned());
        self.inventory.write(move |inv| inv.hold_for_operator(order_id, &reason, &actor)).await?;
        crate::metrics::issuance("needs_attention");
        Ok(())
    }

    /// Closes an order as `failed` (reason already redacted) and counts it in the metrics.
    pub(crate) async fn fail(&mut self, order_id: i64, reason: &str) -> Result<(), InventoryError> {
        // Said in the log as a held order is: `serve` logged nothing when a connector broke,
        // even at -vv (author review of stop 38). The reason is the order's, redacted already
        // and shown to every role.
        tracing::warn!(target: OUTCOME_LOG_TARGET, order = order_id, "order failed: {}", crate::connector::redact::one_line(reason));
        let (reason, actor) = (reason.to_owned(), self.actor.to_owned());
        self.inventory.write(move |inv| inv.record_failed(order_id, &reason, &actor)).await?;
        crate::metrics::issuance("failed");
        Ok(())
    }

    pub(crate) fn load_order(&self, id: i64) -> Result<Order, IssueError> {
        Ok(self.inventory.order(id)?.ok_or_else(|| InventoryError::NotFound(format!("order {id}")))?)
    }

    /// args = account parameters ∪ profile static parameters ∪ the request's dynamic ones.
    pub(crate) fn args_for(
        &self,
        account: &Account,
        profile_name: &str,
        profile: &ProfileDef,
        dynamic: &BTreeMap<String, (String, bool)>,
    ) -> Result<Args, IssueError> {
        let mut args = Args::new();
        let sources = [
            (SecretOwner::Account, account.name.as_str(), format!("account {}", account.name), &account.def.params),
            (SecretOwner::Profile, profile_name, format!("profile {profile_name}"), &profile.params),
        ];
        let mut defined_by: BTreeMap<&str, String> = BTreeMap::new();
        // The sensitive values the profile adds to the account's: they decide the call's cache
        // scope (`connector::cache::scope_of`). A request's dynamic ones do not: a poll or a
        // revocation, which has none, must find what the issuance cached.
        let mut profile_secrets: Vec<(String, zeroize::Zeroizing<String>)> = Vec::new();
        for (kind, owner_name, owner, params) in &sources {
            for (name, def) in params.iter() {
                if let Some(first) = defined_by.insert(name, owner.clone()) {
                    return Err(ParamError::Duplicate { name: name.clone(), first, second: owner.clone() }.into());
                }
                if def.dynamic {
                    continue;
                }
                let value = match &def.value {
                    Some(src) => Some(resolve(src, name, owner, self.env)?),
                    None if def.sensitive => self.inventory.secret(*kind, owner_name, name)?.map(|z| z.to_string()),
                    None => None,
                };
                match value {
                    Some(v) => {
                        def.check_value(name, &v)?;
                        // A value read from a file or variable is kept out of reported errors
                        // even when not marked sensitive (`Args::insert_read`).
                        let read = matches!(def.value, Some(ValueSource::Env { .. } | ValueSource::File { .. }));
                        if def.sensitive {
                            if *kind == SecretOwner::Profile {
                                profile_secrets.push((name.clone(), zeroize::Zeroizing::new(v.clone())));
                            }
                            args.insert_sensitive(name.clone(), v)
                        } else if read {
                            args.insert_read(name.clone(), v)
                        } else {
                            args.insert(name.clone(), v)
                        }
                    }
                    None if def.required => {
                        let hint = if def.sensitive { " (set it with `certhost secret set`)" } else { "" };
                        return Err(ParamError::Missing { name: name.clone(), owner: owner.clone(), hint }.into());
                    }
                    None => {}
                }
            }
        }
        args.set_cache_scope(crate::connector::cache::scope_of(
            profile_secrets.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ));
        for (name, (value, sensitive)) in dynamic {
            if *sensitive {
                args.insert_request_sensitive(name.clone(), value.clone())
            } else {
                args.insert(name.clone(), value.clone())
            }
        }
        // The profile's requested validity reaches the connector as `validity_days`: over the
        // account's parameter of that name (a CA-wide default: the shipped demo accounts set 90,
        // and a 10-day profile silently got 90-day certificates), under a value of the profile's
        // own parameter of that name (static, or a request's dynamic one).
        let own_value = profile.params.contains_key("validity_days") && args.get("validity_days").is_some();
        if let Some(days) = profile.validity_days
            && !own_value
        {
            args.insert("validity_days", days.to_string());
        }
        Ok(args)
    }
}
