//! `certhost backup`: a consistent copy of the inventory while it is in use; `certhost
//! restore`: such a copy put back as a data directory's inventory, checked first.
//!
//! Copying `certhost.db` alone misses every change still in its WAL (minutes of issuances
//! under `serve`), and copying the files one after the other while a change lands can pair a
//! database and a WAL that were never together. `VACUUM INTO` writes one read snapshot to a
//! new file: every change committed before it began, none after, without stopping writers.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::audit::{self, NewAuditEvent};
use super::{DB_FILE, Inventory, InventoryError, VAULT_CHECK, dir_lock, schema};
use crate::vault::MasterKey;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// Its size in bytes.
    pub bytes: u64,
    /// Certificates in it.
    pub certificates: i64,
    /// Private keys in it (sealed under the master key).
    pub keys: i64,
}

impl Inventory {
    /// Writes a consistent copy of the inventory to `target` (a new file, mode 0600, synced),
    /// checks that it is whole and opens under this master key, and audits it as
    /// `inventory.backup`. An existing `target` is refused: a backup never replaces a file.
    pub fn backup_to(&mut self, target: &Path, actor: &str) -> Result<Backup, InventoryError> {
        let refuse = |reason: String| InventoryError::Invalid(format!("backup {}: {reason}", target.display()));
        // Absolute: SQLite reads a name starting with `file:` as a URI, and `VACUUM INTO
        // 'file:x.db'` wrote x.db, with the umask's mode (review of stop 35). The audit event
        // names the file wherever the command ran.
        let target = &std::path::absolute(target).map_err(|e| refuse(e.to_string()))?;
        // Beside the master key and lost with the directory, it would be no backup (review of
        // stop 36; the output itself says to keep the two apart).
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        if let (Some(dir), Some(parent)) = (self.path.parent(), target.parent())
            && canonical(parent).starts_with(canonical(dir))
        {
            return Err(refuse(
                "it is inside the data directory, beside the master key and lost with it; write it elsewhere".into(),
            ));
        }
        let path = target.to_str().ok_or_else(|| refuse("the path is not UTF-8".into()))?;
        let exists = || refuse("it exists; give a path that does not".into());
        if std::fs::symlink_metadata(target).is_ok() {
            return Err(exists());
        }
        // Written under a name of its own beside the target, and given the target's name only
        // once it is whole and checked: a backup killed half-way left a partial file under
        // the requested name, to be taken for a backup (chaos review of stop 40).
        let file_name = target.file_name().ok_or_else(|| refuse("it names no file".into()))?;
        let partial_prefix = format!(".{}.partial-", file_name.to_string_lossy());
        remove_dead_partials(target, &partial_prefix);
        let partial = target.with_file_name(format!("{partial_prefix}{}", std::process::id()));
        let partial_path = partial.to_str().ok_or_else(|| refuse("the path is not UTF-8".into()))?;
        let _ = std::fs::remove_file(&partial);
        // Made empty and private first (VACUUM INTO accepts an empty file): the copy holds
        // every sealed key, and the umask may be 022.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| refuse(e.to_string()))?;
        drop(file);
        let sync_dir = || match target.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => std::fs::File::open(".")?.sync_all(),
        };
        let written =
            self.conn.execute("VACUUM INTO ?1", [partial_path]).map_err(InventoryError::from).and_then(|_| {
                std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| refuse(e.to_string()))
            });
        let checked = written.and_then(|()| check_copy(&partial, &self.vault, "the backup just written"));
        // Linked under the target's name, which fails if a file took it meanwhile: a backup
        // never replaces a file. A file system without hard links gets a rename after a check.
        let named = checked.and_then(|b| {
            let linked = match std::fs::hard_link(&partial, target) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
                Err(_) if std::fs::symlink_metadata(target).is_err() => {
                    std::fs::rename(&partial, target).map_err(|e| refuse(e.to_string()))
                }
                Err(e) => Err(refuse(e.to_string())),
                Ok(()) => Ok(()),
            };
            linked?;
            let _ = std::fs::remove_file(&partial);
            sync_dir().map_err(|e| refuse(e.to_string()))?;
            Ok(b)
        });
        let backup = match named {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let now = self.now();
        audit::record(
            &self.conn,
            now,
            &NewAuditEvent {
                actor,
                action: "inventory.backup",
                object_type: "inventory",
                object_id: None,
                outcome: "success",
                detail: serde_json::json!({
                    "file": path,
                    "certificates": backup.certificates,
                    "keys": backup.keys,
                }),
            },
        )?;
        Ok(backup)
    }
}

/// Removes the partial copies of backups to `target` whose process is gone (killed before its
/// copy was linked under the target's name): each is a whole inventory's worth of sealed keys
/// under a hidden name nobody would look for (diff review of stop 40).
fn remove_dead_partials(target: &Path, prefix: &str) {
    let Some(dir) = target.parent() else { return };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 sends nothing; it only asks whether the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Opens a copy as it stands (`immutable`: no WAL or lock files beside it) and checks SQLite's
/// structure, that this binary knows its schema, and the master-key check value. `what`
/// names it in errors.
fn check_copy(target: &Path, vault: &MasterKey, what: &str) -> Result<Backup, InventoryError> {
    let damaged = |reason: String| InventoryError::Corrupt(format!("{what} {reason}"));
    let mut uri = url_path(target);
    uri.insert_str(0, "file:");
    uri.push_str("?immutable=1");
    let conn = rusqlite::Connection::open_with_flags(
        &uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    let not_inventory = |why: String| InventoryError::Invalid(format!("{what} is not a certhost inventory ({why})"));
    let check: String =
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| not_inventory(e.to_string()))?;
    if check != "ok" {
        // SQLite lists every damaged page; the first says enough.
        let first = check.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("***")).unwrap_or("");
        return Err(damaged(format!(
            "is damaged (SQLite's check: {}); use another backup",
            crate::connector::cut_at(first.to_owned(), 200)
        )));
    }
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > schema::CURRENT_VERSION {
        return Err(InventoryError::NewerSchema { found, supported: schema::CURRENT_VERSION });
    }
    match opens_under(&conn, vault) {
        None => return Err(not_inventory("it has no master-key check value".into())),
        Some(true) => {}
        // Not damage: most likely a backup taken under another key (before a rotation).
        Some(false) => {
            return Err(InventoryError::Invalid(format!(
                "{what} does not open under the master key: it is sealed under another one"
            )));
        }
    }
    let count = |table: &str| conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0));
    Ok(Backup {
        bytes: std::fs::metadata(target).map(|m| m.len()).unwrap_or(0),
        certificates: count("certificates")?,
        keys: count("keys")?,
    })
}

