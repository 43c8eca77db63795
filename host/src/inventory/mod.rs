//! The inventory: one SQLite database in the data directory holding keys (sealed),
//! certificates, orders and audit events.
//!
//! WAL mode with `synchronous = FULL`: a committed change survives a crash. Migrations run at
//! open ([`schema`]); a wrong master key is detected at open through a sealed check value,
//! never later as garbage.

mod accounts;
mod acme_answers;
mod audit;
mod backup;
mod certificates;
mod config_cache;
mod connector_cache;
mod digest;
pub mod dir_lock;
mod group;
mod keys;
mod lifecycle;
mod master_key;
mod orders;
mod pool;
mod renewals;
mod schema;
mod tokens;
mod wal_vfs;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, Params, Row};

use crate::vault::{MasterKey, VaultError};

pub use accounts::{ConfigRecord, SecretOwner, Upsert, is_file_origin, stranded_warning, taken_by};
pub use acme_answers::InventoryAnswerStore;
pub use audit::{AuditEvent, AuditFilter, NewAuditEvent};
pub use backup::{Backup, Restored, restore_from, set_aside_inventories};
pub use certificates::{CertStatus, CertificateRecord, InsertOutcome, KeyHolder, ListFilter, NewCertificate};
pub use config_cache::ConfigView;
pub use connector_cache::InventoryCacheStore;
pub use group::GroupCommit;
pub use lifecycle::{InventoryGauges, KeyFormat, MAX_NOTE, Revocation, check_note};
pub use master_key::{Rotated, open_data_dir, open_data_dir_for_serve};
pub use orders::{Idempotency, NewOrder, Order, OrderState};
pub use pool::{DEFAULT_POOL_SIZE, InventoryPool, PooledInventory};
pub use renewals::{
    AUTO_RENEWAL_ACTOR, Channel, ChannelsSince, ClaimScope, ClaimedRenewal, Notification, RenewalState,
    RetriedRenewals, ScheduledRenewal,
};
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;
pub use tokens::{MAX_EXPIRY as MAX_TOKEN_EXPIRY, Role, TokenCheck, TokenInfo};

/// One-statement calls through the connection's prepared-statement cache.
///
/// `Connection::query_row` and `execute` parse and plan their SQL on every call; under
/// issuance load that was 9% of serve's request CPU (profile, account, token and certificate
/// lookups on every request). Each distinct SQL text is prepared once per connection instead.
pub(crate) trait CachedSql {
    /// `query_row`, prepared once per connection.
    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
    /// `execute`, prepared once per connection.
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl CachedSql for Connection {
    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "certhost.db";
const VAULT_CHECK: &[u8] = b"certhost vault check v1";

/// Inventory errors, phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// SQLite failed.
    #[error("database error: {cause}{advice}", cause = .0, advice = damaged_advice(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory cannot be created or read.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database was written by a newer certhost.
    #[error(
        "the database has schema version {found}, but this certhost supports up to {supported}; upgrade certhost instead of using this database"
    )]
    NewerSchema {
        /// Version in the file.
        found: u32,
        /// Newest this binary knows.
        supported: u32,
    },
    /// The master key does not open this database's secrets.
    #[error(
        "the master key does not match this data directory (was CERTHOST_MASTER_KEY changed or the key file replaced?)"
    )]
    WrongMasterKey,
    /// Sealing failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Input refused before storing.
    #[error("{0}")]
    Invalid(String),
    /// The database file holds tables but no certhost schema version.
    #[error(
        "certhost.db is not a certhost inventory: it holds {0} tables or indexes but no certhost schema version \
         (another program's database, or a certhost.db-wal that is not its own was replayed onto it); \
         nothing was changed: move it and its -wal aside and restore the inventory from a backup"
    )]
    Foreign(i64),
    /// The database could not store or sync a change (disk full, an I/O error, a failed
    /// fsync): the server's trouble, not the request's, which may be retried once it is fixed.
    #[error("{0}")]
    Storage(String),
    /// A private key that is not the certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// A lookup string that is neither an id nor a thumbprint.
    #[error(
        "{0:?} is neither a certificate id nor a SHA-1/SHA-256 thumbprint (or the first 16 or more hex digits of one)"
    )]
    BadLookup(String),
    /// A list filter that cannot match anything as given (a serial that is not hex): the
    /// caller's query is wrong, a 400 like an unknown status.
    #[error("{0}")]
    InvalidFilter(String),
    /// A status word that does not exist.
    #[error("unknown status {0:?} (expected active, superseded, revoked or expired)")]
    InvalidStatus(String),
    /// The object is still referenced.
    #[error("{0}; refusing to delete it")]
    InUse(String),
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller may not make this change whatever the object's state (e.g. approving one's
    /// own request: two people must see a held order).
    #[error("{0}")]
    NotAllowed(String),
    /// The change conflicts with the object's current state (e.g. a renewal already running).
    #[error("{0}")]
    Conflict(String),
    /// A renewal of a certificate that has one open: that order answers for it, and an API
    /// client is pointed to it (`order_id`, `Location`) as for the other conflicts about an
    /// order (API review of stop 40).
    #[error("certificate {certificate} already has renewal order {order} in progress")]
    RenewalOpen {
        /// The certificate.
        certificate: i64,
        /// Its open renewal order.
        order: i64,
    },
    /// A CA answered an order with a certificate the inventory already holds and no longer has
    /// in service (superseded, revoked): storing it would close the order on it and, for a
    /// renewal, retire the predecessor for it — leaving the name with no active certificate
    /// and no renewal scheduled, reported as a success (hostile-connector review of stop 41).
    #[error("it is certificate {certificate}, already in the inventory as {status}: the CA issued nothing new")]
    NothingNew {
        /// The certificate the CA answered with.
        certificate: i64,
        /// Its status.
        status: String,
    },
    /// A new order's `Idempotency-Key` is held by another order of the caller, made since the
    /// request looked (two requests with one key at once): that order answers it.
    #[error("this Idempotency-Key belongs to order {0}, made meanwhile by a request with the same key")]
    KeyHeld(i64),
    /// Another process holds the database's write lock and did not let go.
    #[error(
        "the inventory database {path} is locked by another process (waited {} s); try again once it is done",
        OPEN_PATIENCE.as_secs()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Stored data no longer parses.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The host itself failed (a thread that did not start, a pool shut down): not the
    /// request's fault, so an API client gets a 500, not the 422 of [`InventoryError::Invalid`]
    /// (code review of stop 39).
    #[error("{0}")]
    Internal(String),
}

