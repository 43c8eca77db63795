//! The issuance pipeline: a request by profile becomes a verified certificate in the inventory.
//!
//! 1. policy (profile rules, dynamic parameters);
//! 2. key + CSR, or the uploaded CSR;
//! 3. the order is written (`pending`, or `awaiting_approval`) before any CA call;
//! 4. the profile's active CA accounts are tried in order, failing over on `unreachable`;
//! 5. an `issued` result is verified (invariant 1);
//! 6. stored with its sealed key, order closed, audited;
//! 7. `pending` results are polled later ([`Pipeline::poll`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::account::{Account, AccountStatus};
use crate::clock::unix_now;
use crate::connector::{
    Args, Bounded, CertificateRequest, Connector, ConnectorError, ConnectorSource, Disposition, Operation, RenewRequest,
};
use crate::csr::{CsrError, CsrParams, CsrParseError, San, Subject, parse_csr, stored_csr_public_key};
use crate::inventory::{CertificateRecord, Inventory, InventoryError, NewOrder, Order, OrderState, SecretOwner};
use crate::param::{EnvLookup, ParamError, ValueSource, resolve};
use crate::profile::{NameRequest, PolicyError, ProfileDef};
use crate::verify::{Expected, VerificationError, verify_issued};

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

/// Why a request did not produce a certificate. Messages never contain sensitive values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// No such profile.
    #[error("profile {0} does not exist")]
    NoProfile(String),
    /// The profile refuses the request.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A held or interrupted order that its profile, changed since it was made, no longer
    /// allows: sent anyway, the CA would sign a certificate the host then refuses to store.
    #[error(
        "order {order_id} is not sent to the CA: profile {profile} has changed since it was made and no longer allows it ({rule})"
    )]
    NoLongerAllowed {
        /// Order.
        order_id: i64,
        /// Its profile.
        profile: String,
        /// The rule it now breaks.
        rule: String,
    },
    /// A parameter problem.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The CSR could not be built.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The uploaded CSR is refused.
    #[error("uploaded CSR refused: {0}")]
    Upload(#[from] CsrParseError),
    /// The key of an uploaded CSR was declared compromised: certifying it again would undo the
    /// revocation (operator review of stop 39).
    #[error(
        "the CSR's key was revoked for keyCompromise (certificate {certificate_id}), and no certificate is issued on it again: it needs a new key (a new CSR, or certhost reissue)"
    )]
    CompromisedKey {
        /// The certificate whose revocation declared the key compromised.
        certificate_id: i64,
    },
    /// A name given beside an uploaded CSR is not the CSR's: the certificate would name what
    /// the CSR requests, not what the caller asked for.
    #[error(
        "the requested {field} ({given}) differs from the uploaded CSR's ({in_csr}): a certificate for an uploaded CSR names what the CSR requests, so leave it out or make it match"
    )]
    CsrMismatch {
        /// The field (common name, subjectAltName list, O, ...).
        field: &'static str,
        /// What the request gave.
        given: String,
        /// What the CSR holds.
        in_csr: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Nothing to call.
    #[error("order {order_id}: profile {profile} has no active CA account")]
    NoActiveAccount {
        /// Order.
        order_id: i64,
        /// Profile.
        profile: String,
    },
    /// The connector failed (the order is `failed`, or kept pending when retryable).
    #[error("order {order_id} failed: {message}")]
    Failed {
        /// Order.
        order_id: i64,
        /// Redacted reason.
        message: String,
    },
    /// Polling a pending order failed for now; it stays pending and is polled again later.
    #[error(
        "order {order_id} is still pending at the CA: polling it failed ({message}); it is polled again in {retry_in_s} s"
    )]
    PollFailed {
        /// Order.
        order_id: i64,
        /// Redacted reason.
        message: String,
        /// Seconds until the next poll.
        retry_in_s: i64,
    },
    /// The CA call ended without an answer the host could act on — it timed out, or the CA
    /// issued and storing the certificate failed — so the order is held for an operator
    /// (`needs_attention`), neither failed nor sent again.
    #[error("order {order_id} needs attention: {message}")]
    NeedsAttention {
        /// Order.
        order_id: i64,
        /// Redacted reason, with what to do.
        message: String,
    },
    /// The CA refused.
    #[error("order {order_id} rejected by the CA: {reason}")]
    Rejected {
        /// Order.
        order_id: i64,
        /// Redacted reason.
        reason: String,
    },
    /// The returned certificate failed verification; nothing was stored.
    #[error("order {order_id} failed: {error}")]
    Verification {
        /// Order.
        order_id: i64,
        /// What was wrong.
        error: VerificationError,
    },
    /// Inactive accounts are never called, not even to test them.
    #[error("account {account} is inactive; activate it first (inactive accounts are never called)")]
    Inactive {
        /// Account.
        account: String,
    },
    /// The certificate cannot take this lifecycle step.
    #[error("certificate {id}: {reason}")]
    Certificate {
        /// Certificate id.
        id: i64,
        /// Why not.
        reason: String,
    },
    /// A certificate that is not active is deployed only when forced: putting a revoked,
    /// expired or superseded one back on a server is almost always a mistaken id.
    #[error("certificate {id} is {status}{}, so it is not deployed unless forced",
        successor.map(|s| format!(" (certificate {s} replaced it: deploy that one)")).unwrap_or_default())]
    NotDeployable {
        /// Certificate id.
        id: i64,
        /// Its status.
        status: &'static str,
        /// The newest (active, if any) certificate that replaced it.
        successor: Option<i64>,
    },
    /// A renewal named a CA account its profile does not list, and the caller may only
    /// choose among the profile's accounts.
    #[error(
        "account {account} is not one of profile {profile}'s CA accounts; only an operator or an administrator \
         may renew at another account"
    )]
    AccountNotListed {
        /// The account asked for.
        account: String,
        /// The profile renewed under.
        profile: String,
    },
    /// A connector call outside issuance (revoke, update-order) failed.
    #[error("{what} failed: {message}")]
    CaCall {
        /// The step.
        what: String,
        /// Redacted reason.
        message: String,
    },
    /// The connector does not offer this operation.
    #[error("cannot {what}: {message}")]
    NotSupported {
        /// The step.
        what: String,
        /// Redacted reason.
        message: String,
    },
    /// An `Idempotency-Key` the caller already used for another request.
    #[error(
        "this Idempotency-Key was used for a different request (order {order_id}); send a new key with a new request"
    )]
    IdempotencyMismatch {
        /// The order that holds the key.
        order_id: i64,
    },
    /// An `Idempotency-Key` whose order has no answer to give (yet).
    #[error("this Idempotency-Key belongs to order {order_id}: {why}")]
    IdempotencyHeld {
        /// The order that holds the key.
        order_id: i64,
        /// Why its outcome cannot be given, and what to do.
        why: String,
        /// Whether the same request later can get the outcome (the order is still running).
        retry: bool,
    },
    /// An `Idempotency-Key` whose order issued a certificate that has since been deleted:
    /// there is nothing to answer with, ever (a new key issues again).
    #[error(
        "this Idempotency-Key belongs to order {order_id}, whose certificate{} has since been deleted; send a new key to issue again",
        certificate_id.map(|c| format!(" {c}")).unwrap_or_default()
    )]
    IdempotencyGone {
        /// The order that holds the key.
        order_id: i64,
        /// The certificate it issued.
        certificate_id: Option<i64>,
    },
    /// The order is not in a state this step applies to.
    #[error("order {order_id} is {state}: {what}")]
    WrongState {
        /// Order.
        order_id: i64,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        what: &'static str,
    },
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

