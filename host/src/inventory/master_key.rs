//! Master-key rotation: every sealed value — private keys, secrets, connectors' caches and the
//! check value — sealed again under a new key in one transaction, so the inventory is wholly
//! under one key or the other, never half of each.
//!
//! With the key in `master.key` the new key is staged beside it first (`master.key.new`) and
//! put in its place after the commit; a crash between the two leaves a database only the
//! staged key opens, and [`open_data_dir`] finishes the swap. The rotation holds the data
//! directory alone (`dir_lock`): another process would go on sealing with the old key.

use std::path::Path;

use super::audit::{self, NewAuditEvent};
use super::{Inventory, InventoryError, VAULT_CHECK, accounts, connector_cache, keys};
use crate::vault::MasterKey;

/// What a rotation sealed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Private keys.
    pub keys: usize,
    /// Sensitive parameter values (`certhost secret set`).
    pub secrets: usize,
    /// Connector cache entries kept.
    pub cache_entries: usize,
    /// Connector cache entries dropped: expired, or damaged (they were skipped anyway).
    pub cache_dropped: usize,
}

impl Inventory {
    /// Seals everything again under `new`, audited as `master_key.rotate`; this connection
    /// uses `new` from then on. Nothing changes when any stored key or secret does not open
    /// under the current key. The caller holds the data directory alone
    /// ([`super::dir_lock::hold_exclusive`]) and puts `new` where the next process finds it.
    pub fn rotate_master_key(&mut self, new: &MasterKey, actor: &str) -> Result<Rotated, InventoryError> {
        if new.same_as(&self.vault) {
            return Err(InventoryError::Invalid("the new master key is the one the inventory is sealed under".into()));
        }
        let now = self.now();
        let tx = self.conn.transaction()?;
        let keys = keys::reseal_all(&tx, &self.vault, new)?;
        let secrets = accounts::reseal_secrets(&tx, &self.vault, new)?;
        let (cache_entries, cache_dropped) = connector_cache::reseal_all(&tx, &self.vault, new)?;
        let changed = tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'vault_check'",
            [new.seal(VAULT_CHECK, b"vault_check")],
        )?;
        if changed != 1 {
            return Err(InventoryError::Corrupt("the inventory has no master-key check value".into()));
        }
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: "master_key.rotate",
                object_type: "inventory",
                object_id: None,
                outcome: "success",
                detail: serde_json::json!({
                    "keys": keys,
                    "secrets": secrets,
                    "cache_entries": cache_entries,
                    "cache_entries_dropped": cache_dropped,
                }),
            },
        )?;
        tx.commit()?;
        self.vault = new.clone();
        Ok(Rotated { keys, secrets, cache_entries, cache_dropped })
    }
}

/// Opens the inventory in `data_dir` with `explicit` (`CERTHOST_MASTER_KEY`) or the key file,
/// returning the key it opened with. The directory is marked open by this process before the
/// key is read, so a rotation cannot change the key between the two. When the key file no
/// longer opens the inventory but a staged one does, a rotation was interrupted after its
/// commit: the staged key is put in place.
pub fn open_data_dir(data_dir: &Path, explicit: Option<&str>) -> Result<(Inventory, MasterKey), InventoryError> {
    super::create_data_dir(data_dir)?;
    // Exclusive while the schema needs migrating (`Inventory::hold_for_open`), shared again
    // once it is done: the CLI's opens come through here, and a shared hold taken first made
    // the migration's exclusive one a no-op.
    let (hold, migrating) = Inventory::hold_for_open(data_dir)?;
    let opened = open_with_key(data_dir, explicit);
    if migrating && opened.is_ok() {
        hold.share(data_dir)?;
    }
    opened
}

/// [`open_data_dir`] for `certhost serve`: when no other process has `data_dir` open, the
/// renewal claims a process killed mid-round left (a ten-minute lease each) are let go of
/// first — their owner is certainly gone — so the scheduler's first round renews at once
/// what was due (operator review of stop 41: after a kill -9, certificates claimed but not yet
/// sent waited out the lease, some expiring meanwhile). With another process there (a second
/// `serve`, a command running), the leases are left to run out, as they must. Returns how
/// many claims were let go of.
pub fn open_data_dir_for_serve(
    data_dir: &Path,
    explicit: Option<&str>,
) -> Result<(Inventory, MasterKey, usize), InventoryError> {
    super::create_data_dir(data_dir)?;
    let alone =
        if super::dir_lock::held_here(data_dir) { None } else { super::dir_lock::try_hold_exclusive(data_dir)? };
    let (mut inv, key) = open_data_dir(data_dir, explicit)?;
    let mut released = 0;
    if let Some(hold) = alone {
        released = inv.release_every_renewal_claim()?;
        hold.share(data_dir)?;
    }
    Ok((inv, key, released))
}

