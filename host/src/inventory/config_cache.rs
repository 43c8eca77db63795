//! Tokens, profiles and CA accounts as `serve` last read them, reused while the database's
//! configuration generation stays the same.
//!
//! Every issuance reads its caller's token, its profile and the profile's CA account. Read
//! from SQLite each time, those lookups — and parsing the stored definitions — were about a
//! tenth of the request path's CPU under load: every commit resets a reader's page cache, so
//! each lookup also went back to the file for its pages.
//!
//! Why a generation and not a time limit: a change must count from the next request on (a
//! `certhost token revoke` run from another process locks the token out at once). Triggers
//! (schema migration 4) add one to `config_generation` in the same transaction as any insert,
//! update or delete on `tokens`, `profiles` or `accounts`, whichever process makes it. Every
//! cached lookup first reads the generation — one row, one page — and a cache filled under
//! another generation is emptied before use.
//!
//! A request reads the generation once ([`Inventory::config_view`]) and may pin its later
//! lookups to it ([`Inventory::pin_config`]): an issuance looks up its token, its profile and
//! its CA account, and each generation read is a read transaction that goes back to the file
//! (every commit resets a reader's page cache) — about 15 µs each under load. A pinned lookup
//! answers as of the request's start, which is what one request should see anyway: one
//! configuration, not a profile from before a change and an account from after it.
//!
//! A value is filed under the generation read *before* loading it, so a change committed in
//! between files a newer value under an older generation, which the next lookup (seeing the
//! newer generation) throws away. A cached answer is therefore never older than the database
//! was when its lookup began. Only what exists is cached: an unknown token or name is looked
//! up again every time, so guessing tokens fills no memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::account::Account;
use crate::profile::ProfileDef;

use super::tokens::TokenInfo;
use super::{CachedSql, Inventory, InventoryError};

/// The cache, shared by all of a pool's connections.
#[derive(Default)]
pub(crate) struct ConfigCache {
    state: Mutex<State>,
}

/// What the cache holds; its maps are reached through [`Cached`].
#[derive(Default)]
pub(crate) struct State {
    generation: i64,
    /// By SHA-256 of the token (the stored form; the token itself is never kept).
    tokens: HashMap<String, TokenInfo>,
    /// By name: definition and origin.
    profiles: HashMap<String, (ProfileDef, String)>,
    accounts: HashMap<String, Account>,
}

/// Which map of the cache a lookup uses.
pub(crate) trait Cached: Clone {
    /// The map of `state` holding values of this kind.
    fn map(state: &mut State) -> &mut HashMap<String, Self>;
}

impl Cached for TokenInfo {
    fn map(state: &mut State) -> &mut HashMap<String, Self> {
        &mut state.tokens
    }
}

impl Cached for (ProfileDef, String) {
    fn map(state: &mut State) -> &mut HashMap<String, Self> {
        &mut state.profiles
    }
}

impl Cached for Account {
    fn map(state: &mut State) -> &mut HashMap<String, Self> {
        &mut state.accounts
    }
}

impl std::fmt::Debug for ConfigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigCache")
    }
}

impl ConfigCache {
    /// The value cached under `key` at `generation`; an older generation's values are dropped.
    pub(crate) fn get<T: Cached>(&self, generation: i64, key: &str) -> Option<T> {
        let mut state = self.lock();
        state.advance(generation);
        if state.generation != generation {
            // The caller read an older generation than the cache holds: nothing of its time.
            return None;
        }
        T::map(&mut state).get(key).cloned()
    }

    /// Files `value` under `key`, loaded after `generation` was read.
    pub(crate) fn put<T: Cached>(&self, generation: i64, key: &str, value: &T) {
        let mut state = self.lock();
        state.advance(generation);
        if state.generation == generation {
            T::map(&mut state).insert(key.to_owned(), value.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock can only have left a map half-updated with values
        // that were each right when stored; the cache stays usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn advance(&mut self, generation: i64) {
        if generation > self.generation {
            self.tokens.clear();
            self.profiles.clear();
            self.accounts.clear();
            self.generation = generation;
        }
    }
}

/// The configuration generation a request read when it began; see [`Inventory::pin_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigView(i64);

/// A pinned generation and the connection's change count when it was pinned.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pin {
    generation: i64,
    changes: u64,
}

const GENERATION_SQL: &str = "SELECT value FROM config_generation WHERE id = 1";

impl Inventory {
    /// The configuration generation now, for a request to pin its lookups to; `None` where
    /// nothing is cached (the CLI's own connection), so pinning it changes nothing.
    pub fn config_view(&self) -> Result<Option<ConfigView>, InventoryError> {
        if self.config.is_none() {
            return Ok(None);
        }
        Ok(Some(ConfigView(self.conn.query_row_cached(GENERATION_SQL, [], |r| r.get(0))?)))
    }