/// Whether the inventory open on `conn` is sealed under `vault` (its check value opens);
/// `None` when it has no check value to go on.
fn opens_under(conn: &rusqlite::Connection, vault: &MasterKey) -> Option<bool> {
    let sealed: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE name = 'vault_check'", [], |r| r.get(0)).ok()?;
    Some(vault.open(&sealed, b"vault_check").is_ok_and(|plain| plain.as_slice() == VAULT_CHECK))
}

/// What [`restore_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What the restored inventory holds.
    pub backup: Backup,
    /// Where the inventory it replaced was set aside, when there was one.
    pub replaced: Option<PathBuf>,
    /// Whether that inventory is sealed under another master key than the one restored
    /// under: a backup from before a rotation is restored with the old key put back, and the
    /// key that opens the inventory set aside is then in no file certhost reads (walkthrough
    /// of stop 46). The operator must keep it to ever read that inventory.
    pub replaced_under_other_key: bool,
    /// Certificates the replaced inventory holds and the backup does not (issued, renewed or
    /// imported since it was taken): how many, and the first [`MISSING_LISTED`] by id and
    /// common name. Their records and keys are only in the inventory set aside now (day-2
    /// walkthrough of stop 46: a restore said nothing of them).
    pub missing_from_backup: (u64, Vec<(i64, String)>),
    /// Tokens revoked in the replaced inventory that the backup holds as active: a restore
    /// brings them back to life, and the operator must hear of it (stop 36's review).
    pub revived_tokens: Vec<String>,
}

/// Puts backup `source` in place as the inventory of `data_dir`, under master key `key`.
///
/// The backup is checked (whole, a schema this binary knows, opens under `key`), so a wrong
/// file or key changes nothing. No other process may have the directory open (the exclusive
/// hold a key rotation takes): a `serve` writing on would answer from the old database, or
/// bury the restored one under its WAL. The steps keep a usable `certhost.db` in place at
/// every moment (review of stop 36: the old one was moved away before a long copy):
///
/// 1. the copy is written beside the target (`.certhost.db.restoring`, 0600, the data
///    directory's owner), synced, and checked again as it will be opened;
/// 2. an inventory already there (refused unless `replace`) is folded into its main file
///    (a WAL checkpoint) and hard-linked as `certhost.db.replaced-UNIXTIME[-N]`, a name never
///    taken before — its WAL linked beside it under the matching name if one is left;
/// 3. what is being restored is noted beside it (`.certhost.db.restore-pending`, synced), the
///    copy is renamed over `certhost.db` (atomic), and the directory synced;
/// 4. the inventory is opened (its schema brought up to date), and the open audits the restore
///    as `inventory.restore` from the note ([`finish_restore`]) — as the next open does for a
///    restore killed between its rename and its audit. Should the open fail, the inventory set
///    aside is put back.
pub fn restore_from(
    data_dir: &Path,
    source: &Path,
    key: MasterKey,
    replace: bool,
    actor: &str,
) -> Result<Restored, InventoryError> {
    let InPlace { backup, replaced, replaced_under_other_key, missing_from_backup, alone } =
        put_in_place(data_dir, source, &key, replace, actor)
            .map_err(|e| InventoryError::Invalid(format!("nothing was restored: {e}")))?;
    let db = data_dir.join(DB_FILE);
    // The open audits the restore from its note, and names the tokens it brought back.
    let opened = Inventory::open_finishing_restore(data_dir, key);
    let result = match opened {
        Ok((_inv, revived_tokens)) => {
            if let Some(aside) = &replaced {
                settle_aside(aside);
            }
            Ok(Restored { backup, replaced, replaced_under_other_key, missing_from_backup, revived_tokens })
        }
        Err(e) => {
            // Still under the hold: the previous inventory goes back, or the directory is left
            // as it was found. The restored copy's own WAL and index go first: left beside the
            // inventory put back, they would be read as its own; the note goes with them.
            let _ = std::fs::remove_file(pending_note(data_dir));
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(sidecar(&db, suffix));
            }
            let back = match &replaced {
                Some(aside) => std::fs::rename(aside, &db)
                    .and_then(|()| {
                        let wal = sidecar(aside, "-wal");
                        if wal.exists() { std::fs::rename(&wal, sidecar(&db, "-wal")) } else { Ok(()) }
                    })
                    .map(|()| "the previous inventory is back in place".to_owned()),
                None => std::fs::remove_file(&db).map(|()| "nothing was left in place".to_owned()),
            };
            let state =
                back.unwrap_or_else(|b| format!("putting things back failed too ({b}): see {}", data_dir.display()));
            Err(InventoryError::Invalid(format!("the restored copy did not open ({e}); {state}")))
        }
    };
    drop(alone);
    result
}

