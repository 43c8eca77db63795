//! CA account and profile rows, and sealed secrets. Every change is audited in its transaction.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, Inventory, InventoryError};
use crate::account::{Account, AccountDef, AccountStatus, TestResult};
use crate::profile::ProfileDef;
use crate::vault::MasterKey;

/// Whose secret: an account's or a profile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner {
    /// A CA account parameter.
    Account,
    /// A profile parameter.
    Profile,
}

impl SecretOwner {
    fn as_str(self) -> &'static str {
        match self {
            SecretOwner::Account => "account",
            SecretOwner::Profile => "profile",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "account" => Some(SecretOwner::Account),
            "profile" => Some(SecretOwner::Profile),
            _ => None,
        }
    }
}

/// Whether an upsert changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// New row.
    Created,
    /// Existing row changed.
    Updated,
    /// Identical definition already stored.
    Unchanged,
}

/// What a write of an account or profile definition may do to a row of that name.
#[derive(Debug, Clone, Copy)]
enum Put<'a> {
    /// Only insert a new row, with this origin.
    Create {
        /// `cli` or `api`.
        origin: &'a str,
    },
    /// Only replace a row made with the CLI or the API.
    Update,
    /// Insert or replace a row a file defines.
    File,
}

/// Whether `origin` is a configuration file's (an account in certhost.toml, a profile file).
pub fn is_file_origin(origin: &str) -> bool {
    origin.starts_with("file")
}

/// Where an inventory's file-defined accounts and profiles came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRecord {
    /// None is file-defined: any configuration file may be loaded.
    NoFileDefinitions,
    /// This file (absolute), loaded last.
    File(PathBuf),
    /// Some are, but the file is not recorded: an inventory a certhost from before the record
    /// loaded them into (upgrade walkthrough of stop 49).
    Unrecorded,
}

impl Inventory {
    /// The configuration file the file-defined accounts and profiles were last loaded from
    /// (absolute), if any are and it is recorded: see `config::loaded_from_elsewhere`.
    pub fn config_file(&self) -> Result<Option<PathBuf>, InventoryError> {
        Ok(match self.config_record()? {
            ConfigRecord::File(path) => Some(path),
            ConfigRecord::NoFileDefinitions | ConfigRecord::Unrecorded => None,
        })
    }

    /// Where the file-defined accounts and profiles came from, as far as the inventory knows.
    pub fn config_record(&self) -> Result<ConfigRecord, InventoryError> {
        let file_defined: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE origin LIKE 'file%')
                 OR EXISTS (SELECT 1 FROM profiles WHERE origin LIKE 'file%')",
            [],
            |r| r.get(0),
        )?;
        if !file_defined {
            return Ok(ConfigRecord::NoFileDefinitions);
        }
        Ok(match self.recorded_config_file()? {
            Some(path) => ConfigRecord::File(path),
            None => ConfigRecord::Unrecorded,
        })
    }

    /// The configuration file loaded last, as recorded, whether or not it defined anything (a
    /// file of `[server]` settings beside accounts made with the API is one).
    pub fn recorded_config_file(&self) -> Result<Option<PathBuf>, InventoryError> {
        let path: Option<Vec<u8>> =
            self.conn.query_row("SELECT value FROM meta WHERE name = 'config_file'", [], |r| r.get(0)).optional()?;
        Ok(path.map(|p| PathBuf::from(std::ffi::OsString::from_vec(p))))
    }

    /// Records `path` as the configuration file loaded last. Read first: the same file again,
    /// every command's case, writes nothing (a write would take the database's write lock for
    /// `orders list`).
    pub fn set_config_file(&self, path: &Path) -> Result<(), InventoryError> {
        let recorded: Option<Vec<u8>> =
            self.conn.query_row("SELECT value FROM meta WHERE name = 'config_file'", [], |r| r.get(0)).optional()?;
        if recorded.as_deref() == Some(path.as_os_str().as_bytes()) {
            return Ok(());
        }
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES ('config_file', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [path.as_os_str().as_bytes()],
        )?;
        Ok(())
    }
}