/// Longest `Inventory::open` waits for another process's write lock.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// How long an open that must migrate the schema waits for other processes to close the
/// directory (a `serve` finishing its requests as it stops) before it refuses.
const MIGRATION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The schema version of the database at `path` as another connection would read it, or
/// `None` when it cannot be read (no file yet: the open creates it). Read only while this
/// process has no connection to it: closing one would drop the process's SQLite locks.
fn schema_version_on_disk(path: &Path) -> Option<u32> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ok()?;
    conn.busy_timeout(std::time::Duration::from_secs(1)).ok()?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).ok()
}

/// What to do about a damaged database, said where SQLite says only that it is damaged
/// (black-box review of stop 36: every command answered "database disk image is malformed").
fn damaged_advice(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) =>
        {
            "; the inventory database is damaged: restore it from a backup (certhost restore FILE --replace keeps \
             the damaged one aside)"
        }
        _ => "",
    }
}

impl InventoryError {
    /// Whether SQLite gave up waiting for another connection's lock (`SQLITE_BUSY`/`LOCKED`):
    /// a moment's contention, not a fault of the request or of the data.
    pub fn is_busy(&self) -> bool {
        matches!(self, InventoryError::Locked { .. })
            || matches!(self, InventoryError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    }

    /// Whether the database files could not be read or written (an I/O error, a full disk, a
    /// file made read-only or immutable): the server's trouble, not the request's. An API
    /// client got a 500 for it (operator review of stop 39).
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, InventoryError::Storage(_))
            || matches!(self, InventoryError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::PermissionDenied
            ))
    }
}

/// One open connection to the inventory. `certhost serve` keeps several in an
/// [`InventoryPool`].
pub struct Inventory {
    conn: Connection,
    vault: MasterKey,
    path: PathBuf,
    clock: Option<i64>,
    /// Set on `serve`'s pooled connections: [`Inventory::write`] sends changes to the group
    /// committer instead of committing them here.
    group: Option<GroupCommit>,
    /// Set on `serve`'s pooled connections: tokens, profiles and accounts are reused from
    /// the pool's [`config_cache::ConfigCache`] while the configuration is unchanged.
    config: Option<std::sync::Arc<config_cache::ConfigCache>>,
    /// A request's configuration generation, reused by lookups on this connection until it
    /// goes back to the pool ([`Inventory::pin_config`]).
    config_pin: Option<config_cache::Pin>,
    /// This process's shared lock on the data directory (`dir_lock`), held while any of its
    /// connections is open, so the master key is never rotated under it.
    _hold: std::sync::Arc<dir_lock::DirHold>,
}

