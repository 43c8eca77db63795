//! `certhost backup`: a consistent copy of the inventory while it is in use.
//!
//! Copying `certhost.db` alone misses every change still in its WAL (minutes of issuances
//! under `serve`), and copying the files one after the other while a change lands can pair a
//! database and a WAL that were never together. `VACUUM INTO` writes one read snapshot to a
//! new file: every change committed before it began, none after, without stopping writers.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::audit::{self, NewAuditEvent};
use super::{Inventory, InventoryError, VAULT_CHECK};

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
        let path = target.to_str().ok_or_else(|| refuse("the path is not UTF-8".into()))?;
        // Made empty and private first (VACUUM INTO accepts an empty file): the copy holds
        // every sealed key, and the umask may be 022.
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(target).map_err(|e| {
            refuse(match e.kind() {
                std::io::ErrorKind::AlreadyExists => "it exists; give a path that does not".into(),
                _ => e.to_string(),
            })
        })?;
        drop(file);
        let written = self.conn.execute("VACUUM INTO ?1", [path]).map_err(InventoryError::from).and_then(|_| {
            std::fs::File::open(target)
                .and_then(|f| f.sync_all())
                .and_then(|()| match target.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(dir) => std::fs::File::open(dir)?.sync_all(),
                    None => std::fs::File::open(".")?.sync_all(),
                })
                .map_err(|e| refuse(e.to_string()))
        });
        let checked = written.and_then(|()| self.check_backup(target));
        let backup = match checked {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(target);
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

    /// Opens the copy as it stands (`immutable`: no WAL or lock files beside it) and checks
    /// SQLite's structure and the master-key check value.
    fn check_backup(&self, target: &Path) -> Result<Backup, InventoryError> {
        let damaged = |reason: String| InventoryError::Corrupt(format!("the backup just written {reason}"));
        let mut uri = url_path(target);
        uri.insert_str(0, "file:");
        uri.push_str("?immutable=1");
        let conn = rusqlite::Connection::open_with_flags(
            &uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(damaged(format!("fails SQLite's check: {check}")));
        }
        let sealed: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE name = 'vault_check'", [], |r| r.get(0))?;
        match self.vault.open(&sealed, b"vault_check") {
            Ok(plain) if plain.as_slice() == VAULT_CHECK => {}
            _ => return Err(damaged("does not open under the master key".into())),
        }
        let count = |table: &str| conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0));
        Ok(Backup {
            bytes: std::fs::metadata(target).map(|m| m.len()).unwrap_or(0),
            certificates: count("certificates")?,
            keys: count("keys")?,
        })
    }
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

    #[test]
    fn a_backup_holds_what_was_committed_opens_under_the_key_and_never_replaces_a_file() {
        let (dir, mut inv) = crate::inventory::scratch();
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let id = super::super::keys::insert(&inv.conn, &inv.vault, &key, 0).expect("insert");
        let target = dir.path().join("file:copy #1?é.db");
        let backup = inv.backup_to(&target, "test").expect("backup");
        assert_eq!((backup.keys, backup.certificates), (1, 0));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).expect("meta").permissions().mode() & 0o777, 0o600);
        let err = inv.backup_to(&target, "test").expect_err("exists");
        assert!(err.to_string().contains("it exists"), "{err}");

        // Restored as a data directory of its own, it opens with the same key.
        let restored = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&target, restored.path().join(crate::inventory::DB_FILE)).expect("copy");
        let again = Inventory::open(restored.path(), inv.vault.clone()).expect("opens");
        assert_eq!(again.private_key(id).expect("key").pkcs8_der(), key.pkcs8_der());
        let events = inv.audit_events(&crate::inventory::AuditFilter::default()).expect("audit");
        assert_eq!(events[0].action, "inventory.backup");
    }
}
