//! The renewal schedule and the notification outbox.
//!
//! Due work lives in the database (`certificates.renew_after`, indexed for active rows), so a
//! restart forgets nothing. A claim sets `renewal_lease_until`: two scheduler instances on one
//! database (or a manual renew racing the scheduler) never renew one certificate twice — the
//! unique index on open renewal orders is the backstop.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, CertificateRecord, Inventory, InventoryError};
use crate::profile::RenewalPolicy;

/// Who renews automatically: the scheduler, in the audit log and as the requester of the
/// orders it creates. Its renewal orders report their failure on the certificate they renew.
pub const AUTO_RENEWAL_ACTOR: &str = "scheduler";

/// One upcoming or retrying renewal, for `certhost renewals` and `GET /v1/renewals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScheduledRenewal {
    /// Certificate id.
    pub id: i64,
    /// CN.
    pub common_name: Option<String>,
    /// Profile.
    pub profile: Option<String>,
    /// Due (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub renew_after: i64,
    /// notAfter (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    /// The last failure (redacted).
    pub last_error: Option<String>,
}

/// What [`Inventory::retry_failing_renewals`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RetriedRenewals {
    /// Certificates whose renewal is now due: `serve` attempts them in its next round.
    pub retried: Vec<i64>,
    /// Certificates whose renewal is being attempted right now (left to that attempt).
    pub in_progress: Vec<i64>,
    /// Certificates whose renewal order is open — pending at the CA or awaiting approval —
    /// and decides (left to it).
    pub waiting: Vec<i64>,
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// `renewal_failed`, `renewal_recovered`, `expiring`, `expired` (while its automatic renewal was failing), `revoked`,
    /// `deploy_failed`, `awaiting_approval`, `needs_attention`; `renewal_failed_digest` and
    /// `renewal_recovered_digest` (a profile's beyond the first five in an hour, gathered).
    pub kind: String,
    /// The certificate concerned.
    pub certificate_id: Option<i64>,
    /// One line for a mail subject.
    pub subject: String,
    /// Structured detail (redacted).
    pub detail: serde_json::Value,
    /// Queued, Unix seconds.
    pub created_at: i64,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Already delivered to the webhook (an earlier attempt failed on e-mail only).
    pub webhook_sent: bool,
    /// Already delivered by e-mail.
    pub email_sent: bool,
    /// What tells this notification's deliveries from every other's (`X-Certhost-Delivery`):
    /// random, since a restore hands out row ids again for other events.
    pub delivery_id: String,
}

/// A notification channel, whose delivery is recorded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `[notify.webhook]`.
    Webhook,
    /// `[notify.email]`.
    Email,
}

/// Since when (Unix seconds) `serve` has run with each channel configured, without a run
/// in between that had it off. A notification queued before that is not sent on the
/// channel: configuring a webhook months later must not deliver the backlog of events that
/// had nowhere to go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelsSince {
    /// `[notify.webhook]` configured since.
    pub webhook: Option<i64>,
    /// `[notify.email]` configured since.
    pub email: Option<i64>,
}

/// `profile::lifetime_start` in SQL: a certificate's lifetime counts for its renewal from the
/// later of its notBefore and when it was stored, at most `profile::MAX_BACKDATE` (a day)
/// after its notBefore.
macro_rules! start_sql {
    () => {
        "MAX(not_before, MIN(created_at, not_before + 86400))"
    };
}

/// `RenewalPolicy::due_at` in SQL, before jitter: `?2` is `before` (`?3` seconds before
/// notAfter, falling back to two thirds of the lifetime when that reaches into its first
/// third or before it began) or `percent` (`?3` percent of the lifetime).
macro_rules! due_sql {
    () => {
        "(CASE ?2 WHEN 'before' THEN
             CASE WHEN not_after - ?3 <= MAX(not_before, MIN(created_at, not_before + 86400))
                    OR not_after - ?3 < MAX(not_before, MIN(created_at, not_before + 86400)) + (not_after - MAX(not_before, MIN(created_at, not_before + 86400))) / 3
                  THEN MAX(not_before, MIN(created_at, not_before + 86400)) + (not_after - MAX(not_before, MIN(created_at, not_before + 86400))) * 2 / 3
                  ELSE not_after - ?3 END
          ELSE MAX(not_before, MIN(created_at, not_before + 86400)) + (not_after - MAX(not_before, MIN(created_at, not_before + 86400))) * ?3 / 100 END)"
    };
}

impl ChannelsSince {
    /// Whether notification `n` is due on `channel`: configured, and queued since.
    pub fn wants(&self, channel: Channel, n: &Notification) -> bool {
        let since = match channel {
            Channel::Webhook => self.webhook,
            Channel::Email => self.email,
        };
        since.is_some_and(|since| n.created_at >= since)
    }
}

/// A certificate a scheduler claimed for renewal, with the lane it renews in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRenewal {
    /// The certificate.
    pub id: i64,
    /// Its profile's name (`""`: none): one profile's renewals run one after another.
    pub profile: String,
}

/// A certificate's automatic renewal as it stands ([`Inventory::renewal_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalState {
    /// When it is due (Unix seconds).
    pub renews_at: i64,
    /// Failed attempts in a row.
    pub attempts: i64,
    /// The last attempt's error, while attempts fail.
    pub last_error: Option<String>,
    /// An open renewal order, which decides before another is sent.
    pub open_order_id: Option<i64>,
}

/// How long a certificate's notification waits behind an earlier undelivered one of its
/// certificate ([`Inventory::claim_notifications`]), in seconds.
const ORDER_WAIT: i64 = 86_400;

/// Queues a notification inside the caller's transaction.
pub(crate) fn enqueue(
    tx: &rusqlite::Connection,
    now: i64,
    kind: &str,
    certificate_id: Option<i64>,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<(), InventoryError> {
    tx.execute_cached(
        "INSERT INTO notifications (kind, certificate_id, subject, detail, created_at, next_attempt_at, delivery_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, lower(hex(randomblob(16))))",
        params![kind, certificate_id, subject, detail.to_string(), now],
    )?;
    Ok(())
}

/// The longest wait between two attempts of a failing renewal (6 hours). A failing renewal
/// is therefore due within this much of now, which [`failing_sql`] counts on.
const RENEWAL_RETRY_MAX: i64 = 6 * 3600;
/// Below this many seconds before notAfter the backoff is no longer shortened to land first.
const MIN_RETRY_BEFORE_EXPIRY: i64 = 60;
/// At most one `renewal_failed` per certificate in this many seconds, after a run's first.
const RENEWAL_FAILED_REMINDER: i64 = 86_400;

/// Records a failed automatic renewal of certificate `id` inside the caller's transaction:
/// retry with exponential backoff (1 minute doubling to 6 hours, brought forward to half the
/// time left when it would land after notAfter), count the attempt, audit, and
/// queue a `renewal_failed` notification at the run's first failure and then at most once a
/// day. Returns the retry time; `None` when there is no
/// certificate `id`.
pub(super) fn renewal_failure_in(
    tx: &rusqlite::Connection,
    now: i64,
    id: i64,
    error: &str,
    actor: &str,
) -> Result<Option<i64>, InventoryError> {
    let row: Option<(Option<String>, i64, i64, Option<String>)> = tx
        .query_row_cached(
            "SELECT common_name, renewal_attempts, not_after, profile FROM certificates WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((cn, before, not_after, profile)) = row else { return Ok(None) };
    let mut retry_at = now + (60i64 << before.clamp(0, 9)).min(RENEWAL_RETRY_MAX);
    // A retry the backoff would put past notAfter comes half way there instead, while there
    // is time for one: the last chance to renew before expiry is not slept through.
    if retry_at >= not_after && not_after - now >= MIN_RETRY_BEFORE_EXPIRY {
        retry_at = now + (not_after - now) / 2;
    }
    tx.execute_cached(
        "UPDATE certificates SET renewal_attempts = renewal_attempts + 1, renewal_error = ?2, renew_after = ?3,
                 renewal_lease_until = NULL WHERE id = ?1",
        params![id, error, retry_at],
    )?;
    // The profile, for a receiver routing a storm of them by team (scale review of stop 43:
    // the CA was named only inside the error's text).
    let detail = serde_json::json!({
        "error": error,
        "attempt": before + 1,
        "retry_at": crate::view::rfc3339(retry_at),
        "profile": profile,
        "not_after": crate::view::rfc3339(not_after),
    });
    audit::record(
        tx,
        now,
        &NewAuditEvent {
            actor,
            action: "certificate.auto_renew",
            object_type: "certificate",
            object_id: Some(id.to_string()),
            outcome: "failure",
            detail: detail.clone(),
        },
    )?;
    // The first failure of a run is said at once; after it, at most one reminder a day
    // (scale review of stop 43: one webhook per certificate per attempt, nine in a failing
    // certificate's first six hours — 1,699 in 40 minutes for 720 certificates). The end of
    // the run is said by `renewal_recovered`, an expiry meanwhile by `expired`.
    // A failure folded into its profile's digest was said too (`digest.rs`).
    let said_lately: bool = before > 0
        && tx.query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM notifications
                            WHERE certificate_id = ?1 AND kind = 'renewal_failed' AND created_at > ?2)
                 OR EXISTS (SELECT 1 FROM renewal_failed_folded WHERE certificate_id = ?1 AND at > ?2)",
            params![id, now - RENEWAL_FAILED_REMINDER],
            |r| r.get(0),
        )?;
    if !said_lately {
        let attempts = before + 1;
        let subject = format!(
            "certhost: renewal of certificate {id} ({}) failed{}; it {} {}",
            cn.as_deref().unwrap_or("no CN"),
            if attempts > 1 { format!(" {attempts} times in a row") } else { String::new() },
            if not_after <= now { "expired" } else { "expires" },
            crate::view::rfc3339(not_after)
        );
        let folded =
            super::digest::enqueue_bounded(tx, now, "renewal_failed", id, profile.as_deref(), &subject, &detail)?;
        if folded {
            tx.execute_cached(
                "INSERT INTO renewal_failed_folded (certificate_id, at) VALUES (?1, ?2)
                 ON CONFLICT (certificate_id) DO UPDATE SET at = excluded.at",
                params![id, now],
            )?;
        }
    }
    Ok(Some(retry_at))
}