/// One change's transaction: a transaction of its own, a savepoint inside one already open,
/// or — inside an [`Inventory::write`] change — simply that change's transaction. Either way
/// `commit` makes it part of what the next sync writes, and an error undoes it.
pub(crate) enum WriteTx<'c> {
    Own(rusqlite::Transaction<'c>),
    Nested(rusqlite::Savepoint<'c>),
    /// Part of an all-or-nothing change ([`group::atomic`]): every error inside one reaches
    /// its end (no change's code goes on past a failed step), which then undoes all of it,
    /// so a savepoint of its own would only cost a copy of each page it touches.
    Joined(&'c Connection),
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            WriteTx::Own(t) => t,
            WriteTx::Nested(s) => s,
            WriteTx::Joined(c) => c,
        }
    }
}

/// Starts one change on `conn`: its own IMMEDIATE transaction; inside an
/// [`Inventory::write`] change, that change; or a savepoint when some other transaction is
/// open, so the change commits with it. A function of the connection, not a method, so the
/// vault can be borrowed beside it.
pub(crate) fn write_tx(conn: &mut Connection) -> rusqlite::Result<WriteTx<'_>> {
    if conn.is_autocommit() {
        conn.transaction().map(WriteTx::Own)
    } else if group::in_change() {
        Ok(WriteTx::Joined(conn))
    } else {
        conn.savepoint().map(WriteTx::Nested)
    }
}

impl WriteTx<'_> {
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        match self {
            WriteTx::Own(t) => t.commit(),
            WriteTx::Nested(s) => s.commit(),
            WriteTx::Joined(_) => Ok(()),
        }
    }
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Creates the data directory (and its parents) when missing, private to the owner (0700):
/// it holds the inventory, its WAL, the master key file and the component cache. Whoever
/// touches the directory first — the key file, the cache or the database — creates it here,
/// so none of them leaves it with the umask's mode. One that already exists and that other
/// users may write to is refused: they could replace the database, the key file or a compiled
/// connector, which `serve` would then run with the master key in its memory.
pub fn create_data_dir(data_dir: &Path) -> Result<(), InventoryError> {
    let refuse = |reason: String| InventoryError::DataDir { path: data_dir.to_owned(), reason };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir).map_err(|e| refuse(e.to_string()))?;
    let mode = fs::metadata(data_dir).map_err(|e| refuse(e.to_string()))?.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "other users may write to it (mode {mode:o}) and could replace the database or a compiled \
             connector in it; run chmod go-w on it (certhost makes it 0700)"
        )));
    }
    Ok(())
}

/// The database and its WAL and shared-memory files readable by the owner only, whatever the
/// umask was when SQLite created them (it gives the WAL and -shm files the database's mode).
fn make_private(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if let Ok(meta) = fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        }
    }
}

impl Inventory {
    /// The master key as base64, for redaction only (`deploy`'s hook output).
    pub(crate) fn master_key_text(&self) -> zeroize::Zeroizing<String> {
        self.vault.to_base64()
    }

    /// Opens (creating when needed) the inventory in `data_dir`, migrating the schema and
    /// checking the master key.
    pub fn open(data_dir: &Path, vault: MasterKey) -> Result<Self, InventoryError> {
        let (inv, revived) = Self::open_finishing_restore(data_dir, vault)?;
        if !revived.is_empty() {
            tracing::warn!(
                tokens = %revived.join(", "),
                "a restore was cut short after it put its copy in place (audited now): these tokens, revoked in the \
                 inventory it replaced, are active again; revoke them again with certhost token revoke"
            );
        }
        Ok(inv)
    }

