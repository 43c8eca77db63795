//! Certificate lifecycle changes that are not issuance: revocation, deletion, expiry, key
//! download. Each is one transaction with its audit event (invariant 6).

use rusqlite::{OptionalExtension, params};

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, Inventory, InventoryError};
use crate::key::PrivateKey;

// Deleting a certificate, and its key when nothing else uses it. Each statement, and each
// foreign-key check SQLite adds to it, finds its rows through an index (schema migration 7):
// walking the tables here held the write lock for seconds in a large inventory.
const DELETE_CERTIFICATE_SQL: &str = "DELETE FROM certificates WHERE id = ?1";
const KEY_USERS_SQL: &str = "SELECT (SELECT COUNT(*) FROM certificates WHERE key_id = ?1)
      + (SELECT COUNT(*) FROM orders WHERE key_id = ?1 AND state NOT IN ('issued','rejected','failed'))";
const FORGET_KEY_SQL: &str = "UPDATE orders SET key_id = NULL WHERE key_id = ?1";
const DELETE_KEY_SQL: &str = "DELETE FROM keys WHERE id = ?1";

/// Longest note a person gives with a change (a revocation's comment, a decline's reason),
/// in bytes: it is stored in the audit log, shown in every listing and sent with webhooks,
/// and a 900 KB comment was (red-team walkthrough of stop 48).
pub const MAX_NOTE: usize = 1024;

/// Refuses a note longer than [`MAX_NOTE`], before anything is changed or sent to a CA.
pub fn check_note(what: &str, note: &str) -> Result<(), InventoryError> {
    if note.len() > MAX_NOTE {
        return Err(InventoryError::Invalid(format!(
            "the {what} is {} bytes long; at most {MAX_NOTE} are taken (nothing was changed)",
            note.len()
        )));
    }
    Ok(())
}

fn cert_event<'a>(actor: &'a str, action: &'a str, id: i64, detail: serde_json::Value) -> NewAuditEvent<'a> {
    NewAuditEvent {
        actor,
        action,
        object_type: "certificate",
        object_id: Some(id.to_string()),
        outcome: "success",
        detail,
    }
}

/// The RFC 5280 reason, as `revoke --reason` and the API name it.
const KEY_COMPROMISE: &str = "keyCompromise";

/// The key digests of certificate `id`, read from its PEM: (its identity, as
/// `certificates.public_sha256` and `compromised_keys` name it; its whole-key digest, as `keys`
/// does). `None` for a certificate that no longer parses (nothing can match it).
fn certificate_key_digests(tx: &rusqlite::Connection, id: i64) -> Result<Option<(String, String)>, InventoryError> {
    let pem: String = tx.query_row_cached("SELECT pem FROM certificates WHERE id = ?1", [id], |r| r.get(0))?;
    Ok(super::keys::certificate_pem_digests(&pem))
}

/// Fills in `public_sha256` of the active certificates stored before schema version 16 that
/// have no stored key to match by (uploaded CSRs, imports without a key), so a compromise finds
/// them. Once per inventory in practice: the first keyCompromise revocation does it.
fn backfill_public_sha256(tx: &rusqlite::Connection) -> Result<(), InventoryError> {
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached(
            // `+status`: one pass over the table, not a row lookup for each of the index's
            // active certificates (0.4 s against 3 s at 1 M).
            "SELECT id, pem FROM certificates WHERE +status = 'active' AND key_id IS NULL AND public_sha256 IS NULL",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, pem) in rows {
        let Some((identity, _)) = super::keys::certificate_pem_digests(&pem) else { continue };
        tx.execute_cached("UPDATE certificates SET public_sha256 = ?2 WHERE id = ?1", params![id, identity])?;
    }
    Ok(())
}

/// [`Inventory::key_compromised`]'s query: `?1` the key, `?2` the reason keyCompromise.
const KEY_COMPROMISED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM certificates c CROSS JOIN audit_events a
   ON a.object_type = 'certificate' AND a.object_id = CAST(c.id AS TEXT)
 WHERE c.key_id = ?1 AND a.action = 'certificate.revoke' AND a.outcome = 'success'
   AND json_extract(a.detail, '$.reason') = ?2)
 OR EXISTS (SELECT 1 FROM certificates c CROSS JOIN compromised_keys ck ON ck.public_sha256 = c.public_sha256
   WHERE c.key_id = ?1)";

