//! Why a pipeline step did not produce a certificate: one error type for issuance, polling,
//! decisions and the lifecycle operations built on them, each variant one sentence an operator
//! or API client can act on.

use crate::csr::{CsrError, CsrParseError};
use crate::inventory::InventoryError;
use crate::param::ParamError;
use crate::profile::PolicyError;
use crate::verify::VerificationError;

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
    /// The certificate an order got is on a key revoked for keyCompromise: the CA issued it
    /// while the order was at the CA (a renewal keeping its key, racing the revocation), or —
    /// answering a repeated request — the key was revoked since. Stored, since the CA issued
    /// it, but answered as an error so that nobody puts it in service (red-team walkthrough
    /// of stop 48: the 201 handed it out and its profile deployed it).
    #[error(
        "order {order_id}: certificate {certificate_id} is on a key revoked for keyCompromise (the CA issued it while the order was at the CA, or the key was revoked since) — do not use it: certhost reissue {certificate_id} replaces it on a new key (a profile that renews automatically does so at once)"
    )]
    IssuedOnCompromisedKey {
        /// The order.
        order_id: i64,
        /// The certificate stored.
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
    /// An order already written (approved, resubmitted) failed because the server cannot
    /// read a parameter's value (`{ env }` not set where it runs, `{ file }` gone): the
    /// configuration's fault, named as such, with the order it closed.
    #[error("order {order_id} failed: the server cannot send it until an operator fixes its configuration: {source}")]
    Unconfigured {
        /// Order.
        order_id: i64,
        /// What could not be read.
        source: crate::param::ParamError,
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
    /// A revocation of a certificate that is revoked already: the outcome a retried revoke
    /// wanted, told apart from other refusals so a client can take it as done.
    #[error("certificate {id}: it is already revoked")]
    AlreadyRevoked {
        /// Certificate id.
        id: i64,
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
