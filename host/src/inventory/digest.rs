//! Storms of per-certificate notifications, bounded per profile. When a CA goes down, every
//! certificate of its profiles fails to renew within a round or two, and when it comes back
//! they all renew: 720 certificates were 720 `renewal_failed` mails at once, and 720
//! `renewal_recovered` later. Each kind is sent one by one for the first [`PER_WINDOW`]
//! certificates of a profile in an hour; the rest of that hour's are gathered into one
//! `renewal_failed_digest` (or `renewal_recovered_digest`) per [`GATHER`] seconds, listing
//! them. Nothing is dropped: every attempt is still audited and counted, and the digest
//! names each certificate it stands for.

use rusqlite::{OptionalExtension, params};

use super::{CachedSql, InventoryError};

/// Notifications of one kind sent one by one per profile in a [`WINDOW`].
pub(super) const PER_WINDOW: i64 = 5;
/// The window, in seconds.
pub(super) const WINDOW: i64 = 3_600;
/// How long a digest gathers before it is due: a storm's round is mostly over by then.
pub(super) const GATHER: i64 = 300;
/// Certificate ids one digest lists; the next fold starts another digest.
const LISTED: usize = 500;

/// Queues `kind` about certificate `id` of `profile` (`subject`, `detail`) inside the caller's
/// transaction, or — when the profile's window has had its [`PER_WINDOW`] — folds it into the
/// profile's digest of the kind. Returns whether it was folded.
pub(super) fn enqueue_bounded(
    tx: &rusqlite::Connection,
    now: i64,
    kind: &str,
    id: i64,
    profile: Option<&str>,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<bool, InventoryError> {
    let key = profile.unwrap_or("");
    let window: Option<(i64, i64, Option<i64>)> = tx
        .query_row_cached(
            "SELECT started_at, said, digest_id FROM notification_windows WHERE kind = ?1 AND profile = ?2",
            params![kind, key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match window {
        // A clock stepped back (`now < started`) starts a new window rather than holding one
        // open for the length of the step.
        Some((started, said, digest)) if (started..started + WINDOW).contains(&now) && said >= PER_WINDOW => {
            fold(tx, now, kind, id, profile, detail, digest)?;
            Ok(true)
        }
        Some((started, _, _)) if (started..started + WINDOW).contains(&now) => {
            tx.execute_cached(
                "UPDATE notification_windows SET said = said + 1 WHERE kind = ?1 AND profile = ?2",
                params![kind, key],
            )?;
            super::renewals::enqueue(tx, now, kind, Some(id), subject, detail)?;
            Ok(false)
        }
        _ => {
            tx.execute_cached(
                "INSERT INTO notification_windows (kind, profile, started_at, said, digest_id) VALUES (?1, ?2, ?3, 1, NULL)
                 ON CONFLICT (kind, profile) DO UPDATE SET started_at = excluded.started_at, said = 1, digest_id = NULL",
                params![kind, key, now],
            )?;
            super::renewals::enqueue(tx, now, kind, Some(id), subject, detail)?;
            Ok(false)
        }
    }
}

/// Adds certificate `id` to the profile's digest of `kind` while it still gathers (queued,
/// not yet due, so no notifier has claimed it), or starts a new one.
fn fold(
    tx: &rusqlite::Connection,
    now: i64,
    kind: &str,
    id: i64,
    profile: Option<&str>,
    detail: &serde_json::Value,
    digest: Option<i64>,
) -> Result<(), InventoryError> {
    let digest_kind = format!("{kind}_digest");
    // Still gathering: never tried, on no channel, not due yet, and due when it was made to be
    // (a claim needs it due and then moves it by a lease, so it is not due then any more) —
    // nor due later than a gathering digest can be (a clock stepped back starts a new one).
    // A full list starts a new one too, so that every folded certificate is named. So does a
    // channel come on since it was made: a channel is sent what was queued after it came on
    // (`ChannelsSince::wants`), and would never see the certificates folded into an older
    // digest (a `since` ahead of now is a clock stepped back, and says nothing).
    let gathering: Option<(i64, String)> = match digest {
        Some(digest) => tx
            .query_row_cached(
                "SELECT id, detail FROM notifications
                  WHERE id = ?1 AND sent_at IS NULL AND attempts = 0 AND webhook_sent_at IS NULL
                    AND email_sent_at IS NULL AND next_attempt_at = created_at + ?3
                    AND next_attempt_at > ?2 AND next_attempt_at <= ?2 + ?3
                    AND NOT EXISTS (SELECT 1 FROM meta WHERE name IN ('notify_webhook_since', 'notify_email_since')
                                      AND CAST(value AS INTEGER) > created_at AND CAST(value AS INTEGER) <= ?2)",
                params![digest, now, GATHER],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        None => None,
    };
    let gathering: Option<(i64, serde_json::Value)> = gathering
        .and_then(|(digest, d)| Some((digest, serde_json::from_str::<serde_json::Value>(&d).ok()?)))
        .filter(|(_, d)| d["certificate_ids"].as_array().is_some_and(|ids| ids.len() < LISTED));
    let (digest, mut gathered) = match gathering {
        Some((digest, gathered)) => (Some(digest), gathered),
        None => (
            None,
            serde_json::json!({ "profile": profile, "count": 0, "certificate_ids": [], "since": crate::view::rfc3339(now) }),
        ),
    };
    let count = gathered["count"].as_i64().unwrap_or(0) + 1;
    gathered["count"] = count.into();
    if let Some(ids) = gathered["certificate_ids"].as_array_mut()
        && !ids.iter().any(|v| v.as_i64() == Some(id))
    {
        ids.push(id.into());
    }
    // The latest certificate's reason, so the digest says why without a lookup.
    if let Some(error) = detail.get("error") {
        gathered["last_error"] = error.clone();
    }
    let subject = digest_subject(kind, profile, count, &gathered["certificate_ids"]);
    match digest {
        Some(digest) => {
            tx.execute_cached(
                "UPDATE notifications SET subject = ?2, detail = ?3 WHERE id = ?1",
                params![digest, subject, gathered.to_string()],
            )?;
        }
        None => {
            let digest: i64 = tx.query_row_cached(
                "INSERT INTO notifications (kind, certificate_id, subject, detail, created_at, next_attempt_at, delivery_id)
                 VALUES (?1, NULL, ?2, ?3, ?4, ?4 + ?5, lower(hex(randomblob(16)))) RETURNING id",
                params![digest_kind, subject, gathered.to_string(), now, GATHER],
                |r| r.get(0),
            )?;
            tx.execute_cached(
                "UPDATE notification_windows SET digest_id = ?3 WHERE kind = ?1 AND profile = ?2",
                params![kind, profile.unwrap_or(""), digest],
            )?;
        }
    }
    Ok(())
}

/// One line for a digest's mail subject: how many, of which profile, the first few ids.
fn digest_subject(kind: &str, profile: Option<&str>, count: i64, ids: &serde_json::Value) -> String {
    let listed: Vec<String> = ids.as_array().into_iter().flatten().take(5).map(ToString::to_string).collect();
    let more = if count > listed.len() as i64 { ", …" } else { "" };
    let of = profile.map(|p| format!("profile {p}")).unwrap_or_else(|| "no profile".into());
    let what = if kind == "renewal_recovered" {
        "certificate(s) renewed after failed attempts"
    } else {
        "automatic renewal(s) failed"
    };
    format!("certhost: {count} more {what} ({of}: certificates {}{more})", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::{GATHER, PER_WINDOW, WINDOW};

    /// Certificates of `profile`, due, renewing at 10 (ids from 1 on).
    fn certificates(inv: &super::super::Inventory, n: usize, profile: &str) {
        for _ in 0..n {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, renew_after, profile)
                     VALUES ('leaf', hex(randomblob(8)), hex(randomblob(20)), hex(randomblob(32)), 'CN=a', 'CN=ca', '[]',
                             0, 10000000, 'ec-p256', 256, 'active', 'import', 0, 10, ?1)",
                    params![profile],
                )
                .expect("certificate");
        }
    }

    fn notified(inv: &super::super::Inventory) -> Vec<(String, Option<i64>, serde_json::Value)> {
        let mut stmt =
            inv.conn.prepare("SELECT kind, certificate_id, detail FROM notifications ORDER BY id").expect("sql");
        stmt.query_map([], |r| {
            let detail: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&detail).unwrap_or_default()))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    /// Scale review of stop 43: a CA outage sent one `renewal_failed` per certificate (720 at
    /// once). A profile's first five in an hour go one by one; the rest are gathered into a
    /// digest that lists them, and each profile has its own window.
    #[test]
    fn a_storm_of_failures_is_five_notifications_and_a_digest_per_profile() {
        let (_dir, mut inv) = super::super::scratch();
        certificates(&inv, 8, "web");
        certificates(&inv, 1, "db");
        inv.set_clock(Some(1_000));
        let (ids, until) = inv.claim_due_renewals(600, 20).expect("claim");
        assert_eq!(ids.len(), 9);
        for id in ids {
            inv.record_renewal_failure(id, until, "CA down", "t").expect("failure");
        }
        let sent = notified(&inv);
        let single: Vec<Option<i64>> =
            sent.iter().filter(|(k, _, _)| k == "renewal_failed").map(|(_, c, _)| *c).collect();
        assert_eq!(single, [Some(1), Some(2), Some(3), Some(4), Some(5), Some(9)], "five of web's, db's one");
        let digests: Vec<&serde_json::Value> =
            sent.iter().filter(|(k, _, _)| k == "renewal_failed_digest").map(|(_, _, d)| d).collect();
        assert_eq!(digests.len(), 1, "{sent:?}");
        assert_eq!(digests[0]["count"], 3);
        assert_eq!(digests[0]["certificate_ids"], serde_json::json!([6, 7, 8]));
        assert_eq!(digests[0]["profile"], "web");
        assert_eq!(digests[0]["last_error"], "CA down");
        let subject: String = inv
            .conn
            .query_row("SELECT subject FROM notifications WHERE kind = 'renewal_failed_digest'", [], |r| r.get(0))
            .expect("subject");
        assert_eq!(subject, "certhost: 3 more automatic renewal(s) failed (profile web: certificates 6, 7, 8)");
        // Not due until it has gathered; a notifier sees only the six meanwhile.
        assert_eq!(inv.claim_notifications(3_600, 100).expect("claim").len(), 6);
        inv.set_clock(Some(1_000 + GATHER));
        let due = inv.claim_notifications(60, 100).expect("claim");
        assert_eq!(due.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(), ["renewal_failed_digest"]);
        // The folded ones' next failures are no news (their failure was said, in the digest);
        // the backoff's attempts of the first ones neither.
        for id in 1..=8 {
            inv.conn.execute("UPDATE certificates SET renewal_lease_until = 5000 WHERE id = ?1", [id]).expect("claim");
            inv.record_renewal_failure(id, 5_000, "CA down", "t").expect("failure");
        }
        assert_eq!(notified(&inv).len(), 7, "nothing new");
        // Another certificate's first failure in the hour, the digest already on its way: a
        // new digest gathers.
        certificates(&inv, 2, "web");
        inv.conn.execute("UPDATE certificates SET renewal_lease_until = 9000 WHERE id IN (10, 11)", []).expect("claim");
        inv.record_renewal_failure(10, 9_000, "CA down", "t").expect("failure");
        let last = notified(&inv).pop().expect("one more");
        assert_eq!((last.0.as_str(), &last.2["certificate_ids"]), ("renewal_failed_digest", &serde_json::json!([10])));
        // A new hour: five more may go one by one.
        inv.set_clock(Some(1_000 + WINDOW));
        inv.record_renewal_failure(11, 9_000, "CA down", "t").expect("failure");
        let last = notified(&inv).pop().expect("one more");
        assert_eq!((last.0.as_str(), last.1), ("renewal_failed", Some(11)));
        // A clock stepped back starts a new window rather than folding for the step's length.
        certificates(&inv, 1, "web");
        inv.conn.execute("UPDATE certificates SET renewal_lease_until = 9000 WHERE id = 12", []).expect("claim");
        for _ in 0..PER_WINDOW {
            inv.conn
                .execute("UPDATE notification_windows SET said = said + 10 WHERE kind = 'renewal_failed'", [])
                .expect("window full");
        }
        inv.set_clock(Some(500));
        inv.record_renewal_failure(12, 9_000, "CA down", "t").expect("failure");
        let last = notified(&inv).pop().expect("one more");
        assert_eq!((last.0.as_str(), last.1), ("renewal_failed", Some(12)));
        assert_eq!(PER_WINDOW, 5);
    }

    /// A channel that comes on (`serve` restarted with a webhook) while a digest gathers is
    /// sent what is queued from then on: the failures folded after that go into a new digest
    /// it is sent, not into the older one it never sees.
    #[test]
    fn a_channel_that_comes_on_while_a_digest_gathers_is_sent_the_failures_folded_after() {
        let (_dir, mut inv) = super::super::scratch();
        certificates(&inv, 8, "web");
        inv.set_clock(Some(1_000));
        assert_eq!(inv.configure_channels(false, true).expect("channels").email, Some(1_000));
        let (ids, until) = inv.claim_due_renewals(600, 20).expect("claim");
        for &id in &ids[..6] {
            inv.record_renewal_failure(id, until, "CA down", "t").expect("failure");
        }
        // Certificate 6 is in a digest the webhook would never be sent.
        inv.set_clock(Some(1_010));
        let since = inv.configure_channels(true, true).expect("channels");
        assert_eq!((since.webhook, since.email), (Some(1_010), Some(1_000)));
        inv.set_clock(Some(1_020));
        for &id in &ids[6..] {
            inv.record_renewal_failure(id, until, "CA down", "t").expect("failure");
        }
        let digests: Vec<serde_json::Value> =
            notified(&inv).into_iter().filter(|(k, _, _)| k == "renewal_failed_digest").map(|(_, _, d)| d).collect();
        assert_eq!(digests.len(), 2, "{digests:?}");
        assert_eq!(digests[0]["certificate_ids"], serde_json::json!([6]));
        assert_eq!(digests[1]["certificate_ids"], serde_json::json!([7, 8]), "folded after the webhook came on");
        // The webhook wants the second, e-mail both.
        inv.set_clock(Some(1_020 + GATHER));
        let due = inv.claim_notifications(60, 100).expect("claim");
        let due: Vec<_> = due.iter().filter(|n| n.kind == "renewal_failed_digest").collect();
        assert_eq!(due.len(), 2);
        assert!(
            !since.wants(super::super::renewals::Channel::Webhook, due[0])
                && since.wants(super::super::renewals::Channel::Webhook, due[1])
        );
        assert!(due.iter().all(|n| since.wants(super::super::renewals::Channel::Email, n)));
        // A channel's time ahead of now (a clock stepped back) does not split every fold.
        inv.conn.execute("UPDATE meta SET value = 99999 WHERE name = 'notify_webhook_since'", []).expect("ahead");
        certificates(&inv, 2, "web");
        inv.set_clock(Some(1_400));
        inv.conn.execute("UPDATE certificates SET renewal_lease_until = 9000 WHERE id IN (9, 10)", []).expect("claim");
        for id in [9, 10] {
            inv.record_renewal_failure(id, 9_000, "CA down", "t").expect("failure");
        }
        let last = notified(&inv).pop().expect("a digest");
        assert_eq!(last.2["certificate_ids"], serde_json::json!([9, 10]), "one digest");
    }
}