    /// [`Inventory::open`], returning the tokens a restore whose copy is in place and not yet
    /// audited brought back to life ([`backup::finish_restore`]).
    fn open_finishing_restore(data_dir: &Path, vault: MasterKey) -> Result<(Self, Vec<String>), InventoryError> {
        create_data_dir(data_dir)?;
        let (hold, migrating) = Self::hold_for_open(data_dir)?;
        backup::remove_abandoned_copy(data_dir);
        let path = data_dir.join(DB_FILE);
        // Several processes opening a new database at once can see "database is locked" while
        // one of them switches it to WAL mode, without SQLite's busy handler being consulted:
        // retry the whole open for a few seconds before giving up.
        // A process holding the write lock for long (a backup, a stuck transaction) makes each
        // try wait out the busy timeout: give up after OPEN_PATIENCE in all, naming the file.
        let started = std::time::Instant::now();
        let conn = loop {
            match Self::connect(&path, &vault) {
                Err(e) if e.is_busy() && started.elapsed() < OPEN_PATIENCE => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) if e.is_busy() => return Err(InventoryError::Locked { path }),
                Err(InventoryError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                    if matches!(e.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) =>
                {
                    return Err(InventoryError::DataDir {
                        path: data_dir.to_owned(),
                        reason: "this user cannot write to it or to its database, and certhost needs to \
                                 even to read (SQLite's write-ahead log and lock files live beside the database)"
                            .into(),
                    });
                }
                other => break other?,
            }
        };
        make_private(&path);
        if migrating {
            hold.share(data_dir)?;
        }
        let mut inv = Self { conn, vault, path, clock: None, group: None, config: None, config_pin: None, _hold: hold };
        inv.check_vault()?;
        let revived = backup::finish_restore(&mut inv, data_dir)?.unwrap_or_default();
        Ok((inv, revived))
    }