/// The other active, automatically renewed certificates on certificate `?1`'s key (`?2` its
/// public key's digest, `?3` its whole key's), made due when it is revoked for keyCompromise.
const SHARING_KEY_SQL: &str = "SELECT id FROM certificates
  WHERE key_id = (SELECT key_id FROM certificates WHERE id = ?1)
    AND id != ?1 AND status = 'active' AND renew_after IS NOT NULL
 UNION
 SELECT id FROM certificates WHERE key_id = (SELECT id FROM keys WHERE public_sha256 = ?3)
    AND id != ?1 AND status = 'active' AND renew_after IS NOT NULL
 UNION
 SELECT id FROM certificates WHERE public_sha256 = ?2
    AND id != ?1 AND +status = 'active' AND renew_after IS NOT NULL";

/// The certificates `/metrics` counts as waiting for a deployment retry.
const DEPLOY_RETRIES_SQL: &str = "SELECT COUNT(DISTINCT r.certificate_id) FROM deploy_retries r
  CROSS JOIN certificates c ON c.id = r.certificate_id AND c.status = 'active' WHERE r.failures > 0";

/// Seconds before a failed deployment is tried again the first time; each further failure
/// doubles it, up to [`DEPLOY_RETRY_MAX`].
const DEPLOY_RETRY_FIRST: i64 = 300;
/// The longest wait between two tries of a failing deployment (6 hours).
const DEPLOY_RETRY_MAX: i64 = 6 * 3600;
/// A run of failed deployments of one target is notified at its first failure and again at
/// every this many.
const DEPLOY_FAILED_REMINDER: i64 = 10;

/// The inventory's part of `/metrics` ([`Inventory::gauges`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryGauges {
    /// Certificates by days until expiry; `expired`: active ones past notAfter, and expired
    /// ones of the last 30 days or whose renewal is still retried.
    pub expiring: Vec<(&'static str, u64)>,
    /// Open orders by state: waiting for an approver, for an operator, at the CA.
    pub orders_open: Vec<(&'static str, u64)>,
    /// Certificates with a failed deployment waiting to be tried again.
    pub deploy_retries: u64,
    /// Certificates whose automatic renewal failed its last attempt and is retried (expired
    /// ones included): the number to alert on before `expiring` shows it.
    pub renewals_failing: u64,
    /// Certificates past their renewal time (waiting for or in an attempt, failing ones
    /// whose retry has come, ones waiting at the CA): the scheduler's backlog.
    pub renewals_due: u64,
    /// Notifications not yet delivered to every channel, and of those the ones tried and
    /// refused at least once (a receiver down or refusing): during an outage of the receiver
    /// this was only a WARN line per retry (day-two walkthrough of stop 49).
    pub notifications_undelivered: u64,
    /// See `notifications_undelivered`.
    pub notifications_failing: u64,
}

/// A certificate's latest revocation ([`Inventory::revocation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The RFC 5280 reason.
    pub reason: String,
    /// The comment given with it.
    pub comment: String,
    /// Who revoked it.
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
    /// False when it was only marked revoked in the inventory (an event from before the field
    /// was a CA's revocation).
    pub at_ca: bool,
}

/// Certificate `id`'s latest revocation, from its latest successful `certificate.revoke`
/// event: what [`Inventory::revocation`] shows and what `record_revoked` checks in its
/// transaction.
fn latest_revocation(conn: &rusqlite::Connection, id: i64) -> Result<Option<Revocation>, InventoryError> {
    Ok(conn
        .query_row_cached(
            "SELECT COALESCE(json_extract(detail, '$.reason'), ''), COALESCE(json_extract(detail, '$.comment'), ''),
                    actor, at, COALESCE(json_extract(detail, '$.at_ca'), 1)
             FROM audit_events WHERE object_type = 'certificate' AND object_id = ?1
               AND action = 'certificate.revoke' AND outcome = 'success'
             ORDER BY id DESC LIMIT 1",
            [id.to_string()],
            |r| {
                Ok(Revocation { reason: r.get(0)?, comment: r.get(1)?, by: r.get(2)?, at: r.get(3)?, at_ca: r.get(4)? })
            },
        )
        .optional()?)
}

/// The form a private key leaves the inventory in, as its download's audit event records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PKCS#8 PEM, alone.
    Pem,
    /// Inside a password-protected PKCS#12 file with its certificate and chain.
    Pkcs12,
}