/// Where a restore notes what it puts in place, from just before its rename until the open
/// after it has audited it.
fn pending_note(data_dir: &Path) -> PathBuf {
    data_dir.join(format!(".{DB_FILE}.restore-pending"))
}

/// What [`pending_note`] holds: the restored copy's file identity (it keeps it through the
/// rename, so the note tells a copy put in place from one that never was) and the event's
/// detail.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingRestore {
    device: u64,
    inode: u64,
    /// Names this restore in its event, so that two processes opening at once record it once.
    id: String,
    actor: String,
    file: String,
    certificates: i64,
    keys: i64,
    replaced: Option<String>,
}

/// Audits a restore whose copy is in place as `inventory.restore`, from its note, and removes
/// the note; returns the tokens the restore brought back to life (revoked in the inventory it
/// replaced), or `None` when there was no such restore. Run by every open: a restore killed
/// between its rename and its audit left a different inventory in place with no event saying
/// so, and nobody heard of the tokens it revived (chaos review of stop 40). A note whose copy
/// is not in place (the restore was killed before its rename) is removed.
pub(super) fn finish_restore(inv: &mut Inventory, data_dir: &Path) -> Result<Option<Vec<String>>, InventoryError> {
    let note_path = pending_note(data_dir);
    let text = match std::fs::read(&note_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", note_path.display());
            return Ok(None);
        }
    };
    let note: PendingRestore = match serde_json::from_slice(&text) {
        Ok(note) => note,
        Err(e) => {
            tracing::warn!("removed {}: it is not a restore's note ({e})", note_path.display());
            let _ = std::fs::remove_file(&note_path);
            return Ok(None);
        }
    };
    let in_place = std::fs::metadata(data_dir.join(DB_FILE)).is_ok_and(|m| {
        std::os::unix::fs::MetadataExt::dev(&m) == note.device && std::os::unix::fs::MetadataExt::ino(&m) == note.inode
    });
    if !in_place {
        let _ = std::fs::remove_file(&note_path);
        return Ok(None);
    }
    let now = inv.now();
    let tx = inv.conn.transaction()?;
    // Ids go on from where the replaced inventory's ended: the certificates, orders and events
    // made after the backup are gone from here, not from the clients, receivers and hooks that
    // were told their ids. Idempotent (a maximum), like the event below; the floors leave
    // with the first open that applies them.
    let floors = IdFloors::pending(&tx);
    tx.execute("UPDATE certificate_ids SET last_deleted = max(last_deleted, ?1) WHERE id = 1", [floors.certificates])?;
    tx.execute("UPDATE order_ids SET floor = max(floor, ?1) WHERE id = 1", [floors.orders])?;
    let recorded: i64 = tx.query_row(
        "SELECT count(*) FROM audit_events WHERE action = 'inventory.restore' AND json_extract(detail, '$.restore') = ?1",
        [&note.id],
        |r| r.get(0),
    )?;
    if recorded == 0 {
        audit::record_above(
            &tx,
            now,
            &NewAuditEvent {
                actor: &note.actor,
                action: "inventory.restore",
                object_type: "inventory",
                object_id: None,
                outcome: "success",
                detail: serde_json::json!({
                    "file": note.file,
                    "certificates": note.certificates,
                    "keys": note.keys,
                    "replaced": note.replaced,
                    "restore": note.id,
                }),
            },
            floors.audit_events,
        )?;
    }
    tx.execute("DELETE FROM meta WHERE name = ?1", [IdFloors::META])?;
    tx.commit()?;
    let revived = note.replaced.as_deref().map(|aside| revived_tokens(Path::new(aside), inv)).unwrap_or_default();
    if let Err(e) = std::fs::remove_file(&note_path) {
        // Harmless: the next open finds the event recorded and tries again.
        tracing::warn!("cannot remove {}: {e}", note_path.display());
    }
    Ok(Some(revived))
}

/// The highest ids the inventory a restore replaces has handed out, which the restored one's
/// next ids go above. Read from the inventory in place before it is set aside (its path is
/// certain then, and nothing else has it open), and written into the copy before the copy is
/// renamed into place ([`IdFloors::META`]), so that the open that finishes the restore — its
/// own or, after a kill, any later one — finds them in the inventory itself, and so do the
/// migrations that open runs first (an older backup's migration 17 audits).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct IdFloors {
    pub(super) certificates: i64,
    pub(super) orders: i64,
    pub(super) audit_events: i64,
}

impl IdFloors {
    /// The `meta` row of a restored copy that holds the floors until its restore is finished.
    const META: &'static str = "restore_id_floors";

    /// Read from the inventory at `db`: every id it handed out, deleted certificates' included.
    fn of(db: &Path) -> Result<Self, rusqlite::Error> {
        let old = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        old.busy_timeout(std::time::Duration::from_secs(5))?;
        let max = |sql: &str| old.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).map(Option::unwrap_or_default);
        // A table an older inventory does not have yet raises nothing.
        let absent = |r: Result<i64, rusqlite::Error>| match r {
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.starts_with("no such table") => Ok(0),
            other => other,
        };
        Ok(Self {
            certificates: max("SELECT max(id) FROM certificates")?
                .max(absent(max("SELECT last_deleted FROM certificate_ids WHERE id = 1"))?),
            orders: max("SELECT max(id) FROM orders")?.max(absent(max("SELECT floor FROM order_ids WHERE id = 1"))?),
            audit_events: max("SELECT max(id) FROM audit_events")?,
        })
    }

    /// Writes the floors into the restored copy at `copy`.
    fn write_into(&self, copy: &Path) -> Result<(), InventoryError> {
        let conn = rusqlite::Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let json = serde_json::to_string(self).map_err(|e| InventoryError::Internal(e.to_string()))?;
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)", rusqlite::params![Self::META, json])?;
        Ok(())
    }

    /// The floors a restore left in this inventory (none: zeros).
    pub(super) fn pending(conn: &rusqlite::Connection) -> Self {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [Self::META], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }
}