impl<'a> Put<'a> {
    /// Decides, from the row of that name (whether its definition is the same, its origin),
    /// the origin to write — or `None` when nothing changes — or why the write is refused.
    fn decide(
        self,
        word: &str,
        name: &str,
        existing: Option<(bool, &'a str)>,
    ) -> Result<Option<&'a str>, InventoryError> {
        match (self, existing) {
            (Put::Create { origin }, None) => Ok(Some(origin)),
            (Put::Create { .. }, Some(_)) => Err(InventoryError::Conflict(format!("{word} {name} already exists"))),
            (Put::Update, None) => Err(InventoryError::NotFound(format!("{word} {name}"))),
            (Put::Update | Put::File, Some((_, origin))) if is_file_origin(origin) != matches!(self, Put::File) => {
                Err(InventoryError::Conflict(if is_file_origin(origin) {
                    format!("{word} {name} is defined in a configuration file; change it there and reload (SIGHUP)")
                } else {
                    taken_by(word, name, origin)
                }))
            }
            (Put::Update | Put::File, Some((true, _))) => Ok(None),
            (Put::Update | Put::File, Some((false, origin))) => Ok(Some(origin)),
            (Put::File, None) => Ok(Some("file")),
        }
    }
}

/// Why a file cannot define `name`: an account or profile made with the CLI or the API has it.
pub fn taken_by(word: &str, name: &str, origin: &str) -> String {
    format!(
        "{word} {name} already exists with origin {origin}, and a file cannot take it over; rename one of them, \
         or delete the stored one first"
    )
}

fn secret_aad(kind: SecretOwner, owner: &str, name: &str) -> Vec<u8> {
    format!("certhost/secret/v1/{}/{owner}/{name}", kind.as_str()).into_bytes()
}

