//! Connectors' caches in the inventory ([`crate::connector::cache`]): what a connector keeps
//! between calls outlives the process and is shared by every process on the data directory.
//!
//! An entry may be an access token or an ACME account key, so it is sealed like a secret:
//! key and value together under the master key, bound to the account and the key's digest.
//! The row is found by a digest of the account and the key, keyed by the master key; neither
//! the key nor the value is stored in the clear, nor can a guessed key be confirmed.
//!
//! A new connector or new parameters of an account, a new secret given with `secret set`, or
//! the account's deletion empty its cache (`accounts.rs`): a token fetched with the old
//! credentials, or an account at the old CA, is not the new definition's.
//!
//! The store opens its own two connections — one to read, one to write, so a write waiting
//! for the lock never holds up a read — when the registry first loads a connector, off the
//! async threads (`CacheStore::prepare`); a failed open is tried again 30 s later.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::{CachedSql, Inventory, InventoryError};
use crate::connector::cache::{CacheError, CacheStore, Entry, MAX_ENTRIES, now_ms};
use crate::vault::MasterKey;

/// The row id of `key` in `account`'s cache: keyed, so a guessable key (an ACME directory
/// URL) cannot be confirmed from the file.
fn digest(vault: &MasterKey, account: &str, key: &str) -> [u8; 32] {
    let mut data = Vec::with_capacity(account.len() + 1 + key.len());
    data.extend_from_slice(account.as_bytes());
    data.push(0);
    data.extend_from_slice(key.as_bytes());
    vault.keyed_digest("certhost/connector-cache/v1", &data)
}

/// What a sealed entry is bound to: its account, its row and its expiry (an expiry edited in
/// the file makes the entry unreadable, not immortal).
fn aad(account: &str, digest: &[u8], expires_at: Option<i64>) -> Vec<u8> {
    let mut aad = format!("certhost/connector-cache/v1/{account}/").into_bytes();
    aad.extend_from_slice(digest);
    aad.extend_from_slice(format!("/{expires_at:?}").as_bytes());
    aad
}

/// Key length (4 bytes, little-endian), key, value.
fn plaintext(key: &str, value: &str) -> Zeroizing<Vec<u8>> {
    let mut p = Zeroizing::new(Vec::with_capacity(4 + key.len() + value.len()));
    // A key is at most MAX_KEY (1 KiB) bytes and a scope's prefix: its length fits in a u32.
    p.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(value.as_bytes());
    p
}

fn unseal(
    vault: &MasterKey,
    account: &str,
    digest: &[u8],
    expires_at: Option<i64>,
    sealed: &[u8],
) -> Result<(String, String), InventoryError> {
    let plain = vault.open(sealed, &aad(account, digest, expires_at))?;
    let damaged = || InventoryError::Corrupt(format!("a cache entry of account {account} is damaged"));
    let (len, rest) = plain.split_first_chunk::<4>().ok_or_else(damaged)?;
    let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| damaged())?;
    if len > rest.len() {
        return Err(damaged());
    }
    let (key, value) = rest.split_at(len);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| damaged());
    Ok((text(key)?, text(value)?))
}