/// A request's dynamic parameters, checked: name → (value, sensitive).
pub(crate) type DynamicParams = BTreeMap<String, (String, bool)>;

/// A request's dynamic parameters as recorded with its order: sensitive values as `***`.
pub(crate) fn recorded_params(dynamic: &BTreeMap<String, (String, bool)>) -> serde_json::Value {
    serde_json::Value::Object(
        dynamic
            .iter()
            .map(|(k, (v, sensitive))| {
                (
                    k.clone(),
                    serde_json::Value::String(if *sensitive { crate::idempotency::MASK.into() } else { v.clone() }),
                )
            })
            .collect(),
    )
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

/// Refuses a request whose CN, SANs or subject overrides, given beside an uploaded CSR, are
/// not the CSR's. The CSR is what the CA signs, so such a value would be silently dropped and
/// the caller handed a certificate for other names than the ones asked for. DNS names compare
/// without regard to case; SANs and O/OU lists as sets, in any order.
pub(crate) fn check_matches_csr(req: &IssueRequest, csr: &crate::csr::ParsedCsr) -> Result<(), IssueError> {
    let mismatch = |field, given: String, in_csr: String| Err(IssueError::CsrMismatch { field, given, in_csr });
    let shown = |value: Option<&String>| value.map_or_else(|| "none".to_owned(), Clone::clone);
    let IssueRequest { common_name, sans, subject, .. } = req;
    if let Some(cn) = common_name
        && Some(cn) != csr.common_name.as_ref()
    {
        return mismatch("common name", cn.clone(), shown(csr.common_name.as_ref()));
    }
    if !sans.is_empty() {
        let normalised = |names: &[San]| -> std::collections::BTreeSet<San> {
            names
                .iter()
                .map(|san| match san {
                    San::Dns(name) => San::Dns(name.to_ascii_lowercase()),
                    other => other.clone(),
                })
                .collect()
        };
        if normalised(sans) != normalised(&csr.sans) {
            let list = |names: &[San]| names.iter().map(San::to_string).collect::<Vec<_>>().join(", ");
            let in_csr = if csr.sans.is_empty() { "none".to_owned() } else { list(&csr.sans) };
            return mismatch("subjectAltName list", list(sans), in_csr);
        }
    }
    // Destructured without `..`: a new subject field cannot be forgotten here.
    let Subject { common_name: _, organization, organizational_unit, locality, state, country, email } = subject;
    let fields = &csr.subject_fields;
    let lists: [(&'static str, &Vec<String>, &Vec<String>); 2] =
        [("O", organization, &fields.organization), ("OU", organizational_unit, &fields.organizational_unit)];
    for (field, given, in_csr) in lists {
        let set = |v: &Vec<String>| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        if !given.is_empty() && set(given) != set(in_csr) {
            let in_csr = if in_csr.is_empty() { "none".to_owned() } else { in_csr.join(", ") };
            return mismatch(field, given.join(", "), in_csr);
        }
    }
    let single: [(&'static str, &Option<String>, &Option<String>); 4] = [
        ("L", locality, &fields.locality),
        ("ST", state, &fields.state),
        ("C", country, &fields.country),
        ("emailAddress", email, &fields.email),
    ];
    for (field, given, in_csr) in single {
        if let Some(value) = given
            && Some(value) != in_csr.as_ref()
        {
            return mismatch(field, value.clone(), shown(in_csr.as_ref()));
        }
    }
    Ok(())
}

/// When a certificate of `profile` valid from `not_before` to `not_after` is due for
/// renewal, with its jitter; `None` when the profile does not renew automatically.
pub(crate) fn renewal_due(profile: &ProfileDef, not_before: i64, not_after: i64) -> Option<crate::profile::Due> {
    profile.renewal.due_at(not_before, not_after).map(|due| {
        let max = crate::profile::RenewalPolicy::max_jitter(not_before, not_after);
        crate::profile::Due { at: due.at - rand::Rng::gen_range(&mut rand::thread_rng(), 0..=max), ..due }
    })
}

/// What one poll call came back with.
enum PollStep {
    /// The CA's answer, with the args used (for redaction).
    Answer(Disposition, Args),
    /// The connector cannot poll: the order fails.
    Unsupported(String),
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
        let mut tried = 0;
        for account_name in &profile.accounts {
            let Some(account) = self.inventory.account(account_name)? else { continue };
            if account.def.status != AccountStatus::Active {
                continue;
            }
            tried += 1;
            let args = match self.args_for(&account, &profile_name, profile, dynamic) {
                Ok(a) => a,
                Err(e) => {
                    self.fail_submission(order, &e.to_string()).await?;
                    return Err(e);
                }
            };
            let connector = match connector_of(self.connectors, &account, &profile_name, &profile.params).await {
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
            crate::metrics::connector_call(connector.name(), started.elapsed());
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
                    tracing::warn!(order = current.id, account = %account.name, error = %args.redact(&e.to_string()), "CA account unreachable; trying the next one");
                    last_error = Some(args.redact(&e.to_string()));
                    order = Submission::Written(current);
                }
                // The CA may have received a request whose call ran out of time, or whose
                // connector died in it: failed, it would be asked again by whoever retries. An
                // automatic renewal fails as before, with its backoff: the scheduler would
                // otherwise resubmit it every round.
                Err(e @ (ConnectorError::TimedOut { .. } | ConnectorError::Interrupted { .. }))
                    if current.requested_by != crate::inventory::AUTO_RENEWAL_ACTOR =>
                {
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
            Submission::New(new) => {
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
        crate::metrics::connector_call(connector.name(), started.elapsed());
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

    /// Records a CA's answer to `order`. `profile` is the order's profile when the caller has
    /// it at hand; otherwise it is loaded by name (and a deleted profile means no renewal
    /// schedule and no deployment). `csr_key` is the raw public key of the order's CSR when
    /// the caller holds it (the key it generated); otherwise the stored CSR is read for it.
    pub(crate) async fn apply(
        &mut self,
        order: &Order,
        disposition: Disposition,
        args: &Args,
        profile: Option<&ProfileDef>,
        csr_key: Option<&[u8]>,
    ) -> Result<IssueOutcome, IssueError> {
        match disposition {
            Disposition::Issued { certificate, chain, ca_order_id } => {
                let public_key_raw = match csr_key {
                    Some(key) => std::borrow::Cow::Borrowed(key),
                    None => std::borrow::Cow::Owned(stored_csr_public_key(&order.csr_pem)?),
                };
                let sans: Vec<San> = order.sans.iter().filter_map(|s| San::from_stored(s)).collect();
                let expected = Expected {
                    public_key_raw: &public_key_raw,
                    common_name: order.common_name.as_deref(),
                    sans: &sans,
                    now: unix_now(),
                };
                let profile = match (profile, order.profile.as_deref()) {
                    (Some(known), _) => Some(std::borrow::Cow::Borrowed(known)),
                    (None, Some(name)) => self.inventory.profile(name)?.map(|(p, _)| std::borrow::Cow::Owned(p)),
                    (None, None) => None,
                };
                // A renewal answered with the very certificate it renews (a CA that deduplicates
                // a request with the same key) would be "issued" and due again at once, over
                // and over (review of stop 31).
                let renewed_sha256 = match order.predecessor_id {
                    Some(p) => self.inventory.find(&p.to_string())?.map(|c| (p, c.info.sha256)),
                    None => None,
                };
                // Invariant 1, and the profile's SAN and CN rules over every name the CA put in.
                let verified = verify_issued(&expected, &certificate, &chain).and_then(|verified| {
                    if let Some((p, sha256)) = &renewed_sha256
                        && *sha256 == verified.info.sha256
                    {
                        return Err(VerificationError::NotRenewed(*p));
                    }
                    if let (Some(p), Some(name)) = (&profile, order.profile.as_deref()) {
                        let not_allowed = |rule| VerificationError::NotAllowed { profile: name.to_owned(), rule };
                        p.check_issued_sans(&verified.info.sans, &verified.info.other_sans).map_err(not_allowed)?;
                        if let Some(cn) = verified.info.common_name.as_deref() {
                            p.check_issued_cn(cn).map_err(not_allowed)?;
                        }
                    }
                    Ok(verified)
                });
                match verified {
                    Ok(verified) => {
                        if !verified.ignored_chain_entries.is_empty() {
                            tracing::warn!(
                                order = order.id,
                                "the connector's chain entries {:?} held no certificate and were left out of the stored chain",
                                verified.ignored_chain_entries
                            );
                        }
                        let due = profile
                            .as_ref()
                            .and_then(|p| renewal_due(p, verified.info.not_before, verified.info.not_after));
                        let renew_after = due.map(|d| d.at);
                        let (id, actor) = (order.id, self.actor.to_owned());
                        let targets = profile.as_ref().map(|p| p.deploy.as_slice()).unwrap_or_default();
                        let owed: Vec<String> = targets.iter().map(crate::deploy::DeployTarget::describe).collect();
                        // As long as the deployment may run: each target's two hooks, and a margin.
                        let grace = targets.iter().map(|t| 2 * t.timeout().as_secs() as i64).sum::<i64>() + 300;
                        // Shared with the change, and kept here should storing it fail.
                        let verified = std::sync::Arc::new(verified);
                        let stored_one = std::sync::Arc::clone(&verified);
                        // Stored, closed, audited and scheduled in one change: a crash leaves
                        // either a pending order or a certificate that will renew.
                        let stored = self
                            .inventory
                            .write(move |inv| {
                                let cert = inv.record_issued(id, &stored_one, ca_order_id.as_deref(), &actor)?;
                                inv.schedule_issued(&cert, renew_after)?;
                                inv.owe_deployments(cert.id, &owed, grace)?;
                                Ok(cert)
                            })
                            .await;
                        let certificate = match stored {
                            Ok(certificate) => certificate,
                            Err(e) => {
                                // The CA issued: the certificate is not dropped without a word
                                // (a resubmit would pay for a second one). Its DER goes to the
                                // log, where an operator can take it to `certhost import`.
                                let (serial, sha256) = (&verified.info.serial, &verified.info.sha256);
                                let der =
                                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &verified.der);
                                let message = format!(
                                    "the CA issued certificate serial {serial} (SHA-256 {sha256}), but storing it failed \
                                     ({e}); its DER is in the log: import it (certhost import), then decline order {id} \
                                     if it is still held"
                                );
                                tracing::error!(order = id, certificate_der_base64 = %der, "{message}");
                                if let Err(held) = self.hold(id, &message).await {
                                    // What happens next, said: the order stays pending, and
                                    // once its lease runs out it counts as interrupted (an
                                    // automatic renewal is then sent again), so "decline" may
                                    // no longer apply (operator review of stop 39).
                                    tracing::error!(
                                        order = id,
                                        "order could not be held for an operator either ({held}): once its lease runs \
                                         out it counts as interrupted, and an automatic renewal is sent to the CA again, \
                                         which may issue a second certificate; keep one and revoke the other"
                                    );
                                }
                                return Err(IssueError::NeedsAttention { order_id: id, message });
                            }
                        };
                        if let Some(d) = due.filter(|d| d.fell_back) {
                            tracing::warn!(
                                certificate = certificate.id,
                                common_name = certificate.info.common_name.as_deref().unwrap_or_default(),
                                profile = order.profile.as_deref().unwrap_or_default(),
                                renew_after = %crate::view::rfc3339(d.at),
                                "the profile's renewal.before_* is longer than this certificate allows (it would be \
                                 due at once); it renews at two thirds of its lifetime instead"
                            );
                        }
                        // Deployment follows the stored certificate; a failed deployment is
                        // recorded, never a reason to lose the certificate. Nor to answer with
                        // an error: the certificate is stored, and a client that retried would
                        // get a second one.
                        let deployed = match profile.filter(|p| !p.deploy.is_empty()) {
                            Some(profile) => {
                                self.deploy_issued(&profile, &certificate).await;
                                true
                            }
                            None => false,
                        };
                        crate::metrics::issuance("issued");
                        Ok(IssueOutcome::Issued { order_id: order.id, certificate: Box::new(certificate), deployed })
                    }
                    Err(error) => {
                        // The error may quote what the connector put in the certificate (a CN,
                        // names): redacted and cut like any text a connector returns, wherever
                        // it goes next.
                        let error = error.redacted(|text| crate::connector::cut_to_size(args.redact(text)));
                        self.fail(order.id, &format!("the returned certificate was refused: {error}")).await?;
                        Err(IssueError::Verification { order_id: order.id, error })
                    }
                }
            }
            Disposition::Pending { ca_order_id, retry_after_s } => {
                let next = unix_now() + i64::from(retry_after_s.clamp(POLL_MIN_S, POLL_MAX_S));
                let (id, actor, handle) = (order.id, self.actor.to_owned(), ca_order_id.clone());
                self.inventory.write(move |inv| inv.record_pending(id, &handle, next, &actor)).await?;
                // Counted when the CA first says "pending", not on every poll that repeats it.
                if order.ca_order_id.is_none() {
                    crate::metrics::issuance("pending");
                }
                Ok(IssueOutcome::Pending { order_id: order.id, next_poll_at: next })
            }
            Disposition::Rejected { reason } => {
                let reason = args.redact(&reason);
                tracing::warn!(
                    target: OUTCOME_LOG_TARGET,
                    order = order.id,
                    "order rejected by the CA: {}",
                    crate::connector::redact::one_line(&reason)
                );
                let (id, actor, recorded) = (order.id, self.actor.to_owned(), reason.clone());
                self.inventory.write(move |inv| inv.record_rejected(id, &recorded, &actor)).await?;
                crate::metrics::issuance("rejected");
                Err(IssueError::Rejected { order_id: order.id, reason })
            }
        }
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
                args.insert_sensitive(name.clone(), value.clone())
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

/// The connector of `account` for a call made with profile `profile_name`'s `params` (the
/// default profile has none). Refused when it declares sensitive a parameter the account or
/// the profile gives as a plain value — as `account create`/`edit` and `profile create`/`edit`
/// refuse one — so a connector updated to declare it is not called with the value on show
/// (author review of stop 40: it was, until the account was next edited; the profile's was
/// still passed until stop 42).
pub(crate) async fn connector_of(
    connectors: &dyn ConnectorSource,
    account: &Account,
    profile_name: &str,
    params: &crate::param::ParamMap,
) -> Result<std::sync::Arc<dyn crate::connector::Connector>, ConnectorError> {
    let connector = connectors.connector(&account.name, &account.def).await?;
    let declared = connector.declared_sensitive();
    let refused = |owner: String, params| {
        crate::param::check_declared_sensitive(&owner, params, declared.iter().map(String::as_str))
            .map_err(|e| ConnectorError::Misconfigured { connector: owner.clone(), message: e.to_string() })
    };
    refused(format!("account {}", account.name), &account.def.params)?;
    if !profile_name.is_empty() {
        refused(format!("profile {profile_name}"), params)?;
    }
    Ok(connector)
}

/// A backstop deadline around a connector call; the runtimes enforce their own limits, this
/// guarantees the pipeline never waits forever on one. It must not cut a call its runtime
/// still allows: a script account's call may wait [`crate::connector::WORKER_WAIT_LIMITS`]
/// limits for the account's worker, then run for one; a component's may wait at most one
/// limit at its account's gate (`connector::gate`; a script's gate never waits), then run.
pub(crate) fn backstop(timeout: Duration) -> Duration {
    timeout * (crate::connector::WORKER_WAIT_LIMITS + 1) + Duration::from_secs(5)
}

/// Refuses `order` (held for approval, or interrupted) when `profile`, changed since the order
/// was made, no longer allows its CSR's names, subject or key: the CA would sign, and the host
/// would then refuse the certificate it is not allowed to store, a certificate issued (logged,
/// perhaps billed) that no one holds (operator review of stop 36).
fn still_allowed(order: &Order, profile_name: &str, profile: &ProfileDef) -> Result<(), IssueError> {
    let refused = |e: PolicyError| match e {
        PolicyError::Request { rule, .. } => {
            IssueError::NoLongerAllowed { order_id: order.id, profile: profile_name.to_owned(), rule }
        }
        other => IssueError::Policy(other),
    };
    let parsed = parse_csr(order.csr_pem.as_bytes())?;
    profile.check_csr_names(profile_name, parsed.common_name.as_deref(), &parsed.sans).map_err(refused)?;
    profile.check_csr_subject(profile_name, &parsed.subject_fields).map_err(refused)?;
    profile.key.check_accepts(profile_name, "the order's", parsed.key).map_err(refused)?;
    Ok(())
}

/// The request's non-sensitive dynamic parameters, recorded with `order`, for a later call
/// made for it (a poll, an order update, a revocation): only those `profile` still defines as
/// dynamic, so a value recorded before a parameter became static (or was removed) never
/// overrides what the profile says now (review of stop 31).
pub(crate) fn recorded_dynamic(order: Option<&Order>, profile: &ProfileDef) -> BTreeMap<String, (String, bool)> {
    let Some(params) = order.and_then(|o| o.params.as_object()) else { return BTreeMap::new() };
    params
        .iter()
        .filter(|(k, _)| profile.params.get(*k).is_some_and(|d| d.dynamic))
        .filter_map(|(k, v)| {
            v.as_str().filter(|s| *s != crate::idempotency::MASK).map(|s| (k.clone(), (s.to_owned(), false)))
        })
        .collect()
}

/// Runs a connector call under [`backstop`], its answer held to the sizes the host stores and
/// refused when it would store one of `args`' sensitive values (those the connector declares
/// sensitive included) in the open.
pub(crate) async fn call_with_deadline<T: Bounded>(
    connector: &dyn Connector,
    timeout: Duration,
    args: &Args,
    fut: impl std::future::Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match tokio::time::timeout(backstop(timeout), fut).await {
        Ok(r) => crate::connector::held(connector, args, r),
        Err(_) => Err(ConnectorError::TimedOut { connector: connector.label(), after: timeout }),
    }
}

/// Why an empty value of a required dynamic parameter is refused.
const EMPTY_HINT: &str = " (it was given empty or blank, which is not a value)";

/// Checks a request's dynamic parameters against the profile: unknown and fixed names are
/// refused, required ones must be present, values must satisfy the rules.
/// Returns name → (value, sensitive).
pub(crate) fn check_dynamic(
    profile_name: &str,
    profile: &ProfileDef,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, (String, bool)>, ParamError> {
    let owner = format!("profile {profile_name}");
    for name in given.keys() {
        match profile.params.get(name) {
            Some(def) if def.dynamic => {}
            Some(_) => return Err(ParamError::Fixed { name: name.clone(), owner }),
            None => return Err(ParamError::Unknown { name: name.clone(), profile: profile_name.to_owned() }),
        }
    }
    let mut out = BTreeMap::new();
    for (name, def) in profile.params.iter().filter(|(_, d)| d.dynamic) {
        // A sensitive value on a command line shows in the process list (API review of stop
        // 38: this hint said --param for them too).
        let hint = if def.sensitive {
            " (supply it with the request: --param-env NAME=VAR or --param-file NAME=PATH, or in \"params\" over the \
             API; --param would show it in the process list)"
        } else {
            " (supply it with the request: --param NAME=VALUE, or in \"params\" over the API)"
        };
        match given.get(name) {
            // Empty or blank is no value (author review of stop 38: `--param ticket=` issued;
            // the SDK's `optional_arg` and `plugin check` already took it for missing).
            Some(v) if def.required && v.trim().is_empty() => {
                return Err(ParamError::Missing { name: name.clone(), owner: owner.clone(), hint: EMPTY_HINT });
            }
            Some(v) => {
                def.check_value(name, v)?;
                // An order records a sensitive value as `***`; a plain one that is `***` could
                // not be told from it, by an operator reading the order or by a repeat of its
                // `Idempotency-Key`, which would take it for hidden and replay a request that
                // differs in it (review of stop 36).
                if !def.sensitive && v == crate::idempotency::MASK {
                    return Err(ParamError::NotAllowed {
                        name: name.clone(),
                        shown: format!("value {v:?} "),
                        rule: "it is how certhost shows a hidden value, so no plain parameter may have it".into(),
                    });
                }
                out.insert(name.clone(), (v.clone(), def.sensitive));
            }
            None if def.required => {
                return Err(ParamError::Missing { name: name.clone(), owner: owner.clone(), hint });
            }
            None => {}
        }
    }
    Ok(out)
}

/// Whether `connector` says it implements `operation`; one that cannot say is given the
/// benefit of the doubt (its call answers for itself).
async fn implements(connector: &dyn Connector, operation: Operation) -> bool {
    connector.describe().await.map_or(true, |d| d.operations.contains(&operation))
}
