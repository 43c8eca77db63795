//! Versioned schema migrations, applied in order at open.
//!
//! `PRAGMA user_version` holds the number of migrations applied. A database whose version is
//! higher than this binary knows was written by a newer certhost: it is refused, never used.

use rusqlite::Connection;

use super::InventoryError;

/// Each entry moves the schema one version up. Append only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: the words of DESIGN.md — keys, certificates, orders, CA accounts, profiles, sealed
    //    secrets, audit events — plus metadata.
    r#"
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE keys (
        id             INTEGER PRIMARY KEY,
        algorithm      TEXT NOT NULL,
        bits           INTEGER NOT NULL,
        public_sha256  TEXT NOT NULL UNIQUE,
        sealed_pkcs8   BLOB NOT NULL,
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE certificates (
        id              INTEGER PRIMARY KEY,
        pem             TEXT NOT NULL,
        chain_pem       TEXT NOT NULL DEFAULT '',
        serial          TEXT NOT NULL,
        sha1            TEXT NOT NULL,
        sha256          TEXT NOT NULL UNIQUE,
        subject         TEXT NOT NULL,
        issuer          TEXT NOT NULL,
        common_name     TEXT,
        sans            TEXT NOT NULL,
        not_before      INTEGER NOT NULL,
        not_after       INTEGER NOT NULL,
        key_algorithm   TEXT NOT NULL,
        key_bits        INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('active','superseded','revoked','expired')),
        source          TEXT NOT NULL,
        profile         TEXT,
        account         TEXT,
        key_id          INTEGER REFERENCES keys(id),
        predecessor_id  INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
        created_at      INTEGER NOT NULL
    );
    CREATE INDEX certificates_status_not_after ON certificates(status, not_after);
    CREATE INDEX certificates_not_after ON certificates(not_after);
    CREATE INDEX certificates_sha1 ON certificates(sha1);
    CREATE INDEX certificates_common_name ON certificates(common_name);
    CREATE INDEX certificates_issuer ON certificates(issuer);
    CREATE INDEX certificates_profile ON certificates(profile);
    CREATE TABLE orders (
        id              INTEGER PRIMARY KEY,
        request_id      TEXT NOT NULL UNIQUE,
        kind            TEXT NOT NULL CHECK (kind IN ('issue','renew','reissue')),
        state           TEXT NOT NULL CHECK (state IN
                            ('awaiting_approval','pending','issued','rejected','failed','needs_attention')),
        profile         TEXT,
        account         TEXT,
        common_name     TEXT,
        sans            TEXT NOT NULL DEFAULT '[]',
        csr_pem         TEXT NOT NULL,
        params_json     TEXT NOT NULL DEFAULT '{}',
        ca_order_id     TEXT,
        submitted       INTEGER NOT NULL DEFAULT 0,
        lease_until     INTEGER,
        certificate_id  INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
        key_id          INTEGER REFERENCES keys(id),
        predecessor_id  INTEGER REFERENCES certificates(id) ON DELETE SET NULL,
        requested_by    TEXT NOT NULL,
        decided_by      TEXT,
        error           TEXT,
        next_poll_at    INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX orders_state_next_poll ON orders(state, next_poll_at);
    CREATE TABLE accounts (
        name               TEXT PRIMARY KEY,
        definition         TEXT NOT NULL,
        status             TEXT NOT NULL CHECK (status IN ('active','inactive')),
        origin             TEXT NOT NULL,
        last_test_at       INTEGER,
        last_test_ok       INTEGER,
        last_test_message  TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    );
    CREATE TABLE profiles (
        name        TEXT PRIMARY KEY,
        definition  TEXT NOT NULL,
        origin      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    -- Sensitive parameter values set with `certhost secret set`, sealed (never plaintext).
    CREATE TABLE secrets (
        owner_kind  TEXT NOT NULL CHECK (owner_kind IN ('account','profile')),
        owner_name  TEXT NOT NULL,
        name        TEXT NOT NULL,
        sealed      BLOB NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (owner_kind, owner_name, name)
    );
    -- API bearer tokens: only a SHA-256 of each token is stored.
    CREATE TABLE tokens (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        role        TEXT NOT NULL CHECK (role IN ('admin','operator','requester','auditor')),
        hash        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE TABLE audit_events (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        actor        TEXT NOT NULL,
        action       TEXT NOT NULL,
        object_type  TEXT NOT NULL,
        object_id    TEXT,
        outcome      TEXT NOT NULL,
        detail       TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_events_object ON audit_events(object_type, object_id);
    CREATE INDEX audit_events_at ON audit_events(at);
    -- Audit events are append-only: the database itself refuses edits and deletions.
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    "#,
    // 2: the lifecycle — at most one open renewal per certificate (the claim that stops two
    //    renewals racing), the renewal schedule and its retry state, deployments.
    r#"
    CREATE UNIQUE INDEX orders_one_open_renewal ON orders(predecessor_id)
        WHERE predecessor_id IS NOT NULL AND state IN ('awaiting_approval','pending','needs_attention');
    -- When the scheduler renews this certificate (NULL: never, e.g. auto-renew off or no profile).
    ALTER TABLE certificates ADD COLUMN renew_after INTEGER;
    ALTER TABLE certificates ADD COLUMN renewal_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE certificates ADD COLUMN renewal_error TEXT;
    -- A scheduler instance working on this certificate holds it until then.
    ALTER TABLE certificates ADD COLUMN renewal_lease_until INTEGER;
    CREATE INDEX certificates_due ON certificates(renew_after) WHERE status = 'active' AND renew_after IS NOT NULL;
    CREATE TABLE deployments (
        id              INTEGER PRIMARY KEY,
        certificate_id  INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
        target          TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        detail          TEXT NOT NULL DEFAULT '',
        at              INTEGER NOT NULL
    );
    CREATE INDEX deployments_certificate ON deployments(certificate_id, at);
    -- Notifications to deliver (webhook, email): queued in the transaction of the change they
    -- report, delivered by `certhost serve`, so none is lost in a crash.
    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,
        certificate_id  INTEGER,
        subject         TEXT NOT NULL,
        detail          TEXT NOT NULL DEFAULT '{}',
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT
    );
    CREATE INDEX notifications_unsent ON notifications(next_attempt_at) WHERE sent_at IS NULL;
    CREATE INDEX notifications_certificate ON notifications(certificate_id, kind);
    "#,
    // 3: indexes no query uses, each one more B-tree page written by every issuance. Every
    //    query on not_after also asks for status (certificates_status_not_after serves it);
    //    the CN and issuer are only searched by substring (LIKE '%…%', which no index helps);
    //    audit events are listed by id, never by time.
    r#"
    DROP INDEX certificates_not_after;
    DROP INDEX certificates_common_name;
    DROP INDEX certificates_issuer;
    DROP INDEX audit_events_at;
    "#,
    // 4: the configuration generation: one more on every change to tokens, profiles or CA
    //    accounts, from any process, in the change's own transaction. `serve` reuses what it
    //    read of them while it stays the same (inventory/config_cache.rs).
    r#"
    CREATE TABLE config_generation (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        value  INTEGER NOT NULL
    );
    INSERT INTO config_generation (id, value) VALUES (1, 0);
    CREATE TRIGGER tokens_generation_insert AFTER INSERT ON tokens
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER tokens_generation_update AFTER UPDATE ON tokens
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER tokens_generation_delete AFTER DELETE ON tokens
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER profiles_generation_insert AFTER INSERT ON profiles
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER profiles_generation_update AFTER UPDATE ON profiles
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER profiles_generation_delete AFTER DELETE ON profiles
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER accounts_generation_insert AFTER INSERT ON accounts
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER accounts_generation_update AFTER UPDATE ON accounts
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER accounts_generation_delete AFTER DELETE ON accounts
        BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
    "#,
    // 5: a chain is stored once, not in every certificate it came with. Most of an inventory
    //    shares a handful of chains; kept per row they were a third of each certificate row
    //    with a P-256 CA, and two RSA intermediates (≈ 3.8 KB) made a row spill into an
    //    overflow page. `certificates.chain_pem` stays as an empty column. The UPDATE rewrites
    //    every certificate row once (237,000 rows, 558 MB: 5–7 s on the 2-core test machine).
    r#"
    CREATE TABLE chains (
        id   INTEGER PRIMARY KEY,
        pem  TEXT NOT NULL UNIQUE
    );
    ALTER TABLE certificates ADD COLUMN chain_id INTEGER REFERENCES chains(id);
    INSERT OR IGNORE INTO chains (pem) SELECT chain_pem FROM certificates WHERE chain_pem <> '' ORDER BY id;
    UPDATE certificates SET chain_id = (SELECT chains.id FROM chains WHERE chains.pem = certificates.chain_pem),
                            chain_pem = ''
        WHERE chain_pem <> '';
    "#,
    // 6: the order-state indexes hold open orders only. Nearly every order ends `issued`, and
    //    the move into that state wrote a page in the middle of `orders_state_next_poll` on
    //    every issuance, though only open orders are ever looked up by state (due polls,
    //    interrupted calls, "in use" checks); listing orders of a finished state walks the
    //    table newest first instead. The open states are spelled as an `OR` chain, not
    //    `IN (…)`: SQLite checks an IN list of three by filling a throwaway b-tree on every
    //    row written. Queries name the open states with `orders::OPEN`, the same expression,
    //    so the planner can prove they fall inside these partial indexes. At 1 M orders
    //    (1,000 open) the state index shrinks from 4,394 pages to 6; the upgrade takes 0.7 s.
    r#"
    DROP INDEX orders_state_next_poll;
    CREATE INDEX orders_open_next_poll ON orders(state, next_poll_at)
        WHERE state = 'awaiting_approval' OR state = 'pending' OR state = 'needs_attention';
    DROP INDEX orders_one_open_renewal;
    CREATE UNIQUE INDEX orders_one_open_renewal ON orders(predecessor_id)
        WHERE predecessor_id IS NOT NULL
          AND (state = 'awaiting_approval' OR state = 'pending' OR state = 'needs_attention');
    "#,
    // 7: every column that refers to a certificate or a key gets an index. Deleting a
    //    certificate made SQLite look for rows pointing at it (the foreign keys'
    //    `ON DELETE SET NULL`, the key's other users) by walking `certificates` and `orders`
    //    whole, eight times: 0.7 s at 1 M certificates, longer with their orders, all of it
    //    holding the write lock that every issuance waits for. `issuing_order` (whether a
    //    requester may renew) walked the orders back to the certificate's. Partial: a row
    //    without the reference has no entry, so a first issuance writes no predecessor entries.
    r#"
    CREATE INDEX certificates_predecessor ON certificates(predecessor_id) WHERE predecessor_id IS NOT NULL;
    CREATE INDEX certificates_key ON certificates(key_id) WHERE key_id IS NOT NULL;
    CREATE INDEX orders_certificate ON orders(certificate_id) WHERE certificate_id IS NOT NULL;
    CREATE INDEX orders_predecessor ON orders(predecessor_id) WHERE predecessor_id IS NOT NULL;
    CREATE INDEX orders_key ON orders(key_id) WHERE key_id IS NOT NULL;
    "#,
    // 8: a notification's delivery is recorded per channel. With one `sent_at` for both, a
    //    webhook that failed kept the mail from ever being sent, and a relay that failed sent
    //    the webhook the same event on every retry. `sent_at` stays: every configured channel
    //    has it. And a certificate that expired while its automatic renewal kept failing is
    //    still retried (it left the scheduler's view when it became `expired`): the
    //    scheduler finds those through their own small index.
    r#"
    ALTER TABLE notifications ADD COLUMN webhook_sent_at INTEGER;
    ALTER TABLE notifications ADD COLUMN email_sent_at INTEGER;
    CREATE INDEX certificates_due_expired ON certificates(renew_after)
        WHERE status = 'expired' AND renew_after IS NOT NULL AND renewal_attempts > 0;
    "#,
    // 9: a certificate id is never given out twice. `certificates.id` is a plain rowid, so
    //    after the newest certificate was deleted the next one got its id, and with it the
    //    deleted one's audit history (a keyCompromise revocation included, which then
    //    condemned the new certificate's key). `AUTOINCREMENT` cannot be added without
    //    rebuilding the table, which foreign keys from orders and deployments forbid inside a
    //    migration; so the highest id ever deleted is kept here, by trigger, and an insert
    //    takes the next id above both it and the table's own highest. The starting value
    //    counts ids only the audit log still remembers (deleted before this migration): the
    //    object ids of certificate deletions, which are always an id in decimal.
    //    And a notification channel gets only what was queued since `serve` first ran with it
    //    configured (`configure_channels`). Where notifications were ever tried, a channel was
    //    configured before this version: both count as configured since always, so nothing
    //    still queued (a failing webhook's retries, events queued while serve was stopped for
    //    the upgrade) is dropped; the first `serve` forgets the one it does not configure.
    r#"
    CREATE TABLE certificate_ids (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        last_deleted INTEGER NOT NULL
    );
    INSERT INTO certificate_ids (id, last_deleted) VALUES (1, max(
        (SELECT coalesce(max(id), 0) FROM certificates),
        (SELECT coalesce(max(CAST(object_id AS INTEGER)), 0) FROM audit_events
          WHERE object_type = 'certificate' AND action = 'certificate.delete'
            AND object_id NOT GLOB '*[^0-9]*' AND length(object_id) BETWEEN 1 AND 18)));
    CREATE TRIGGER certificate_ids_never_reused AFTER DELETE ON certificates
    BEGIN
        UPDATE certificate_ids SET last_deleted = max(last_deleted, OLD.id) WHERE id = 1;
    END;
    INSERT INTO meta (name, value)
        SELECT channel, 0 FROM (SELECT 'notify_webhook_since' AS channel UNION ALL SELECT 'notify_email_since')
        WHERE EXISTS (SELECT 1 FROM notifications WHERE attempts > 0 OR sent_at IS NOT NULL);
    "#,
    // 10: a certificate that expired before its automatic renewal was tried at all (`serve`
    //     was down over its renewal time, its renewal was still pending at the CA or waiting
    //     for approval) was dropped silently: the scheduler's index of expired certificates
    //     asked for a failed attempt. Every expired certificate with a renewal time is now
    //     renewed as soon as it can be.
    r#"
    DROP INDEX certificates_due_expired;
    CREATE INDEX certificates_due_expired ON certificates(renew_after)
        WHERE status = 'expired' AND renew_after IS NOT NULL;
    "#,
    // 11: an API token may expire. A token handed to a pipeline or a contractor lived until
    //     someone remembered to revoke it. Tokens made before this version never expire.
    r#"
    ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
    "#,
    // 12: connectors' caches (`cache-set`) lived in each process's memory: every CLI command
    //     and every restart of `serve` registered a new ACME account, and an order left
    //     pending by one process could not be finished by another. Entries are sealed (an
    //     access token, an ACME account key) and found by a digest of account and key; an
    //     account's `cache_epoch` changes whenever its cache is emptied.
    r#"
    CREATE TABLE connector_cache (
        account    TEXT NOT NULL,
        key_digest BLOB NOT NULL,
        sealed     BLOB NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (account, key_digest)
    ) WITHOUT ROWID;
    ALTER TABLE accounts ADD COLUMN cache_epoch INTEGER NOT NULL DEFAULT 0;
    "#,
    // 13: a deployment that failed (an unwritable directory, a failing reload hook) was never
    //     tried again: after an automatic renewal the server kept the old certificate until it
    //     expired. A target whose last deployment failed is retried by `serve` with backoff;
    //     those of active certificates that failed before this version are retried too.
    r#"
    CREATE TABLE deploy_retries (
        certificate_id INTEGER NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
        target         TEXT NOT NULL,
        failures       INTEGER NOT NULL,
        next_at        INTEGER NOT NULL,
        PRIMARY KEY (certificate_id, target)
    ) WITHOUT ROWID;
    CREATE INDEX deploy_retries_next ON deploy_retries(next_at);
    INSERT INTO deploy_retries (certificate_id, target, failures, next_at)
        SELECT d.certificate_id, d.target, 1, d.at + 300 FROM deployments d
        JOIN certificates c ON c.id = d.certificate_id AND c.status = 'active'
        WHERE d.outcome = 'failure'
          AND d.id = (SELECT max(id) FROM deployments l WHERE l.certificate_id = d.certificate_id AND l.target = d.target);
    "#,
    // 14: ACME http-01 answers lived in `serve`'s memory: a restart while a CA was about to
    //     validate answered 404, and the order failed. They are kept until withdrawn or lapsed.
    r#"
    CREATE TABLE acme_http01_answers (
        token             TEXT PRIMARY KEY,
        key_authorization TEXT NOT NULL,
        account           TEXT NOT NULL,
        names             TEXT NOT NULL,
        expires_at        INTEGER NOT NULL
    );
    "#,
    // 15: an API client whose issue request timed out or lost its connection could not tell
    //     whether a certificate was issued, and asking again issued a second one. A request
    //     may carry an `Idempotency-Key`: it is kept with the order, with a digest of the
    //     request. Which order holds a key (an open one, or one issued in the last 24 hours)
    //     depends on the time, so it is decided in the write transaction that creates an
    //     order (`orders::held_key`), not by a unique index; this one finds the candidates.
    r#"
    ALTER TABLE orders ADD COLUMN idempotency_key TEXT;
    ALTER TABLE orders ADD COLUMN request_sha256 TEXT;
    CREATE INDEX orders_idempotency ON orders(requested_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
    "#,
    // 16: revoking for keyCompromise protected only keys the host made: a key from an uploaded
    //     CSR went on being certified — another certificate on it was not made due, and the
    //     same CSR was accepted again. A compromised public key is recorded by its digest;
    //     each certificate keeps its own (certificates stored before this version have none
    //     until a compromise revocation looks for them). The compromises made before it are
    //     recorded by 17's Rust step, which runs after it on every path.
    r#"
    ALTER TABLE certificates ADD COLUMN public_sha256 TEXT;
    CREATE TABLE compromised_keys (
        public_sha256  TEXT PRIMARY KEY,
        certificate_id INTEGER NOT NULL,
        at             INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 17: the build that first wrote version 16 (51a5454) recorded no compromise made before
    //     it and named an RSA key by its whole key, which the next names by its modulus; an
    //     inventory it migrated was version 16 all the same, so nothing ran again, and keys
    //     revoked for keyCompromise were certified again (upgrade review). A compromise found
    //     by a migration also left the other certificates on the key in service. All of it is
    //     Rust (`settle_compromises`); the version is what makes it run once, and what makes
    //     that build refuse an inventory it would misread.
    "",
    // 18: a webhook told deliveries apart by the notification's row id, which a restore
    //     hands out again for other events: a receiver that dropped repeats dropped those
    //     (operator review of stop 41). A notification now carries a random delivery id of
    //     its own; one queued before keeps its row id as its delivery id. Rust
    //     (`add_delivery_ids`), so that running it again changes nothing.
    "",
    // 19: a CA outage sent one `renewal_failed` per certificate of its profiles, and its end
    //     one `renewal_recovered` each (scale review of stop 43). Each kind is sent one by one
    //     for a profile's first five in an hour and gathered into a digest after that
    //     (`digest.rs`): the window per kind and profile, and the certificates whose failure
    //     a digest said (the daily reminder counts it as said); and the index `/metrics`
    //     counts failing renewals from. Safe to run again, as the
    //     last migration must be (an inventory set one version back is upgraded again).
    r#"
    CREATE TABLE IF NOT EXISTS notification_windows (
        kind       TEXT NOT NULL,
        profile    TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        said       INTEGER NOT NULL,
        digest_id  INTEGER,
        PRIMARY KEY (kind, profile)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS renewal_failed_folded (
        certificate_id INTEGER PRIMARY KEY,
        at             INTEGER NOT NULL
    );
    -- The failing renewals, for `/metrics`' count: in a storm it read every due row to tell
    -- them apart (seconds at 500 k due). Only a failure writes an entry, never an issuance.
    CREATE INDEX IF NOT EXISTS certificates_failing ON certificates(renew_after, renewal_attempts)
        WHERE renewal_attempts > 0 AND renew_after IS NOT NULL;
    "#,
    // 20: a restore put an older inventory in place, and the next certificates, orders and
    //     audit events took the ids of those made since the backup — ids API clients, webhook
    //     receivers, deploy hooks and audit readers had already seen for others. The restore
    //     raises each floor to the replaced inventory's (`backup::finish_restore`): certificates
    //     have theirs (migration 9), orders get one here. Safe to run again.
    r#"
    CREATE TABLE IF NOT EXISTS order_ids (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        floor INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO order_ids (id, floor) VALUES (1, 0);
    "#,
    // 21: a certificate's notifications go out in order, each waiting while an earlier one of
    //     its certificate is undelivered (`claim_notifications`); this finds those in one probe,
    //     where `notifications_certificate` read the certificate's whole history.
    r#"
    CREATE INDEX IF NOT EXISTS notifications_waiting ON notifications(certificate_id)
        WHERE sent_at IS NULL AND certificate_id IS NOT NULL;
    "#,
];

/// The schema version this binary writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the schema up to [`CURRENT_VERSION`], one transaction per migration. Returns the
/// version an existing inventory was upgraded from, if it was: the last migration's
/// transaction audits it (`inventory.upgrade`), for an older certhost cannot open it since
/// (upgrade walkthrough of stop 49: schema 15 became 21 without a word anywhere).
pub(super) fn migrate(conn: &mut Connection) -> Result<Option<u32>, InventoryError> {
    let (mut opened_at, mut upgraded_from) = (None, None);
    loop {
        // An IMMEDIATE transaction takes the write lock before reading the version, so two
        // processes opening a new database at once cannot both apply the same migration.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > CURRENT_VERSION {
            return Err(InventoryError::NewerSchema { found, supported: CURRENT_VERSION });
        }
        // Version 0 is a new database only when it is empty: every migration sets the version
        // in its own transaction. One with tables and no version is another program's — or
        // the inventory after another database's write-ahead log was replayed onto it — and
        // migrating it would bury the inventory's data under a new, empty one.
        if found == 0 {
            let objects: i64 = tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
            if objects > 0 {
                return Err(InventoryError::Foreign(objects));
            }
        }
        let Some(sql) = MIGRATIONS.get(found as usize) else {
            return Ok(upgraded_from);
        };
        // The version found before the first migration of this open: 0 is a new inventory.
        if *opened_at.get_or_insert(found) > 0 {
            upgraded_from.get_or_insert(found);
        }
        tx.execute_batch(sql)?;
        if found + 1 == SETTLED_COMPROMISES_VERSION {
            settle_compromises(&tx, crate::clock::unix_now())?;
        }
        if found + 1 == DELIVERY_ID_VERSION {
            add_delivery_ids(&tx)?;
        }
        if let Some(from) = upgraded_from
            && found + 1 == CURRENT_VERSION
        {
            let floor = super::backup::IdFloors::pending(&tx).audit_events;
            super::audit::record_above(
                &tx,
                crate::clock::unix_now(),
                &super::audit::NewAuditEvent {
                    actor: UPGRADE_ACTOR,
                    action: "inventory.upgrade",
                    object_type: "inventory",
                    object_id: None,
                    outcome: "success",
                    detail: serde_json::json!({ "from_schema": from, "to_schema": CURRENT_VERSION }),
                },
                floor,
            )?;
        }
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

/// The version that names every compromised RSA key by its modulus, records the compromises
/// a version-16 inventory may lack and acts on them.
const SETTLED_COMPROMISES_VERSION: u32 = 17;

/// The version whose notifications carry a delivery id of their own.
const DELIVERY_ID_VERSION: u32 = 18;

/// Adds `notifications.delivery_id`, unless it is there (a migration run again).
fn add_delivery_ids(tx: &rusqlite::Transaction<'_>) -> Result<(), InventoryError> {
    let there: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('notifications') WHERE name = 'delivery_id')",
        [],
        |r| r.get(0),
    )?;
    if !there {
        tx.execute_batch("ALTER TABLE notifications ADD COLUMN delivery_id TEXT;")?;
    }
    Ok(())
}

/// Who the audit log says made a certificate due for a compromise a migration found.
const UPGRADE_ACTOR: &str = "certhost upgrade";

/// Brings the record of compromised keys to what revoking under this build would have made of
/// it: RSA keys named by modulus ([`super::keys::identity_sha256`]) in certificate rows and in
/// `compromised_keys`, every successful keyCompromise revocation recorded, and every other
/// active certificate on a compromised key due at `now`, audited as a revocation today would
/// audit it (`certificate.key_compromised`). Until then such a certificate stayed in service
/// until its renewal came due, and its renewal then failed.
fn settle_compromises(tx: &rusqlite::Transaction<'_>, now: i64) -> Result<(), InventoryError> {
    let identity = |pem: &str| super::keys::certificate_pem_digests(pem).map(|(identity, _)| identity);
    // RSA rows 51a5454 digested whole (`rsa-n:` marks a name by modulus).
    let stale: Vec<(i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, pem FROM certificates
             WHERE key_algorithm = 'rsa' AND public_sha256 IS NOT NULL AND public_sha256 NOT LIKE 'rsa-n:%'",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, pem) in stale {
        tx.execute("UPDATE certificates SET public_sha256 = ?2 WHERE id = ?1", rusqlite::params![id, identity(&pem)])?;
    }
    let stale: Vec<(String, i64, i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT k.public_sha256, k.certificate_id, k.at, c.pem FROM compromised_keys k
             JOIN certificates c ON c.id = k.certificate_id
             WHERE c.key_algorithm = 'rsa' AND k.public_sha256 NOT LIKE 'rsa-n:%'",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?
    };
    for (old, certificate_id, at, pem) in stale {
        if let Some(name) = identity(&pem) {
            tx.execute("DELETE FROM compromised_keys WHERE public_sha256 = ?1", [&old])?;
            tx.execute(
                "INSERT OR IGNORE INTO compromised_keys (public_sha256, certificate_id, at) VALUES (?1, ?2, ?3)",
                rusqlite::params![name, certificate_id, at],
            )?;
        }
    }
    record_past_compromises(tx)?;
    let any: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM compromised_keys)", [], |r| r.get(0))?;
    if !any {
        // Nothing to look for: the rows below are parsed only in an inventory that needs it.
        return Ok(());
    }
    let unnamed: Vec<(i64, String)> = {
        let mut stmt =
            tx.prepare("SELECT id, pem FROM certificates WHERE status = 'active' AND public_sha256 IS NULL")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, pem) in unnamed {
        if let Some(name) = identity(&pem) {
            tx.execute("UPDATE certificates SET public_sha256 = ?2 WHERE id = ?1", rusqlite::params![id, name])?;
        }
    }
    let due: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare(
            "UPDATE certificates SET renew_after = ?1
             WHERE status = 'active' AND renew_after IS NOT NULL AND renew_after > ?1
               AND public_sha256 IN (SELECT public_sha256 FROM compromised_keys)
             RETURNING id, (SELECT certificate_id FROM compromised_keys k WHERE k.public_sha256 = certificates.public_sha256)",
        )?;
        stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    // A restored backup's events go above those of the inventory it replaced (`backup.rs`).
    let floor = super::backup::IdFloors::pending(tx).audit_events;
    for (id, revoked) in due {
        super::audit::record_above(
            tx,
            now,
            &super::audit::NewAuditEvent {
                actor: UPGRADE_ACTOR,
                action: "certificate.key_compromised",
                object_type: "certificate",
                object_id: Some(id.to_string()),
                outcome: "success",
                detail: serde_json::json!({ "revoked": revoked, "found_at": "upgrade" }),
            },
            floor,
        )?;
    }
    Ok(())
}

/// Fills `compromised_keys` from the keyCompromise revocations made before it existed: made
/// empty, the table protected nothing revoked before an upgrade, and the very CSR an operator
/// had declared compromised was certified again (diff review of stop 39). A digest SQL cannot
/// compute, so this step of the migration is Rust: the stored key's, else the certificate's own.
fn record_past_compromises(tx: &rusqlite::Transaction<'_>) -> Result<(), InventoryError> {
    // Revocations that happened: a failed attempt (a connector without revoke) declared nothing.
    let revoked: Vec<(i64, String, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT c.id, c.pem, a.at FROM audit_events a
             JOIN certificates c ON c.id = CAST(a.object_id AS INTEGER)
             WHERE a.object_type = 'certificate' AND a.action = 'certificate.revoke' AND a.outcome = 'success'
               AND json_extract(a.detail, '$.reason') = 'keyCompromise'",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    for (id, pem, at) in revoked {
        let digest = super::keys::certificate_pem_digests(&pem).map(|(identity, _)| identity);
        if let Some(digest) = digest {
            tx.execute(
                "INSERT OR IGNORE INTO compromised_keys (public_sha256, certificate_id, at) VALUES (?1, ?2, ?3)",
                rusqlite::params![digest, id, at],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(conn: &Connection) -> Vec<String> {
        let mut stmt =
            conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name").expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    }

    /// An in-memory database as the first `version` migrations left it.
    fn at_version(version: u32) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        for sql in &MIGRATIONS[..version as usize] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", version).expect("version");
        conn
    }

    /// Regression (review of stop 33): a database with tables and no schema version — another
    /// program's, or the inventory after a foreign `-wal` was replayed onto it — was migrated
    /// as if new, and the inventory it replaced was lost for good at the next checkpoint.
    #[test]
    fn a_database_with_tables_but_no_version_is_refused_and_left_as_it_was() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE x (a); INSERT INTO x VALUES ('kept');").expect("foreign");
        let err = migrate(&mut conn).expect_err("not an inventory");
        assert!(matches!(err, InventoryError::Foreign(1)), "{err:?}");
        assert!(err.to_string().starts_with("certhost.db is not a certhost inventory"), "{err}");
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, 0);
        assert_eq!(indexes(&conn), Vec::<String>::new(), "no migration ran");
        let empty = &mut Connection::open_in_memory().expect("open");
        migrate(empty).expect("an empty database is a new inventory");
    }

    #[test]
    fn a_version_2_database_loses_only_the_unused_indexes_and_keeps_its_rows() {
        let mut conn = at_version(2);
        conn.execute(
            "INSERT INTO audit_events (at, actor, action, object_type, outcome) VALUES (1, 'a', 'x', 'y', 'success')",
            [],
        )
        .expect("row");
        let before = indexes(&conn);
        migrate(&mut conn).expect("migrate");
        // Later migrations bring their own indexes (chains, 6, 7, 8, 13, 14, 15) and replace one (6).
        const LATER: [&str; 11] = [
            "orders_idempotency",
            "deploy_retries_next",
            "orders_open_next_poll",
            "certificates_predecessor",
            "certificates_key",
            "orders_certificate",
            "orders_predecessor",
            "orders_key",
            "certificates_due_expired",
            "certificates_failing",
            "notifications_waiting",
        ];
        let after: Vec<String> = indexes(&conn)
            .into_iter()
            .filter(|i| {
                !i.starts_with("sqlite_autoindex_chains")
                    && !i.starts_with("sqlite_autoindex_acme_http01_answers")
                    && !LATER.contains(&i.as_str())
            })
            .collect();
        let dropped = [
            "audit_events_at",
            "certificates_common_name",
            "certificates_issuer",
            "certificates_not_after",
            "orders_state_next_poll",
        ];
        let expected: Vec<String> = before.into_iter().filter(|i| !dropped.contains(&i.as_str())).collect();
        assert_eq!(after, expected);
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, CURRENT_VERSION);
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get(0)).expect("count");
        assert_eq!(rows, 2, "the row kept, and the upgrade's own");
        let (actor, detail): (String, String) = conn
            .query_row("SELECT actor, detail FROM audit_events WHERE action = 'inventory.upgrade'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("the upgrade is audited");
        assert_eq!(actor, UPGRADE_ACTOR);
        assert_eq!(detail, format!(r#"{{"from_schema":2,"to_schema":{CURRENT_VERSION}}}"#));
        assert_eq!(migrate(&mut conn).expect("again"), None, "an inventory up to date is not upgraded");
    }

    #[test]
    fn a_version_4_database_keeps_each_chain_once_and_every_certificate_keeps_its_chain() {
        let mut conn = at_version(4);
        let shared = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let other = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        for (n, chain) in [shared, "", other, shared].iter().enumerate() {
            conn.execute(
                "INSERT INTO certificates (pem, chain_pem, serial, sha1, sha256, subject, issuer, sans, not_before,
                     not_after, key_algorithm, key_bits, status, source, created_at)
                 VALUES ('leaf', ?1, ?2, ?2, ?2, 'CN=a', 'CN=ca', '[]', 0, 1, 'ec-p256', 256, 'active', 'import', 0)",
                rusqlite::params![chain, format!("{n:02x}")],
            )
            .expect("row");
        }
        migrate(&mut conn).expect("migrate");
        let chains: Vec<String> = {
            let mut stmt = conn.prepare("SELECT pem FROM chains ORDER BY id").expect("prepare");
            stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
        };
        assert_eq!(chains, [shared, other], "each distinct chain once, in order of first use");
        let read: Vec<(String, String)> = {
            let mut stmt = conn
                .prepare(
                    "SELECT COALESCE((SELECT chains.pem FROM chains WHERE chains.id = certificates.chain_id), ''),
                            chain_pem
                     FROM certificates ORDER BY id",
                )
                .expect("prepare");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
        };
        let expected: Vec<(String, String)> =
            [shared, "", other, shared].iter().map(|c| (c.to_string(), String::new())).collect();
        assert_eq!(read, expected, "every certificate reads its own chain; no row keeps a copy");
    }

    /// Migration 6 rebuilds the order-state indexes over open orders only; every order stays,
    /// and a certificate still cannot get a second open renewal — only a finished one frees it.
    #[test]
    fn a_version_5_database_keeps_its_orders_and_still_allows_one_open_renewal() {
        let mut conn = at_version(5);
        conn.execute(
            "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                 key_algorithm, key_bits, status, source, created_at)
             VALUES ('leaf', '01', '01', '01', 'CN=a', 'CN=ca', '[]', 0, 1, 'ec-p256', 256, 'active', 'import', 0)",
            [],
        )
        .expect("certificate");
        let order = |conn: &Connection, request: &str, state: &str| {
            conn.execute(
                "INSERT INTO orders (request_id, kind, state, csr_pem, predecessor_id, requested_by, created_at, updated_at)
                 VALUES (?1, 'renew', ?2, 'csr', 1, 'test', 0, 0)",
                [request, state],
            )
        };
        order(&conn, "a", "issued").expect("finished renewal");
        order(&conn, "b", "pending").expect("open renewal");
        migrate(&mut conn).expect("migrate");
        let states: Vec<String> = {
            let mut stmt = conn.prepare("SELECT state FROM orders ORDER BY id").expect("prepare");
            stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
        };
        assert_eq!(states, ["issued", "pending"]);
        assert!(indexes(&conn).contains(&"orders_open_next_poll".to_owned()));
        assert!(!indexes(&conn).contains(&"orders_state_next_poll".to_owned()));
        for open in ["pending", "awaiting_approval", "needs_attention"] {
            let err = order(&conn, "c", open).expect_err("a second open renewal");
            assert!(err.to_string().contains("UNIQUE"), "{err}");
        }
        order(&conn, "c", "failed").expect("another finished renewal");
        conn.execute("UPDATE orders SET state = 'issued' WHERE request_id = 'b'", []).expect("finish");
        order(&conn, "d", "pending").expect("an open renewal once the last one finished");
    }

    /// Migration 9 starts above every certificate id the table or the audit log has seen, and
    /// its trigger remembers each id deleted after it.
    #[test]
    fn a_version_8_database_never_gives_out_a_deleted_certificates_id_again() {
        let mut conn = at_version(8);
        for n in ["01", "02"] {
            conn.execute(
                "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                     key_algorithm, key_bits, status, source, created_at)
                 VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 1, 'ec-p256', 256, 'active', 'import', 0)",
                [n],
            )
            .expect("certificate");
        }
        // Certificate 7 was deleted before the upgrade: only its history is left. Object ids
        // that are not a deleted certificate's id count for nothing (an old `/v1/renew`
        // audited its lookup value, which a client chose).
        for (action, object) in [
            ("certificate.delete", "7"),
            ("certificate.renew_request", "9223372036854775807"),
            ("certificate.delete", "12ab"),
        ] {
            conn.execute(
                "INSERT INTO audit_events (at, actor, action, object_type, object_id, outcome)
                 VALUES (1, 'a', ?1, 'certificate', ?2, 'success')",
                [action, object],
            )
            .expect("event");
        }
        // A webhook that never succeeded: tried once, failed, still queued.
        conn.execute(
            "INSERT INTO notifications (kind, subject, created_at, attempts, next_attempt_at, last_error)
             VALUES ('revoked', 's', 1, 1, 61, 'refused')",
            [],
        )
        .expect("notification");
        migrate(&mut conn).expect("migrate");
        let since: Vec<(String, i64)> = {
            let mut stmt =
                conn.prepare("SELECT name, value FROM meta WHERE name LIKE 'notify%' ORDER BY name").expect("prepare");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
        };
        let always = |name: &str| (name.to_owned(), 0);
        assert_eq!(since, [always("notify_email_since"), always("notify_webhook_since")], "the queue is kept");
        let last = |conn: &Connection| -> i64 {
            conn.query_row("SELECT last_deleted FROM certificate_ids", [], |r| r.get(0)).expect("last")
        };
        assert_eq!(last(&conn), 7);
        conn.execute("UPDATE certificate_ids SET last_deleted = 0", []).expect("reset");
        conn.execute("DELETE FROM certificates WHERE id = 2", []).expect("delete");
        assert_eq!(last(&conn), 2, "the trigger records the deleted id");
        conn.execute("DELETE FROM certificates WHERE id = 1", []).expect("delete");
        assert_eq!(last(&conn), 2, "a lower id never lowers it");
    }

    /// Migration 13 retries what had failed last, for active certificates only.
    #[test]
    fn a_version_12_database_retries_each_active_certificates_targets_that_failed_last() {
        let mut conn = at_version(12);
        for (n, status) in [("01", "active"), ("02", "superseded")] {
            conn.execute(
                "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                     key_algorithm, key_bits, status, source, created_at)
                 VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 1, 'ec-p256', 256, ?2, 'import', 0)",
                [n, status],
            )
            .expect("certificate");
        }
        for (cert, target, outcome, at) in [
            (1, "files:/a", "success", 10),
            (1, "files:/a", "failure", 20),
            (1, "files:/b", "failure", 10),
            (1, "files:/b", "success", 20),
            (2, "files:/a", "failure", 30),
        ] {
            conn.execute(
                "INSERT INTO deployments (certificate_id, target, outcome, at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![cert, target, outcome, at],
            )
            .expect("deployment");
        }
        migrate(&mut conn).expect("migrate");
        let retries: Vec<(i64, String, i64, i64)> = conn
            .prepare("SELECT certificate_id, target, failures, next_at FROM deploy_retries")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(retries, [(1, "files:/a".to_owned(), 1, 320)]);
    }

    /// Diff review of stop 39: the table of compromised keys was made empty, so a key revoked
    /// for keyCompromise before the upgrade was certified again. Migration 17 records it.
    #[test]
    fn a_version_15_keycompromise_revocation_is_recorded_by_its_public_key() {
        let mut conn = at_version(15);
        let ca = crate::root_ca::create("Revoked Earlier", 10).expect("ca");
        let der = crate::cert::pem_certificates(&ca.certificate_pem).expect("pem").remove(0);
        let digest = super::super::keys::identity_sha256(
            &crate::cert::CertificateInfo::from_der(&der).expect("info").public_key_raw,
        );
        conn.execute(
            "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                 key_algorithm, key_bits, status, source, created_at)
             VALUES (3, ?1, '01', 'a', 'b', 'CN=x', 'CN=x', '[]', 0, 1, 'ec', 256, 'revoked', 'issue', 0)",
            [&ca.certificate_pem],
        )
        .expect("certificate");
        for (object, reason) in [("3", "keyCompromise"), ("3", "superseded"), ("9", "keyCompromise")] {
            conn.execute(
                "INSERT INTO audit_events (at, actor, action, object_type, object_id, outcome, detail)
                 VALUES (42, 'op', 'certificate.revoke', 'certificate', ?1, 'success', json_object('reason', ?2))",
                [object, reason],
            )
            .expect("event");
        }
        migrate(&mut conn).expect("migrate");
        let recorded: Vec<(String, i64, i64)> = conn
            .prepare("SELECT public_sha256, certificate_id, at FROM compromised_keys")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(recorded, [(digest, 3, 42)], "a deleted certificate's event has nothing to record");
    }

    /// Two certificates on one new RSA key, as PEM.
    fn two_rsa_certificates() -> (String, String, String) {
        let key = crate::key::PrivateKey::generate(crate::key::KeyType::Rsa2048).expect("key");
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec());
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).expect("signer");
        let pem = |cn: &str| {
            let params = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
            crate::der::pem_encode("CERTIFICATE", params.self_signed(&signer).expect("cert").der())
        };
        let whole = super::super::keys::public_sha256(key.public_key_raw());
        (pem("a.example"), pem("b.example"), whole)
    }

    fn insert_certificate(conn: &Connection, id: i64, pem: &str, status: &str, public_sha256: Option<&str>) {
        conn.execute(
            "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                 key_algorithm, key_bits, status, source, created_at, renew_after, public_sha256)
             VALUES (?1, ?2, ?1, ?1, ?1, 'CN=x', 'CN=x', '[]', 0, 4000000000, 'rsa', 2048, ?3, 'issue', 0,
                     3900000000, ?4)",
            rusqlite::params![id, pem, status, public_sha256],
        )
        .expect("certificate");
    }

    fn revoke_event(conn: &Connection, id: i64) {
        conn.execute(
            "INSERT INTO audit_events (at, actor, action, object_type, object_id, outcome, detail)
             VALUES (42, 'op', 'certificate.revoke', 'certificate', ?1, 'success', json_object('reason', 'keyCompromise'))",
            [id.to_string()],
        )
        .expect("event");
    }

    /// Upgrade review of stop 39: an inventory the first version-16 build migrated had recorded
    /// no earlier compromise and named RSA keys whole; at version 16 nothing ran again, and the
    /// compromised key was certified again. Migration 17 names the key by its modulus, records
    /// the compromise and makes the key's other certificate due, audited.
    #[test]
    fn a_version_16_inventory_of_the_first_build_gets_its_compromises_recorded_and_acted_on() {
        let (revoked, other, whole) = two_rsa_certificates();
        let mut conn = at_version(16);
        // Revoked before that build's upgrade: no row in compromised_keys.
        insert_certificate(&conn, 1, &revoked, "revoked", None);
        revoke_event(&conn, 1);
        // Stored by that build: named by the whole key.
        insert_certificate(&conn, 2, &other, "active", Some(&whole));
        migrate(&mut conn).expect("migrate");
        let identity = super::super::keys::certificate_pem_digests(&other).expect("digests").0;
        assert!(identity.starts_with("rsa-n:"), "{identity}");
        let recorded: Vec<(String, i64)> = conn
            .prepare("SELECT public_sha256, certificate_id FROM compromised_keys")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(recorded, [(identity.clone(), 1)]);
        let (name, renew_after): (String, i64) = conn
            .query_row("SELECT public_sha256, renew_after FROM certificates WHERE id = 2", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert_eq!(name, identity);
        assert!(renew_after <= crate::clock::unix_now(), "the other certificate on the key is due now");
        let audited: (String, String) = conn
            .query_row(
                "SELECT actor, detail FROM audit_events WHERE action = 'certificate.key_compromised' AND object_id = '2'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("audited");
        assert_eq!(audited.0, UPGRADE_ACTOR);
        assert!(audited.1.contains(r#""revoked":1"#), "{}", audited.1);
    }

    /// The same build's own keyCompromise revocation recorded the RSA key whole: renamed by
    /// its modulus from the revoked certificate, and an active certificate on it that build
    /// stored with no name at all is found too.
    #[test]
    fn a_compromised_rsa_key_recorded_whole_is_renamed_by_its_modulus() {
        let (revoked, other, whole) = two_rsa_certificates();
        let mut conn = at_version(16);
        insert_certificate(&conn, 1, &revoked, "revoked", Some(&whole));
        conn.execute("INSERT INTO compromised_keys (public_sha256, certificate_id, at) VALUES (?1, 1, 42)", [&whole])
            .expect("recorded whole");
        insert_certificate(&conn, 2, &other, "active", None);
        migrate(&mut conn).expect("migrate");
        let names: Vec<String> = conn
            .prepare("SELECT public_sha256 FROM compromised_keys")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("rsa-n:"), "{names:?}");
        let renew_after: i64 =
            conn.query_row("SELECT renew_after FROM certificates WHERE id = 2", [], |r| r.get(0)).expect("row");
        assert!(renew_after <= crate::clock::unix_now());
    }
}