/// Seals every connector's cache again under `new` (master-key rotation, inside its
/// transaction): row ids are keyed digests, so each row gets a new id too. An expired entry,
/// or one `old` does not open (damaged: reading it skips it anyway), is dropped. Returns the
/// entries kept and dropped.
pub(super) fn reseal_all(
    conn: &rusqlite::Connection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<(usize, usize), InventoryError> {
    /// Account, key digest, sealed entry, expiry.
    type Row = (String, Vec<u8>, Vec<u8>, Option<i64>);
    let rows: Vec<Row> = conn
        .prepare("SELECT account, key_digest, sealed, expires_at FROM connector_cache")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    conn.execute("DELETE FROM connector_cache", [])?;
    let now = now_ms();
    let (mut kept, mut dropped) = (0, 0);
    for (account, d, sealed, expires_at) in rows {
        let live = expires_at.is_none_or(|at| at > now);
        match unseal(old, &account, &d, expires_at, &sealed) {
            Ok((key, value)) if live => {
                let d = digest(new, &account, &key);
                let sealed = new.seal(&plaintext(&key, &value), &aad(&account, &d, expires_at));
                conn.execute(
                    "INSERT INTO connector_cache (account, key_digest, sealed, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![account, &d[..], sealed, expires_at],
                )?;
                kept += 1;
            }
            _ => dropped += 1,
        }
    }
    Ok((kept, dropped))
}

impl Inventory {
    fn cache_get(&self, account: &str, key: &str) -> Result<Option<String>, InventoryError> {
        let d = digest(&self.vault, account, key);
        let row: Option<(Vec<u8>, Option<i64>)> = self
            .conn
            .query_row_cached(
                "SELECT sealed, expires_at FROM connector_cache WHERE account = ?1 AND key_digest = ?2",
                params![account, &d[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((_, Some(at))) if at <= now_ms() => Ok(None),
            Some((sealed, expires_at)) => Ok(Some(unseal(&self.vault, account, &d, expires_at, &sealed)?.1)),
            None => Ok(None),
        }
    }

    fn cache_entries(&self, account: &str) -> Result<Vec<Entry>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_digest, sealed, expires_at FROM connector_cache \
             WHERE account = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )?;
        let rows = stmt.query_map(params![account, now_ms()], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Option<i64>>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, sealed, expires_at_ms) = row?;
            // One damaged row (edited in the file) costs its entry, not the account's cache.
            match unseal(&self.vault, account, &d, expires_at_ms, &sealed) {
                Ok((key, value)) => out.push(Entry { key, value, expires_at_ms }),
                Err(e) => tracing::warn!(account, "a connector cache entry is skipped: {e}"),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// `None` for an account not stored yet: a definition is checked against its connector
    /// (which may read its cache) before it is stored.
    fn cache_epoch(&self, account: &str) -> Result<Option<i64>, InventoryError> {
        Ok(self
            .conn
            .query_row_cached("SELECT cache_epoch FROM accounts WHERE name = ?1", [account], |r| r.get(0))
            .optional()?)
    }

    fn cache_put(&mut self, account: &str, epoch: Option<i64>, set: &[Entry]) -> Result<usize, InventoryError> {
        let now = now_ms();
        let tx = super::write_tx(&mut self.conn)?;
        // A call that ended after its account was deleted stores nothing: the rows would be
        // a later account of the same name's. Nor one that began before the cache was emptied
        // (new credentials): what it cached was fetched with the old ones.
        let current: Option<i64> = tx
            .query_row_cached("SELECT cache_epoch FROM accounts WHERE name = ?1", [account], |r| r.get(0))
            .optional()?;
        let Some(current) = current else {
            return Err(InventoryError::NotFound(format!("account {account}")));
        };
        if epoch.is_some_and(|e| e != current) {
            tracing::info!(
                account,
                "{} cache entries set by a call that began before the account changed are not kept",
                set.len()
            );
            return Ok(0);
        }
        tx.execute_cached(
            "DELETE FROM connector_cache WHERE account = ?1 AND expires_at <= ?2",
            params![account, now],
        )?;
        let mut count: i64 =
            tx.query_row_cached("SELECT count(*) FROM connector_cache WHERE account = ?1", [account], |r| r.get(0))?;
        let full = i64::try_from(MAX_ENTRIES).unwrap_or(i64::MAX);
        let mut ignored = 0;
        for e in set.iter().filter(|e| !e.too_large()) {
            let d = digest(&self.vault, account, &e.key);
            let exists = tx
                .query_row_cached(
                    "SELECT 1 FROM connector_cache WHERE account = ?1 AND key_digest = ?2",
                    params![account, &d[..]],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                if count >= full {
                    ignored += 1;
                    continue;
                }
                count += 1;
            }
            let sealed = self.vault.seal(&plaintext(&e.key, &e.value), &aad(account, &d, e.expires_at_ms));
            tx.execute_cached(
                "INSERT INTO connector_cache (account, key_digest, sealed, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account, key_digest) DO UPDATE SET sealed = excluded.sealed, expires_at = excluded.expires_at",
                params![account, &d[..], sealed, e.expires_at_ms],
            )?;
        }
        tx.commit()?;
        Ok(ignored)
    }
}

/// Connectors' caches in the inventory of a data directory.
pub struct InventoryCacheStore {
    data_dir: PathBuf,
    /// The master key as the operator gave it (`None`: the data directory's key file).
    master_key: Option<Zeroizing<String>>,
    connections: Mutex<Opened>,
}

enum Opened {
    NotYet,
    Open(Arc<Connections>),
    /// Why opening failed, and when: tried again after [`RETRY_OPEN`].
    Failed(String, Instant),
}

/// How long a failed open stands before a store tries again.
const RETRY_OPEN: Duration = Duration::from_secs(30);

struct Connections {
    read: Mutex<Inventory>,
    write: Mutex<Inventory>,
}

impl std::fmt::Debug for InventoryCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryCacheStore").field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

impl InventoryCacheStore {
    /// The caches of the inventory in `data_dir`, opened with `master_key` (or the key file)
    /// when the registry first loads a connector.
    pub fn new(data_dir: PathBuf, master_key: Option<&str>) -> Self {
        Self {
            data_dir,
            master_key: master_key.map(|k| Zeroizing::new(k.to_owned())),
            connections: Mutex::new(Opened::NotYet),
        }
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, Opened> {
        // A panic while locked leaves one of the three states.
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open connections, never opening them: a read runs on an async thread, and
    /// opening may wait for the write lock (migrations, the master-key check).
    fn open_connections(&self) -> Result<Arc<Connections>, CacheError> {
        match &*self.opened() {
            Opened::Open(c) => Ok(Arc::clone(c)),
            Opened::Failed(why, _) => Err(CacheError(why.clone())),
            Opened::NotYet => Err(CacheError("the inventory is not open yet".into())),
        }
    }

    fn open(&self) -> Result<Connections, InventoryError> {
        let (vault, _) = MasterKey::load_or_create(&self.data_dir, self.master_key.as_deref().map(|k| k.as_str()))?;
        Ok(Connections {
            read: Mutex::new(Inventory::open(&self.data_dir, vault.clone())?),
            write: Mutex::new(Inventory::open(&self.data_dir, vault)?),
        })
    }
}

fn failed(e: InventoryError) -> CacheError {
    CacheError(e.to_string())
}

impl CacheStore for InventoryCacheStore {
    fn prepare(&self) -> Result<(), CacheError> {
        let mut opened = self.opened();
        match &*opened {
            Opened::Open(_) => return Ok(()),
            Opened::Failed(why, at) if at.elapsed() < RETRY_OPEN => return Err(CacheError(why.clone())),
            _ => {}
        }
        match self.open() {
            Ok(c) => {
                *opened = Opened::Open(Arc::new(c));
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                *opened = Opened::Failed(why.clone(), Instant::now());
                Err(CacheError(why))
            }
        }
    }

    fn get(&self, account: &str, key: &str) -> Result<Option<String>, CacheError> {
        let c = self.open_connections()?;
        // A panic while locked leaves a connection in no half state (one statement each).
        let read = c.read.lock().unwrap_or_else(|p| p.into_inner());
        read.cache_get(account, key).map_err(failed)
    }

    fn entries(&self, account: &str) -> Result<Vec<Entry>, CacheError> {
        let c = self.open_connections()?;
        let read = c.read.lock().unwrap_or_else(|p| p.into_inner());
        read.cache_entries(account).map_err(failed)
    }

    fn epoch(&self, account: &str) -> Result<Option<i64>, CacheError> {
        let c = self.open_connections()?;
        let read = c.read.lock().unwrap_or_else(|p| p.into_inner());
        read.cache_epoch(account).map_err(failed)
    }

    fn put(&self, account: &str, epoch: Option<i64>, set: &[Entry]) -> Result<usize, CacheError> {
        // Runs off the async threads, where opening may wait.
        self.prepare()?;
        let c = self.open_connections()?;
        // As above: a transaction not committed is rolled back when its guard drops.
        let mut write = c.write.lock().unwrap_or_else(|p| p.into_inner());
        write.cache_put(account, epoch, set).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountDef, AccountStatus};
    use crate::inventory::SecretOwner;

    fn entry(key: &str, value: &str, expires_at_ms: Option<i64>) -> Entry {
        Entry { key: key.into(), value: value.into(), expires_at_ms }
    }

    fn def(toml: &str) -> AccountDef {
        toml::from_str(toml).expect("account")
    }

    /// The data directory's inventory (its key file), with account `acme`.
    fn lab() -> (tempfile::TempDir, Inventory, InventoryCacheStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vault, _) = MasterKey::load_or_create(dir.path(), None).expect("key");
        let mut inv = Inventory::open(dir.path(), vault).expect("open");
        inv.create_account("acme", &def(r#"connector = "acme.wasm""#), "cli", "test").expect("account");
        let store = InventoryCacheStore::new(dir.path().to_owned(), None);
        store.prepare().expect("opens");
        (dir, inv, store)
    }

    #[test]
    fn entries_are_sealed_kept_across_opens_and_held_to_the_rules() {
        let (dir, _inv, store) = lab();
        let canary = "cache-canary-7f3e9a1c5b";
        assert_eq!(store.put("acme", None, &[entry("token-key-canary", canary, None)]).expect("put"), 0);
        assert_eq!(store.get("acme", "token-key-canary").expect("get").as_deref(), Some(canary));
        assert_eq!(store.get("other", "token-key-canary").expect("get"), None, "accounts are apart");
        assert_eq!(store.epoch("other").expect("epoch"), None, "an account not stored yet has no epoch, and no error");
        let err = store.put("other", None, &[entry("k", "v", None)]).expect_err("no such account");
        assert!(err.to_string().contains("account other"), "{err}");
        drop(store);

        let again = InventoryCacheStore::new(dir.path().to_owned(), None);
        assert!(again.get("acme", "token-key-canary").is_err(), "reads never open the database themselves");
        again.prepare().expect("opens");
        assert_eq!(again.get("acme", "token-key-canary").expect("get").as_deref(), Some(canary), "kept");
        for name in ["certhost.db", "certhost.db-wal"] {
            let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
            for needle in [canary, "token-key-canary"] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {name}");
            }
        }

        again.put("acme", None, &[entry("gone", "x", Some(now_ms() - 1))]).expect("put");
        assert_eq!(again.get("acme", "gone").expect("get"), None, "expired");
        let many: Vec<Entry> = (0..MAX_ENTRIES).map(|i| entry(&format!("k{i}"), "v", None)).collect();
        assert_eq!(again.put("acme", None, &many).expect("put"), 1, "full: the last new key is ignored");
        assert_eq!(
            again.put("acme", None, &[entry("token-key-canary", "new", None)]).expect("put"),
            0,
            "existing keys change"
        );
        let all = again.entries("acme").expect("entries");
        assert_eq!(all.len(), MAX_ENTRIES);
        assert!(all.iter().any(|e| e.key == "token-key-canary" && e.value == "new"));
    }

    #[test]
    fn an_expiry_edited_in_the_file_makes_the_entry_unreadable_not_immortal() {
        let (_dir, inv, store) = lab();
        store.put("acme", None, &[entry("token", "t", Some(now_ms() + 60_000))]).expect("put");
        inv.conn.execute("UPDATE connector_cache SET expires_at = NULL", []).expect("edit");
        let err = store.get("acme", "token").expect_err("refused");
        assert!(err.to_string().contains("cannot be opened"), "{err}");
        store.put("acme", None, &[entry("intact", "i", None)]).expect("put");
        let left: Vec<String> = store.entries("acme").expect("entries").into_iter().map(|e| e.key).collect();
        assert_eq!(left, ["intact"], "the damaged entry is skipped, the rest read");
    }

    /// What the connector cached was fetched with the account's credentials for its CA: new
    /// ones, or another CA, start an empty cache; a new status, timeout or description keeps it.
    #[test]
    fn new_credentials_or_another_connector_empty_the_cache_and_other_changes_keep_it() {
        let (_dir, mut inv, store) = lab();
        let cached = |store: &InventoryCacheStore| store.get("acme", "token").expect("get").is_some();
        let put = |store: &InventoryCacheStore| store.put("acme", None, &[entry("token", "t", None)]).expect("put");
        put(&store);
        inv.set_account_status("acme", AccountStatus::Inactive, "test").expect("deactivate");
        let slower = def("connector = \"acme.wasm\"\ntimeout_seconds = 90\ndescription = \"d\"\nstatus = \"inactive\"");
        inv.update_account("acme", &slower, "test").expect("update");
        assert!(cached(&store), "status, timeout and description keep it");

        inv.update_account("acme", &def("connector = \"acme.wasm\"\nparams.url = \"https://b\""), "test")
            .expect("update");
        assert!(!cached(&store), "new parameters empty it");
        put(&store);
        inv.update_account("acme", &def("connector = \"other.wasm\"\nparams.url = \"https://b\""), "test")
            .expect("update");
        assert!(!cached(&store), "another connector empties it");

        put(&store);
        inv.set_secret(SecretOwner::Account, "acme", "key", "first", "test").expect("secret");
        assert!(!cached(&store), "a new secret empties it");
        put(&store);
        inv.set_secret(SecretOwner::Account, "acme", "key", "first", "test").expect("secret");
        assert!(cached(&store), "the same secret again keeps it");

        // A call that read the epoch before the cache was emptied stores nothing after.
        let before = store.epoch("acme").expect("epoch");
        inv.set_secret(SecretOwner::Account, "acme", "key", "second", "test").expect("secret");
        assert_eq!(store.put("acme", before, &[entry("stale", "t", None)]).expect("put"), 0);
        assert_eq!(store.get("acme", "stale").expect("get"), None, "a token fetched with the old credential");
        let now = store.epoch("acme").expect("epoch");
        assert_ne!(now, before);
        store.put("acme", now, &[entry("fresh", "t", None)]).expect("put");
        assert!(store.get("acme", "fresh").expect("get").is_some(), "a call that began after it stores");

        inv.delete_account("acme", "test").expect("delete");
        assert!(!cached(&store), "a deleted account's cache goes with it");
        assert!(store.put("acme", None, &[entry("late", "t", None)]).is_err(), "a late call stores nothing");
    }

    /// An ACME order pending at the CA is finished with what the connector cached (its CSR,
    /// the account key it was placed with): a change that empties the cache names such
    /// orders, so the operator hears of it now and not at a failed poll.
    #[test]
    fn emptying_the_cache_names_the_orders_pending_at_the_ca() {
        let (_dir, mut inv, store) = lab();
        let order = |inv: &super::super::Inventory, request: &str, state: &str, submitted: i64, lease: Option<i64>| {
            inv.conn
                .execute(
                    "INSERT INTO orders (request_id, kind, state, account, profile, csr_pem, submitted, lease_until,
                         requested_by, created_at, updated_at)
                     VALUES (?1, 'issue', ?2, 'acme', 'web', 'csr', ?3, ?4, 'test', 0, 0)",
                    rusqlite::params![request, state, submitted, lease],
                )
                .expect("order");
            inv.conn.last_insert_rowid()
        };
        inv.set_clock(Some(1_000));
        let at_ca = order(&inv, "a", "pending", 1, None);
        order(&inv, "b", "pending", 0, Some(900)); // interrupted before the CA saw it: sent afresh
        order(&inv, "c", "awaiting_approval", 0, None);
        let held = order(&inv, "d", "needs_attention", 1, None); // the CA may have acted on it
        let calling = order(&inv, "e", "pending", 0, Some(1_030)); // in its first call right now
        let b = |url: &str| def(&format!("connector = \"acme.wasm\"\nparams.url = \"{url}\""));
        assert!(inv.update_account("acme", &b("https://b"), "test").expect("update").is_empty(), "nothing cached");
        store.put("acme", None, &[entry("csr", "c", None)]).expect("put");
        let stranded = [at_ca, held, calling];
        assert_eq!(inv.update_account("acme", &b("https://c"), "test").expect("update"), stranded);
        let warning = super::super::stranded_warning(SecretOwner::Account, "acme", &[at_ca]).expect("warning");
        assert!(warning.contains(&format!("may be at the CA ({at_ca})")), "{warning}");
        let audited: String = inv
            .conn
            .query_row(
                "SELECT detail FROM audit_events WHERE action = 'account.update' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("audit");
        assert!(audited.contains(&format!("\"pending_orders_without_cache\":[{at_ca},{held},{calling}]")), "{audited}");
        store.put("acme", None, &[entry("csr", "c", None)]).expect("put");
        assert_eq!(inv.set_secret(SecretOwner::Account, "acme", "key", "k", "test").expect("secret"), stranded);
        // A profile's new value: its calls see another part of the cache, which stays.
        store.put("acme", None, &[entry("csr", "c", None)]).expect("put");
        assert_eq!(inv.set_secret(SecretOwner::Profile, "web", "ptok", "1", "test").expect("secret"), stranded);
        assert!(inv.set_secret(SecretOwner::Profile, "web", "ptok", "1", "test").expect("same").is_empty());
        assert!(inv.set_secret(SecretOwner::Profile, "other", "ptok", "1", "test").expect("other").is_empty());
        assert!(super::super::stranded_warning(SecretOwner::Account, "acme", &[]).is_none());
        // A profile edit that changes a sensitive reference does what a new secret does; one
        // that changes anything else does not (operator walkthrough of stop 46).
        let profile = |env: &str, description: &str| -> crate::profile::ProfileDef {
            toml::from_str(&format!(
                "accounts = [\"acme\"]\ndescription = \"{description}\"\n[params]\nptok = {{ sensitive = true, value = {{ env = \"{env}\" }} }}\n"
            ))
            .expect("profile")
        };
        inv.create_profile("web", &profile("TOK_A", "one"), "cli", "test").expect("profile");
        assert!(inv.update_profile("web", &profile("TOK_A", "two"), "test").expect("edit").is_empty());
        assert_eq!(inv.update_profile("web", &profile("TOK_B", "two"), "test").expect("edit"), stranded);
    }
}