/// Seals every stored secret again under `new` (master-key rotation, inside its
/// transaction). One `old` does not open fails the rotation, naming its owner and parameter.
pub(super) fn reseal_secrets(
    conn: &rusqlite::Connection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, InventoryError> {
    let rows: Vec<(String, String, String, Vec<u8>)> = conn
        .prepare("SELECT owner_kind, owner_name, name, sealed FROM secrets")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let count = rows.len();
    for (kind_text, owner, name, sealed) in rows {
        let kind = SecretOwner::parse(&kind_text)
            .ok_or_else(|| InventoryError::Corrupt(format!("a secret has the unknown owner kind {kind_text:?}")))?;
        let aad = secret_aad(kind, &owner, &name);
        let plain = old.open(&sealed, &aad).map_err(|e| {
            InventoryError::Corrupt(format!(
                "secret {name} of {} {owner} does not open under the current master key ({e})",
                kind.as_str()
            ))
        })?;
        conn.execute(
            "UPDATE secrets SET sealed = ?1 WHERE owner_kind = ?2 AND owner_name = ?3 AND name = ?4",
            params![new.seal(&plain, &aad), kind_text, owner, name],
        )?;
    }
    Ok(count)
}

/// The orders that may be at their CA — pending there, held for an operator (the CA may have
/// acted on it), or in their first call right now — of `owner` (an account, or a profile: its
/// sensitive values pick the part of its accounts' caches its calls see) whose account's
/// connector has cached something: what it kept to finish them (an ACME order's CSR, the
/// account key it was placed with) is what a change of that owner puts out of their reach.
const STRANDABLE: &str = "(state = 'needs_attention' OR (state = 'pending' AND (submitted = 1 OR lease_until > ?2)))
     AND EXISTS (SELECT 1 FROM connector_cache WHERE connector_cache.account = orders.account)";

fn strandable(tx: &rusqlite::Connection, owner: SecretOwner, name: &str, now: i64) -> rusqlite::Result<Vec<i64>> {
    let column = match owner {
        SecretOwner::Account => "account",
        SecretOwner::Profile => "profile",
    };
    tx.prepare_cached(&format!("SELECT id FROM orders WHERE {column} = ?1 AND {STRANDABLE} ORDER BY id"))?
        .query_map(params![name, now], |r| r.get(0))?
        .collect()
}

/// Empties `account`'s connector cache (`connector_cache.rs`): what its connector cached was
/// fetched with credentials or for a CA that no longer apply. Returns the account's orders
/// that may be at its CA while the cache held something ([`strandable`]), so that the change
/// says so ([`stranded_warning`]) rather than leave the operator to find out at a failed poll.
fn forget_cache(tx: &rusqlite::Connection, account: &str, now: i64) -> rusqlite::Result<Vec<i64>> {
    let stranded = strandable(tx, SecretOwner::Account, account, now)?;
    tx.execute_cached("DELETE FROM connector_cache WHERE account = ?1", [account])?;
    // A new epoch: a call that read the old one stores nothing. Random, so an account deleted
    // and made again never repeats the epoch a late call of the old one holds.
    tx.execute_cached("UPDATE accounts SET cache_epoch = random() WHERE name = ?1", [account])?;
    Ok(stranded)
}

/// What an operator is told when a change of `owner` `name` put what its connector cached out
/// of the reach of `orders` that may be at the CA (`None` when there are none).
pub fn stranded_warning(owner: SecretOwner, name: &str, orders: &[i64]) -> Option<String> {
    if orders.is_empty() {
        return None;
    }
    let listed: Vec<String> = orders.iter().take(10).map(ToString::to_string).collect();
    let more = if orders.len() > listed.len() { ", …" } else { "" };
    let what = match owner {
        SecretOwner::Account => {
            format!("account {name}'s connector cache was emptied (its connector, parameters or a secret changed)")
        }
        SecretOwner::Profile => format!(
            "profile {name}'s sensitive value changed, and with it the part of its accounts' connector caches its calls see"
        ),
    };
    Some(format!(
        "{what} while {} of its orders may be at the CA ({}{more}): what the connector kept to finish them (an ACME \
         order's CSR and account key) is out of their reach, so they may fail when polled or resubmitted; decline such \
         an order (certhost orders decline ID) and issue again",
        orders.len(),
        listed.join(", ")
    ))
}

impl Inventory {
    /// Creates an account; refused (`Conflict`) when the name is taken, checked in the
    /// transaction that inserts, so of two concurrent creations exactly one succeeds. The
    /// definition holds references, never secret values, so it is stored as JSON as-is.
    pub fn create_account(
        &mut self,
        name: &str,
        def: &AccountDef,
        origin: &str,
        actor: &str,
    ) -> Result<(), InventoryError> {
        self.put_account(name, def, Put::Create { origin }, actor).map(|_| ())
    }

    /// Replaces an account made with the CLI or the API, keeping its origin: `NotFound` when it
    /// is gone (a deletion that won a race is not undone), `Conflict` when a file defines it.
    /// Returns the orders pending at the account's CA whose connector cache the change
    /// emptied ([`stranded_warning`]).
    pub fn update_account(&mut self, name: &str, def: &AccountDef, actor: &str) -> Result<Vec<i64>, InventoryError> {
        self.put_account(name, def, Put::Update, actor).map(|(_, stranded)| stranded)
    }

    /// Creates or replaces an account a configuration file defines: `Conflict` when the name
    /// belongs to an account made with the CLI or the API, which a file never takes over.
    /// Orders left without their connector's cache by the change are logged: a reload has no
    /// one to answer.
    pub fn sync_file_account(&mut self, name: &str, def: &AccountDef, actor: &str) -> Result<Upsert, InventoryError> {
        let (outcome, stranded) = self.put_account(name, def, Put::File, actor)?;
        if let Some(warning) = stranded_warning(SecretOwner::Account, name, &stranded) {
            tracing::warn!("{warning}");
        }
        Ok(outcome)
    }

    fn put_account(
        &mut self,
        name: &str,
        def: &AccountDef,
        put: Put<'_>,
        actor: &str,
    ) -> Result<(Upsert, Vec<i64>), InventoryError> {
        let json = serde_json::to_string(def).map_err(|e| InventoryError::Internal(e.to_string()))?;
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let existing: Option<(String, String)> = tx
            .query_row_cached("SELECT definition, origin FROM accounts WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let origin = match put.decide("account", name, existing.as_ref().map(|(d, o)| (d == &json, o.as_str())))? {
            None => return Ok((Upsert::Unchanged, Vec::new())),
            Some(origin) => origin,
        };
        let mut stranded = Vec::new();
        let outcome = if let Some((old_json, _)) = &existing {
            tx.execute_cached(
                "UPDATE accounts SET definition = ?2, status = ?3, origin = ?4, updated_at = ?5 WHERE name = ?1",
                params![name, json, def.status.as_str(), origin, now],
            )?;
            // What the connector cached belongs to the old connector and parameters (a token
            // fetched with the old credentials, an account at the old CA); a new timeout,
            // description or status keeps it.
            let old: Option<AccountDef> = serde_json::from_str(old_json).ok();
            if old.is_none_or(|old| old.connector != def.connector || old.params != def.params) {
                stranded = forget_cache(&tx, name, now)?;
            }
            Upsert::Updated
        } else {
            tx.execute_cached(
                "INSERT INTO accounts (name, definition, status, origin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![name, json, def.status.as_str(), origin, now],
            )?;
            // A call of a deleted account of this name may have stored entries after its
            // deletion emptied the cache.
            forget_cache(&tx, name, now)?;
            Upsert::Created
        };
        let action = if outcome == Upsert::Created { "account.create" } else { "account.update" };
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action,
                object_type: "account",
                object_id: Some(name.into()),
                outcome: "success",
                detail: if stranded.is_empty() {
                    serde_json::json!({ "origin": origin, "connector": def.connector })
                } else {
                    serde_json::json!({ "origin": origin, "connector": def.connector, "pending_orders_without_cache": stranded })
                },
            },
        )?;
        tx.commit()?;
        Ok((outcome, stranded))
    }

    /// One account.
    pub fn account(&self, name: &str) -> Result<Option<Account>, InventoryError> {
        self.config_lookup(name, |inv| {
            inv.conn
                .query_row_cached(
                    "SELECT name, definition, status, origin, last_test_at, last_test_ok, last_test_message FROM accounts WHERE name = ?1",
                    [name],
                    account_from_row,
                )
                .optional()?
                .transpose()
        })
    }

    /// All accounts, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, definition, status, origin, last_test_at, last_test_ok, last_test_message FROM accounts ORDER BY name",
        )?;
        let rows = stmt.query_map([], account_from_row)?;
        rows.map(|r| r.map_err(InventoryError::from).and_then(|x| x)).collect()
    }

    /// Activates or deactivates an account. Certificates it issued are untouched.
    pub fn set_account_status(&mut self, name: &str, status: AccountStatus, actor: &str) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        // Only the status, inside the transaction: a definition read before it and written
        // back whole would undo a change another process committed in between.
        let changed = tx.execute_cached(
            "UPDATE accounts SET status = ?2, definition = json_set(definition, '$.status', ?2), updated_at = ?3 \
             WHERE name = ?1",
            params![name, status.as_str(), now],
        )?;
        if changed == 0 {
            return Err(InventoryError::NotFound(format!("account {name}")));
        }
        let action = if status == AccountStatus::Active { "account.activate" } else { "account.deactivate" };
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action,
                object_type: "account",
                object_id: Some(name.into()),
                outcome: "success",
                detail: serde_json::json!({}),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes an account: refused while a profile or an open order uses it. Its audit stays.
    pub fn delete_account(&mut self, name: &str, actor: &str) -> Result<(), InventoryError> {
        if self.account(name)?.is_none() {
            return Err(InventoryError::NotFound(format!("account {name}")));
        }
        let users: Vec<String> = self
            .profiles()?
            .into_iter()
            .filter(|(_, def, _)| def.accounts.iter().any(|a| a == name))
            .map(|(n, _, _)| n)
            .collect();
        if !users.is_empty() {
            return Err(InventoryError::InUse(format!("account {name} is used by profile(s) {}", users.join(", "))));
        }
        // Revoking a certificate goes through the account that issued it (review of stop 31:
        // once deleted, a compromised key's certificate could not be revoked). One pass over
        // the table (`+status`): through the status index it was a row lookup for each active
        // certificate, 3 s at 1 M when the account has none (the usual case); deleting an
        // account is rare.
        let issued: Option<i64> = self
            .conn
            .query_row_cached(
                "SELECT id FROM certificates WHERE +status = 'active' AND account = ?1 LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = issued {
            return Err(InventoryError::InUse(format!(
                "account {name} issued active certificates (certificate {id} among them), which are revoked through it; deactivate it instead, or delete or renew them elsewhere first"
            )));
        }
        self.delete_owner(SecretOwner::Account, name, actor)
    }

    /// Stores the result of `account test` (message already redacted). `ok` is `None` when
    /// nothing could be tested (the connector has no connection test): the account's last
    /// test is then cleared, so no earlier result, and no failure, stands in for it.
    pub fn record_account_test(
        &mut self,
        name: &str,
        ok: Option<bool>,
        message: &str,
        actor: &str,
    ) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let n = match ok {
            Some(ok) => tx.execute_cached(
                "UPDATE accounts SET last_test_at = ?2, last_test_ok = ?3, last_test_message = ?4 WHERE name = ?1",
                params![name, now, ok, message],
            )?,
            None => tx.execute_cached(
                "UPDATE accounts SET last_test_at = NULL, last_test_ok = NULL, last_test_message = NULL WHERE name = ?1",
                params![name],
            )?,
        };
        if n == 0 {
            return Err(InventoryError::NotFound(format!("account {name}")));
        }
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: "account.test",
                object_type: "account",
                object_id: Some(name.into()),
                outcome: match ok {
                    Some(true) => "success",
                    Some(false) => "failure",
                    None => "skipped",
                },
                detail: serde_json::json!({ "message": message }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Creates a profile; refused (`Conflict`) when the name is taken, checked in the
    /// transaction that inserts, so of two concurrent creations exactly one succeeds.
    pub fn create_profile(
        &mut self,
        name: &str,
        def: &ProfileDef,
        origin: &str,
        actor: &str,
    ) -> Result<(), InventoryError> {
        self.put_profile(name, def, Put::Create { origin }, actor).map(|_| ())
    }

    /// A profile's sensitive values given by reference (`{ env }`, `{ file }`), by name: its
    /// calls' part of each account's connector cache follows its sensitive values, so a change
    /// of reference (most often, of the value) moves them to another part, as `secret set` does.
    fn sensitive_references(def: &ProfileDef) -> Vec<(&String, &Option<crate::param::ValueSource>)> {
        def.params.iter().filter(|(_, d)| d.sensitive && !d.dynamic).map(|(n, d)| (n, &d.value)).collect()
    }

    /// Replaces a profile made with the CLI or the API, keeping its origin: `NotFound` when it
    /// is gone (a deletion that won a race is not undone), `Conflict` when a file defines it.
    /// Returns the orders that may be at the CA whose part of the connector cache the change
    /// moved away from ([`stranded_warning`]).
    pub fn update_profile(&mut self, name: &str, def: &ProfileDef, actor: &str) -> Result<Vec<i64>, InventoryError> {
        self.put_profile(name, def, Put::Update, actor).map(|(_, stranded)| stranded)
    }

    /// Creates or replaces a profile a profile file defines: `Conflict` when the name belongs
    /// to a profile made with the CLI or the API, which a file never takes over.
    pub fn sync_file_profile(&mut self, name: &str, def: &ProfileDef, actor: &str) -> Result<Upsert, InventoryError> {
        let (outcome, stranded) = self.put_profile(name, def, Put::File, actor)?;
        if let Some(warning) = stranded_warning(SecretOwner::Profile, name, &stranded) {
            tracing::warn!("{warning}");
        }
        Ok(outcome)
    }

    fn put_profile(
        &mut self,
        name: &str,
        def: &ProfileDef,
        put: Put<'_>,
        actor: &str,
    ) -> Result<(Upsert, Vec<i64>), InventoryError> {
        let json = serde_json::to_string(def).map_err(|e| InventoryError::Internal(e.to_string()))?;
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let existing: Option<(String, String)> = tx
            .query_row_cached("SELECT definition, origin FROM profiles WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let origin = match put.decide("profile", name, existing.as_ref().map(|(d, o)| (d == &json, o.as_str())))? {
            None => return Ok((Upsert::Unchanged, Vec::new())),
            Some(origin) => origin,
        };
        // A sensitive reference changed: the orders that may be at the CA lose what their
        // calls cached (operator walkthrough of stop 46: only `secret set` said so).
        let moved = existing
            .as_ref()
            .and_then(|(old, _)| parse_profile(old, name).ok())
            .is_some_and(|old| Self::sensitive_references(&old) != Self::sensitive_references(def));
        let stranded = if moved { strandable(&tx, SecretOwner::Profile, name, now)? } else { Vec::new() };
        let outcome = if existing.is_some() {
            tx.execute_cached(
                "UPDATE profiles SET definition = ?2, origin = ?3, updated_at = ?4 WHERE name = ?1",
                params![name, json, origin, now],
            )?;
            Upsert::Updated
        } else {
            tx.execute_cached(
                "INSERT INTO profiles (name, definition, origin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![name, json, origin, now],
            )?;
            Upsert::Created
        };
        let action = if outcome == Upsert::Created { "profile.create" } else { "profile.update" };
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action,
                object_type: "profile",
                object_id: Some(name.into()),
                outcome: "success",
                detail: if stranded.is_empty() {
                    serde_json::json!({ "origin": origin })
                } else {
                    serde_json::json!({ "origin": origin, "pending_orders_without_cache": stranded })
                },
            },
        )?;
        tx.commit()?;
        // A changed renewal policy moves the schedule of the profile's certificates.
        self.reschedule_profile(name, &def.renewal)?;
        Ok((outcome, stranded))
    }

    /// One profile and its origin.
    pub fn profile(&self, name: &str) -> Result<Option<(ProfileDef, String)>, InventoryError> {
        self.config_lookup(name, |inv| {
            let row: Option<(String, String)> = inv
                .conn
                .query_row_cached("SELECT definition, origin FROM profiles WHERE name = ?1", [name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(json, origin)| Ok((parse_profile(&json, name)?, origin))).transpose()
        })
    }

    /// All profiles: (name, definition, origin), by name.
    pub fn profiles(&self) -> Result<Vec<(String, ProfileDef, String)>, InventoryError> {
        let mut stmt = self.conn.prepare_cached("SELECT name, definition, origin FROM profiles ORDER BY name")?;
        let rows: Vec<(String, String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        rows.into_iter().map(|(n, json, o)| Ok((n.clone(), parse_profile(&json, &n)?, o))).collect()
    }

    /// Deletes a profile: refused while it has open orders. Certificates keep its name.
    pub fn delete_profile(&mut self, name: &str, actor: &str) -> Result<(), InventoryError> {
        if self.profile(name)?.is_none() {
            return Err(InventoryError::NotFound(format!("profile {name}")));
        }
        // An active certificate renews under its profile: without it, every renewal would
        // fail weeks later with "profile … does not exist" (review of stop 33). As for
        // accounts, read through the index on status; deleting a profile is rare.
        let used: Option<i64> = self
            .conn
            .query_row_cached(
                "SELECT id FROM certificates WHERE profile = ?1
                   AND (status = 'active' OR (status = 'expired' AND renew_after IS NOT NULL)) LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = used {
            return Err(InventoryError::InUse(format!(
                "profile {name} is the profile of active certificates (certificate {id} among them), which renew under it; \
                 renew them under another profile first (certhost renew ID --profile OTHER), or delete them"
            )));
        }
        self.delete_owner(SecretOwner::Profile, name, actor)
    }

    /// Deletes an account or profile with its sealed secrets, refused while an open order
    /// uses it; its audit history stays.
    fn delete_owner(&mut self, kind: SecretOwner, name: &str, actor: &str) -> Result<(), InventoryError> {
        let (table, word) = match kind {
            SecretOwner::Account => ("accounts", "account"),
            SecretOwner::Profile => ("profiles", "profile"),
        };
        let open: i64 = self.conn.query_row_cached(
            &format!("SELECT COUNT(*) FROM orders WHERE {word} = ?1 AND {}", super::orders::OPEN),
            [name],
            |r| r.get(0),
        )?;
        if open > 0 {
            return Err(InventoryError::InUse(format!("{word} {name} has {open} open order(s)")));
        }
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        tx.execute_cached(&format!("DELETE FROM {table} WHERE name = ?1"), [name])?;
        if kind == SecretOwner::Account {
            forget_cache(&tx, name, now)?;
        }
        tx.execute_cached(
            "DELETE FROM secrets WHERE owner_kind = ?1 AND owner_name = ?2",
            params![kind.as_str(), name],
        )?;
        let action = format!("{word}.delete");
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: &action,
                object_type: word,
                object_id: Some(name.into()),
                outcome: "success",
                detail: serde_json::json!({}),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Seals and stores a sensitive parameter value. The audit event names the parameter only.
    /// Returns the orders pending at an account's CA whose connector cache a new value
    /// emptied ([`stranded_warning`]).
    pub fn set_secret(
        &mut self,
        kind: SecretOwner,
        owner: &str,
        name: &str,
        value: &str,
        actor: &str,
    ) -> Result<Vec<i64>, InventoryError> {
        let aad = secret_aad(kind, owner, name);
        let sealed = self.vault.seal(value.as_bytes(), &aad);
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        // A new credential of an account makes what its connector cached with the old one
        // stale (a token); a profile's new value makes its calls see another part of the cache
        // (`connector::cache::scope_of`). Setting the same value again changes nothing. Read
        // under the write lock, so a value set meanwhile by another process counts.
        let old: Option<Vec<u8>> = tx
            .query_row_cached(
                "SELECT sealed FROM secrets WHERE owner_kind = ?1 AND owner_name = ?2 AND name = ?3",
                params![kind.as_str(), owner, name],
                |r| r.get(0),
            )
            .optional()?;
        let same = old.and_then(|o| self.vault.open(&o, &aad).ok()).is_some_and(|o| o.as_slice() == value.as_bytes());
        let stranded = match kind {
            _ if same => Vec::new(),
            SecretOwner::Account => forget_cache(&tx, owner, now)?,
            SecretOwner::Profile => strandable(&tx, SecretOwner::Profile, owner, now)?,
        };
        tx.execute_cached(
            "INSERT INTO secrets (owner_kind, owner_name, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (owner_kind, owner_name, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![kind.as_str(), owner, name, sealed, now],
        )?;
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: "secret.set",
                object_type: kind.as_str(),
                object_id: Some(owner.into()),
                outcome: "success",
                detail: if stranded.is_empty() {
                    serde_json::json!({ "parameter": name })
                } else {
                    serde_json::json!({ "parameter": name, "pending_orders_without_cache": stranded })
                },
            },
        )?;
        tx.commit()?;
        Ok(stranded)
    }

    /// A stored sensitive value, unsealed for the connector call that needs it.
    pub fn secret(
        &self,
        kind: SecretOwner,
        owner: &str,
        name: &str,
    ) -> Result<Option<Zeroizing<String>>, InventoryError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row_cached(
                "SELECT sealed FROM secrets WHERE owner_kind = ?1 AND owner_name = ?2 AND name = ?3",
                params![kind.as_str(), owner, name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sealed) = sealed else { return Ok(None) };
        let plain = self.vault.open(&sealed, &secret_aad(kind, owner, name))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| InventoryError::Corrupt(format!("secret {name} of {} {owner} is not text", kind.as_str())))?;
        Ok(Some(Zeroizing::new(text)))
    }

    /// Every stored sensitive value, unsealed, for redacting what a hook prints: a hook runs
    /// as the same user, with the data directory and master key within reach. A value that
    /// does not open is left out (reading it for its call reports that).
    pub fn stored_secret_values(&self) -> Result<Vec<Zeroizing<String>>, InventoryError> {
        let mut stmt = self.conn.prepare_cached("SELECT owner_kind, owner_name, name, sealed FROM secrets")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
        })?;
        let mut values = Vec::new();
        for row in rows {
            let (kind, owner, name, sealed) = row?;
            let kind = if kind == "profile" { SecretOwner::Profile } else { SecretOwner::Account };
            if let Ok(plain) = self.vault.open(&sealed, &secret_aad(kind, &owner, &name))
                && let Ok(text) = String::from_utf8(plain.to_vec())
            {
                values.push(Zeroizing::new(text));
            }
        }
        Ok(values)
    }

    /// Whether a sensitive value is stored (for `set: true|false` views).
    pub fn has_secret(&self, kind: SecretOwner, owner: &str, name: &str) -> Result<bool, InventoryError> {
        Ok(self
            .conn
            .query_row_cached(
                "SELECT 1 FROM secrets WHERE owner_kind = ?1 AND owner_name = ?2 AND name = ?3",
                params![kind.as_str(), owner, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

fn parse_def<T: serde::de::DeserializeOwned>(json: &str, kind: &str, name: &str) -> Result<T, InventoryError> {
    serde_json::from_str(json).map_err(|e| InventoryError::Corrupt(format!("stored {kind} {name}: {e}")))
}

/// A stored profile, its secrets' variables registered as hidden from child processes
/// ([`crate::param::hidden_from_children`]) before anything can use it: a Python worker or
/// hook started later never gets them, whichever account it belongs to.
fn parse_profile(json: &str, name: &str) -> Result<ProfileDef, InventoryError> {
    let def: ProfileDef = parse_def(json, "profile", name)?;
    crate::param::hide_from_children(def.secret_sources());
    Ok(def)
}

impl Inventory {
    /// Registers the variables every stored account's and profile's secrets are read from as
    /// hidden from child processes (by reading them all), and returns the full hidden list.
    /// A command calls it before it can start a worker or a hook.
    pub fn hide_secret_variables(&self) -> Result<Vec<String>, InventoryError> {
        self.accounts()?;
        self.profiles()?;
        Ok(crate::param::hidden_from_children())
    }
}

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Account, InventoryError>> {
    let name: String = r.get(0)?;
    let json: String = r.get(1)?;
    let status: String = r.get(2)?;
    let origin: String = r.get(3)?;
    let at: Option<i64> = r.get(4)?;
    let ok: Option<bool> = r.get(5)?;
    let message: Option<String> = r.get(6)?;
    Ok(parse_def::<AccountDef>(&json, "account", &name).map(|mut def| {
        crate::param::hide_from_children(crate::param::sensitive_sources(&def.params));
        def.status = if status == "inactive" { AccountStatus::Inactive } else { AccountStatus::Active };
        Account {
            name,
            def,
            origin,
            last_test: at.map(|at| TestResult { at, ok: ok.unwrap_or(false), message: message.unwrap_or_default() }),
        }
    }))
}
