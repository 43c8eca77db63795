//! Orders: one request to a CA. Invariant 5: the order (with its request id and sealed key)
//! is written before the CA is called, so a crash never loses it and never re-sends it.
//!
//! States: `awaiting_approval` → `pending` → `issued` / `rejected` / `failed`. A `pending`
//! order whose submission was cut off (the process died during the CA call and its lease ran
//! out) becomes `needs_attention`: only an operator may resubmit it.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::audit::{self, NewAuditEvent};
use super::certificates::{CertificateRecord, Known, NewCertificate, Stored};
use super::{CachedSql, Inventory, InventoryError, keys};
use crate::csr::San;
use crate::key::PrivateKey;
use crate::verify::VerifiedCertificate;

/// Where an order is in its life: each state says who acts next (an approver, the CA, the
/// poller, an operator) or that it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Held until another person approves.
    AwaitingApproval,
    /// Being submitted, or waiting at the CA.
    Pending,
    /// Certificate stored.
    Issued,
    /// The CA (or an approver) said no.
    Rejected,
    /// An error or a failed verification.
    Failed,
    /// A submission was interrupted; an operator decides (resubmit or decline).
    NeedsAttention,
}

impl OrderState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::AwaitingApproval => "awaiting_approval",
            OrderState::Pending => "pending",
            OrderState::Issued => "issued",
            OrderState::Rejected => "rejected",
            OrderState::Failed => "failed",
            OrderState::NeedsAttention => "needs_attention",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "awaiting_approval" => OrderState::AwaitingApproval,
            "issued" => OrderState::Issued,
            "rejected" => OrderState::Rejected,
            "failed" => OrderState::Failed,
            "needs_attention" => OrderState::NeedsAttention,
            _ => OrderState::Pending,
        }
    }
}

impl std::str::FromStr for OrderState {
    type Err = InventoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let state = OrderState::parse(s);
        if state.as_str() == s {
            Ok(state)
        } else {
            Err(InventoryError::Invalid(format!(
                "unknown order state {s:?} (one of awaiting_approval, pending, issued, rejected, failed, needs_attention)"
            )))
        }
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Order {
    /// Inventory id.
    pub id: i64,
    /// Unique request id handed to the connector (idempotent retries).
    pub request_id: String,
    /// `issue`, `renew`, `reissue`.
    pub kind: String,
    /// State.
    pub state: OrderState,
    /// Profile.
    pub profile: Option<String>,
    /// CA account last used.
    pub account: Option<String>,
    /// Requested CN.
    pub common_name: Option<String>,
    /// Requested SANs.
    pub sans: Vec<String>,
    /// The CSR sent.
    pub csr_pem: String,
    /// Dynamic parameters of the request, sensitive ones redacted.
    pub params: serde_json::Value,
    /// The CA's handle.
    pub ca_order_id: Option<String>,
    /// Whether the CA call returned (false while in flight or after a crash in flight).
    pub submitted: bool,
    /// Resulting certificate.
    pub certificate_id: Option<i64>,
    /// Generated key (sealed), when the host made the CSR.
    pub key_id: Option<i64>,
    /// Certificate being renewed.
    pub predecessor_id: Option<i64>,
    /// Who asked.
    pub requested_by: String,
    /// Who approved or declined.
    pub decided_by: Option<String>,
    /// Last error or rejection reason (redacted).
    pub error: Option<String>,
    /// Next poll (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_poll_at: Option<i64>,
    /// Submission and poll attempts.
    pub attempts: i64,
    /// Created (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// The `Idempotency-Key` an API client sent with the request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Order {
    /// The names the order was approved for — its CN, DNS and IP SANs —, handed to every call
    /// made for it: what a connector may publish ACME challenges for.
    pub fn names(&self) -> Vec<String> {
        let sans = self.sans.iter().filter_map(|s| match San::from_stored(s)? {
            San::Dns(name) => Some(name),
            San::Ip(ip) => Some(ip.to_string()),
            San::Email(_) | San::Uri(_) => None,
        });
        self.common_name.iter().cloned().chain(sans).collect()
    }
}

/// A new order. Owned, so it can travel to the group committer.
#[derive(Debug)]
pub struct NewOrder {
    /// `issue`, `renew`, `reissue`.
    pub kind: String,
    /// Profile.
    pub profile: String,
    /// Requested CN.
    pub common_name: Option<String>,
    /// Requested SANs.
    pub sans: Vec<San>,
    /// The CSR.
    pub csr_pem: String,
    /// Redacted dynamic parameters.
    pub params: serde_json::Value,
    /// The generated key, sealed with the order so a later poll can store it. The CSR's key:
    /// an issued certificate is matched against this key when the caller holds it, so a
    /// mismatched pair fails verification rather than storing a certificate for another key.
    pub key: Option<PrivateKey>,
    /// Certificate being renewed.
    pub predecessor_id: Option<i64>,
    /// Hold for approval.
    pub awaiting_approval: bool,
    /// The client's key for this request, when it sent one ([`crate::idempotency`]).
    pub idempotency: Option<Idempotency>,
}

/// An API client's `Idempotency-Key` as kept with its order: while the order is open or
/// issued, a request with the same key from the same caller is answered with this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The key, as the client sent it.
    pub key: String,
    /// Digest of the request it came with (sensitive values redacted before hashing): the
    /// same key with another request is refused, not answered with this order.
    pub request_sha256: String,
}

const COLUMNS: &str = "id, request_id, kind, state, profile, account, common_name, sans, csr_pem, params_json, ca_order_id, \
     submitted, certificate_id, key_id, predecessor_id, requested_by, decided_by, error, next_poll_at, attempts, created_at, updated_at, idempotency_key";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Order> {
    let state: String = r.get(3)?;
    let sans: String = r.get(7)?;
    let params: String = r.get(9)?;
    Ok(Order {
        id: r.get(0)?,
        request_id: r.get(1)?,
        kind: r.get(2)?,
        state: OrderState::parse(&state),
        profile: r.get(4)?,
        account: r.get(5)?,
        common_name: r.get(6)?,
        sans: serde_json::from_str(&sans).unwrap_or_default(),
        csr_pem: r.get(8)?,
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        ca_order_id: r.get(10)?,
        submitted: r.get(11)?,
        certificate_id: r.get(12)?,
        key_id: r.get(13)?,
        predecessor_id: r.get(14)?,
        requested_by: r.get(15)?,
        decided_by: r.get(16)?,
        error: r.get(17)?,
        next_poll_at: r.get(18)?,
        attempts: r.get(19)?,
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
        idempotency_key: r.get(22)?,
    })
}