/// A renewal order closed as `rejected` or `failed` (by the CA, a poll, a decline, a failed
/// submission after approval): when the scheduler made it and no longer holds the
/// certificate's claim — it let go when the CA answered `pending` or the order was held for
/// approval — nobody else reports the outcome, so it is recorded here as a failed automatic
/// renewal of the predecessor, in the transaction that closes the order. Without this the
/// certificate stayed due with no attempt counted, and the scheduler sent a new order every
/// round. While the scheduler holds the claim it records the outcome itself.
pub(super) fn closed_renewal_failed_in(
    tx: &rusqlite::Connection,
    now: i64,
    order_id: i64,
    message: &str,
    actor: &str,
) -> Result<(), InventoryError> {
    let row: Option<(i64, String, String)> = tx
        .query_row_cached(
            "SELECT o.predecessor_id, o.kind, o.state FROM orders o JOIN certificates c ON c.id = o.predecessor_id
             WHERE o.id = ?1 AND o.requested_by = ?2 AND c.status IN ('active', 'expired')
               AND (c.renewal_lease_until IS NULL OR c.renewal_lease_until < ?3)",
            params![order_id, AUTO_RENEWAL_ACTOR, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((predecessor, kind, state)) = row {
        let error = format!("{kind} order {order_id} {state}: {message}");
        renewal_failure_in(tx, now, predecessor, &error, actor)?;
    }
    Ok(())
}

/// Certificates of `status` due by `?1`, not claimed, and with no renewal order still open
/// (pending at the CA, awaiting approval, interrupted): that order decides, and sending
/// another would ask the CA twice. `?2` is the limit. Active ones, and (`EXPIRED`) expired
/// ones whose automatic renewal was failing when they expired: each query walks its own
/// partial index in `renew_after` order (as one compound SELECT, neither did). `?3` is a JSON
/// array of the profiles left out (their lanes are busy; a certificate without a profile is
/// in the lane `""`).
/// Which profiles' certificates a claim takes.
#[derive(Debug, Clone, Copy)]
pub enum ClaimScope<'a> {
    /// Any but these (lanes still busy).
    Except(&'a [String]),
    /// Only these (a lane's own).
    Only(&'a [String]),
}

fn claim_sql(status: &str, only: bool) -> String {
    let which = if only { "IN" } else { "NOT IN" };
    format!(
        "SELECT id, renew_after, profile FROM certificates INDEXED BY {} WHERE {status} AND renew_after IS NOT NULL AND renew_after <= ?1
           AND (renewal_lease_until IS NULL OR renewal_lease_until < ?1)
           AND coalesce(profile, '') {which} (SELECT value FROM json_each(?3))
           AND NOT EXISTS (SELECT 1 FROM orders WHERE predecessor_id = certificates.id AND {})
         ORDER BY renew_after LIMIT ?2",
        due_index(status),
        super::orders::OPEN
    )
}

/// The partial index of `status`'s due certificates, named in the queries that walk them:
/// SQLite plans without statistics (a real inventory never runs ANALYZE), and then it chose
/// `certificates_status_not_after` — every active certificate read and sorted, ≈ 1.4 s at
/// 1 M inside the claim's write transaction each round, where the index walk takes a
/// fraction of a millisecond. The benchmark's fixture had statistics and never saw it.
fn due_index(status: &str) -> &'static str {
    if status == ACTIVE { "certificates_due" } else { "certificates_due_expired" }
}

/// How many renewals are failing, from their own partial index.
const FAILING_COUNT_SQL: &str = "SELECT COUNT(*) FROM certificates INDEXED BY certificates_failing
     WHERE renewal_attempts > 0 AND renew_after IS NOT NULL";

/// How many of `status`'s certificates are due by `?1`.
fn due_count_sql(status: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM certificates INDEXED BY {} WHERE {status} AND renew_after IS NOT NULL AND renew_after <= ?1",
        due_index(status)
    )
}

/// Which part of a page after a cursor `(:after, :after_id)` a listing reads: the rest of
/// the cursor's second, or what falls due later. Two queries, each a seek in the due index
/// (as one `OR`, a page inside a crowded second scanned that second from its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCursor {
    /// `renew_after = :after AND id > :after_id`.
    SameSecond,
    /// `renew_after > :after`.
    Later,
}

/// The listing of `status`'s scheduled renewals with the filters asked for, as named
/// parameters (`:now`, `:limit`, `:profile`, `:after` and `:after_id`), each bound only when
/// the statement has it. The failing ones are read from their own index: along the due index
/// a storm's listing read every certificate due now to find the few failing (as the gauge
/// did before it counted from `certificates_failing`).
fn listed_sql(status: &str, failing: bool, profile: bool, after: Option<AfterCursor>) -> String {
    format!(
        "SELECT id, common_name, profile, renew_after, not_after, renewal_attempts, renewal_error
         FROM certificates INDEXED BY {} WHERE {status} AND renew_after IS NOT NULL {} {} {}
         ORDER BY renew_after, id LIMIT :limit",
        if failing { "certificates_failing" } else { due_index(status) },
        if failing { failing_sql() } else { String::new() },
        if profile { "AND profile = :profile" } else { "" },
        match after {
            None => "",
            Some(AfterCursor::SameSecond) => "AND renew_after = :after AND id > :after_id",
            Some(AfterCursor::Later) => "AND renew_after > :after",
        }
    )
    .replace("?1", ":now")
}

/// A renewal whose last attempt failed, with `?1` now: a failed attempt puts the next at most
/// [`RENEWAL_RETRY_MAX`] ahead, so only the first hours of a due index are read, not the
/// million certificates scheduled for later.
fn failing_sql() -> String {
    format!("AND renewal_attempts > 0 AND renew_after <= ?1 + {RENEWAL_RETRY_MAX}")
}

/// Active certificates, for `claim_sql` and `scheduled_renewals`.
const ACTIVE: &str = "status = 'active'";
/// Expired certificates that renew automatically (`certificates_due_expired`): those whose
/// renewal was failing, and those it never reached (schema migration 10) that expired in the
/// last 30 days — not, at an upgrade, every certificate of a host long gone.
const EXPIRED: &str = "status = 'expired' AND (renewal_attempts > 0 OR not_after > ?1 - 2592000)";