    /// Until this connection goes back to its pool, token, profile and account lookups on it
    /// answer as of `view` (or later), without reading the generation again.
    ///
    /// For a request that only reads configuration. Should this connection write anything
    /// itself, the pin lapses and lookups read the generation again, so a request never
    /// misses its own change.
    pub fn pin_config(&mut self, view: Option<ConfigView>) {
        self.config_pin = view.map(|ConfigView(generation)| Pin { generation, changes: self.conn.total_changes() });
    }

    /// `load`'s answer for `key`: from the pool's cache while the configuration generation is
    /// the one it was cached under, else loaded (and cached when found). Without a cache (the
    /// CLI's single connection) it is simply `load`.
    pub(super) fn config_lookup<T: Cached>(
        &self,
        key: &str,
        load: impl FnOnce(&Self) -> Result<Option<T>, InventoryError>,
    ) -> Result<Option<T>, InventoryError> {
        // Inside a transaction of its own this connection may see its own uncommitted
        // changes: never file those.
        let Some(cache) = self.config.as_ref().filter(|_| self.conn.is_autocommit()) else { return load(self) };
        let pinned = self.config_pin.filter(|p| p.changes == self.conn.total_changes()).map(|p| p.generation);
        let generation: i64 = match pinned {
            Some(generation) => generation,
            None => self.conn.query_row_cached(GENERATION_SQL, [], |r| r.get(0))?,
        };
        if let Some(hit) = cache.get::<T>(generation, key) {
            return Ok(Some(hit));
        }
        let found = load(self)?;
        if let Some(value) = &found {
            cache.put(generation, key, value);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountDef, AccountStatus};
    use crate::inventory::{InventoryPool, Role, TokenCheck};
    use crate::vault::MasterKey;

    /// The role of a live token; `None` for any other answer.
    fn role(check: TokenCheck) -> Option<Role> {
        match check {
            TokenCheck::Valid(info) => Some(info.role),
            _ => None,
        }
    }

    /// What `serve` sees through its pool after another process (here: another connection,
    /// as the CLI opens) changes a token, a profile or an account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_from_another_connection_is_seen_by_the_next_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate();
        let mut cli = Inventory::open(dir.path(), key.clone()).expect("open");
        let token = cli.create_token("bot", Role::Operator, None, "test").expect("token");
        let profile = ProfileDef { description: "first".into(), ..ProfileDef::default() };
        cli.create_profile("web", &profile, "cli", "test").expect("profile");
        let def: AccountDef = toml::from_str(r#"connector = "ca.wasm""#).expect("account");
        cli.create_account("ca", &def, "cli", "test").expect("account");

        let pool = InventoryPool::new(Inventory::open(dir.path(), key.clone()).expect("open"), key, 2).expect("pool");
        let served = pool.get().await.expect("connection");
        // Twice each: the second answer comes from the cache.
        for _ in 0..2 {
            assert_eq!(role(served.authenticate(&token).expect("auth")), Some(Role::Operator));
            assert_eq!(served.profile("web").expect("profile").map(|(p, _)| p.description), Some("first".into()));
            assert_eq!(served.account("ca").expect("account").map(|a| a.def.status), Some(AccountStatus::Active));
        }

        cli.revoke_token("bot", "test").expect("revoke");
        assert_eq!(
            served.authenticate(&token).expect("auth"),
            TokenCheck::Unknown,
            "a revoked token is refused at once"
        );
        let changed = ProfileDef { description: "second".into(), ..ProfileDef::default() };
        cli.update_profile("web", &changed, "test").expect("profile");
        assert_eq!(served.profile("web").expect("profile").map(|(p, _)| p.description), Some("second".into()));
        cli.set_account_status("ca", AccountStatus::Inactive, "test").expect("deactivate");
        assert_eq!(served.account("ca").expect("account").map(|a| a.def.status), Some(AccountStatus::Inactive));
        cli.delete_profile("web", "test").expect("delete");
        assert!(served.profile("web").expect("profile").is_none(), "a deleted profile is gone at once");

        // The answers above do come from the cache: a change that skips the generation (its
        // trigger dropped) is not seen.
        assert_eq!(served.account("ca").expect("account").map(|a| a.def.status), Some(AccountStatus::Inactive));
        cli.conn.execute_batch("DROP TRIGGER accounts_generation_update").expect("drop trigger");
        cli.set_account_status("ca", AccountStatus::Active, "test").expect("activate");
        assert_eq!(served.account("ca").expect("account").map(|a| a.def.status), Some(AccountStatus::Inactive));
    }

    /// A pinned connection answers as of its pin until it goes back to the pool; the next
    /// checkout of the same connection sees a change at once (a token revoked in between is
    /// refused), and so does the pinned connection once it writes anything itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pin_holds_for_its_request_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate();
        let mut cli = Inventory::open(dir.path(), key.clone()).expect("open");
        assert_eq!(cli.config_view().expect("view"), None, "nothing cached, nothing to pin");
        let token = cli.create_token("bot", Role::Operator, None, "test").expect("token");
        let first = ProfileDef { description: "first".into(), ..ProfileDef::default() };
        cli.create_profile("web", &first, "cli", "test").expect("profile");
        // One connection, so the second checkout is the same one the pin was set on.
        let pool = InventoryPool::new(Inventory::open(dir.path(), key.clone()).expect("open"), key, 1).expect("pool");
        let description = |inv: &Inventory| inv.profile("web").expect("profile").map(|(p, _)| p.description);

        let mut request = pool.get().await.expect("connection");
        let view = request.config_view().expect("view");
        request.pin_config(view);
        assert_eq!(description(&request), Some("first".into()));
        assert!(role(request.authenticate(&token).expect("auth")).is_some());
        cli.update_profile("web", &ProfileDef { description: "second".into(), ..first.clone() }, "test")
            .expect("profile");
        cli.revoke_token("bot", "test").expect("revoke");
        assert_eq!(description(&request), Some("first".into()), "as of the request's start");
        assert!(role(request.authenticate(&token).expect("auth")).is_some(), "as of the request's start");
        drop(request);

        let mut next = pool.get().await.expect("connection");
        assert_eq!(description(&next), Some("second".into()));
        assert_eq!(next.authenticate(&token).expect("auth"), TokenCheck::Unknown, "revoked before this request began");

        // Pinned again, then a write of its own: the pin lapses.
        next.pin_config(view);
        assert_eq!(description(&next), Some("second".into()), "an old pin reads nothing stale from the cache");
        next.update_profile("web", &ProfileDef { description: "third".into(), ..first }, "test").expect("profile");
        assert_eq!(description(&next), Some("third".into()), "its own change");
    }

    fn token(name: &str) -> TokenInfo {
        TokenInfo { id: 1, name: name.into(), role: Role::Admin, created_at: 0, revoked_at: None, expires_at: None }
    }

    #[test]
    fn a_newer_generation_empties_the_cache_and_an_older_one_files_nothing() {
        let cache = ConfigCache::default();
        cache.put(3, "h", &token("a"));
        assert_eq!(cache.get::<TokenInfo>(3, "h"), Some(token("a")));
        // A lookup that read generation 4 sees nothing from generation 3.
        assert_eq!(cache.get::<TokenInfo>(4, "h"), None);
        // A slow lookup that read generation 3 before the change may not file its value now.
        cache.put(3, "h", &token("stale"));
        assert_eq!(cache.get::<TokenInfo>(4, "h"), None);
        assert_eq!(cache.get::<TokenInfo>(3, "h"), None, "an older generation reads nothing");
        cache.put(4, "h", &token("b"));
        assert_eq!(cache.get::<TokenInfo>(4, "h"), Some(token("b")));
    }
}