impl Inventory {
    /// Records that the CA revoked certificate `id` (called after the connector said so), or —
    /// `at_ca` false — that an operator marked it revoked without asking its CA (one whose
    /// connector cannot revoke, an imported one, one revoked at the CA by other means): the
    /// inventory stops renewing and deploying it, and a keyCompromise blocks its key either
    /// way. The audit event and the notification say which it was.
    pub fn record_revoked(
        &mut self,
        id: i64,
        reason: &str,
        comment: &str,
        actor: &str,
        at_ca: bool,
    ) -> Result<(), InventoryError> {
        check_note("comment", comment)?;
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        // Its CN names it in the notification: "certificate 23 was revoked" alone sent the
        // reader to look it up (operator review of stop 36).
        // Read in the transaction that changes it: another process may have revoked it since
        // this one looked (one revocation per process at a time is all `Revoking` holds). A
        // mark in the inventory alone gives way to the CA's revocation, never the reverse.
        let status: String = tx
            .query_row_cached("SELECT status FROM certificates WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| InventoryError::NotFound(format!("certificate {id}")))?;
        if status == "revoked" && (!at_ca || latest_revocation(&tx, id)?.is_none_or(|r| r.at_ca)) {
            return Err(InventoryError::Conflict(format!("certificate {id} is already revoked")));
        }
        let common_name: Option<String> = tx.query_row_cached(
            "UPDATE certificates SET status = 'revoked', renew_after = NULL, renewal_lease_until = NULL WHERE id = ?1
             RETURNING common_name",
            [id],
            |r| r.get(0),
        )?;
        audit::record(
            &tx,
            now,
            &cert_event(
                actor,
                "certificate.revoke",
                id,
                serde_json::json!({ "reason": reason, "comment": comment, "at_ca": at_ca }),
            ),
        )?;
        let how = if at_ca { "was revoked" } else { "was marked revoked in the inventory (its CA was not asked)" };
        super::renewals::enqueue(
            &tx,
            now,
            "revoked",
            Some(id),
            &format!("certhost: certificate {id} ({}) {how} ({reason})", common_name.as_deref().unwrap_or("no CN")),
            &serde_json::json!({ "reason": reason, "comment": comment, "by": actor, "at_ca": at_ca }),
        )?;
        if reason == KEY_COMPROMISE {
            // The public key is recorded, whoever holds its private half: a key from an uploaded
            // CSR was certified again after its compromise (operator review of stop 39).
            let digests = certificate_key_digests(&tx, id)?;
            if let Some((identity, _)) = &digests {
                tx.execute_cached(
                    "INSERT OR IGNORE INTO compromised_keys (public_sha256, certificate_id, at) VALUES (?1, ?2, ?3)",
                    params![identity, id, now],
                )?;
                backfill_public_sha256(&tx)?;
            }
            let (identity, whole) = digests.unzip();
            // Other certificates on the same key (a renewal that kept it, a CSR uploaded twice)
            // are as compromised: those renewed automatically are due now, and get a new key
            // (`key_compromised`) or are refused for their CSR's (`public_key_compromised`).
            let due: Vec<i64> = {
                // One SELECT per way of sharing the key: the OR of the three made SQLite walk
                // every active certificate (2.6 s at 1 M, holding the write lock). The stored
                // key's users come through `certificates_key`; the others on the public key
                // (uploaded CSRs, imports, a stored key of another encoding) in one pass over
                // the table (`+status`).
                let mut stmt = tx.prepare_cached(SHARING_KEY_SQL)?;
                stmt.query_map(params![id, identity, whole], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for other in due {
                tx.execute_cached("UPDATE certificates SET renew_after = ?2 WHERE id = ?1", params![other, now])?;
                audit::record(
                    &tx,
                    now,
                    &cert_event(actor, "certificate.key_compromised", other, serde_json::json!({ "revoked": id })),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How certificate `id` was revoked, from its latest `certificate.revoke` event. The row
    /// keeps only the status; the audit log, which no one can edit, is the record of why, and
    /// a revoked certificate's view says it.
    pub fn revocation(&self, id: i64) -> Result<Option<Revocation>, InventoryError> {
        latest_revocation(&self.conn, id)
    }

    /// Whether the key `key_id` belongs to a certificate revoked for key compromise: such a key
    /// is never reused, whatever the profile says. Read from the audit log, which no one can
    /// edit, so the mark cannot be lost with the certificate, and from `compromised_keys`,
    /// which holds it whatever certificate it was on.
    pub fn key_compromised(&self, key_id: i64) -> Result<bool, InventoryError> {
        // CROSS JOIN keeps the key's few certificates the outer loop: without statistics
        // SQLite started from every certificate event of the audit log (≈ 300 ms at 1 M
        // certificates, on every renewal, inside the change that stores it).
        Ok(self.conn.query_row_cached(KEY_COMPROMISED_SQL, params![key_id, KEY_COMPROMISE], |r| r.get(0))?)
    }

    /// Whether stored certificate `id`'s public key is one revoked for keyCompromise.
    pub fn stored_key_compromised(&self, id: i64) -> Result<bool, InventoryError> {
        Ok(self.conn.query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM certificates c JOIN compromised_keys k ON k.public_sha256 = c.public_sha256
             WHERE c.id = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }

    /// The certificate revoked for keyCompromise that made the public key `public_key_raw` (a
    /// CSR's) compromised, if one did: no CSR on it is certified again.
    pub fn public_key_compromised(&self, public_key_raw: &[u8]) -> Result<Option<i64>, InventoryError> {
        Ok(self
            .conn
            .query_row_cached(
                "SELECT certificate_id FROM compromised_keys WHERE public_sha256 = ?1",
                [super::keys::identity_sha256(public_key_raw)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether certificate `id` or one it renewed (its predecessors, which an uploaded CSR's
    /// renewals share a key with, unknown to the inventory) was revoked for key compromise.
    pub fn lineage_key_compromised(&self, id: i64) -> Result<bool, InventoryError> {
        let mut next = Some(id);
        // A lineage is one certificate per renewal; the bound only guards against a cycle.
        for _ in 0..1000 {
            let Some(current) = next else { break };
            let compromised: bool = self.conn.query_row_cached(
                "SELECT EXISTS (SELECT 1 FROM audit_events WHERE object_type = 'certificate' AND object_id = ?1
                   AND action = 'certificate.revoke' AND outcome = 'success' AND json_extract(detail, '$.reason') = ?2)",
                params![current.to_string(), KEY_COMPROMISE],
                |r| r.get(0),
            )?;
            if compromised {
                return Ok(true);
            }
            next = self
                .conn
                .query_row_cached("SELECT predecessor_id FROM certificates WHERE id = ?1", [current], |r| r.get(0))
                .optional()?
                .flatten();
        }
        Ok(false)
    }

    /// Removes certificate `id` from the inventory (the CA is not told). Its audit history
    /// stays; its private key goes too unless another certificate still uses it.
    pub fn delete_certificate(&mut self, id: i64, actor: &str) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let row: Option<(String, String, Option<i64>)> = tx
            .query_row_cached("SELECT sha256, subject, key_id FROM certificates WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((sha256, subject, key_id)) = row else {
            return Err(InventoryError::NotFound(format!("certificate {id}")));
        };
        if let Some(open) = super::orders::open_renewal(&tx, id)? {
            return Err(InventoryError::InUse(format!("certificate {id} has renewal order {open} in progress")));
        }
        tx.execute_cached(DELETE_CERTIFICATE_SQL, [id])?;
        let mut key_deleted = false;
        if let Some(k) = key_id {
            let users: i64 = tx.query_row_cached(KEY_USERS_SQL, [k], |r| r.get(0))?;
            if users == 0 {
                tx.execute_cached(FORGET_KEY_SQL, [k])?;
                tx.execute_cached(DELETE_KEY_SQL, [k])?;
                key_deleted = true;
            }
        }
        audit::record(
            &tx,
            now,
            &cert_event(
                actor,
                "certificate.delete",
                id,
                serde_json::json!({ "sha256": sha256, "subject": subject, "key_deleted": key_deleted }),
            ),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Active certificates past notAfter become `expired`; returns their ids. One that renews
    /// automatically — its renewal failing, or never reached (`serve` was down, the renewal
    /// was pending at the CA) — keeps being retried (`renewals::claim_sql`), and its expiry
    /// queues an `expired` notification: nobody was told otherwise.
    pub fn mark_expired(&mut self, actor: &str) -> Result<Vec<i64>, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        type Row = (i64, Option<String>, i64, Option<String>, bool);
        let rows: Vec<Row> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, common_name, renewal_attempts, renewal_error, renew_after IS NOT NULL FROM certificates
                 WHERE status = 'active' AND not_after < ?1 ORDER BY not_after LIMIT 1000",
            )?;
            stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, cn, attempts, error, renews) in &rows {
            tx.execute_cached("UPDATE certificates SET status = 'expired' WHERE id = ?1", [id])?;
            audit::record(&tx, now, &cert_event(actor, "certificate.expired", *id, serde_json::json!({})))?;
            let cn = cn.as_deref().unwrap_or("no CN");
            let message = if *attempts > 0 {
                format!(
                    "certhost: certificate {id} ({cn}) expired; its automatic renewal is failing and is still retried"
                )
            } else if *renews {
                format!(
                    "certhost: certificate {id} ({cn}) expired before its automatic renewal ran; it is renewed as soon as it can be"
                )
            } else {
                continue;
            };
            super::renewals::enqueue(
                &tx,
                now,
                "expired",
                Some(*id),
                &message,
                &serde_json::json!({ "attempts": attempts, "error": error }),
            )?;
        }
        tx.commit()?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The private key of certificate `id`, decrypted for download; the access is audited
    /// before the key is returned.
    pub fn download_key(&mut self, id: i64, actor: &str) -> Result<PrivateKey, InventoryError> {
        self.download_key_as(id, actor, KeyFormat::Pem, Ok)
    }

    /// The private key of certificate `id`, decrypted and handed to `package` (which builds
    /// the file it leaves in: a PKCS#12 bundle); the download is audited, in `format`, once
    /// the file is built — a bundle that could not be built was not downloaded (review of
    /// stop 49) — and before it is returned.
    pub fn download_key_as<T>(
        &mut self,
        id: i64,
        actor: &str,
        format: KeyFormat,
        package: impl FnOnce(PrivateKey) -> Result<T, String>,
    ) -> Result<T, InventoryError> {
        let key_id = self.stored_key_id(id)?;
        let key = self.private_key(key_id)?;
        let file =
            package(key).map_err(|why| InventoryError::Internal(format!("the key could not be packaged: {why}")))?;
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let detail = match format {
            KeyFormat::Pem => serde_json::json!({}),
            KeyFormat::Pkcs12 => serde_json::json!({ "format": "pkcs12" }),
        };
        audit::record(&tx, now, &cert_event(actor, "certificate.key_download", id, detail))?;
        tx.commit()?;
        Ok(file)
    }

    /// Whether certificate `id` has a stored private key (`NotFound` as `download_key` says
    /// it), without opening it or recording a download: what a `HEAD` of the key answers.
    pub fn check_key_stored(&self, id: i64) -> Result<(), InventoryError> {
        self.stored_key_id(id).map(|_| ())
    }

    fn stored_key_id(&self, id: i64) -> Result<i64, InventoryError> {
        let key_id: Option<Option<i64>> = self
            .conn
            .query_row_cached("SELECT key_id FROM certificates WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        key_id
            .ok_or_else(|| InventoryError::NotFound(format!("certificate {id}")))?
            .ok_or_else(|| InventoryError::NotFound(format!("private key of certificate {id}")))
    }

    /// What `/metrics` reads from the inventory: certificates by days until expiry, open
    /// orders by state, deployments waiting to be tried again. Each count is an index range
    /// scan (the open orders' and the retried expired certificates' indexes are partial).
    pub fn gauges(&self) -> Result<InventoryGauges, InventoryError> {
        const DAY: i64 = 86_400;
        let now = self.now();
        let ranges: [(&str, i64, i64); 5] = [
            ("expired", i64::MIN, now),
            ("0-7", now, now + 7 * DAY),
            ("7-30", now + 7 * DAY, now + 30 * DAY),
            ("30-90", now + 30 * DAY, now + 90 * DAY),
            ("90+", now + 90 * DAY, i64::MAX),
        ];
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*) FROM certificates WHERE status = 'active' AND not_after >= ?1 AND not_after < ?2",
        )?;
        let mut expiring = Vec::with_capacity(ranges.len());
        for (label, from, to) in ranges {
            expiring.push((label, stmt.query_row(rusqlite::params![from, to], |r| r.get::<_, u64>(0))?));
        }
        // The scheduler marks a certificate past notAfter `expired` within a round, so counting
        // active ones alone read 0 while certificates had expired with their renewals failing
        // (operator review of stop 36). Counted too: those expired in the last 30 days, and
        // older ones whose renewal is still retried; not every certificate ever let expire.
        let recent: u64 = self.conn.query_row_cached(
            "SELECT COUNT(*) FROM certificates WHERE status = 'expired' AND not_after >= ?1",
            [now - 30 * DAY],
            |r| r.get(0),
        )?;
        let retried: u64 = self.conn.query_row_cached(
            // Through the small partial index of retried ones, not the range of every
            // certificate that ever expired.
            "SELECT COUNT(*) FROM certificates INDEXED BY certificates_due_expired
              WHERE status = 'expired' AND renew_after IS NOT NULL AND renewal_attempts > 0 AND not_after < ?1",
            [now - 30 * DAY],
            |r| r.get(0),
        )?;
        expiring[0].1 += recent + retried;
        let mut orders_open = vec![("awaiting_approval", 0), ("needs_attention", 0), ("pending", 0)];
        let sql = format!("SELECT state, COUNT(*) FROM orders WHERE {} GROUP BY state", super::orders::OPEN);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))? {
            let (state, n) = row?;
            if let Some(slot) = orders_open.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = n;
            }
        }
        let deploy_retries: u64 = self
            .conn
            // Only active certificates' retries are ever tried; a superseded or expired one's
            // row waits for its time only to be dropped, and counted it said a retry was due
            // that never comes (operator review of stop 39).
            .query_row_cached(
                // From the few retries to their certificates (CROSS JOIN): without statistics
                // SQLite walked every active certificate (≈ 140 ms at 1 M).
                DEPLOY_RETRIES_SQL,
                [],
                |r| r.get(0),
            )?;
        let renewals_failing = self.count_failing_renewals()?;
        let renewals_due = self.count_due_renewals()?;
        // Through the partial index of undelivered ones: delivered notifications are never read.
        let (notifications_undelivered, notifications_failing): (u64, u64) = self.conn.query_row_cached(
            "SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0) FROM notifications INDEXED BY notifications_unsent
              WHERE sent_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(InventoryGauges {
            expiring,
            orders_open,
            deploy_retries,
            renewals_failing,
            renewals_due,
            notifications_undelivered,
            notifications_failing,
        })
    }

    /// Certificate `id`'s successful deployments: each target as recorded, with its message
    /// (which says where a `{cn}` target's files went; see `deploy::deployed_where`).
    pub fn deployed_targets(&self, id: i64) -> Result<Vec<(String, String)>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT target, detail FROM deployments WHERE certificate_id = ?1 AND outcome = 'success' ORDER BY target, detail",
        )?;
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records, in the change that stores certificate `id`, that its profile's `targets` (as
    /// [`crate::deploy::DeployTarget::describe`] names them) are owed a deployment: a row of
    /// `deploy_retries` with no failure yet, due after `grace` seconds (longer than the
    /// deployment may run: its hooks' timeouts). The deployment's
    /// outcome clears it or counts its first failure; a process killed in between leaves it for
    /// the scheduler, which deploys it. Before, a crash during the deployment left the new
    /// certificate undeployed for good, the consumer on the old one (chaos review of stop 40).
    pub fn owe_deployments(&self, id: i64, targets: &[String], grace: i64) -> Result<(), InventoryError> {
        let now = self.now();
        for target in targets {
            self.conn.execute_cached(
                "INSERT INTO deploy_retries (certificate_id, target, failures, next_at) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (certificate_id, target) DO NOTHING",
                rusqlite::params![id, target, now + grace],
            )?;
        }
        Ok(())
    }

    /// Records one deployment outcome with its audit event, in one transaction.
    ///
    /// A failure is notified at the first of a run and every [`DEPLOY_FAILED_REMINDER`]th.
    pub fn record_deployment(
        &mut self,
        id: i64,
        target: &str,
        ok: bool,
        message: &str,
        event: &NewAuditEvent<'_>,
    ) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        tx.execute_cached(
            "INSERT INTO deployments (certificate_id, target, outcome, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![id, target, if ok { "success" } else { "failure" }, message, now],
        )?;
        audit::record(&tx, now, event)?;
        if ok {
            tx.execute_cached(
                "DELETE FROM deploy_retries WHERE certificate_id = ?1 AND target = ?2",
                rusqlite::params![id, target],
            )?;
        } else {
            // Tried again by `serve` after 5 minutes, doubling to 6 hours.
            let failures: i64 = tx.query_row_cached(
                "INSERT INTO deploy_retries (certificate_id, target, failures, next_at) VALUES (?1, ?2, 1, ?3 + ?4)
                 ON CONFLICT (certificate_id, target) DO UPDATE
                 SET failures = failures + 1, next_at = ?3 + min(?4 << min(failures, 10), ?5)
                 RETURNING failures",
                rusqlite::params![id, target, now, DEPLOY_RETRY_FIRST, DEPLOY_RETRY_MAX],
                |r| r.get(0),
            )?;
            // A consumer left on the old certificate expires unnoticed otherwise: the one it
            // holds is superseded, and nothing watches superseded certificates. Said at the
            // first failure of a run and again every tenth (about every two and a half days
            // at the six-hour cap), naming the certificate the files may still hold and when
            // it expires (operator review of stop 41: one mail at day 60, then silence until
            // the server's certificate expired).
            if failures % DEPLOY_FAILED_REMINDER == 1 {
                let (common_name, predecessor): (Option<String>, Option<i64>) = tx
                    .query_row_cached("SELECT common_name, predecessor_id FROM certificates WHERE id = ?1", [id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?
                    .unwrap_or((None, None));
                let held: Option<(i64, i64)> = match predecessor {
                    Some(p) => tx
                        .query_row_cached("SELECT id, not_after FROM certificates WHERE id = ?1", [p], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?,
                    None => None,
                };
                let still = held
                    .map(|(p, not_after)| {
                        let when = if not_after <= now { "expired" } else { "expires" };
                        format!(
                            "; the files may still hold certificate {p}, which {when} {}",
                            crate::view::rfc3339(not_after)
                        )
                    })
                    .unwrap_or_default();
                super::renewals::enqueue(
                    &tx,
                    now,
                    "deploy_failed",
                    Some(id),
                    &format!(
                        "certhost: deploying certificate {id} ({}) to {target} failed{}{still}",
                        common_name.as_deref().unwrap_or("no CN"),
                        if failures > 1 { format!(" {failures} times in a row") } else { String::new() }
                    ),
                    &serde_json::json!({
                        "target": target,
                        "message": message,
                        "failures": failures,
                        "previous_certificate_id": held.map(|(p, _)| p),
                        "previous_not_after": held.map(|(_, t)| crate::view::rfc3339(t)),
                    }),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Claims deployments to try again (their target's last attempt failed and its retry time
    /// has come) for `lease_seconds`, so that two schedulers do not both retry one: at most
    /// `limit` certificates, each with the targets to deploy again.
    pub fn claim_deploy_retries(
        &mut self,
        limit: u32,
        lease_seconds: i64,
    ) -> Result<Vec<(i64, Vec<String>)>, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let due: Vec<(i64, String)> = tx
            .prepare_cached(
                "SELECT certificate_id, target FROM deploy_retries WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2",
            )?
            .query_map(rusqlite::params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut claimed: Vec<(i64, Vec<String>)> = Vec::new();
        for (id, target) in due {
            tx.execute_cached(
                "UPDATE deploy_retries SET next_at = ?3 WHERE certificate_id = ?1 AND target = ?2",
                rusqlite::params![id, target, now + lease_seconds],
            )?;
            match claimed.iter_mut().find(|(c, _)| *c == id) {
                Some((_, targets)) => targets.push(target),
                None => claimed.push((id, vec![target])),
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Gives back the claim on certificate `id`'s `targets` to deploy again, unrun (the
    /// scheduler is stopping): due now, not after the claim's lease. Only those: another
    /// target of it may still be in its backoff, or claimed by another scheduler.
    pub fn release_deploy_retries(&mut self, id: i64, targets: &[String]) -> Result<(), InventoryError> {
        let now = self.now();
        for target in targets {
            self.conn.execute_cached(
                "UPDATE deploy_retries SET next_at = ?3 WHERE certificate_id = ?1 AND target = ?2 AND next_at > ?3",
                rusqlite::params![id, target, now],
            )?;
        }
        Ok(())
    }

    /// Stops retrying a deployment of certificate `id` (every target when `target` is `None`):
    /// the certificate is no longer active, or its profile no longer has the target.
    pub fn drop_deploy_retry(&mut self, id: i64, target: Option<&str>) -> Result<(), InventoryError> {
        self.conn.execute_cached(
            "DELETE FROM deploy_retries WHERE certificate_id = ?1 AND (?2 IS NULL OR target = ?2)",
            rusqlite::params![id, target],
        )?;
        Ok(())
    }

    /// A deployment being retried: (target, failures so far, next attempt), for `show`. Only
    /// an active certificate's are: the scheduler drops the others when their time comes.
    pub fn deploy_retries(&self, id: i64) -> Result<Vec<(String, i64, i64)>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.target, r.failures, r.next_at FROM deploy_retries r JOIN certificates c ON c.id = r.certificate_id
             WHERE r.certificate_id = ?1 AND c.status = 'active' AND r.failures > 0 ORDER BY r.target",
        )?;
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deployments of certificate `id`, newest first: (target, outcome, message, at).
    pub fn deployments(&self, id: i64) -> Result<Vec<(String, String, String, i64)>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT target, outcome, detail, at FROM deployments WHERE certificate_id = ?1 ORDER BY id DESC LIMIT 100",
        )?;
        let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real inventory has no statistics, and with none SQLite began these from the biggest
    /// table (every certificate event of the audit log on each renewal; every active
    /// certificate for the metrics gauge and for a keyCompromise revocation). Each begins
    /// from the few rows it is about.
    #[test]
    fn the_key_and_retry_queries_begin_from_the_few_rows_they_are_about() {
        let (_dir, inv) = super::super::scratch();
        let plan = |sql| super::super::query_plan(&inv.conn, sql);
        let compromised = plan(KEY_COMPROMISED_SQL);
        let (key, audit) = (compromised.find("certificates_key (key_id=?)"), compromised.find("SEARCH a USING INDEX"));
        assert!(key.zip(audit).is_some_and(|(k, a)| k < a), "{compromised}");
        assert!(compromised.contains("INDEX audit_events_object (object_type=? AND object_id=?)"), "{compromised}");
        let retries = plan(DEPLOY_RETRIES_SQL);
        assert!(retries.lines().next().is_some_and(|l| l.starts_with("SCAN r")), "{retries}");
        let sharing = plan(SHARING_KEY_SQL);
        assert!(!sharing.contains("certificates_status_not_after"), "{sharing}");
        assert!(sharing.contains("SEARCH certificates USING INDEX certificates_key (key_id=?)"), "{sharing}");
    }

    /// No step of a deletion walks a table: not the statements, not the foreign-key checks
    /// SQLite runs for them (`EXPLAIN QUERY PLAN` lists those too).
    #[test]
    fn deleting_a_certificate_and_its_key_walks_no_table() {
        let (_dir, inv) = super::super::scratch();
        for sql in [DELETE_CERTIFICATE_SQL, KEY_USERS_SQL, FORGET_KEY_SQL, DELETE_KEY_SQL] {
            let plan = super::super::query_plan(&inv.conn, sql);
            // `SCAN CONSTANT ROW` is the one-row SELECT around the two counts.
            assert!(!plan.lines().any(|step| step.starts_with("SCAN") && step != "SCAN CONSTANT ROW"), "{sql}\n{plan}");
        }
    }

    /// Operator review of stop 39: `certhost_deploy_retries` counted superseded and expired
    /// certificates, whose retries are never tried.
    #[test]
    fn only_active_certificates_count_as_deploy_retries() {
        let (_dir, inv) = super::super::scratch();
        for (id, status) in [(1, "active"), (2, "superseded"), (3, "expired")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, sans, not_before,
                         not_after, key_algorithm, key_bits, status, source, created_at)
                     VALUES (?1, '', '01', ?2, ?2, 'CN=x', 'CN=ca', '[]', 0, 9999999999, 'ec', 256, ?3, 'issue', 0)",
                    params![id, format!("{id:064}"), status],
                )
                .expect("certificate");
            inv.conn
                .execute(
                    "INSERT INTO deploy_retries (certificate_id, target, failures, next_at) VALUES (?1, 'files', 1, 0)",
                    [id],
                )
                .expect("retry");
        }
        assert_eq!(inv.gauges().expect("gauges").deploy_retries, 1);
    }

    /// A revocation is recorded once, whichever process records it; a mark in the inventory
    /// alone gives way to the CA's revocation, never the reverse.
    #[test]
    fn a_revocation_is_recorded_once_and_a_local_mark_gives_way_to_the_cas() {
        let (_dir, mut inv) = super::super::scratch();
        inv.conn
            .execute(
                "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, sans, not_before,
                     not_after, key_algorithm, key_bits, status, source, created_at)
                 VALUES (1, '', '01', 'a', 'a', 'CN=x', 'CN=ca', '[]', 0, 9999999999, 'ec', 256, 'active', 'issue', 0)",
                [],
            )
            .expect("certificate");
        inv.record_revoked(1, "superseded", "", "ops", false).expect("marked");
        assert_eq!(inv.revocation(1).expect("read").map(|r| r.at_ca), Some(false));
        let again = inv.record_revoked(1, "superseded", "", "ops", false).expect_err("twice");
        assert_eq!(again.to_string(), "certificate 1 is already revoked");
        inv.record_revoked(1, "superseded", "", "ops", true).expect("at the CA after");
        assert_eq!(inv.revocation(1).expect("read").map(|r| r.at_ca), Some(true));
        for at_ca in [true, false] {
            assert!(inv.record_revoked(1, "superseded", "", "ops", at_ca).is_err(), "revoked at the CA: final");
        }
    }
}