impl Inventory {
    /// Sets when certificate `id` renews (`None`: never automatically).
    pub fn set_renew_after(&mut self, id: i64, at: Option<i64>) -> Result<(), InventoryError> {
        self.conn.execute_cached(
            "UPDATE certificates SET renew_after = ?2, renewal_attempts = 0, renewal_error = NULL WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// Schedules a certificate just issued at `renew_after`, or at once when it is on a key
    /// revoked for keyCompromise since its order began (review of stop 31: a renewal keeping
    /// its key was at the CA while the revoke happened, and its successor lived on the
    /// compromised key until its normal time; diff review of stop 39: a key from an uploaded
    /// CSR, polled afterwards). Returns whether it is on such a key — audited as
    /// `certificate.key_compromised`, as the key's other certificates are when it is revoked
    /// —, so that it is not deployed and its requester is told (red-team walkthrough of stop
    /// 48: the 201 handed it out).
    pub fn schedule_issued(
        &mut self,
        cert: &CertificateRecord,
        renew_after: Option<i64>,
        actor: &str,
    ) -> Result<bool, InventoryError> {
        let compromised = match cert.key_id {
            Some(key) if cert.predecessor_id.is_some() && self.key_compromised(key)? => true,
            _ => self.stored_key_compromised(cert.id)?,
        };
        if !compromised {
            self.set_renew_after(cert.id, renew_after)?;
            return Ok(false);
        }
        tracing::warn!(
            certificate = cert.id,
            "certificate issued on a key revoked for keyCompromise while its order was at the CA; it is not deployed, \
             and it is due for renewal at once where its profile renews automatically"
        );
        let now = self.now();
        self.set_renew_after(cert.id, renew_after.map(|at| at.min(now)))?;
        audit::record(
            &self.conn,
            now,
            &NewAuditEvent {
                actor,
                action: "certificate.key_compromised",
                object_type: "certificate",
                object_id: Some(cert.id.to_string()),
                outcome: "success",
                detail: serde_json::json!({ "issued_on_compromised_key": true }),
            },
        )?;
        Ok(true)
    }

    /// Recomputes the schedule of profile `name`'s active certificates after its renewal
    /// policy changed (those in retry backoff keep their retry time, and those already due
    /// stay due: a key revoked for keyCompromise makes its other certificates due at once, and
    /// a profile edit postponed that by weeks — review of stop 31). Turning `auto` off
    /// clears every schedule, retries included, with their attempt count and error: the
    /// operator said stop, and a later `auto = true` starts them afresh. Expired ones still
    /// being retried too: left due, they stayed in the renewal queue and its metrics, and
    /// the scheduler spent its rounds clearing them one by one while other profiles' came
    /// due and expired (scale walkthrough of stop 50).
    pub fn reschedule_profile(&mut self, name: &str, policy: &RenewalPolicy) -> Result<usize, InventoryError> {
        if !policy.auto {
            return Ok(self.conn.execute_cached(
                "UPDATE certificates SET renew_after = NULL, renewal_attempts = 0, renewal_error = NULL
                 WHERE profile = ?1 AND status IN ('active', 'expired')
                   AND (renew_after IS NOT NULL OR renewal_attempts > 0)",
                [name],
            )?);
        }
        // mode: before (seconds before notAfter) | percent (of the lifetime)
        let (mode, value): (&str, i64) = match (policy.before_days, policy.before_minutes, policy.at_percent) {
            (Some(d), _, _) => ("before", i64::from(d) * 86_400),
            (None, Some(m), _) => ("before", i64::from(m) * 60),
            (None, None, Some(p)) => ("percent", i64::from(p)),
            (None, None, None) => ("percent", 66),
        };
        // `RenewalPolicy::due_at` in SQL, from `profile::lifetime_start` (the later of notBefore
        // and when the certificate was stored), with its fall-back to two thirds of the
        // lifetime when `before` reaches into the first third (or before it began), and
        // `max_jitter`'s bounds.
        let n = self.conn.execute_cached(
            concat!(
                "UPDATE certificates SET renew_after = ",
                due_sql!(),
                " - (abs(random()) % (MAX(0, MIN((not_after - ",
                start_sql!(),
                ") / 100, 3600, (",
                due_sql!(),
                " - ",
                start_sql!(),
                ") / 2)) + 1))
                 WHERE profile = ?1 AND status = 'active' AND renewal_attempts = 0
                   AND (renew_after IS NULL OR renew_after > ?4)"
            ),
            params![name, mode, value, self.now()],
        )?;
        if mode == "before" {
            let mut stmt = self.conn.prepare_cached(concat!(
                "SELECT id FROM certificates WHERE profile = ?1 AND status = 'active' AND renewal_attempts = 0
                       AND (not_after - ?2 <= ",
                start_sql!(),
                " OR not_after - ?2 < ",
                start_sql!(),
                " + (not_after - ",
                start_sql!(),
                ") / 3)"
            ))?;
            let ids: Vec<i64> = stmt.query_map(params![name, value], |r| r.get(0))?.collect::<Result<_, _>>()?;
            if !ids.is_empty() {
                tracing::warn!(
                    profile = name,
                    count = ids.len(),
                    certificates = ?&ids[..ids.len().min(20)],
                    "the profile's renewal.before_* is longer than these certificates allow (they would be due at \
                     once); they renew at two thirds of their lifetime instead"
                );
            }
        }
        Ok(n)
    }

    /// Claims up to `limit` certificates due for renewal for `lease_seconds`; a claimed one is
    /// invisible to other schedulers until the lease runs out. Returns the ids and the lease's
    /// end, which [`Inventory::keep_renewal_claim`] recognises the claim by.
    pub fn claim_due_renewals(&mut self, lease_seconds: i64, limit: u32) -> Result<(Vec<i64>, i64), InventoryError> {
        let (claimed, until) = self.claim_due_renewals_except(lease_seconds, limit, &[])?;
        Ok((claimed.into_iter().map(|c| c.id).collect(), until))
    }

    /// [`Inventory::claim_due_renewals`] leaving out the certificates of the profiles in
    /// `busy`, with each claimed certificate's profile: `serve` renews each profile's
    /// certificates in a lane of their own, and a lane still renewing (a CA that hangs until
    /// its deadline) must neither be given more nor take the batch from the other profiles'.
    pub fn claim_due_renewals_except(
        &mut self,
        lease_seconds: i64,
        limit: u32,
        busy: &[String],
    ) -> Result<(Vec<ClaimedRenewal>, i64), InventoryError> {
        let until = self.now() + lease_seconds;
        self.claim_due_renewals_until(until, limit, ClaimScope::Except(busy))
    }

    /// Claims up to `limit` due certificates of `profiles` until `until`: a second claim of a
    /// round, or a lane's next batch, made to end with the first, so that one claim end
    /// names them all. A claim a second later ended a second later, and every check of it
    /// against the first's end said it had run out: its certificates sat claimed, renewed by
    /// no one, for the whole lease (scale walkthrough of stop 50).
    pub fn claim_due_renewals_until(
        &mut self,
        until: i64,
        limit: u32,
        profiles: ClaimScope<'_>,
    ) -> Result<(Vec<ClaimedRenewal>, i64), InventoryError> {
        let now = self.now();
        let (only, names) = match profiles {
            ClaimScope::Except(names) => (false, names),
            ClaimScope::Only(names) => (true, names),
        };
        let busy = serde_json::Value::from(names.to_vec()).to_string();
        let tx = super::write_tx(&mut self.conn)?;
        let mut due: Vec<(ClaimedRenewal, i64)> = Vec::new();
        for status in [ACTIVE, EXPIRED] {
            let mut stmt = tx.prepare_cached(&claim_sql(status, only))?;
            let rows = stmt.query_map(params![now, limit, busy], |r| {
                Ok((
                    ClaimedRenewal { id: r.get(0)?, profile: r.get::<_, Option<String>>(2)?.unwrap_or_default() },
                    r.get(1)?,
                ))
            })?;
            due.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        due.sort_by_key(|(_, at)| *at);
        let claimed: Vec<ClaimedRenewal> = due.into_iter().take(limit as usize).map(|(c, _)| c).collect();
        for c in &claimed {
            tx.execute_cached("UPDATE certificates SET renewal_lease_until = ?2 WHERE id = ?1", params![c.id, until])?;
        }
        tx.commit()?;
        Ok((claimed, until))
    }

    /// Before renewing certificate `id` of a batch, checks that the claim `claim_due_renewals`
    /// made on it is still this process's and extends it by `lease_seconds` from now. A round
    /// renews its batch one after another; with slow CAs the lease can run out before the
    /// last ones, and another scheduler may then have claimed (and renewed) them. `None`:
    /// leave it alone; else the claim's new end, which
    /// [`Inventory::record_renewal_failure`] recognises it by.
    pub fn keep_renewal_claim(
        &mut self,
        id: i64,
        claimed_until: i64,
        lease_seconds: i64,
    ) -> Result<Option<i64>, InventoryError> {
        let until = self.now() + lease_seconds;
        let kept = self.conn.execute_cached(
            "UPDATE certificates SET renewal_lease_until = ?3 WHERE id = ?1 AND renewal_lease_until = ?2",
            params![id, claimed_until, until],
        )? == 1;
        Ok(kept.then_some(until))
    }

    /// Gives back the claim on certificate `id` that ends at `claimed_until`, only if it is still
    /// that claim (one that ran out may have been taken by another scheduler since).
    pub fn release_renewal_claim(&mut self, id: i64, claimed_until: i64) -> Result<(), InventoryError> {
        self.conn.execute_cached(
            "UPDATE certificates SET renewal_lease_until = NULL WHERE id = ?1 AND renewal_lease_until = ?2",
            params![id, claimed_until],
        )?;
        Ok(())
    }

    /// Certificate `id`'s automatic renewal, when one is scheduled and the scheduler would
    /// take it up (as `scheduled_renewals` lists them).
    pub fn renewal_state(&self, id: i64) -> Result<Option<RenewalState>, InventoryError> {
        Ok(self
            .conn
            .query_row_cached(
                &format!(
                    "SELECT renew_after, renewal_attempts, renewal_error,
                            (SELECT max(id) FROM orders WHERE predecessor_id = certificates.id AND {})
                     FROM certificates WHERE id = ?2 AND renew_after IS NOT NULL AND (({ACTIVE}) OR ({EXPIRED}))",
                    super::orders::OPEN
                ),
                params![self.now(), id],
                |r| {
                    Ok(RenewalState {
                        renews_at: r.get(0)?,
                        attempts: r.get(1)?,
                        last_error: r.get(2)?,
                        open_order_id: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Lets go of every certificate's renewal claim: only for a process that has the data
    /// directory to itself, so that every claim is a dead process's
    /// ([`super::open_data_dir_for_serve`]).
    pub(super) fn release_every_renewal_claim(&mut self) -> Result<usize, InventoryError> {
        Ok(self
            .conn
            .execute("UPDATE certificates SET renewal_lease_until = NULL WHERE renewal_lease_until IS NOT NULL", [])?)
    }

    /// Gives a claim back without recording anything (e.g. a renewal already in progress).
    pub fn release_renewal(&mut self, id: i64) -> Result<(), InventoryError> {
        self.conn.execute_cached("UPDATE certificates SET renewal_lease_until = NULL WHERE id = ?1", [id])?;
        Ok(())
    }

    /// An automatic renewal failed: retry with exponential backoff (1 minute doubling to 6
    /// hours), count the attempt, audit, and queue a `renewal_failed` notification — one
    /// transaction. Returns the retry time.
    ///
    /// Only while the scheduler still holds the claim that ends at `claimed_until`: once it
    /// ran out during a long call, closing the renewal's order recorded the failure already
    /// (`closed_renewal_failed_in`; review of stop 31: counted twice, notified twice), and a
    /// certificate deleted meanwhile has nothing to record. `None` then.
    pub fn record_renewal_failure(
        &mut self,
        id: i64,
        claimed_until: i64,
        error: &str,
        actor: &str,
    ) -> Result<Option<i64>, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let held = tx
            .query_row_cached(
                "SELECT renewal_lease_until = ?2 FROM certificates WHERE id = ?1",
                params![id, claimed_until],
                |r| r.get::<_, Option<bool>>(0),
            )
            .optional()?
            .flatten()
            .unwrap_or(false);
        if !held {
            return Ok(None);
        }
        let retry_at = renewal_failure_in(&tx, now, id, error, actor)?;
        tx.commit()?;
        Ok(retry_at)
    }

    /// Queues `expiring` notifications for active certificates without automatic renewal that
    /// expire within `days`, once per certificate. Returns how many were queued.
    pub fn queue_expiring(&mut self, days: u32) -> Result<usize, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let rows: Vec<(i64, Option<String>, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT c.id, c.common_name, c.not_after FROM certificates c
                 WHERE c.status = 'active' AND c.not_after >= ?1 AND c.not_after < ?2 AND c.renew_after IS NULL
                   AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.certificate_id = c.id AND n.kind = 'expiring')
                 LIMIT 1000",
            )?;
            stmt.query_map(params![now, now + i64::from(days) * 86_400], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, cn, not_after) in &rows {
            let subject = format!(
                "certhost: certificate {id} ({}) expires on {} and does not renew automatically",
                cn.as_deref().unwrap_or("no CN"),
                crate::view::rfc3339(*not_after)
            );
            enqueue(
                &tx,
                now,
                "expiring",
                Some(*id),
                &subject,
                &serde_json::json!({ "not_after": crate::view::rfc3339(*not_after) }),
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// Claims up to `limit` notifications due for (re-)delivery, oldest first, for
    /// `lease_seconds`: their next attempt moves past the lease in the claiming transaction,
    /// so another `serve` on this data directory does not send them too. A process that dies
    /// while delivering leaves them due again when the lease runs out; none is lost.
    ///
    /// A certificate's notifications go out in the order they were queued: one waits while an
    /// earlier one of its certificate is undelivered (backing off, or claimed). After a
    /// receiver's outage a `renewal_recovered` came before the `renewal_failed` it closes,
    /// which was still backing off (day-2 walkthrough of stop 46); a receiver keeping a
    /// certificate's state from its events ended with the wrong one. It waits at most
    /// [`ORDER_WAIT`] behind one: a receiver that refuses one event for good (a kind it does
    /// not take) must not silence the certificate (review of stop 47's diff).
    pub fn claim_notifications(&mut self, lease_seconds: i64, limit: u32) -> Result<Vec<Notification>, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let rows: Vec<Notification> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, kind, certificate_id, subject, detail, created_at, attempts, webhook_sent_at, email_sent_at,
                        COALESCE(delivery_id, CAST(id AS TEXT))
                 FROM notifications n WHERE sent_at IS NULL AND next_attempt_at <= ?1
                   AND NOT EXISTS (SELECT 1 FROM notifications e INDEXED BY notifications_waiting
                                   WHERE e.certificate_id = n.certificate_id AND e.sent_at IS NULL
                                     AND e.certificate_id IS NOT NULL AND e.id < n.id AND e.created_at > ?1 - ?3)
                 ORDER BY next_attempt_at, id LIMIT ?2",
            )?;
            stmt.query_map(params![now, limit, ORDER_WAIT], |r| {
                let detail: String = r.get(4)?;
                Ok(Notification {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    certificate_id: r.get(2)?,
                    subject: r.get(3)?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                    created_at: r.get(5)?,
                    attempts: r.get(6)?,
                    webhook_sent: r.get::<_, Option<i64>>(7)?.is_some(),
                    email_sent: r.get::<_, Option<i64>>(8)?.is_some(),
                    delivery_id: r.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?
        };
        for n in &rows {
            tx.execute_cached(
                "UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1",
                params![n.id, now + lease_seconds],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Records which notification channels this `serve` has configured and returns since
    /// when each has been: a channel keeps the time it was first seen on, and one a run does
    /// not configure is forgotten, so turning it on again starts afresh.
    pub fn configure_channels(&mut self, webhook: bool, email: bool) -> Result<ChannelsSince, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let since = |name: &str, on: bool| -> Result<Option<i64>, InventoryError> {
            if !on {
                tx.execute_cached("DELETE FROM meta WHERE name = ?1", [name])?;
                return Ok(None);
            }
            tx.execute_cached("INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)", params![name, now])?;
            Ok(Some(tx.query_row_cached("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))?))
        };
        let out = ChannelsSince {
            webhook: since("notify_webhook_since", webhook)?,
            email: since("notify_email_since", email)?,
        };
        tx.commit()?;
        Ok(out)
    }

    /// Records that notification `id` reached `channel`, at once: a later failure of the
    /// other channel, or a crash, never sends it on this one again.
    pub fn mark_channel_sent(&mut self, id: i64, channel: Channel) -> Result<(), InventoryError> {
        let sql = match channel {
            Channel::Webhook => "UPDATE notifications SET webhook_sent_at = ?2 WHERE id = ?1",
            Channel::Email => "UPDATE notifications SET email_sent_at = ?2 WHERE id = ?1",
        };
        self.conn.execute_cached(sql, params![id, self.now()])?;
        Ok(())
    }

    /// Marks a delivery attempt: done on every configured channel, or failed on one at least
    /// (those that succeeded were marked by `mark_channel_sent`) with a retry time.
    pub fn mark_notification(&mut self, id: i64, result: Result<(), (&str, i64)>) -> Result<(), InventoryError> {
        let now = self.now();
        match result {
            Ok(()) => self.conn.execute_cached(
                "UPDATE notifications SET sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                params![id, now],
            )?,
            Err((error, retry_at)) => self.conn.execute_cached(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
                params![id, error, retry_at],
            )?,
        };
        Ok(())
    }

    /// Gives claimed notifications back, due now, without counting an attempt: delivery was
    /// cut short (shutdown, the round's time budget) before they were tried or answered.
    pub fn release_notifications(&mut self, ids: &[i64]) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        for id in ids {
            tx.execute_cached(
                "UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1 AND sent_at IS NULL",
                params![id, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The scheduler's `certificate.auto_renew` events, newest first: `detail.successor_id`
    /// on success, `detail.error` on failure.
    pub fn auto_renewal_history(&self, limit: u32) -> Result<Vec<super::AuditEvent>, InventoryError> {
        self.audit_events(&super::AuditFilter {
            object_type: Some("certificate".into()),
            object_id: None,
            action_prefix: Some("certificate.auto_renew".into()),
            limit,
            before_id: None,
        })
    }

    /// Upcoming and retrying renewals, soonest first: expired certificates whose automatic
    /// renewal is still being retried too.
    pub fn scheduled_renewals(&self, limit: u32) -> Result<Vec<ScheduledRenewal>, InventoryError> {
        self.listed_renewals(false, None, None, limit)
    }

    /// The renewals whose last attempt failed (retried with backoff), soonest retry first:
    /// what a dashboard or an operator wants first in a storm of due certificates.
    pub fn failing_renewals(&self, limit: u32) -> Result<Vec<ScheduledRenewal>, InventoryError> {
        self.listed_renewals(true, None, None, limit)
    }

    /// How many renewals are failing (as [`Inventory::failing_renewals`] lists them), for
    /// `/metrics`: counted from `certificates_failing` alone. Only active and expired
    /// certificates keep a `renew_after` (superseding, revoking and switching renewal off
    /// clear it), so the index holds exactly the failing ones.
    pub(super) fn count_failing_renewals(&self) -> Result<u64, InventoryError> {
        Ok(self.conn.query_row_cached(FAILING_COUNT_SQL, [], |r| r.get::<_, u64>(0))?)
    }

    /// How many certificates are past their renewal time: waiting for an attempt or in one,
    /// their retry come (failing ones), or waiting at the CA — for `/metrics`, a backlog that
    /// grows when renewals fall behind, which the expiry buckets show only when certificates
    /// expire. Counted from the due index alone (review of stop 45: reading each due row to
    /// tell failing ones apart took 2.2 s at 500 k due, every 10 s on a public endpoint).
    pub(super) fn count_due_renewals(&self) -> Result<u64, InventoryError> {
        let mut n = 0;
        for status in [ACTIVE, EXPIRED] {
            n += self.conn.query_row_cached(&due_count_sql(status), [self.now()], |r| r.get::<_, u64>(0))?;
        }
        Ok(n)
    }

    /// Brings the next attempt of failing automatic renewals forward to now, so that once
    /// their CA or profile is fixed nobody waits out a backoff of up to six hours: the
    /// certificates `ids` (each must be failing), or else every failing renewal — `profile`'s
    /// only, when given. The attempt count stays (a renewal that fails again backs off as
    /// before, and its notification run goes on). One being attempted right now is left to
    /// that attempt, and one with a renewal order open (pending at the CA, awaiting approval)
    /// to that order: both are reported, neither changed nor audited.
    pub fn retry_failing_renewals(
        &mut self,
        profile: Option<&str>,
        ids: &[i64],
        actor: &str,
    ) -> Result<RetriedRenewals, InventoryError> {
        let now = self.now();
        if let Some(p) = profile {
            self.profile_known(p)?;
        }
        let tx = super::write_tx(&mut self.conn)?;
        // (id, renew_after, claimed now, renewal order open), read in the transaction that
        // changes them.
        // From the failing renewals' own index (as `count_failing_renewals`): one walk over
        // the few failing rows, not every due one.
        let failing: Vec<(i64, i64, bool, bool)> = {
            let sql = format!(
                "SELECT id, renew_after, renewal_lease_until IS NOT NULL AND renewal_lease_until >= ?1,
                        EXISTS (SELECT 1 FROM orders WHERE predecessor_id = certificates.id AND {})
                   FROM certificates INDEXED BY certificates_failing
                  WHERE renewal_attempts > 0 AND renew_after IS NOT NULL {}",
                super::orders::OPEN,
                if profile.is_some() { "AND profile = ?2" } else { "" }
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            match profile {
                Some(p) => stmt.query_map(params![now, p], row)?.collect::<Result<Vec<_>, _>>()?,
                None => stmt.query_map(params![now], row)?.collect::<Result<Vec<_>, _>>()?,
            }
        };
        let wanted = if ids.is_empty() {
            failing
        } else {
            let mut wanted: Vec<(i64, i64, bool, bool)> = Vec::with_capacity(ids.len());
            for &id in ids {
                if wanted.iter().any(|w| w.0 == id) {
                    continue;
                }
                if let Some(row) = failing.iter().find(|f| f.0 == id) {
                    wanted.push(*row);
                    continue;
                }
                let has_profile: Option<bool> = tx
                    .query_row_cached("SELECT profile IS NOT NULL FROM certificates WHERE id = ?1", [id], |r| r.get(0))
                    .optional()?;
                let Some(has_profile) = has_profile else {
                    return Err(InventoryError::NotFound(format!("certificate {id}")));
                };
                // An imported one has no profile to renew under, so none is automatic: said,
                // with how to give it one (ACME walkthrough of stop 46: `renew ID` then failed).
                let renew = if has_profile {
                    format!("certhost renew {id} renews a certificate now")
                } else {
                    format!(
                        "it has no profile (imported), so it is not renewed automatically; certhost renew {id} --profile \
                         NAME renews it under one, whose [renewal] settings then apply"
                    )
                };
                return Err(InventoryError::Conflict(format!(
                    "certificate {id} has no failing automatic renewal to retry{} (certhost renewals --failing \
                     lists them; {renew})",
                    profile.map(|p| format!(" in profile {p}")).unwrap_or_default()
                )));
            }
            wanted
        };
        let mut out = RetriedRenewals::default();
        for (id, was_due, in_flight, open_order) in wanted {
            if in_flight {
                out.in_progress.push(id);
                continue;
            }
            if open_order {
                out.waiting.push(id);
                continue;
            }
            // Never later than it was: one already due stays as due.
            tx.execute_cached(
                "UPDATE certificates SET renew_after = min(renew_after, ?2) WHERE id = ?1",
                params![id, now],
            )?;
            audit::record(
                &tx,
                now,
                &NewAuditEvent {
                    actor,
                    action: "certificate.renewal_retry",
                    object_type: "certificate",
                    object_id: Some(id.to_string()),
                    outcome: "success",
                    detail: serde_json::json!({ "was_due": crate::view::rfc3339(was_due) }),
                },
            )?;
            out.retried.push(id);
        }
        tx.commit()?;
        Ok(out)
    }

    /// The scheduled renewals, soonest first: only the failing ones when `failing` (as
    /// [`Inventory::failing_renewals`]), only `profile`'s when given — one team's view of a
    /// storm, or of what its profile will renew next (scale review of stop 43) — and only
    /// those after `after` (a listed renewal's `(renew_after, id)`), so an API client pages
    /// through more than one page of them.
    pub fn listed_renewals(
        &self,
        failing: bool,
        profile: Option<&str>,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<ScheduledRenewal>, InventoryError> {
        let mut out = Vec::new();
        // `:now` is now, as `?1` in `claim_sql` (operator review of stop 41: it was bound to
        // the limit, so `--limit 0`, all, left out the expired ones the scheduler retries).
        let now = self.now();
        let parts: &[Option<AfterCursor>] = match after {
            None => &[None],
            Some(_) => &[Some(AfterCursor::SameSecond), Some(AfterCursor::Later)],
        };
        for (status, part) in [ACTIVE, EXPIRED].into_iter().flat_map(|s| parts.iter().map(move |p| (s, *p))) {
            let sql = listed_sql(status, failing, profile.is_some(), part);
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut values: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit)];
            if sql.contains(":now") {
                values.push((":now", &now));
            }
            if let Some(profile) = &profile {
                values.push((":profile", profile));
            }
            if let Some((renew_after, id)) = &after {
                values.push((":after", renew_after));
                if part == Some(AfterCursor::SameSecond) {
                    values.push((":after_id", id));
                }
            }
            let rows = stmt.query_map(values.as_slice(), |r| {
                Ok(ScheduledRenewal {
                    id: r.get(0)?,
                    common_name: r.get(1)?,
                    profile: r.get(2)?,
                    renew_after: r.get(3)?,
                    not_after: r.get(4)?,
                    attempts: r.get(5)?,
                    last_error: r.get(6)?,
                })
            })?;
            out.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        out.sort_by_key(|r| (r.renew_after, r.id));
        out.truncate(limit as usize);
        if let Some(p) = profile.filter(|_| out.is_empty()) {
            self.profile_known(p)?;
        }
        Ok(out)
    }

    /// `NotFound` for a profile neither defined nor named by a certificate: a mistyped
    /// `--profile` read as "nothing due, nothing failing" (new-user walkthrough of stop 46).
    /// A certificate of a profile deleted since still counts, since its renewal is listed.
    fn profile_known(&self, profile: &str) -> Result<(), InventoryError> {
        let known: bool = self.conn.query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM profiles WHERE name = ?1) OR EXISTS (SELECT 1 FROM certificates WHERE profile = ?1)",
            [profile],
            |r| r.get(0),
        )?;
        if known { Ok(()) } else { Err(InventoryError::NotFound(format!("profile {}", crate::view::echoed(profile)))) }
    }
}

#[cfg(test)]
mod tests {
    use crate::profile::RenewalPolicy;
    use rusqlite::params;

    /// The scheduler's claim looks for an open renewal order of each due certificate through
    /// the partial index of open renewals, not by walking the orders.
    #[test]
    fn the_claim_finds_open_renewals_through_their_index() {
        let (_dir, inv) = super::super::scratch();
        let plan = super::super::query_plan(&inv.conn, &super::claim_sql(super::ACTIVE, false));
        assert!(plan.contains("INDEX orders_one_open_renewal "), "{plan}");
    }

    /// Regression: two `serve` processes on one database read the same due notifications and
    /// both sent them. A claimed one is due again only when given back or its lease ends.
    #[test]
    fn a_claimed_notification_is_not_claimed_again_until_it_is_given_back() {
        let (_dir, mut inv) = super::super::scratch();
        let now = inv.now();
        for _ in 0..3 {
            super::enqueue(&inv.conn, now, "revoked", None, "subject", &serde_json::json!({})).expect("enqueue");
        }
        let ids = |v: Vec<super::Notification>| v.into_iter().map(|n| n.id).collect::<Vec<_>>();
        assert_eq!(ids(inv.claim_notifications(180, 2).expect("claim")), [1, 2]);
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [3]);
        assert!(inv.claim_notifications(180, 10).expect("claim").is_empty());
        inv.release_notifications(&[2]).expect("release");
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [2]);
        // A channel reached stays reached; the notification is done only when marked so.
        inv.mark_channel_sent(2, super::Channel::Webhook).expect("mark");
        inv.release_notifications(&[2]).expect("release");
        let again = inv.claim_notifications(180, 10).expect("claim");
        assert!(again[0].webhook_sent && !again[0].email_sent, "{again:?}");
        inv.mark_notification(2, Ok(())).expect("mark");
        inv.release_notifications(&[2]).expect("release");
        assert!(inv.claim_notifications(180, 10).expect("claim").is_empty());
    }

    /// Day-2 walkthrough of stop 46: after a receiver's outage a certificate's later event
    /// went out before the earlier one still backing off.
    #[test]
    fn a_certificates_notifications_go_out_in_the_order_they_were_queued() {
        let (_dir, mut inv) = super::super::scratch();
        let now = inv.now();
        let json = serde_json::json!({});
        super::enqueue(&inv.conn, now, "renewal_failed", Some(1), "failed", &json).expect("enqueue");
        super::enqueue(&inv.conn, now, "renewal_failed", Some(2), "other", &json).expect("enqueue");
        super::enqueue(&inv.conn, now, "renewal_recovered", Some(1), "recovered", &json).expect("enqueue");
        super::enqueue(&inv.conn, now, "revoked", None, "no certificate", &json).expect("enqueue");
        let ids = |v: Vec<super::Notification>| v.into_iter().map(|n| n.id).collect::<Vec<_>>();
        // The first of certificate 1 is claimed; its second waits, as it does while the
        // first backs off after a failed delivery.
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [1, 2, 4]);
        inv.mark_notification(4, Ok(())).expect("sent");
        inv.mark_notification(1, Err(("receiver down", now - 1))).expect("failed");
        inv.mark_notification(2, Ok(())).expect("sent");
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [1]);
        inv.mark_notification(1, Err(("receiver down", now + 3600))).expect("failed");
        assert!(inv.claim_notifications(180, 10).expect("claim").is_empty(), "3 waits for 1's retry");
        inv.mark_notification(1, Err(("receiver down", now - 1))).expect("due");
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [1]);
        inv.mark_notification(1, Ok(())).expect("sent");
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [3]);
        inv.mark_notification(3, Ok(())).expect("sent");
        // One refused for good holds the next for a day at most.
        super::enqueue(&inv.conn, now, "renewal_failed", Some(5), "refused", &json).expect("enqueue");
        super::enqueue(&inv.conn, now, "renewal_recovered", Some(5), "next", &json).expect("enqueue");
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [5]);
        inv.mark_notification(5, Err(("422", now + 7 * 86_400))).expect("failed");
        assert!(inv.claim_notifications(180, 10).expect("claim").is_empty());
        inv.set_clock(Some(now + super::ORDER_WAIT + 1));
        assert_eq!(ids(inv.claim_notifications(180, 10).expect("claim")), [6]);
        // The waiting ones are found through their own index.
        let plan: String = inv
            .conn
            .prepare("EXPLAIN QUERY PLAN SELECT 1 FROM notifications e INDEXED BY notifications_waiting WHERE e.certificate_id = 5 AND e.sent_at IS NULL AND e.certificate_id IS NOT NULL AND e.id < 9")
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan")
            .join("; ");
        assert!(plan.contains("notifications_waiting"), "{plan}");
    }

    /// Scale walkthrough of stop 50: turning `auto` off left the profile's expired
    /// certificates still being retried due, in the queue and the metrics for ever; and a
    /// second claim a second after the first ended a second later, so every check against the
    /// first's end said it had run out. Both claims now end together.
    #[test]
    fn auto_off_clears_expired_retries_and_claims_of_one_round_end_together() {
        let (_dir, mut inv) = super::super::scratch();
        for (n, status, profile) in [("01", "expired", "web"), ("02", "active", "web"), ("03", "active", "api")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, renewal_attempts, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, ?2, 'issue', 0, 50000, 1, ?3)",
                    params![n, status, profile],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(60_000));
        let off = RenewalPolicy { auto: false, ..RenewalPolicy::default() };
        assert_eq!(inv.reschedule_profile("web", &off).expect("reschedule"), 2, "the expired one too");
        inv.conn.execute("UPDATE certificates SET renew_after = 50000 WHERE id = 1", []).expect("due again");
        inv.conn.execute("UPDATE certificates SET profile = 'api' WHERE id = 1", []).expect("other profile");
        let (first, until) = inv.claim_due_renewals_until(60_600, 1, super::ClaimScope::Except(&[])).expect("claim");
        inv.set_clock(Some(60_001));
        let (second, until2) =
            inv.claim_due_renewals_until(until, 5, super::ClaimScope::Only(&["api".to_owned()])).expect("claim");
        assert_eq!((first.len(), second.len(), until2), (1, 1, until));
        for c in first.iter().chain(&second) {
            assert!(inv.keep_renewal_claim(c.id, until, 600).expect("keep").is_some(), "{}", c.id);
        }
    }

    /// Regression (review of stop 31): a certificate that expired before its automatic
    /// renewal was tried at all (serve was down) was never renewed and nobody was told; and a
    /// profile edit postponed a certificate already due (one a keyCompromise revocation made
    /// due at once) by weeks.
    #[test]
    fn an_expired_certificate_whose_renewal_never_ran_is_renewed_and_reported_and_a_due_one_stays_due() {
        let (_dir, mut inv) = super::super::scratch();
        for (n, renew_after, profile) in [("01", Some(50_000), "web"), ("02", None, "manual")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'issue', 0, ?2, ?3)",
                    params![n, renew_after, profile],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(60_000));
        let policy = RenewalPolicy { before_days: Some(1), ..RenewalPolicy::default() };
        inv.reschedule_profile("web", &policy).expect("reschedule");
        let renew_after: Option<i64> =
            inv.conn.query_row("SELECT renew_after FROM certificates WHERE id = 1", [], |r| r.get(0)).expect("read");
        assert_eq!(renew_after, Some(50_000), "a certificate already due stays due");
        inv.set_clock(Some(200_000));
        assert_eq!(inv.mark_expired("t").expect("expire"), vec![1, 2]);
        let queued: Vec<String> = inv
            .conn
            .prepare("SELECT subject FROM notifications WHERE kind = 'expired'")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert!(
            queued[0].contains("certificate 1 (") && queued[0].contains("expired before its automatic renewal ran"),
            "{queued:?}"
        );
        // Listed with every limit, "all" (u32::MAX) included (operator review of stop 41: the
        // limit was bound where now belongs, so "all" left it out).
        for limit in [1, 10, u32::MAX] {
            let listed: Vec<i64> = inv.scheduled_renewals(limit).expect("list").iter().map(|r| r.id).collect();
            assert_eq!(listed, vec![1], "limit {limit}");
        }
        let (claimed, _) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!(claimed, vec![1], "renewed though no attempt failed; certificate 2 does not renew automatically");
    }

    /// `reschedule_profile` counts a lifetime as `RenewalPolicy::due_at` does at issuance: from
    /// when the certificate was stored when its notBefore is backdated (API walkthrough of
    /// stop 48), with the fall-back and the jitter's bounds.
    #[test]
    fn a_profile_edit_schedules_from_when_a_backdated_certificate_was_stored() {
        let (_dir, mut inv) = super::super::scratch();
        // Stored at 1,000, notBefore backdated 300 s, 120 s left; stored at 0 with notBefore 10.
        for (n, not_before, created_at, not_after) in [("01", 700, 1_000, 1_120), ("02", 10, 0, 1_010)] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', ?2, ?3, 'ec-p256', 256, 'active', 'issue', ?4, NULL, 'web')",
                    params![n, not_before, not_after, created_at],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(1_000));
        let renew_after = |inv: &super::super::Inventory, id: i64| -> i64 {
            inv.conn.query_row("SELECT renew_after FROM certificates WHERE id = ?1", [id], |r| r.get(0)).expect("read")
        };
        let half = RenewalPolicy { at_percent: Some(50), ..RenewalPolicy::default() };
        inv.reschedule_profile("web", &half).expect("reschedule");
        // 50% of 120 s from 1,000, less at most 1 s of jitter (1% of the lifetime).
        assert!((1_059..=1_060).contains(&renew_after(&inv, 1)), "{}", renew_after(&inv, 1));
        // 50% of 1,000 s from notBefore 10, less at most 10 s.
        assert!((500..=510).contains(&renew_after(&inv, 2)), "{}", renew_after(&inv, 2));
        // A before_minutes reaching back past the first third falls back to two thirds, from
        // when it was stored.
        // The SQL's bound on backdating is the Rust one.
        assert!(start_sql!().contains(&crate::profile::MAX_BACKDATE.to_string()));
        let before = RenewalPolicy { before_minutes: Some(10), ..RenewalPolicy::default() };
        inv.conn.execute("UPDATE certificates SET renew_after = NULL", []).expect("clear");
        inv.reschedule_profile("web", &before).expect("reschedule");
        assert!((1_079..=1_080).contains(&renew_after(&inv, 1)), "{}", renew_after(&inv, 1));
    }

    /// Operator review of stop 41: deliveries were told apart by row id, which a restore hands
    /// out again; each notification has a random delivery id, and one queued before the
    /// column existed keeps its row id.
    #[test]
    fn a_notification_has_a_delivery_id_of_its_own() {
        let (_dir, mut inv) = super::super::scratch();
        inv.set_clock(Some(100));
        for _ in 0..2 {
            super::enqueue(&inv.conn, 100, "revoked", None, "s", &serde_json::json!({})).expect("queue");
        }
        inv.conn
            .execute(
                "INSERT INTO notifications (kind, subject, created_at, next_attempt_at) VALUES ('revoked', 's', 100, 100)",
                [],
            )
            .expect("an older row");
        let ids: Vec<String> =
            inv.claim_notifications(60, 10).expect("claim").into_iter().map(|n| n.delivery_id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[0].len() == 32 && ids[1].len() == 32 && ids[0] != ids[1], "{ids:?}");
        assert_eq!(ids[2], "3", "an older row's delivery id is its row id");
    }

    /// Regression: a round renewed its whole batch one after another on the lease taken at
    /// the start; once it ran out, another scheduler could claim a certificate still waiting
    /// its turn in the first round, and both renewed it.
    #[test]
    fn a_claim_that_ran_out_is_not_used_and_one_still_held_is_extended() {
        let (_dir, mut inv) = super::super::scratch();
        for n in ["01", "02"] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'import', 0, 10)",
                    [n],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(9));
        assert_eq!(inv.gauges().expect("gauges").renewals_due, 0, "not due yet");
        inv.set_clock(Some(1_000));
        assert_eq!(inv.gauges().expect("gauges").renewals_due, 2, "both due, neither tried");
        let (ids, until) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!((ids, until), (vec![1, 2], 1_600));
        assert_eq!(inv.gauges().expect("gauges").renewals_due, 2, "in their attempt: still due");
        inv.set_clock(Some(1_500));
        assert_eq!(inv.keep_renewal_claim(1, until, 600).expect("keep"), Some(2_100), "still held");
        // Certificate 1 renewed for long: the batch's lease ran out, and another scheduler
        // claimed certificate 2 (and certificate 1 is still held, extended to 2,100).
        inv.set_clock(Some(1_700));
        let (other, _) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!(other, vec![2]);
        assert_eq!(inv.keep_renewal_claim(2, until, 600).expect("keep"), None, "the other scheduler's now");
        // A failure is recorded only under a claim still held (review of stop 31).
        assert_eq!(inv.record_renewal_failure(2, until, "x", "t").expect("record"), None);
        assert!(inv.record_renewal_failure(1, 2_100, "x", "t").expect("record").is_some());
        assert_eq!(inv.gauges().expect("gauges").renewals_failing, 1, "certificate 1's renewal is failing");
        assert_eq!(
            inv.gauges().expect("gauges").renewals_due,
            1,
            "certificate 2 is still in its attempt, 1 retries later"
        );
        let failing: Vec<i64> = inv.failing_renewals(10).expect("failing").iter().map(|r| r.id).collect();
        assert_eq!(failing, vec![1]);
        assert_eq!(inv.scheduled_renewals(10).expect("scheduled").len(), 2);
    }

    /// Scale review of stop 43: every failed attempt queued a `renewal_failed` (nine in a
    /// failing certificate's first six hours). A run's first failure is said at once, then at
    /// most once a day, with how many attempts failed and when the certificate expires; a
    /// run that begins again after a success is said at once.
    #[test]
    fn a_failing_renewal_is_notified_at_its_first_failure_and_then_once_a_day() {
        let (_dir, mut inv) = super::super::scratch();
        inv.conn
            .execute(
                "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                     key_algorithm, key_bits, status, source, created_at, renew_after, common_name)
                 VALUES ('leaf', '01', '01', '01', 'CN=a', 'CN=ca', '[]', 0, 1000000, 'ec-p256', 256, 'active', 'import', 0, 10, 'a')",
                [],
            )
            .expect("certificate");
        let fail_at = |inv: &mut super::super::Inventory, t: i64| {
            inv.set_clock(Some(t));
            let (ids, until) = inv.claim_due_renewals(600, 20).expect("claim");
            assert_eq!(ids, vec![1], "due at {t}");
            inv.record_renewal_failure(1, until, "the CA said no", "t").expect("record").expect("held")
        };
        // Attempts at 100 s, then each at its retry time, until the day is up.
        let mut t = 100;
        let mut attempts = 0;
        while t < 100 + 86_400 {
            t = fail_at(&mut inv, t);
            attempts += 1;
        }
        let subjects = |inv: &super::super::Inventory| -> Vec<String> {
            inv.conn
                .prepare("SELECT subject FROM notifications WHERE kind = 'renewal_failed' ORDER BY id")
                .expect("prepare")
                .query_map([], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        assert!(attempts > 5, "{attempts} attempts in the day");
        assert_eq!(subjects(&inv), ["certhost: renewal of certificate 1 (a) failed; it expires 1970-01-12T13:46:40Z"]);
        // The first attempt more than a day after that notification is said, with the count.
        fail_at(&mut inv, t);
        let said = subjects(&inv);
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(
            said[1],
            format!(
                "certhost: renewal of certificate 1 (a) failed {} times in a row; it expires 1970-01-12T13:46:40Z",
                attempts + 1
            )
        );
        // Every attempt is still audited and counted.
        let audited: i64 = inv
            .conn
            .query_row("SELECT count(*) FROM audit_events WHERE action = 'certificate.auto_renew'", [], |r| r.get(0))
            .expect("count");
        assert_eq!(audited, attempts + 1);
        // A run begun afresh (the count back at 0) is said at once.
        inv.conn.execute("UPDATE certificates SET renewal_attempts = 0", []).expect("reset");
        let next = t + 60;
        inv.conn.execute("UPDATE certificates SET renew_after = ?1", [next]).expect("due");
        fail_at(&mut inv, next);
        assert_eq!(subjects(&inv).len(), 3);
    }

    /// `serve` renews each CA account's certificates in a lane of their own: a busy lane's
    /// profiles are left for later, the others are claimed with their profile.
    #[test]
    fn a_claim_leaves_out_the_busy_lanes_and_names_each_ones_profile() {
        let (_dir, mut inv) = super::super::scratch();
        for (n, profile, at) in [("01", Some("stuck"), 10), ("02", Some("web"), 11), ("03", None, 12)] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'import', 0, ?2, ?3)",
                    rusqlite::params![n, at, profile],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(1_000));
        // One profile's renewals listed (`renewals --profile`), failing or not.
        let of = |inv: &super::super::Inventory, failing, profile| -> Vec<i64> {
            inv.listed_renewals(failing, profile, None, 10).expect("list").iter().map(|r| r.id).collect()
        };
        assert_eq!(of(&inv, false, Some("web")), [2]);
        assert_eq!(of(&inv, false, None), [1, 2, 3]);
        assert!(of(&inv, true, Some("web")).is_empty(), "none failing");
        let lane = |id: i64, profile: &str| super::ClaimedRenewal { id, profile: profile.into() };
        let (claimed, _) = inv.claim_due_renewals_except(600, 20, &["stuck".into()]).expect("claim");
        assert_eq!(claimed, vec![lane(2, "web"), lane(3, "")]);
        let (claimed, _) = inv.claim_due_renewals_except(600, 20, &[]).expect("claim");
        assert_eq!(claimed, vec![lane(1, "stuck")], "the busy lane's certificate was left due");
    }

    /// After a CA is fixed, failing renewals are retried now instead of at the end of their
    /// backoff: by id (each must be failing), by profile, or all; one in its attempt is left
    /// to it.
    #[test]
    fn failing_renewals_are_brought_forward_by_id_profile_or_all() {
        let (_dir, mut inv) = super::super::scratch();
        for (n, profile) in [("01", "web"), ("02", "db"), ("03", "web")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'import', 0, 10, ?2)",
                    params![n, profile],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(1_000));
        let (ids, until) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!(ids, [1, 2, 3]);
        for id in [1, 2] {
            inv.record_renewal_failure(id, until, "CA down", "t").expect("failure");
        }
        // Certificate 3 is in its first attempt, not failing; 99 does not exist.
        let err = inv.retry_failing_renewals(None, &[3], "ops").expect_err("not failing");
        assert!(err.to_string().contains("certificate 3 has no failing automatic renewal"), "{err}");
        let err = inv.retry_failing_renewals(None, &[1, 99], "ops").expect_err("no such");
        assert!(matches!(err, super::InventoryError::NotFound(_)), "{err}");
        // One without a profile (imported) is said to renew only once given one.
        inv.conn.execute("UPDATE certificates SET profile = NULL WHERE id = 3", []).expect("imported");
        let err = inv.retry_failing_renewals(None, &[3], "ops").expect_err("not failing").to_string();
        assert!(
            err.contains(
                "it has no profile (imported), so it is not renewed automatically; certhost renew 3 --profile NAME"
            ),
            "{err}"
        );
        inv.conn.execute("UPDATE certificates SET profile = 'web' WHERE id = 3", []).expect("back");
        let due = |inv: &super::Inventory, id: i64| {
            inv.listed_renewals(true, None, None, 10).expect("list").iter().find(|r| r.id == id).map(|r| r.renew_after)
        };
        assert_eq!(due(&inv, 1), Some(1_060), "a minute's backoff; nothing changed by the refusals");
        // A mistyped profile is named, not taken for one with nothing failing.
        let err = inv.retry_failing_renewals(Some("wbe"), &[], "ops").expect_err("no such profile");
        assert_eq!(err.to_string(), "profile wbe not found");
        let err = inv.listed_renewals(false, Some("wbe"), None, 10).expect_err("no such profile");
        assert_eq!(err.to_string(), "profile wbe not found");
        let web = inv.retry_failing_renewals(Some("web"), &[], "ops").expect("web");
        assert_eq!(web, super::RetriedRenewals { retried: vec![1], ..Default::default() });
        assert_eq!((due(&inv, 1), due(&inv, 2)), (Some(1_000), Some(1_060)));
        let attempts = inv.listed_renewals(true, None, None, 10).expect("list")[0].attempts;
        assert_eq!(attempts, 1, "the count stays");
        // Both claimed again by the scheduler: left to their attempt.
        inv.set_clock(Some(1_100));
        let (ids, _) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!(ids, [1, 2]);
        let all = inv.retry_failing_renewals(None, &[], "ops").expect("all");
        assert_eq!(all, super::RetriedRenewals { in_progress: vec![1, 2], ..Default::default() });
        // Certificate 1's attempt went pending at the CA (claim let go): its order decides,
        // and nothing is brought forward or audited for it; a repeated id counts once.
        inv.conn
            .execute(
                "INSERT INTO orders (request_id, kind, state, csr_pem, predecessor_id, requested_by, created_at, updated_at)
                 VALUES ('r1', 'renew', 'pending', 'csr', 1, 'auto-renewal', 0, 0)",
                [],
            )
            .expect("order");
        inv.conn.execute("UPDATE certificates SET renewal_lease_until = NULL", []).expect("let go");
        let again = inv.retry_failing_renewals(None, &[1, 1], "ops").expect("by id");
        assert_eq!(again, super::RetriedRenewals { waiting: vec![1], ..Default::default() });
        let events: i64 = inv
            .conn
            .query_row("SELECT COUNT(*) FROM audit_events WHERE action = 'certificate.renewal_retry'", [], |r| r.get(0))
            .expect("audit");
        assert_eq!(events, 1);
    }

    /// `GET /v1/renewals` pages through the schedule by `(renew_after, id)`: certificates due
    /// in the same second are neither skipped nor listed twice, and expired ones still
    /// retried fall in their place.
    #[test]
    fn the_schedule_pages_by_due_time_and_id() {
        let (_dir, mut inv) = super::super::scratch();
        let rows =
            [("01", "active", 20, 0), ("02", "active", 10, 0), ("03", "expired", 10, 2), ("04", "active", 10, 0)];
        for (n, status, at, attempts) in rows {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, renewal_attempts)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 500, 'ec-p256', 256, ?2, 'import', 0, ?3, ?4)",
                    rusqlite::params![n, status, at, attempts],
                )
                .expect("certificate");
        }
        inv.set_clock(Some(1_000));
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = inv.listed_renewals(false, None, after, 2).expect("page");
            seen.extend(page.iter().map(|r| r.id));
            match page.last() {
                Some(last) if page.len() == 2 => after = Some((last.renew_after, last.id)),
                _ => break,
            }
        }
        assert_eq!(seen, [2, 3, 4, 1]);
        assert_eq!(inv.listed_renewals(false, None, Some((10, 3)), 10).expect("after 3").len(), 2);
    }

    /// A real inventory has no statistics (nothing runs ANALYZE), and without them SQLite
    /// read every active certificate for each claim and sorted them (≈ 1.4 s at 1 M, every
    /// round, holding the write lock); the due-renewal queries walk their partial index in
    /// `renew_after` order and stop at the limit.
    #[test]
    fn the_due_renewal_queries_walk_the_due_index_without_statistics() {
        let (_dir, inv) = super::super::scratch();
        for status in [super::ACTIVE, super::EXPIRED] {
            let plan = super::super::query_plan(&inv.conn, &super::claim_sql(status, false));
            let index = format!("SEARCH certificates USING INDEX {} (renew_after", super::due_index(status));
            assert!(plan.contains(&index) && !plan.contains("TEMP B-TREE"), "{plan}");
        }
        inv.scheduled_renewals(10).expect("the listing prepares with its index");
        // A page after a cursor seeks the cursor in the index — the rest of its second by
        // id, then what is later — sorted by it.
        for status in [super::ACTIVE, super::EXPIRED] {
            let index = super::due_index(status);
            for (part, seek) in [
                (super::AfterCursor::SameSecond, format!("INDEX {index} (renew_after=? AND rowid>?)")),
                (super::AfterCursor::Later, format!("INDEX {index} (renew_after>?")),
            ] {
                for profile in [false, true] {
                    let plan =
                        super::super::query_plan(&inv.conn, &super::listed_sql(status, false, profile, Some(part)));
                    assert!(plan.contains(&seek) && !plan.contains("TEMP B-TREE"), "{part:?}: {plan}");
                }
            }
        }
        // The failing ones from their own index, with or without a cursor: a storm's due
        // rows are not read to find them. The index is (renew_after, renewal_attempts), so
        // ties in a second are sorted by id (TEMP B-TREE FOR LAST TERM) and a cursor inside a
        // second reads that second's failing rows: few, where the due index had them all.
        for status in [super::ACTIVE, super::EXPIRED] {
            for part in [None, Some(super::AfterCursor::SameSecond), Some(super::AfterCursor::Later)] {
                for profile in [false, true] {
                    let plan = super::super::query_plan(&inv.conn, &super::listed_sql(status, true, profile, part));
                    assert!(plan.contains("INDEX certificates_failing (renew_after"), "{part:?}: {plan}");
                }
            }
        }
        // The backlog gauge counts from the active due index alone, rows unread.
        let plan = super::super::query_plan(&inv.conn, &super::due_count_sql(super::ACTIVE));
        assert!(plan.contains("USING COVERING INDEX certificates_due ("), "{plan}");
        let plan = super::super::query_plan(&inv.conn, super::FAILING_COUNT_SQL);
        assert!(plan.contains("USING COVERING INDEX certificates_failing"), "{plan}");
    }

    #[test]
    fn a_channel_keeps_the_time_it_came_on_until_a_run_without_it() {
        let (_dir, mut inv) = super::super::scratch();
        inv.set_clock(Some(100));
        assert_eq!(
            inv.configure_channels(true, false).expect("channels"),
            super::ChannelsSince { webhook: Some(100), email: None }
        );
        inv.set_clock(Some(200));
        let both = inv.configure_channels(true, true).expect("channels");
        assert_eq!(both, super::ChannelsSince { webhook: Some(100), email: Some(200) });
        inv.set_clock(Some(300));
        inv.configure_channels(false, true).expect("channels");
        assert_eq!(inv.configure_channels(true, true).expect("channels").webhook, Some(300), "off, then on afresh");
        let n = |created_at| super::Notification {
            id: 1,
            kind: "revoked".into(),
            certificate_id: None,
            subject: String::new(),
            detail: serde_json::json!({}),
            created_at,
            attempts: 0,
            webhook_sent: false,
            email_sent: false,
            delivery_id: "d".into(),
        };
        assert!(both.wants(super::Channel::Email, &n(200)) && !both.wants(super::Channel::Email, &n(199)));
        assert!(!super::ChannelsSince::default().wants(super::Channel::Webhook, &n(1_000)), "not configured");
    }
}