/// How long an issued order keeps its `Idempotency-Key` (Stripe keeps keys as long): a retry
/// comes within minutes; a client that sends one key for every request (per host, per job)
/// gets a new certificate the next day, not yesterday's again.
pub const KEY_HELD_AFTER_ISSUE_S: i64 = 24 * 3600;

/// The order holding caller `?1`'s key `?2` at time `?3` — an open one, or one issued less
/// than [`KEY_HELD_AFTER_ISSUE_S`] before —, through the partial index `orders_idempotency`
/// (migration 15; `idempotency_key = ?2` implies its condition). A failed or rejected order
/// issued nothing and holds no key.
fn idempotent_order_sql() -> String {
    format!(
        "SELECT {COLUMNS}, request_sha256 FROM orders WHERE requested_by = ?1 AND idempotency_key = ?2
           AND ({OPEN} OR (state = 'issued' AND updated_at > ?3 - {KEY_HELD_AFTER_ISSUE_S}))
         ORDER BY id DESC LIMIT 1"
    )
}

/// Queues the `needs_attention` notification of order `id`, now held for an operator: nothing
/// else tells one, who had to list orders to find it (operator review of stop 36). `reason` is
/// redacted already.
fn notify_held(tx: &rusqlite::Connection, now: i64, id: i64, reason: &str) -> rusqlite::Result<()> {
    let (cn, predecessor): (Option<String>, Option<i64>) =
        tx.query_row_cached("SELECT common_name, predecessor_id FROM orders WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let subject = format!("certhost: order {id} ({}) is held for an operator", cn.as_deref().unwrap_or("no CN"));
    let detail = serde_json::json!({ "order_id": id, "reason": reason });
    super::renewals::enqueue(tx, now, "needs_attention", predecessor, &subject, &detail).map_err(|e| match e {
        InventoryError::Sqlite(e) => e,
        // `enqueue` runs one statement: an SQLite error is all it returns.
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(other.to_string()))),
    })
}

/// The open (unfinished) order states as a condition, written exactly as the `WHERE` of the
/// partial indexes `orders_open_next_poll` and `orders_one_open_renewal` (schema migration 6).
/// SQLite uses a partial index only when it can prove a query's condition implies the index's,
/// which it does by comparing expressions: a query for open orders must use this text.
pub(super) const OPEN: &str = "(state = 'awaiting_approval' OR state = 'pending' OR state = 'needs_attention')";

/// The open renewal of certificate `?1`, through the partial index `orders_one_open_renewal`.
fn open_renewal_sql() -> String {
    format!("SELECT id FROM orders WHERE predecessor_id = ?1 AND {OPEN} LIMIT 1")
}

/// Pending orders never submitted whose lease (or, without one, ten minutes) ran out by `?1`.
const INTERRUPTED_SQL: &str = "SELECT id FROM orders WHERE state = 'pending' AND submitted = 0
   AND ((lease_until IS NOT NULL AND lease_until < ?1) OR (lease_until IS NULL AND updated_at < ?1 - 600))";

/// Accepted pending orders due for a poll by `?1`, at most `?2`, soonest first.
fn due_polls_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM orders WHERE state = 'pending' AND submitted = 1 AND ca_order_id IS NOT NULL
           AND next_poll_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) ORDER BY next_poll_at LIMIT ?2"
    )
}

/// The latest order for certificate `?1`, through `orders_certificate` (migration 7).
fn issuing_order_sql() -> String {
    format!("SELECT {COLUMNS} FROM orders WHERE certificate_id = ?1 ORDER BY id DESC LIMIT 1")
}

/// Orders, newest first, of one state or all; `?1` is the limit, `?2` the id to list below.
fn list_sql(state: Option<OrderState>) -> String {
    // The state goes into the text (it is one of six fixed words), so that for an open state
    // the planner can prove the partial index `orders_open_next_poll` applies; behind a
    // parameter it would walk the whole table.
    let filter = match state {
        Some(s) => format!("WHERE state = '{}' AND id < ?2", s.as_str()),
        None => "WHERE id < ?2".to_owned(),
    };
    format!("SELECT {COLUMNS} FROM orders {filter} ORDER BY id DESC LIMIT ?1")
}

/// See [`Inventory::idempotent_order`].
fn held_key(
    conn: &rusqlite::Connection,
    actor: &str,
    key: &str,
    now: i64,
) -> rusqlite::Result<Option<(Order, String)>> {
    conn.query_row_cached(&idempotent_order_sql(), params![actor, key, now], |r| Ok((from_row(r)?, r.get(23)?)))
        .optional()
}

/// The id of certificate `predecessor_id`'s open (unfinished) renewal or reissue order.
pub(super) fn open_renewal(conn: &rusqlite::Connection, predecessor_id: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row_cached(&open_renewal_sql(), [predecessor_id], |r| r.get(0)).optional()
}

/// 32 hex digits: the creation time in milliseconds (six bytes), then ten random bytes.
///
/// Why time first: `request_id` is UNIQUE, and a wholly random id put every new order on a
/// random page of that index — one more page written per issuance. Ordered by time, new ids
/// land on the index's last page, which a group of issuances shares. Eighty random bits keep
/// ids unique across hosts and unguessable, which is what a CA relies on when it uses the id
/// to recognise a retried request.
fn new_request_id(now_ms: u64) -> String {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b[6..]);
    hex::encode(b)
}