    /// The directory hold an open takes: shared, except when the inventory on disk needs
    /// migrating and this process does not have it open yet. Then exclusive, waited for up to
    /// [`MIGRATION_PATIENCE`]: a process of an older certhost (a `serve` not yet restarted after
    /// an upgrade) went on writing rows as its schema had them under the migrated one — a
    /// keyCompromise revocation it made recorded nothing, and the key was certified again
    /// (upgrade review of stop 39). Returns the hold and whether it is exclusive.
    pub(super) fn hold_for_open(data_dir: &Path) -> Result<(std::sync::Arc<dir_lock::DirHold>, bool), InventoryError> {
        if dir_lock::held_here(data_dir) {
            return Ok((dir_lock::hold_shared(data_dir)?, false));
        }
        let started = std::time::Instant::now();
        loop {
            let found = match schema_version_on_disk(&data_dir.join(DB_FILE)) {
                Some(v) if v > 0 && v < schema::CURRENT_VERSION => v,
                _ => return Ok((dir_lock::hold_shared(data_dir)?, false)),
            };
            if let Some(hold) = dir_lock::try_hold_exclusive(data_dir)? {
                return Ok((hold, true));
            }
            if started.elapsed() >= MIGRATION_PATIENCE {
                return Err(InventoryError::DataDir {
                    path: data_dir.to_owned(),
                    reason: format!(
                        "its inventory needs upgrading from schema version {found} to {}, and another certhost \
                         process has it open (a serve of the older certhost?); stop it and run this again",
                        schema::CURRENT_VERSION
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn connect(path: &Path, vault: &MasterKey) -> Result<Connection, InventoryError> {
        // Through the VFS that writes a commit's WAL frames at once (see `wal_vfs`); the default
        // one if it could not be registered.
        let mut conn = if wal_vfs::available() {
            Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), wal_vfs::NAME)?
        } else {
            Connection::open(path)?
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A database from a newer certhost is refused before anything is written to it, even
        // the switch to WAL mode.
        // Nor is another program's database (tables, no version) touched; `migrate` checks
        // again under its write lock. Both read in one statement, so in one snapshot: read
        // apart, another process's first migration committing in between made a new
        // inventory look foreign (tables, and the version read before them).
        let (found, objects): (u32, i64) = conn.query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if found > schema::CURRENT_VERSION {
            return Err(InventoryError::NewerSchema { found, supported: schema::CURRENT_VERSION });
        }
        if found == 0 && objects > 0 {
            return Err(InventoryError::Foreign(objects));
        }
        // Every transaction takes the write lock at BEGIN, waiting in the busy handler. A
        // deferred one that reads and then writes gets SQLITE_BUSY at once in WAL mode when
        // another connection committed in between (the busy handler cannot help a stale
        // snapshot): concurrent API issuance failed with "database is locked".
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Savepoints (each change inside a group commit is one) journal the pages they touch
        // so they can be rolled back; in a temporary file that was as many page writes as the
        // WAL itself. Kept in memory: it is only ever read to undo an unfinished change.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The statements of an issuance are a few dozen; parsed once per connection, not once
        // per request (SQL parsing was 7% of the committer's time, 9% of the request path's).
        conn.set_prepared_statement_cache_capacity(128);
        // The master key is checked before an upgrade: a run with the wrong key migrated the
        // schema, and the older certhost the operator went back to could no longer open it
        // (upgrade walkthrough of stop 49). `check_vault` checks again, and seals the check
        // value into a new inventory.
        if found > 0 && found < schema::CURRENT_VERSION && vault_check(&conn, vault)? == Some(false) {
            return Err(InventoryError::WrongMasterKey);
        }
        if let Some(from) = schema::migrate(&mut conn)? {
            tracing::warn!(
                "upgraded the inventory {} from schema version {from} to {} (audited as inventory.upgrade): an older \
                 certhost cannot open it now; a backup taken before the upgrade is the way back",
                path.display(),
                schema::CURRENT_VERSION
            );
        }
        Ok(conn)
    }

    /// Runs `change` durably and atomically (all of its writes, or none when it fails): on
    /// `serve`'s pooled connections through the group committer (one sync for every change
    /// queued meanwhile; the result is returned only after that sync), elsewhere right here
    /// in one transaction. `change` must only touch the database: it may run on the
    /// committer's thread, between other requests' changes, and it may run twice there (the
    /// first run undone) when another change of its group fails — hence `Fn`.
    pub async fn write<T, F>(&mut self, change: F) -> Result<T, InventoryError>
    where
        T: Send + 'static,
        F: Fn(&mut Inventory) -> Result<T, InventoryError> + Send + 'static,
    {
        match self.group.clone() {
            Some(group) => group.run(change).await,
            None => group::atomic(self, change),
        }
    }

    /// A cheap round trip to the database, for readiness probes.
    pub fn ping(&self) -> Result<(), InventoryError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pins "now" (Unix seconds) for tests of time-dependent queries; `None` = system clock.
    pub fn set_clock(&mut self, now: Option<i64>) {
        self.clock = now;
    }

    fn now(&self) -> i64 {
        self.clock.unwrap_or_else(crate::clock::unix_now)
    }

    /// The first open seals a known value; later opens must be able to open it. Two
    /// processes opening a new database at once agree on whichever value was stored first.
    fn check_vault(&self) -> Result<(), InventoryError> {
        use rusqlite::OptionalExtension;
        let read = || -> Result<Option<Vec<u8>>, InventoryError> {
            Ok(self.conn.query_row("SELECT value FROM meta WHERE name = 'vault_check'", [], |r| r.get(0)).optional()?)
        };
        // Read first: an open that wrote every time failed on a database that takes no writes
        // (a full disk), so even the commands that only look did (operator review of stop 39).
        if read()?.is_none() {
            let sealed = self.vault.seal(VAULT_CHECK, b"vault_check");
            self.conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('vault_check', ?1)", [sealed])?;
        }
        match vault_check(&self.conn, &self.vault)? {
            Some(true) => Ok(()),
            Some(false) => Err(InventoryError::WrongMasterKey),
            None => Err(InventoryError::Corrupt("the master key check value was not stored".into())),
        }
    }
}

/// Whether `vault` opens the check value `conn`'s inventory sealed at its first open; `None`
/// when there is none yet.
fn vault_check(conn: &Connection, vault: &MasterKey) -> Result<Option<bool>, InventoryError> {
    use rusqlite::OptionalExtension;
    let stored: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM meta WHERE name = 'vault_check'", [], |r| r.get(0)).optional()?;
    Ok(stored.map(|stored| matches!(vault.open(&stored, b"vault_check"), Ok(plain) if plain.as_slice() == VAULT_CHECK)))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The plan SQLite picks for `sql`, one line per step (`EXPLAIN QUERY PLAN`'s detail column):
/// for tests that pin a query to the index it was written for.
#[cfg(test)]
pub(crate) fn query_plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("plan");
    // Raw: planning needs no values, and rusqlite would refuse to run it with none bound.
    let mut rows = stmt.raw_query();
    let mut steps = Vec::new();
    while let Some(row) = rows.next().expect("plan") {
        steps.push(row.get::<_, String>(3).expect("detail"));
    }
    steps.join("\n")
}

/// A new inventory in a directory of its own, for tests; the directory goes with the guard.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Inventory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = Inventory::open(dir.path(), crate::vault::MasterKey::generate()).expect("open");
    (dir, inv)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_damaged_database_says_to_restore_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(super::DB_FILE), vec![0x5a; 8192]).expect("garbage");
        let err = super::Inventory::open(dir.path(), crate::vault::MasterKey::generate()).expect_err("damaged");
        assert!(err.to_string().contains("restore it from a backup (certhost restore FILE --replace"), "{err}");
    }
}