/// Names of tokens revoked in the inventory set aside at `aside` and active in `restored`
/// (best effort: a replaced inventory that does not open lists none).
fn revived_tokens(aside: &Path, restored: &Inventory) -> Vec<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(old) = rusqlite::Connection::open_with_flags(aside, flags) else { return Vec::new() };
    let revoked: std::collections::BTreeSet<String> = old
        .prepare("SELECT name FROM tokens WHERE revoked_at IS NOT NULL")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    restored
        .tokens()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && revoked.contains(&t.name))
        .map(|t| t.name)
        .collect()
}

/// Folds the WAL of the inventory set aside at `aside` into it and leaves it one file in
/// rollback mode, as a backup is (best effort: it is whole either way). Left in WAL mode, its
/// `-wal` and `-shm` stayed beside it, a rotation counted the index as an inventory, and
/// `certhost restore` refused it as "a database in use" (upgrade review of stop 39). Nothing
/// else has it open: it is set aside under the restore's exclusive hold.
fn settle_aside(aside: &Path) {
    let folded = rusqlite::Connection::open_with_flags(aside, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .and_then(|conn| conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0)));
    if let Err(e) = folded {
        tracing::warn!("the inventory set aside at {} keeps its write-ahead log beside it: {e}", aside.display());
    }
}