impl Inventory {
    /// Writes a new order (and seals its key) before anything is sent to a CA.
    pub fn create_order(&mut self, new: &NewOrder, actor: &str) -> Result<Order, InventoryError> {
        let now = self.now();
        let now_ms = u64::try_from(crate::clock::unix_now_ms()).unwrap_or(0);
        let request_id = new_request_id(now_ms);
        let state = if new.awaiting_approval { OrderState::AwaitingApproval } else { OrderState::Pending };
        let sans: Vec<String> = new.sans.iter().map(ToString::to_string).collect();
        // IMMEDIATE: the check for an open renewal and the insert are one atomic claim, even
        // between processes (the unique index orders_one_open_renewal is the backstop).
        let tx = super::write_tx(&mut self.conn)?;
        if let Some(pred) = new.predecessor_id {
            // The renewal read the certificate before this transaction: since then it may have
            // been deleted (the foreign key failed the insert as an internal error), renewed
            // by another renewal that finished meanwhile (two active successors), or revoked
            // (review of stop 31). Decided here, where no other renewal can start.
            let status: Option<String> = tx
                .query_row_cached("SELECT status FROM certificates WHERE id = ?1", [pred], |r| r.get(0))
                .optional()?;
            match status.as_deref() {
                None => return Err(InventoryError::NotFound(format!("certificate {pred}"))),
                Some("superseded") => {
                    return Err(InventoryError::Conflict(format!(
                        "certificate {pred} was renewed meanwhile; renew its successor instead"
                    )));
                }
                Some("revoked") if new.kind == "renew" => {
                    return Err(InventoryError::Conflict(format!(
                        "certificate {pred} was revoked meanwhile; reissue it (new key) instead"
                    )));
                }
                Some(_) => {}
            }
            if let Some(open) = open_renewal(&tx, pred)? {
                return Err(InventoryError::RenewalOpen { certificate: pred, order: open });
            }
        }
        // Two requests with one key raced past the pipeline's look-up: the first to get here
        // holds it. Decided in this IMMEDIATE transaction, where no other order can be made.
        if let Some(idem) = &new.idempotency
            && let Some((holder, _)) = held_key(&tx, actor, &idem.key, now)?
        {
            return Err(InventoryError::KeyHeld(holder.id));
        }
        let key_id = match &new.key {
            Some(k) => Some(keys::insert(&tx, &self.vault, k, now)?),
            None => None,
        };
        let (idempotency_key, request_sha256) =
            new.idempotency.as_ref().map(|i| (i.key.as_str(), i.request_sha256.as_str())).unzip();
        tx.execute_cached(
            // The id is chosen above the floor a restore raised (schema migration 20), so an
            // order never takes the id of one made after the backup it restored.
            "INSERT INTO orders (id, request_id, kind, state, profile, common_name, sans, csr_pem, params_json, key_id,
                 predecessor_id, requested_by, created_at, updated_at, idempotency_key, request_sha256)
             VALUES (max(coalesce((SELECT floor FROM order_ids WHERE id = 1), 0), (SELECT coalesce(max(id), 0) FROM orders)) + 1,
                     ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)",
            params![
                request_id,
                new.kind,
                state.as_str(),
                new.profile,
                new.common_name,
                serde_json::to_string(&sans).unwrap_or_else(|_| "[]".into()),
                new.csr_pem,
                new.params.to_string(),
                key_id,
                new.predecessor_id,
                actor,
                now,
                idempotency_key,
                request_sha256
            ],
        )?;
        let id = tx.last_insert_rowid();
        if new.awaiting_approval {
            // Approvers had to poll for orders waiting on them (operator review of stop 36).
            super::renewals::enqueue(
                &tx,
                now,
                "awaiting_approval",
                new.predecessor_id,
                &format!(
                    "certhost: order {id} ({}, profile {}) awaits approval by someone other than {actor}",
                    new.common_name.as_deref().unwrap_or("no CN"),
                    new.profile
                ),
                &serde_json::json!({ "order_id": id, "profile": new.profile, "kind": new.kind, "requested_by": actor }),
            )?;
        }
        audit::record(
            &tx,
            now,
            &event(
                actor,
                "order.create",
                id,
                "success",
                serde_json::json!({ "profile": new.profile, "kind": new.kind, "state": state.as_str(), "common_name": new.common_name, "params": new.params }),
            ),
        )?;
        tx.commit()?;
        // The row just written, without reading it back (the committer runs this for every
        // request; the read was 2% of serve's CPU). A test checks it equals `order(id)`.
        Ok(Order {
            id,
            request_id,
            kind: new.kind.clone(),
            state,
            profile: Some(new.profile.clone()),
            account: None,
            common_name: new.common_name.clone(),
            sans,
            csr_pem: new.csr_pem.clone(),
            params: new.params.clone(),
            ca_order_id: None,
            submitted: false,
            certificate_id: None,
            key_id,
            predecessor_id: new.predecessor_id,
            requested_by: actor.to_owned(),
            decided_by: None,
            error: None,
            next_poll_at: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            idempotency_key: idempotency_key.map(str::to_owned),
        })
    }

    /// The order that holds caller `actor`'s `Idempotency-Key` `key` now — an open one, or one
    /// issued in the last [`KEY_HELD_AFTER_ISSUE_S`] — with the digest of the request that
    /// made it.
    pub fn idempotent_order(&self, actor: &str, key: &str) -> Result<Option<(Order, String)>, InventoryError> {
        Ok(held_key(&self.conn, actor, key, self.now())?)
    }

    /// The order that produced certificate `certificate_id` (its CA order id, requester).
    pub fn issuing_order(&self, certificate_id: i64) -> Result<Option<Order>, InventoryError> {
        Ok(self.conn.query_row_cached(&issuing_order_sql(), [certificate_id], from_row).optional()?)
    }

    /// One order.
    pub fn order(&self, id: i64) -> Result<Option<Order>, InventoryError> {
        Ok(self
            .conn
            .query_row_cached(&format!("SELECT {COLUMNS} FROM orders WHERE id = ?1"), [id], from_row)
            .optional()?)
    }

    /// Orders, newest first, optionally of one state.
    pub fn orders(&self, state: Option<OrderState>, limit: u32) -> Result<Vec<Order>, InventoryError> {
        self.orders_before(state, None, limit)
    }

    /// [`Inventory::orders`] older than order `before_id` (all when `None`): the next page of
    /// a listing starts below the last id of the one before.
    pub fn orders_before(
        &self,
        state: Option<OrderState>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Order>, InventoryError> {
        let limit = if limit == 0 { i64::MAX } else { i64::from(limit) };
        let mut stmt = self.conn.prepare_cached(&list_sql(state))?;
        let rows = stmt.query_map(params![limit, before_id.unwrap_or(i64::MAX)], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks the start of a CA call to `account`, with a lease: if the process dies during
    /// the call, the lease runs out and the order needs an operator, never a silent resend.
    pub fn begin_submit(
        &mut self,
        id: i64,
        account: &str,
        lease_seconds: i64,
        actor: &str,
    ) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let n = tx.execute_cached(
            "UPDATE orders SET account = ?2, submitted = 0, lease_until = ?3, attempts = attempts + 1, updated_at = ?4
             WHERE id = ?1 AND state = 'pending'",
            params![id, account, now + lease_seconds, now],
        )?;
        if n == 0 {
            return Err(InventoryError::Conflict(format!("order {id} is not pending")));
        }
        audit::record(
            &tx,
            now,
            &event(actor, "order.submit", id, "success", serde_json::json!({ "account": account })),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The CA accepted the order but has not decided: poll `ca_order_id` at `next_poll_at`.
    pub fn record_pending(
        &mut self,
        id: i64,
        ca_order_id: &str,
        next_poll_at: i64,
        actor: &str,
    ) -> Result<(), InventoryError> {
        self.transition(id, actor, "order.pending", "success", serde_json::json!({ "ca_order_id": ca_order_id }), |tx, now| {
            tx.execute_cached("UPDATE orders SET state = 'pending', submitted = 1, lease_until = NULL, ca_order_id = ?2, next_poll_at = ?3, error = NULL, updated_at = ?4 WHERE id = ?1 AND state = 'pending'", params![id, ca_order_id, next_poll_at, now],)
        })
    }

    /// A poll or submission failed transiently: keep pending, try again at `next_poll_at`.
    pub fn record_retry(&mut self, id: i64, error: &str, next_poll_at: i64, actor: &str) -> Result<(), InventoryError> {
        self.transition(id, actor, "order.retry", "failure", serde_json::json!({ "error": error }), |tx, now| {
            tx.execute_cached("UPDATE orders SET error = ?2, next_poll_at = ?3, lease_until = NULL, attempts = attempts + 1, updated_at = ?4 WHERE id = ?1 AND state = 'pending'", params![id, error, next_poll_at, now],)
        })
    }

    /// Final failure (error text already redacted).
    pub fn record_failed(&mut self, id: i64, error: &str, actor: &str) -> Result<(), InventoryError> {
        self.finish(id, OrderState::Failed, error, actor)
    }

    /// The CA (or an approver) refused.
    pub fn record_rejected(&mut self, id: i64, reason: &str, actor: &str) -> Result<(), InventoryError> {
        self.finish(id, OrderState::Rejected, reason, actor)
    }

    fn finish(&mut self, id: i64, state: OrderState, message: &str, actor: &str) -> Result<(), InventoryError> {
        let action = format!("order.{}", state.as_str());
        self.close(id, actor, &action, "failure", serde_json::json!({ "reason": message }), message, |tx, now| {
            tx.execute_cached("UPDATE orders SET state = ?2, error = ?3, submitted = 1, lease_until = NULL, next_poll_at = NULL, updated_at = ?4 WHERE id = ?1 AND state = 'pending'", params![id, state.as_str(), message, now],)
        })
    }

    /// Stores a verified certificate for order `id`, links it, and closes the order — one
    /// transaction, so a crash leaves either a pending order or an issued one, never both.
    pub fn record_issued(
        &mut self,
        id: i64,
        verified: &VerifiedCertificate,
        ca_order_id: Option<&str>,
        actor: &str,
    ) -> Result<CertificateRecord, InventoryError> {
        let order = self.order(id)?.ok_or_else(|| InventoryError::NotFound(format!("order {id}")))?;
        let source = order.kind.clone();
        let new = NewCertificate {
            der: &verified.der,
            chain: &verified.chain,
            key: None,
            source: &source,
            profile: order.profile.as_deref(),
            account: order.account.as_deref(),
            predecessor_id: order.predecessor_id,
        };
        // The order's sealed key is the certificate's: verification matched the certificate's
        // public key against the order's CSR, which that key signed.
        let known = Known { info: Some(&verified.info), key_id: order.key_id };
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let stored = super::certificates::insert_in(&tx, &self.vault, now, &new, known, actor)?;
        let cert_id = match &stored {
            Stored::New(record) => record.id,
            Stored::Existing(existing) => {
                let status: String =
                    tx.query_row_cached("SELECT status FROM certificates WHERE id = ?1", params![existing], |r| {
                        r.get(0)
                    })?;
                if status != "active" {
                    return Err(InventoryError::NothingNew { certificate: *existing, status });
                }
                *existing
            }
        };
        let n = tx.execute_cached("UPDATE orders SET state = 'issued', certificate_id = ?2, ca_order_id = COALESCE(?3, ca_order_id), submitted = 1,
                 lease_until = NULL, next_poll_at = NULL, error = NULL, updated_at = ?4 WHERE id = ?1 AND state = 'pending'", params![id, cert_id, ca_order_id, now],)?;
        if n == 0 {
            return Err(changed_meanwhile(id));
        }
        // A renewal's predecessor steps aside in the same transaction: never two active
        // generations, never a superseded one without its successor.
        if let Some(pred) = order.predecessor_id.filter(|p| *p != cert_id) {
            let stepped_aside: Option<(i64, Option<String>, Option<String>)> = tx
                .query_row_cached(
                    "UPDATE certificates SET status = 'superseded', renew_after = NULL, renewal_lease_until = NULL
                     WHERE id = ?1 AND status IN ('active', 'expired') RETURNING renewal_attempts, common_name, profile",
                    params![pred],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((failed, cn, profile)) = stepped_aside {
                // Whoever was told its automatic renewal failed is told it is over (operator
                // review of stop 41: a run of `renewal_failed` mails ended in silence); so is
                // whoever was told it expired, when it renews at its first attempt (day-2
                // walkthrough of stop 46: that `expired` was never followed by anything).
                let told_expired = failed == 0
                    && tx.query_row_cached(
                        "SELECT EXISTS (SELECT 1 FROM notifications WHERE certificate_id = ?1 AND kind = 'expired')",
                        [pred],
                        |r| r.get::<_, bool>(0),
                    )?;
                if failed > 0 || told_expired {
                    let cn = cn.as_deref().unwrap_or("no CN");
                    let subject = if failed > 0 {
                        format!("certhost: certificate {pred} ({cn}) renewed after {failed} failed attempt(s)")
                    } else {
                        format!("certhost: certificate {pred} ({cn}) renewed after it expired")
                    };
                    let detail =
                        serde_json::json!({ "successor_id": cert_id, "order_id": id, "failed_attempts": failed });
                    // A CA back from an outage renews them all at once: bounded per profile.
                    super::digest::enqueue_bounded(
                        &tx,
                        now,
                        "renewal_recovered",
                        pred,
                        profile.as_deref(),
                        &subject,
                        &detail,
                    )?;
                }
                audit::record(
                    &tx,
                    now,
                    &NewAuditEvent {
                        actor,
                        action: "certificate.superseded",
                        object_type: "certificate",
                        object_id: Some(pred.to_string()),
                        outcome: "success",
                        detail: serde_json::json!({ "successor_id": cert_id, "order_id": id, "kind": order.kind }),
                    },
                )?;
            }
            // The renewal history (`certhost renewals`) is read from these: recorded here, for
            // the scheduler's renewals the CA issued at once and for those the poller finished
            // later alike (review of stop 31: those were missing).
            if order.kind == "renew" && order.requested_by == super::AUTO_RENEWAL_ACTOR {
                audit::record(
                    &tx,
                    now,
                    &NewAuditEvent {
                        actor,
                        action: "certificate.auto_renew",
                        object_type: "certificate",
                        object_id: Some(pred.to_string()),
                        outcome: "success",
                        detail: serde_json::json!({ "successor_id": cert_id, "order_id": id }),
                    },
                )?;
            }
        }
        audit::record(
            &tx,
            now,
            &event(
                actor,
                "order.issued",
                id,
                "success",
                serde_json::json!({ "certificate_id": cert_id, "sha256": verified.info.sha256 }),
            ),
        )?;
        // A certificate stored before (the CA answered with one it issued already) is read
        // as it stands now, inside the change.
        let record = match stored {
            Stored::New(record) => *record,
            Stored::Existing(cert) => super::certificates::by_id(&tx, cert)?
                .ok_or_else(|| InventoryError::NotFound(format!("certificate {cert}")))?,
        };
        tx.commit()?;
        Ok(record)
    }

    /// Approves a held order; the approver must not be the requester.
    pub fn approve_order(&mut self, id: i64, actor: &str) -> Result<(), InventoryError> {
        let order = self.order(id)?.ok_or_else(|| InventoryError::NotFound(format!("order {id}")))?;
        if order.state != OrderState::AwaitingApproval {
            return Err(InventoryError::Conflict(format!(
                "order {id} is {}, not awaiting approval",
                order.state.as_str()
            )));
        }
        if order.requested_by == actor {
            return Err(InventoryError::NotAllowed(format!(
                "order {id} must be approved by someone other than its requester ({actor})"
            )));
        }
        self.transition(id, actor, "order.approve", "success", serde_json::json!({}), |tx, now| {
            tx.execute_cached(
                "UPDATE orders SET state = 'pending', decided_by = ?2, updated_at = ?3
                 WHERE id = ?1 AND state = 'awaiting_approval'",
                params![id, actor, now],
            )
        })
    }

    /// Declines a held or interrupted order — or abandons one pending at the CA, which the
    /// host then stops polling (a CA that never answers kept it open for ever, and with it
    /// its certificate's renewals). Not one whose CA call or poll is in flight.
    pub fn decline_order(&mut self, id: i64, reason: &str, actor: &str) -> Result<(), InventoryError> {
        super::lifecycle::check_note("reason", reason)?;
        let order = self.order(id)?.ok_or_else(|| InventoryError::NotFound(format!("order {id}")))?;
        let at_ca = order.state == OrderState::Pending && order.submitted;
        if !(matches!(order.state, OrderState::AwaitingApproval | OrderState::NeedsAttention) || at_ca) {
            return Err(InventoryError::Conflict(format!(
                "order {id} is {}{}; only held, interrupted or pending-at-the-CA orders can be declined",
                order.state.as_str(),
                if order.state == OrderState::Pending { " and its CA call is in flight" } else { "" }
            )));
        }
        let message = if at_ca {
            format!("abandoned by {actor}: {reason} (the CA may still issue it: cancel it there)")
        } else {
            format!("declined by {actor}: {reason}")
        };
        let detail = serde_json::json!({ "reason": reason });
        self.close(id, actor, "order.decline", "success", detail, &message, |tx, now| {
            tx.execute_cached(
                "UPDATE orders SET state = 'rejected', decided_by = ?2, error = ?3, next_poll_at = NULL, updated_at = ?4
                 WHERE id = ?1 AND (state IN ('awaiting_approval', 'needs_attention')
                    OR (state = 'pending' AND submitted = 1 AND (lease_until IS NULL OR lease_until < ?4)))",
                params![id, actor, message, now],
            )
        })
    }

    /// An operator's explicit decision to resend an interrupted order (same request id, so an
    /// idempotent connector will not issue twice).
    pub fn resubmit_order(&mut self, id: i64, actor: &str) -> Result<(), InventoryError> {
        let order = self.order(id)?.ok_or_else(|| InventoryError::NotFound(format!("order {id}")))?;
        if order.state != OrderState::NeedsAttention {
            return Err(InventoryError::Conflict(format!(
                "order {id} is {}; only interrupted orders can be resubmitted",
                order.state.as_str()
            )));
        }
        self.transition(id, actor, "order.resubmit", "success", serde_json::json!({}), |tx, now| {
            tx.execute_cached("UPDATE orders SET state = 'pending', submitted = 0, lease_until = NULL, decided_by = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'needs_attention'", params![id, actor, now])
        })
    }

    /// Holds order `id`, whose CA call ended without an answer the host could act on (it timed
    /// out, or the CA issued and storing failed — on the first call or a poll), for an
    /// operator: `needs_attention` with `message`. Like an interrupted order, it is not failed —
    /// the CA may have acted on it, and a new request would ask it twice — and only an
    /// operator resubmits or declines it. It is marked submitted, which is what tells it from
    /// an interrupted one: the scheduler resubmits its own interrupted renewals, never a
    /// held one.
    pub fn hold_for_operator(&mut self, id: i64, message: &str, actor: &str) -> Result<(), InventoryError> {
        let detail = serde_json::json!({ "reason": message });
        self.transition(id, actor, "order.needs_attention", "failure", detail, |tx, now| {
            let n = tx.execute_cached(
                "UPDATE orders SET state = 'needs_attention', submitted = 1, lease_until = NULL, next_poll_at = NULL,
                     error = ?2, updated_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![id, message, now],
            )?;
            if n > 0 {
                notify_held(tx, now, id, message)?;
            }
            Ok(n)
        })
    }

    /// Pending orders whose submission was cut off (lease expired without an answer) become
    /// `needs_attention`. Returns their ids.
    pub fn mark_interrupted(&mut self, actor: &str) -> Result<Vec<i64>, InventoryError> {
        let now = self.now();
        let ids: Vec<i64> = {
            // Lease run out; or never submitted at all for ten minutes (the process stopped
            // between writing or approving the order and calling the CA).
            let mut stmt = self.conn.prepare_cached(INTERRUPTED_SQL)?;
            stmt.query_map([now], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut marked = Vec::with_capacity(ids.len());
        for id in ids {
            // The scheduler's own renewals are sent again at once by the scheduler (with their
            // request id); said as "not re-sent without an operator", the log and the audit
            // contradicted the resubmission a line later (operator review of stop 39).
            let automatic: bool = self
                .conn
                .query_row_cached(
                    "SELECT requested_by = ?2 FROM orders WHERE id = ?1",
                    params![id, super::AUTO_RENEWAL_ACTOR],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            let reason = if automatic {
                "the CA call was interrupted; an automatic renewal, sent again by the scheduler with its request id"
            } else {
                "the CA call was interrupted; not re-sent without an operator"
            };
            let marking = self.transition(id, actor, "order.interrupted", "failure", serde_json::json!({ "reason": reason }), |tx, now| {
                // Still as found: an order another process resubmitted or answered since is
                // left alone (review of stop 31).
                let error = if automatic {
                    "the CA call was interrupted (the process stopped); an automatic renewal: the scheduler sends it again with its request id"
                } else {
                    "the CA call was interrupted (the process stopped); the CA may have received it: check there, then resubmit or decline it"
                };
                let n = tx.execute_cached("UPDATE orders SET state = 'needs_attention', lease_until = NULL, error = ?3, updated_at = ?2
                     WHERE id = ?1 AND state = 'pending' AND submitted = 0 AND (lease_until IS NULL OR lease_until < ?2)", params![id, now, error],)?;
                // An operator's, not the scheduler's, which resubmits its own at once (diff
                // review of stop 37: the README promised a notification for every held order).
                let operators: bool = tx.query_row_cached(
                    "SELECT requested_by != ?2 FROM orders WHERE id = ?1",
                    params![id, super::AUTO_RENEWAL_ACTOR],
                    |r| r.get(0),
                )?;
                if n > 0 && operators {
                    notify_held(tx, now, id, "the CA call was interrupted (the process stopped)")?;
                }
                Ok(n)
            });
            match marking {
                Ok(()) => {
                    // Logged: nothing else tells anyone until they list orders.
                    if automatic {
                        tracing::warn!(
                            order = id,
                            "automatic renewal interrupted (the process stopped); the scheduler sends it again with its request id"
                        );
                    } else {
                        tracing::warn!(
                            order = id,
                            "order held for an operator: its CA call was interrupted (the process stopped); the CA may have received it"
                        );
                    }
                    marked.push(id);
                }
                Err(InventoryError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    /// Extends the lease of order `id`'s submission in flight to `lease_seconds` from now,
    /// for a second call of the same submission (a renewal retried as a plain request).
    pub fn extend_submit_lease(&mut self, id: i64, lease_seconds: i64) -> Result<(), InventoryError> {
        let now = self.now();
        let n = self.conn.execute_cached(
            "UPDATE orders SET lease_until = ?2 WHERE id = ?1 AND state = 'pending' AND submitted = 0",
            params![id, now + lease_seconds],
        )?;
        if n == 0 {
            return Err(changed_meanwhile(id));
        }
        Ok(())
    }

    /// Claims accepted pending order `id` for one poll of at most `lease_seconds`: `false`
    /// when another process is polling it now. Its answer's transition lets go of the claim;
    /// a poller that died leaves it to run out (a poll is safe to repeat, unlike a
    /// submission: `mark_interrupted` looks at unsubmitted orders only).
    pub fn claim_poll(&mut self, id: i64, lease_seconds: i64) -> Result<bool, InventoryError> {
        let now = self.now();
        Ok(self.conn.execute_cached(
            "UPDATE orders SET lease_until = ?2 WHERE id = ?1 AND state = 'pending' AND submitted = 1
               AND (lease_until IS NULL OR lease_until < ?3)",
            params![id, now + lease_seconds, now],
        )? == 1)
    }

    /// Pending orders the CA has accepted, due for a poll, and not being polled.
    pub fn due_polls(&self, limit: u32) -> Result<Vec<Order>, InventoryError> {
        let now = self.now();
        let mut stmt = self.conn.prepare_cached(&due_polls_sql())?;
        let rows = stmt.query_map(params![now, limit], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A [`Self::transition`] that closes the order as `rejected` or `failed` with `message`;
    /// an automatic renewal's failure is recorded on its certificate in the same transaction
    /// (`renewals::closed_renewal_failed_in`).
    #[allow(clippy::too_many_arguments)]
    fn close(
        &mut self,
        id: i64,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
        message: &str,
        update: impl FnOnce(&rusqlite::Connection, i64) -> rusqlite::Result<usize>,
    ) -> Result<(), InventoryError> {
        self.change_state(id, actor, action, outcome, detail, Some(message), update)
    }

    fn transition(
        &mut self,
        id: i64,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
        update: impl FnOnce(&rusqlite::Connection, i64) -> rusqlite::Result<usize>,
    ) -> Result<(), InventoryError> {
        self.change_state(id, actor, action, outcome, detail, None, update)
    }

    /// One state change of order `id` in its own transaction: the update, its audit event
    /// and, when it closes the order with a message, what that means for a renewal.
    #[allow(clippy::too_many_arguments)]
    fn change_state(
        &mut self,
        id: i64,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
        closing: Option<&str>,
        update: impl FnOnce(&rusqlite::Connection, i64) -> rusqlite::Result<usize>,
    ) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        if update(&tx, now)? == 0 {
            return Err(changed_meanwhile(id));
        }
        audit::record(&tx, now, &event(actor, action, id, outcome, detail))?;
        if let Some(message) = closing {
            super::renewals::closed_renewal_failed_in(&tx, now, id, message, actor)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// An order's transition found it in another state than the one it was read in: two
/// processes (two `serve`s, the poller and `orders poll`) acted on it at once, and the first
/// decided (review of stop 31: one pending order became two certificates).
fn changed_meanwhile(id: i64) -> InventoryError {
    InventoryError::Conflict(format!("order {id} changed meanwhile: another process decided it first"))
}

fn event<'a>(
    actor: &'a str,
    action: &'a str,
    id: i64,
    outcome: &'a str,
    detail: serde_json::Value,
) -> NewAuditEvent<'a> {
    NewAuditEvent { actor, action, object_type: "order", object_id: Some(id.to_string()), outcome, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyType, PrivateKey};

    /// Every lookup of open orders goes through a partial index of open orders: with the
    /// `OPEN` text and the indexes' `WHERE` out of step, SQLite would silently walk every
    /// order ever written instead.
    #[test]
    fn open_order_lookups_use_the_partial_indexes_of_open_orders() {
        let (_dir, inv) = super::super::scratch();
        let in_use = format!("SELECT COUNT(*) FROM orders WHERE account = ?1 AND {OPEN}");
        for (sql, index) in [
            (open_renewal_sql(), "orders_one_open_renewal"),
            (INTERRUPTED_SQL.to_owned(), "orders_open_next_poll"),
            (due_polls_sql(), "orders_open_next_poll"),
            (list_sql(Some(OrderState::NeedsAttention)), "orders_open_next_poll"),
            (in_use, "orders_open_next_poll"),
        ] {
            let plan = super::super::query_plan(&inv.conn, &sql);
            assert!(plan.contains(&format!("INDEX {index} ")), "{sql}\n{plan}");
        }
        let plan = super::super::query_plan(&inv.conn, &issuing_order_sql());
        assert!(plan.contains("INDEX orders_certificate "), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        // A finished state is most of the table: walked newest first from the cursor, not sorted.
        let plan = super::super::query_plan(&inv.conn, &list_sql(Some(OrderState::Issued)));
        assert_eq!(plan, "SEARCH orders USING INTEGER PRIMARY KEY (rowid<?)");
    }

    #[test]
    fn request_ids_are_unique_and_start_with_their_creation_time() {
        let ms: u64 = 0x0123_4567_89ab;
        let (a, b) = (new_request_id(ms), new_request_id(ms));
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("0123456789ab"), "{a}");
        assert!(new_request_id(ms + 1) > a.clone().max(b));
    }

    #[test]
    fn create_order_returns_exactly_the_row_it_wrote() {
        let (_dir, mut inv) = super::super::scratch();
        for (key, approval) in [(Some(PrivateKey::generate(KeyType::EcP256).expect("key")), false), (None, true)] {
            let new = NewOrder {
                kind: "issue".into(),
                profile: "web".into(),
                common_name: Some("a.example.com".into()),
                sans: vec!["DNS:a.example.com".parse().expect("san"), "IP:192.0.2.1".parse().expect("san")],
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n...\n".into(),
                params: serde_json::json!({ "team": "blue", "token": "***" }),
                key,
                predecessor_id: None,
                awaiting_approval: approval,
                idempotency: None,
            };
            let created = inv.create_order(&new, "token:bot").expect("create");
            assert_eq!(Some(&created), inv.order(created.id).expect("read").as_ref());
        }
    }

    /// Regression (review of stop 31): a renewal racing a DELETE of its certificate failed the
    /// orders' foreign key and answered 500.
    #[test]
    fn a_renewal_of_a_certificate_deleted_meanwhile_is_not_found() {
        let (_dir, mut inv) = super::super::scratch();
        let new = bare_order("renew", Some(41));
        let err = inv.create_order(&new, "token:bot").unwrap_err();
        assert!(matches!(&err, InventoryError::NotFound(what) if what == "certificate 41"), "{err}");
        // Renewed, or revoked, since the renewal read it: two renewals of one certificate
        // racing each other made two active successors.
        for (id, status) in [(41, "superseded"), (42, "revoked")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at)
                     VALUES (?1, 'leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, ?2, 'issue', 0)",
                    rusqlite::params![id, status],
                )
                .expect("certificate");
            let racing = bare_order("renew", Some(id));
            let err = inv.create_order(&racing, "token:bot").unwrap_err().to_string();
            assert!(err.contains(&format!("certificate {id} was")), "{err}");
        }
        let reissue = bare_order("reissue", Some(42));
        inv.create_order(&reissue, "token:bot").expect("a revoked certificate may be reissued");
    }

    /// Regression (review of stop 31): two pollers (two `serve`s on one data directory, or the
    /// poller and `orders poll`) both applied the CA's answer to one pending order — two
    /// certificates — or reopened an issued order as pending.
    #[test]
    fn one_process_polls_an_order_at_a_time_and_a_decided_order_stays_decided() {
        let (_dir, mut inv) = super::super::scratch();
        let id = inv.create_order(&bare_order("issue", None), "t").expect("create").id;
        inv.record_pending(id, "ca-1", 0, "t").expect("pending");
        assert_eq!(inv.due_polls(10).expect("due").len(), 1);
        assert!(inv.claim_poll(id, 60).expect("claim"));
        assert!(!inv.claim_poll(id, 60).expect("claim"), "another poller holds it");
        assert!(inv.due_polls(10).expect("due").is_empty());
        inv.record_rejected(id, "no", "t").expect("rejected");
        for late in [inv.record_pending(id, "ca-1", 0, "t"), inv.record_failed(id, "late", "t")] {
            assert!(late.unwrap_err().to_string().contains("changed meanwhile"));
        }
        assert_eq!(inv.order(id).expect("read").expect("order").state, OrderState::Rejected);
    }

    /// An `Idempotency-Key` is held per caller while its order is open or issued: a second
    /// order with it is refused (two racing requests), a failed or rejected one frees it.
    #[test]
    fn an_idempotency_key_is_held_by_an_open_or_issued_order_of_its_caller() {
        let (_dir, mut inv) = super::super::scratch();
        let keyed = |key: &str, digest: &str| NewOrder {
            idempotency: Some(Idempotency { key: key.into(), request_sha256: digest.into() }),
            ..bare_order("issue", None)
        };
        let first = inv.create_order(&keyed("k1", "d1"), "token:bot").expect("create");
        assert_eq!(first.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(Some(&first), inv.order(first.id).expect("read").as_ref());
        let (held, digest) = inv.idempotent_order("token:bot", "k1").expect("look up").expect("held");
        assert_eq!((held.id, digest.as_str()), (first.id, "d1"));
        assert!(inv.idempotent_order("token:other", "k1").expect("look up").is_none(), "scoped to the caller");
        let err = inv.create_order(&keyed("k1", "d1"), "token:bot").unwrap_err();
        assert!(matches!(err, InventoryError::KeyHeld(id) if id == first.id), "{err}");
        inv.create_order(&keyed("k1", "d1"), "token:other").expect("another caller's key is its own");
        inv.record_failed(first.id, "the CA is down", "token:bot").expect("fail");
        assert!(inv.idempotent_order("token:bot", "k1").expect("look up").is_none(), "a failed order frees it");
        let again = inv.create_order(&keyed("k1", "d1"), "token:bot").expect("the request runs again");
        inv.record_rejected(again.id, "no", "token:bot").expect("reject");
        let third = inv.create_order(&keyed("k1", "d1"), "token:bot").expect("a rejected order frees it too");
        assert_eq!(inv.idempotent_order("token:bot", "k1").expect("look up").expect("held").0.id, third.id);
        // An issued order keeps its key for a day, then frees it.
        inv.conn
            .execute("UPDATE orders SET state = 'issued', updated_at = 1000 WHERE id = ?1", [third.id])
            .expect("issued");
        inv.set_clock(Some(1000 + KEY_HELD_AFTER_ISSUE_S - 1));
        assert!(inv.idempotent_order("token:bot", "k1").expect("look up").is_some(), "held for a day");
        assert!(inv.create_order(&keyed("k1", "d1"), "token:bot").is_err());
        inv.set_clock(Some(1000 + KEY_HELD_AFTER_ISSUE_S));
        assert!(inv.idempotent_order("token:bot", "k1").expect("look up").is_none(), "then freed");
        inv.create_order(&keyed("k1", "d1"), "token:bot").expect("a new request with the old key");
        let plan = super::super::query_plan(&inv.conn, &idempotent_order_sql());
        assert!(plan.contains("USING INDEX orders_idempotency"), "{plan}");
    }

    /// An order of `kind` for `a.example.com` with no CSR or key, renewing `predecessor`.
    fn bare_order(kind: &str, predecessor: Option<i64>) -> NewOrder {
        NewOrder {
            kind: kind.into(),
            profile: "web".into(),
            common_name: Some("a.example.com".into()),
            sans: vec![],
            csr_pem: String::new(),
            params: serde_json::json!({}),
            key: None,
            predecessor_id: predecessor,
            awaiting_approval: false,
            idempotency: None,
        }
    }

    /// The 201 body of an issuance is the record `record_issued` hands back: it must be what a
    /// later read of the row gives, field by field — also when the CA answers again with a
    /// certificate stored before.
    #[test]
    fn record_issued_returns_exactly_the_row_it_wrote() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let (_dir, mut inv) = super::super::scratch();
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Record CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca_der = ca.self_signed(&ca_key).expect("self-signed").der().to_vec();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf =
            CertificateParams::new(vec!["a.example.com".to_owned(), "192.0.2.1".to_owned()]).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, "a.example.com");
        let der = leaf.signed_by(&KeyPair::generate().expect("key"), &issuer).expect("signed").der().to_vec();
        let verified = VerifiedCertificate {
            info: crate::cert::CertificateInfo::from_der(&der).expect("parses"),
            der,
            chain: vec![ca_der],
            ignored_chain_entries: vec![],
        };
        let order = |inv: &mut Inventory| {
            let new = NewOrder {
                kind: "issue".into(),
                profile: "web".into(),
                common_name: Some("a.example.com".into()),
                sans: vec!["DNS:a.example.com".parse().expect("san")],
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n...\n".into(),
                params: serde_json::json!({}),
                key: Some(PrivateKey::generate(KeyType::EcP256).expect("key")),
                predecessor_id: None,
                awaiting_approval: false,
                idempotency: None,
            };
            let id = inv.create_order(&new, "token:bot").expect("create").id;
            inv.begin_submit(id, "local", 60, "token:bot").expect("submit");
            id
        };
        let first = order(&mut inv);
        let record = inv.record_issued(first, &verified, Some("ca-1"), "token:bot").expect("stored");
        assert_eq!(Some(&record), inv.find(&record.id.to_string()).expect("read").as_ref());
        assert_eq!(record.account.as_deref(), Some("local"), "the account of the attempt, not of the order as created");
        let second = order(&mut inv);
        let again = inv.record_issued(second, &verified, None, "token:bot").expect("stored before");
        assert_eq!(again, record);
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    fn pending(inv: &mut Inventory) -> Order {
        let new = NewOrder {
            kind: "renew".into(),
            profile: "web".into(),
            common_name: Some("a.example.com".into()),
            sans: vec![],
            csr_pem: "csr".into(),
            params: serde_json::json!({}),
            key: None,
            predecessor_id: None,
            awaiting_approval: false,
            idempotency: None,
        };
        inv.create_order(&new, crate::inventory::AUTO_RENEWAL_ACTOR).expect("order")
    }

    /// Review of stop 33: an order held for an operator is marked submitted, from either
    /// pending state — in flight (`submitted = 0`) or at the CA being polled — so the
    /// scheduler, which resubmits interrupted renewals (`submitted = 0`), never asks again for
    /// one the CA may have issued; and the poller, which polls `submitted = 1` pending orders,
    /// leaves it alone.
    #[test]
    fn a_held_order_is_marked_submitted_whether_it_was_in_flight_or_at_the_ca() {
        let (_dir, mut inv) = super::super::scratch();
        let in_flight = pending(&mut inv);
        inv.begin_submit(in_flight.id, "lab", 60, "test").expect("submit");
        inv.hold_for_operator(in_flight.id, "timed out", "test").expect("held");
        let at_ca = pending(&mut inv);
        inv.begin_submit(at_ca.id, "lab", 60, "test").expect("submit");
        inv.record_pending(at_ca.id, "ca-1", 0, "test").expect("at the CA");
        inv.hold_for_operator(at_ca.id, "issued, not stored", "test").expect("held while polled");
        for id in [in_flight.id, at_ca.id] {
            let order = inv.order(id).expect("read").expect("order");
            assert_eq!(order.state, OrderState::NeedsAttention);
            assert!(order.submitted, "order {id}");
            assert_eq!(order.next_poll_at, None);
        }
        assert!(inv.due_polls(10).expect("due").is_empty(), "the poller leaves a held order alone");
        assert!(matches!(inv.hold_for_operator(at_ca.id, "again", "test"), Err(InventoryError::Conflict(_))));
    }
}