fn open_with_key(data_dir: &Path, explicit: Option<&str>) -> Result<(Inventory, MasterKey), InventoryError> {
    // Processes starting together after a crash race to finish the rotation: the one that
    // finds the staged key gone reads the key file again (review of stop 35: it failed with
    // "the master key does not match").
    let mut tries = 0;
    loop {
        tries += 1;
        let (key, _) = MasterKey::load_or_create(data_dir, explicit)?;
        match Inventory::open(data_dir, key.clone()) {
            Err(InventoryError::WrongMasterKey) if explicit.is_none() => {
                let Some(staged) = MasterKey::staged_key_file(data_dir)? else {
                    if tries < 3 {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    return Err(InventoryError::WrongMasterKey);
                };
                let inv = Inventory::open(data_dir, staged.clone())?;
                match MasterKey::install_staged_key_file(data_dir) {
                    Ok(()) => tracing::warn!(
                        "finished an interrupted master-key rotation: {} now holds the key the inventory is sealed under",
                        crate::vault::KEY_FILE
                    ),
                    // Another process put it in place first.
                    Err(_) if !data_dir.join(crate::vault::STAGED_KEY_FILE).exists() => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok((inv, staged));
            }
            Ok(inv) => {
                // The key file opens the inventory, so a staged key beside it is from a rotation
                // killed before its commit: it opens nothing, and restore refused for good while
                // it was there (chaos review of stop 40). Nothing else can be rotating: a
                // rotation holds the directory alone, and this process holds it too.
                let staged = data_dir.join(crate::vault::STAGED_KEY_FILE);
                if explicit.is_none() && staged.exists() && std::fs::remove_file(&staged).is_ok() {
                    tracing::warn!(
                        "removed {}: a master-key rotation was cut short before its commit, and the key it staged opens nothing",
                        crate::vault::STAGED_KEY_FILE
                    );
                }
                return Ok((inv, key));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::cache::{CacheStore, Entry, now_ms};
    use crate::inventory::{InventoryCacheStore, SecretOwner};
    use crate::key::{KeyType, PrivateKey};

    fn account(inv: &mut Inventory) {
        let def = toml::from_str(r#"connector = "acme.wasm""#).expect("def");
        inv.create_account("acme", &def, "cli", "test").expect("account");
        inv.set_secret(SecretOwner::Account, "acme", "token", "tok-7d1e", "test").expect("secret");
    }

    #[test]
    fn a_rotation_seals_everything_again_and_drops_only_dead_cache_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, _) = MasterKey::load_or_create(dir.path(), None).expect("key");
        let mut inv = Inventory::open(dir.path(), old.clone()).expect("open");
        account(&mut inv);
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let id = keys::insert(&inv.conn, &old, &key, 0).expect("insert");
        let store = InventoryCacheStore::new(dir.path().to_owned(), None);
        store.prepare().expect("store");
        let entry = |key: &str, expires_at_ms| Entry { key: key.into(), value: format!("{key}-value"), expires_at_ms };
        store.put("acme", None, &[entry("live", None), entry("dead", Some(now_ms() - 1))]).expect("put");
        drop(store);

        let new = MasterKey::generate();
        let rotated = inv.rotate_master_key(&new, "test").expect("rotate");
        assert_eq!(rotated, Rotated { keys: 1, secrets: 1, cache_entries: 1, cache_dropped: 1 });
        assert_eq!(inv.private_key(id).expect("key").pkcs8_der(), key.pkcs8_der(), "this connection uses the new key");
        assert_eq!(
            inv.secret(SecretOwner::Account, "acme", "token").expect("secret").as_deref().map(String::as_str),
            Some("tok-7d1e")
        );
        assert!(matches!(Inventory::open(dir.path(), old), Err(InventoryError::WrongMasterKey)));
        let err = inv.rotate_master_key(&new, "test").expect_err("the same key again");
        assert!(err.to_string().contains("is the one the inventory is sealed under"), "{err}");

        // The cache's rows are found by digests keyed by the new key.
        new.stage_key_file(dir.path()).expect("stage");
        MasterKey::install_staged_key_file(dir.path()).expect("install");
        let store = InventoryCacheStore::new(dir.path().to_owned(), None);
        store.prepare().expect("store under the new key");
        assert_eq!(store.get("acme", "live").expect("get").as_deref(), Some("live-value"));
        let events = inv.audit_events(&crate::inventory::AuditFilter {
            action_prefix: Some("master_key".into()),
            ..Default::default()
        });
        assert_eq!(events.expect("audit")[0].detail["keys"], 1);
    }

    #[test]
    fn a_key_that_does_not_open_stops_the_rotation_before_anything_changes() {
        let (dir, mut inv) = crate::inventory::scratch();
        account(&mut inv);
        let old = inv.vault.clone();
        let good = keys::insert(&inv.conn, &old, &PrivateKey::generate(KeyType::EcP256).expect("key"), 0).expect("key");
        let bad = keys::insert(&inv.conn, &old, &PrivateKey::generate(KeyType::EcP256).expect("key"), 0).expect("key");
        inv.conn.execute("UPDATE keys SET sealed_pkcs8 = zeroblob(64) WHERE id = ?1", [bad]).expect("damage");
        let err = inv.rotate_master_key(&MasterKey::generate(), "test").expect_err("refused");
        assert!(err.to_string().contains(&format!("key {bad} does not open")), "{err}");
        let inv = Inventory::open(dir.path(), old).expect("still under the old key");
        inv.private_key(good).expect("unchanged");
        assert!(inv.secret(SecretOwner::Account, "acme", "token").expect("secret").is_some());
    }

    /// Chaos review of stop 40: a rotation killed before its commit left `master.key.new`,
    /// which opens nothing, and `restore` refused for good while it was there.
    #[test]
    fn a_staged_key_from_a_rotation_killed_before_its_commit_is_removed_by_the_next_open() {
        let dir = tempfile::tempdir().expect("tmp");
        drop(open_data_dir(dir.path(), None).expect("create"));
        MasterKey::generate().stage_key_file(dir.path()).expect("stale staged key");
        let (_inv, _key) = open_data_dir(dir.path(), None).expect("opens under master.key");
        assert!(!dir.path().join(crate::vault::STAGED_KEY_FILE).exists(), "the stale staged key is gone");
    }
}