/// `base` with `suffix` appended to its file name (SQLite's `-wal` and `-shm`).
fn sidecar(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where [`restore_from`] writes its copy before the rename that puts it in place.
fn partial_copy(data_dir: &Path) -> PathBuf {
    data_dir.join(format!(".{DB_FILE}.restoring"))
}

/// Removes the copy of a restore that was killed before its rename (a whole inventory's worth
/// of disk, its keys still sealed): `certhost.db` was never touched, so the copy is of no use.
/// Called by whoever opens the inventory under its shared hold, which no restore in another
/// process can hold at the same time; a restore in this one opens the inventory only after
/// its rename.
pub(super) fn remove_abandoned_copy(data_dir: &Path) {
    remove_stray_links(data_dir);
    let partial = partial_copy(data_dir);
    if std::fs::symlink_metadata(&partial).is_ok_and(|m| m.is_file()) {
        match std::fs::remove_file(&partial) {
            Ok(()) => tracing::warn!(
                "removed {}: the copy of a restore that did not finish (the inventory in place was not changed)",
                partial.display()
            ),
            Err(e) => tracing::warn!(
                "{} is left of a restore that did not finish and cannot be removed: {e}",
                partial.display()
            ),
        }
    }
}

/// Removes the names a restore killed between setting the inventory aside and its rename
/// gave the live inventory: `certhost.db.replaced-T` is then a hard link to `certhost.db`
/// itself (its `-wal` to the live WAL), which a rotation counted as an inventory sealed under
/// the old key and a later restore of it refused as a database in WAL mode with other names.
/// A name set aside by a restore that finished is another file: never the live one's inode.
fn remove_stray_links(data_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(live) = std::fs::metadata(data_dir.join(DB_FILE)) else { return };
    for name in set_aside_inventories(data_dir) {
        let aside = data_dir.join(&name);
        if std::fs::metadata(&aside).is_ok_and(|m| m.dev() == live.dev() && m.ino() == live.ino()) {
            let _ = std::fs::remove_file(sidecar(&aside, "-wal"));
            match std::fs::remove_file(&aside) {
                Ok(()) => tracing::warn!(
                    "removed {name}: a second name of the inventory itself, left by a restore that did not finish"
                ),
                Err(e) => tracing::warn!("{name} is a second name of the inventory itself and cannot be removed: {e}"),
            }
        }
    }
}

/// What [`put_in_place`] left, under the exclusive hold it returns.
struct InPlace {
    backup: Backup,
    replaced: Option<PathBuf>,
    replaced_under_other_key: bool,
    missing_from_backup: (u64, Vec<(i64, String)>),
    alone: std::sync::Arc<dir_lock::DirHold>,
}

/// [`restore_from`] up to the rename that puts the copy in place: on any error before it the
/// data directory's inventory is as it was. Returns the checked copy's counts, where the old
/// inventory was linked and what it held that the backup does not, and the exclusive hold.
fn put_in_place(
    data_dir: &Path,
    source: &Path,
    key: &MasterKey,
    replace: bool,
    actor: &str,
) -> Result<InPlace, InventoryError> {
    let refuse = |reason: String| InventoryError::Invalid(format!("{}: {reason}", source.display()));
    // The real file: a symbolic link's WAL, if any, lies beside its target (stop 36's review).
    let source = std::fs::canonicalize(source).map_err(|e| refuse(e.to_string()))?;
    let meta = std::fs::metadata(&source).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("it is not a file".into()));
    }
    // The copy is read and copied as one file: changes in a WAL beside it would be lost.
    let wal = sidecar(&source, "-wal");
    if wal.exists() {
        return Err(refuse(format!(
            "it has a write-ahead log beside it ({}): it is a database in use or copied with its WAL, not a \
             backup; take one with certhost backup",
            wal.display()
        )));
    }
    // A WAL-mode database linked under another name may have its WAL there (`certhost backup`
    // writes rollback-mode files, which backup tools may hard-link freely).
    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 && wal_mode(&source) {
        return Err(refuse(
            "it is a database in WAL mode with other names (hard links): its changes may be in a WAL beside one \
             of them; take a backup with certhost backup"
                .into(),
        ));
    }
    check_copy(&source, key, &format!("the backup {}", source.display()))?;
    super::create_data_dir(data_dir)?;
    let alone = dir_lock::hold_exclusive(data_dir)?;
    let db = data_dir.join(DB_FILE);
    // A rotation cut short: the inventory in place may open only under the staged key, which
    // the next rotation would throw away once this inventory is set aside (stop 36's review).
    if data_dir.join(crate::vault::STAGED_KEY_FILE).exists() {
        return Err(InventoryError::Invalid(format!(
            "a master-key rotation was cut short in {} ({} is there): run any certhost command there first (it \
             finishes the rotation), then restore",
            data_dir.display(),
            crate::vault::STAGED_KEY_FILE
        )));
    }
    if std::fs::symlink_metadata(&db).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(InventoryError::Invalid(format!(
            "{} is a symbolic link: restore into the data directory that holds the file it points to",
            db.display()
        )));
    }
    // A restore killed between its rename and its audit left its note for the next open; a
    // second restore run first would overwrite the note, and the first restore's event would
    // never be written (diff review of stop 41). The open audits it now, under this hold.
    if pending_note(data_dir).exists() && db.exists() {
        super::Inventory::open_finishing_restore(data_dir, key.clone()).map_err(|e| {
            InventoryError::Invalid(format!(
                "an earlier restore into {} is not yet audited, and the inventory it put in place did not open to \
                 audit it ({e}); nothing was restored",
                data_dir.display()
            ))
        })?;
    }
    let io =
        |what: &str, path: &Path, e: std::io::Error| InventoryError::Storage(format!("{what} {}: {e}", path.display()));
    let in_place = std::fs::metadata(&db).is_ok_and(|m| m.len() > 0);
    if in_place && !replace {
        return Err(InventoryError::Invalid(format!(
            "{} already holds an inventory; give --replace to set it aside (it is kept, renamed) and restore over it",
            data_dir.display()
        )));
    }
    // 1. The copy, beside the target, checked as it will be opened.
    let partial = partial_copy(data_dir);
    let _ = std::fs::remove_file(&partial);
    let copied = (|| {
        let mut from = std::fs::File::open(&source)?;
        let mut to = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
        std::io::copy(&mut from, &mut to)?;
        // The directory's owner: `sudo certhost restore` made a file the service could not open.
        let dir = std::fs::metadata(data_dir)?;
        let (uid, gid) = (std::os::unix::fs::MetadataExt::uid(&dir), std::os::unix::fs::MetadataExt::gid(&dir));
        match std::os::unix::fs::fchown(&to, Some(uid), Some(gid)) {
            // Not root: the file is this user's, as the directory must be for it to write there.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            other => other?,
        }
        to.sync_all()
    })();
    let checked = copied
        .map_err(|e| io("cannot copy the backup to", &partial, e))
        .and_then(|()| check_copy(&partial, key, "the copy of the backup"));
    let backup = match checked {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    // The ids the inventory in place handed out, which the copy's next ones go above. One that
    // cannot be read (often why it is being replaced) is no reason not to restore.
    let floors = if in_place {
        IdFloors::of(&db).unwrap_or_else(|e| {
            tracing::warn!(
                "the ids {} handed out could not be read ({e}): the restored inventory may hand out again the ids of \
                 certificates, orders and audit events made after the backup",
                db.display()
            );
            IdFloors::default()
        })
    } else {
        IdFloors::default()
    };
    // Read here, where the inventory in place is known to be whole (a WAL beside it included).
    let replaced_under_other_key = in_place
        && rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|conn| opens_under(&conn, key))
            == Some(false);
    let missing_from_backup = if in_place {
        missing_from(&partial, &db).unwrap_or_else(|e| {
            tracing::warn!("which certificates of {} the backup lacks could not be read: {e}", db.display());
            (0, Vec::new())
        })
    } else {
        (0, Vec::new())
    };
    if let Err(e) = floors.write_into(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(InventoryError::Storage(format!(
            "cannot prepare the copy of the backup {}: {e}",
            partial.display()
        )));
    }
    // 2. The inventory in place, kept under a new name.
    let replaced = if in_place {
        match set_aside(&db) {
            Ok(aside) => Some(aside),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(io("cannot set aside the inventory", &db, e));
            }
        }
    } else {
        None
    };
    // 3. The copy in place. A WAL or index left of the old database would be read with it; a
    // WAL without a database is kept under a name of its own (it could be the rest of one).
    let swapped = (|| {
        let stray = sidecar(&db, "-wal");
        if !in_place && std::fs::metadata(&stray).is_ok_and(|m| m.len() > 0) {
            std::fs::rename(&stray, data_dir.join(format!("{DB_FILE}-wal.orphaned-{}", crate::clock::unix_now())))?;
        }
        for suffix in ["-wal", "-shm"] {
            match std::fs::remove_file(sidecar(&db, suffix)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        // The note first: a restore killed after the rename is audited by the next open.
        let copy = std::fs::metadata(&partial)?;
        let (device, inode) = (std::os::unix::fs::MetadataExt::dev(&copy), std::os::unix::fs::MetadataExt::ino(&copy));
        let note = PendingRestore {
            device,
            inode,
            id: format!(
                "{}-{inode}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
            ),
            actor: actor.to_owned(),
            file: source.display().to_string(),
            certificates: backup.certificates,
            keys: backup.keys,
            replaced: replaced.as_ref().map(|p| p.display().to_string()),
        };
        let note = serde_json::to_vec(&note).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(pending_note(data_dir))?;
        std::io::Write::write_all(&mut file, &note)?;
        file.sync_all()?;
        std::fs::rename(&partial, &db)?;
        std::fs::File::open(data_dir)?.sync_all()
    })();
    if let Err(e) = swapped {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(pending_note(data_dir));
        let kept = replaced.as_ref().map(|a| format!(" (the inventory is also kept as {})", a.display()));
        return Err(io(&format!("cannot put the copy in place{}:", kept.unwrap_or_default()), &db, e));
    }
    Ok(InPlace { backup, replaced, replaced_under_other_key, missing_from_backup, alone })
}

/// How many certificates [`Restored::missing_from_backup`] lists.
pub const MISSING_LISTED: usize = 10;

/// The certificates of the inventory at `live` that the copy at `copy` lacks (by SHA-256,
/// the copy's unique index): their count and the first [`MISSING_LISTED`].
fn missing_from(copy: &Path, live: &Path) -> Result<(u64, Vec<(i64, String)>), rusqlite::Error> {
    let conn = rusqlite::Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // Attached read-only, as the connection is opened.
    conn.execute("ATTACH DATABASE ?1 AS live", [live.to_string_lossy()])?;
    let missing =
        "FROM live.certificates l WHERE NOT EXISTS (SELECT 1 FROM main.certificates c WHERE c.sha256 = l.sha256)";
    let count: u64 = conn.query_row(&format!("SELECT count(*) {missing}"), [], |r| r.get(0))?;
    let listed = conn
        .prepare(&format!("SELECT l.id, COALESCE(l.common_name, l.subject) {missing} ORDER BY l.id LIMIT ?1"))?
        .query_map([MISSING_LISTED as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok((count, listed))
}

/// The inventories `certhost restore --replace` set aside in `data_dir`, by file name (their
/// SQLite side files left out), sorted: what a rotation leaves sealed under the old key, and
/// what a directory whose `certhost.db` is gone may still hold.
pub fn set_aside_inventories(data_dir: &Path) -> Vec<String> {
    let prefix = format!("{DB_FILE}.replaced-");
    let mut names: Vec<String> = std::fs::read_dir(data_dir)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) && !["-wal", "-shm", "-journal"].iter().any(|s| n.ends_with(s)))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Folds the inventory `db`'s WAL into it and hard-links it (and a WAL left, if any) under a
/// name no file has — `certhost.db.replaced-UNIXTIME`, then `-2`, `-3`, … —: two restores in
/// one second overwrote the first one's kept inventory (stop 36's review). The original names
/// stay in place until the copy is renamed over them.
fn set_aside(db: &Path) -> std::io::Result<PathBuf> {
    // Nobody else has it open (the exclusive hold): closing the last connection checkpoints
    // the WAL and removes it. A database that does not open keeps its WAL, linked below.
    let existing = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Ok(conn) = rusqlite::Connection::open_with_flags(db, existing) {
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let _ = conn.close();
    }
    let stamp = crate::clock::unix_now();
    for n in 1..1000 {
        let name =
            if n == 1 { format!("{DB_FILE}.replaced-{stamp}") } else { format!("{DB_FILE}.replaced-{stamp}-{n}") };
        let aside = db.with_file_name(name);
        if sidecar(&aside, "-wal").exists() {
            continue;
        }
        match std::fs::hard_link(db, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let wal = sidecar(db, "-wal");
        if wal.exists()
            && let Err(e) = std::fs::hard_link(&wal, sidecar(&aside, "-wal"))
        {
            let _ = std::fs::remove_file(&aside);
            return Err(e);
        }
        if let Some(dir) = db.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        return Ok(aside);
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "no free name to keep it under"))
}

/// Whether a database file's header says WAL mode (bytes 18 and 19 are 2).
fn wal_mode(path: &Path) -> bool {
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

/// `path` for a `file:` URI: every byte but unreserved ones and `/` percent-encoded.
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyType, PrivateKey};
    use rusqlite::params;

    #[test]
    fn a_backup_holds_what_was_committed_opens_under_the_key_and_never_replaces_a_file() {
        let (dir, mut inv) = crate::inventory::scratch();
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let id = super::super::keys::insert(&inv.conn, &inv.vault, &key, 0).expect("insert");
        let inside = inv.backup_to(&dir.path().join("b.db"), "test").expect_err("beside the key");
        assert!(inside.to_string().contains("inside the data directory"), "{inside}");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let target = elsewhere.path().join("file:copy #1?é.db");
        let backup = inv.backup_to(&target, "test").expect("backup");
        assert_eq!((backup.keys, backup.certificates), (1, 0));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).expect("meta").permissions().mode() & 0o777, 0o600);
        let err = inv.backup_to(&target, "test").expect_err("exists");
        assert!(err.to_string().contains("it exists"), "{err}");
        // The partial copy of a backup killed before it was linked is removed by the next
        // backup to the same name; another name's is left alone.
        let dead = elsewhere
            .path()
            .join(format!(".{}.partial-999999999", target.file_name().expect("name").to_string_lossy()));
        std::fs::write(&dead, b"half a backup").expect("dead partial");
        let other = elsewhere.path().join(".second.db.partial-999999999");
        std::fs::write(&other, b"half").expect("dead partial");
        let second = elsewhere.path().join("second.db");
        inv.backup_to(&second, "test").expect("second backup");
        std::fs::remove_file(&second).expect("rm");
        assert!(!other.exists(), "the dead partial copy of second.db is gone");
        assert!(dead.exists(), "another target's partial copies are not this backup's business");
        std::fs::remove_file(&dead).expect("rm");
        let names: Vec<_> =
            std::fs::read_dir(elsewhere.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, [target.file_name().expect("name")], "only the backup: its partial copy is gone");

        // Restored as a data directory of its own, it opens with the same key.
        let restored = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&target, restored.path().join(crate::inventory::DB_FILE)).expect("copy");
        let again = Inventory::open(restored.path(), inv.vault.clone()).expect("opens");
        assert_eq!(again.private_key(id).expect("key").pkcs8_der(), key.pkcs8_der());
        let events = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit");
        assert_eq!(events[0].action, "inventory.backup");
    }

    /// Day-2 walkthrough of stop 46: a restore over an inventory with certificates made since
    /// the backup said nothing of them.
    #[test]
    fn a_restore_names_the_certificates_the_backup_lacks() {
        let (data, inv) = crate::inventory::scratch();
        let insert = |inv: &Inventory, n: &str, cn: &str| {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, common_name)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=x', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'issue', 0, ?2)",
                    params![n, cn],
                )
                .expect("certificate");
        };
        insert(&inv, "01", "old.example.com");
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = dir.path().join("copy.db");
        let mut inv = inv;
        inv.backup_to(&backup, "test").expect("backup");
        for (n, cn) in [("02", "new.example.com"), ("03", "newer.example.com")] {
            insert(&inv, n, cn);
        }
        let vault = inv.vault.clone();
        drop(inv);
        let restored = restore_from(data.path(), &backup, vault, true, "test").expect("restore");
        assert_eq!(
            restored.missing_from_backup,
            (2, vec![(2, "new.example.com".to_owned()), (3, "newer.example.com".to_owned())])
        );
    }

    #[test]
    fn a_restore_checks_the_backup_first_and_keeps_the_inventory_it_replaces() {
        let (_data, mut inv) = crate::inventory::scratch();
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let id = super::super::keys::insert(&inv.conn, &inv.vault, &key, 0).expect("insert");
        let dir = tempfile::tempdir().expect("tempdir");
        let backup = dir.path().join("copy.db");
        inv.create_token("ci", crate::inventory::Role::Operator, None, "test").expect("token");
        inv.backup_to(&backup, "test").expect("backup");
        let vault = inv.vault.clone();
        drop(inv);

        // Into a new data directory, under the key it was taken under.
        let target = tempfile::tempdir().expect("tempdir");
        let data = target.path().join("data");
        let wrong = restore_from(&data, &backup, MasterKey::generate(), false, "test").expect_err("wrong key");
        assert!(wrong.to_string().starts_with("nothing was restored: the backup"), "{wrong}");
        assert!(wrong.to_string().ends_with("does not open under the master key: it is sealed under another one"));
        assert!(!data.join(DB_FILE).exists(), "nothing written");
        let restored = restore_from(&data, &backup, vault.clone(), false, "test").expect("restore");
        assert_eq!((restored.backup.keys, restored.replaced), (1, None));
        let inv = Inventory::open(&data, vault.clone()).expect("opens");
        assert_eq!(inv.private_key(id).expect("key").pkcs8_der(), key.pkcs8_der());
        let events = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit");
        assert_eq!(events[0].action, "inventory.restore");
        let before = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit").len();

        // Over it: refused without --replace; with it, the old one is kept under a new name —
        // while this process holds it open, refused as any other holder is.
        let err = restore_from(&data, &backup, vault.clone(), true, "test").expect_err("open here");
        assert!(err.to_string().contains("already has it open"), "{err}");
        drop(inv);
        let err = restore_from(&data, &backup, vault.clone(), false, "test").expect_err("exists");
        assert!(err.to_string().contains("already holds an inventory; give --replace"), "{err}");
        // A token revoked since the backup comes back: the restore says which.
        Inventory::open(&data, vault.clone()).expect("open").revoke_token("ci", "test").expect("revoke");
        let again = restore_from(&data, &backup, vault.clone(), true, "test").expect("replace");
        assert_eq!(again.revived_tokens, ["ci"]);
        let aside = again.replaced.expect("set aside");
        // One file, as a backup is: `certhost restore` takes it back, and a rotation's count
        // of inventories sealed under the old key does not take its index for another.
        assert!(!sidecar(&aside, "-wal").exists() && !sidecar(&aside, "-shm").exists(), "one file");
        assert_eq!(set_aside_inventories(&data), [aside.file_name().expect("name").to_string_lossy()]);
        let old = rusqlite::Connection::open(&aside).expect("open the replaced one");
        let events: usize = old.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0)).expect("count");
        assert_eq!(
            events,
            before + 1,
            "the replaced inventory keeps its events, the revocation too (its WAL folded in)"
        );
        drop(old);
        // A second one in the same second keeps both (the first was overwritten).
        let third = restore_from(&data, &backup, vault.clone(), true, "test").expect("replace again");
        let second_aside = third.replaced.expect("set aside");
        assert_ne!(second_aside, aside);
        assert!(aside.exists() && second_aside.exists());
        assert!(!partial_copy(&data).exists(), "no partial copy left");
        // The copy of a restore killed before its rename is removed by the next open.
        std::fs::write(partial_copy(&data), b"half a database").expect("partial");
        drop(Inventory::open(&data, vault.clone()).expect("opens"));
        assert!(!partial_copy(&data).exists(), "the abandoned copy is gone");
        // A restore killed between setting the inventory aside and its rename left the live
        // inventory under a second name: the next open removes that name, not the others.
        let before = set_aside_inventories(&data);
        let stray = set_aside(&data.join(DB_FILE)).expect("linked");
        drop(Inventory::open(&data, vault.clone()).expect("opens"));
        assert!(!stray.exists(), "the second name is gone");
        assert_eq!(set_aside_inventories(&data), before, "inventories really set aside stay");
        assert!(!pending_note(&data).exists(), "each restore's note is gone once it is audited");
        assert!(!third.replaced_under_other_key, "the same key seals both");
        assert_eq!(third.missing_from_backup, (0, Vec::new()), "the backup had no certificates, nor had this one");
        // Over an inventory sealed under another key (the backup predates a rotation, its key
        // put back for the restore): said, since that key now opens only what was set aside.
        let rotated = tempfile::tempdir().expect("tempdir");
        drop(Inventory::open(rotated.path(), MasterKey::generate()).expect("another key's inventory"));
        let over = restore_from(rotated.path(), &backup, vault.clone(), true, "test").expect("replace");
        assert!(over.replaced_under_other_key && over.replaced.is_some());

        // A restore killed after its rename: the next open audits it, once, and names the
        // token it revived; a note whose copy never got in place is dropped without an event.
        let restores = |inv: &Inventory| {
            let filter =
                crate::inventory::AuditFilter { action_prefix: Some("inventory.restore".into()), ..Default::default() };
            inv.audit_events(&filter).expect("audit").len()
        };
        // The inventory it replaces has handed out certificate ids up to 40 and order ids up
        // to 30 (deleted since, or made after the backup): the restored one goes on above them.
        let mut live = Inventory::open(&data, vault.clone()).expect("open");
        live.revoke_token("ci", "test").expect("revoke");
        live.conn.execute("UPDATE certificate_ids SET last_deleted = 40", []).expect("certificate ids");
        live.conn.execute("UPDATE order_ids SET floor = 30", []).expect("order ids");
        let last_event: i64 = live.conn.query_row("SELECT max(id) FROM audit_events", [], |r| r.get(0)).expect("max");
        drop(live);
        let InPlace { replaced: aside, alone: hold, .. } =
            put_in_place(&data, &backup, &vault, true, "killed").expect("in place");
        drop(hold);
        let note = std::fs::read(pending_note(&data)).expect("the note is there");
        let (mut inv, revived) = Inventory::open_finishing_restore(&data, vault.clone()).expect("opens");
        assert_eq!(revived, ["ci"], "the revived token is named");
        let events = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit");
        assert_eq!((events[0].action.as_str(), events[0].actor.as_str()), ("inventory.restore", "killed"));
        assert_eq!(events[0].detail["replaced"], aside.expect("set aside").display().to_string());
        assert!(events[0].id > last_event, "the restore's event follows the replaced log's {last_event}");
        let floors = |inv: &Inventory| -> (i64, i64) {
            inv.conn
                .query_row(
                    "SELECT (SELECT last_deleted FROM certificate_ids), (SELECT floor FROM order_ids)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("floors")
        };
        assert_eq!(floors(&inv), (40, 30));
        assert_eq!(IdFloors::pending(&inv.conn), IdFloors::default(), "applied once, then gone");
        assert!(!pending_note(&data).exists());
        assert_eq!(restores(&inv), 1);
        // Recorded once, however many opens find the note (one that could not remove it).
        std::fs::write(pending_note(&data), &note).expect("note again");
        assert_eq!(finish_restore(&mut inv, &data).expect("finish"), Some(vec!["ci".to_owned()]));
        assert_eq!(restores(&inv), 1, "recorded once");
        assert_eq!(floors(&inv), (40, 30), "the floors stay where they were raised");
        std::fs::write(pending_note(&data), b"not json").expect("garbage note");
        assert_eq!(finish_restore(&mut inv, &data).expect("finish"), None);
        assert!(!pending_note(&data).exists(), "a note that is not one is removed");
        drop(inv);
        let other = PendingRestore {
            device: 0,
            inode: 0,
            id: "never-in-place".into(),
            actor: "killed".into(),
            file: "x".into(),
            certificates: 0,
            keys: 0,
            replaced: None,
        };
        std::fs::write(pending_note(&data), serde_json::to_vec(&other).expect("json")).expect("note");
        let inv = Inventory::open(&data, vault.clone()).expect("opens");
        assert_eq!(restores(&inv), 1, "no event for a copy that never got in place");
        assert!(!pending_note(&data).exists());
        drop(inv);
        // A second restore before anything opened the inventory of one killed after its
        // rename audits that one first, in the inventory it put in place (set aside now).
        let InPlace { alone: hold, .. } = put_in_place(&data, &backup, &vault, true, "killed again").expect("in place");
        drop(hold);
        let second = restore_from(&data, &backup, vault.clone(), true, "second").expect("second restore");
        let aside = rusqlite::Connection::open(second.replaced.expect("set aside")).expect("open the replaced one");
        let actor: String = aside
            .query_row(
                "SELECT actor FROM audit_events WHERE action = 'inventory.restore' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("the killed restore's event");
        assert_eq!(actor, "killed again");
        drop(aside);
        let inv = Inventory::open(&data, vault.clone()).expect("opens");
        let events = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit");
        assert_eq!((events[0].action.as_str(), events[0].actor.as_str()), ("inventory.restore", "second"));
        drop(inv);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(DB_FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Not while a key rotation is unfinished: the inventory in place may open only under
        // the staged key, which the next rotation would throw away.
        std::fs::write(data.join(crate::vault::STAGED_KEY_FILE), b"").expect("staged");
        let err = restore_from(&data, &backup, vault.clone(), true, "test").expect_err("staged key");
        assert!(err.to_string().contains("a master-key rotation was cut short"), "{err}");
        std::fs::remove_file(data.join(crate::vault::STAGED_KEY_FILE)).expect("rm");

        // Through a symbolic link, a live database's WAL is found beside its target.
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&backup, &link).expect("symlink");
        std::fs::write(dir.path().join("copy.db-wal"), b"").expect("wal");
        let err = restore_from(&data, &link, vault.clone(), true, "test").expect_err("wal");
        assert!(err.to_string().contains("has a write-ahead log beside it"), "{err}");

        // A live database (a WAL beside it) is not a backup.
        let err = restore_from(&data, &backup, vault, true, "test").expect_err("wal");
        assert!(err.to_string().contains("has a write-ahead log beside it"), "{err}");
    }
}
