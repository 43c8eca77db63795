//! A CA account's cache (`cache-get` / `cache-set`): values a connector keeps between calls —
//! an access token, an ACME account key and its URL, an order's CSR for a later poll.
//!
//! Where the entries live is a [`CacheStore`]'s business. `certhost` commands and `serve`
//! keep them in the inventory, sealed (`inventory::connector_cache`): they outlive the process
//! and every process on the data directory shares them, so a CLI command and `serve` use one
//! ACME account, and `serve`'s poller finishes an order the CLI left pending. Without a data
//! directory (`plugin check`, tests) they live in this process's memory ([`MemoryStore`]).
//!
//! The rules, for both runtimes and every store: a ttl of 0 means no expiry; a value over
//! 64 KiB or a key over 1 KiB (UTF-8 bytes) is ignored with a warning; at 256 entries a new
//! key first purges expired entries and is ignored, with a warning, if the cache is still
//! full. Expiry is wall-clock time, since an entry outlives the process that set it.
//!
//! A call's `cache-set`s are kept in the process (every call of the account sees them at
//! once) and stored when it ends, trapped or not ([`AccountCache::flush`]): storing may wait
//! for the database's write lock and a sync, which must not happen inside a guest call on an
//! async worker thread. Reads in a guest call are point reads of a WAL snapshot on a
//! connection opened beforehand, which wait for no writer (only, briefly, for another read
//! of the same process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most this many entries per account, values of at most this many bytes, keys of at most
/// this many bytes.
pub const MAX_ENTRIES: usize = 256;
/// See [`MAX_ENTRIES`].
pub const MAX_VALUE: usize = 64 * 1024;
/// See [`MAX_ENTRIES`].
pub const MAX_KEY: usize = 1024;

/// How a stored key starts when it belongs to a scope ([`AccountCache::scoped`]): a NUL, the
/// scope, a NUL. A connector's own keys may not start with a NUL.
const SCOPE_MARK: char = '\0';

/// Longest scope prefix: the mark, 32 hex digits, the mark.
const MAX_SCOPE_PREFIX: usize = 34;

/// A call's cache scope: a digest of the sensitive values its profile adds to the account's,
/// `None` when it adds none (the account's own scope, where every cache entry lived before
/// scopes). Profiles of one account with secrets of their own each see only their own
/// entries: a token fetched with one profile's credentials was served to the next profile's
/// calls, and a script echoing a cached value showed one profile's secret to another's
/// requester (secrets review of stop 41). The digest never leaves the process but inside the
/// sealed rows of the inventory.
pub fn scope_of<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    use sha2::Digest;
    let mut values: Vec<(&str, &str)> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mut hash = sha2::Sha256::new();
    hash.update(b"certhost/cache-scope/v1\0");
    for (name, value) in values {
        for part in [name, value] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
    }
    Some(hex::encode(&hash.finalize()[..16]))
}

/// One entry as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The connector's key.
    pub key: String,
    /// The value.
    pub value: String,
    /// When it expires, Unix milliseconds; `None` for an entry set with ttl 0.
    pub expires_at_ms: Option<i64>,
}

impl Entry {
    /// An entry set now with `ttl_seconds` (0: no expiry).
    pub fn with_ttl(key: String, value: String, ttl_seconds: u64) -> Self {
        let ms = i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self { key, value, expires_at_ms: (ttl_seconds > 0).then(|| now_ms().saturating_add(ms)) }
    }

    /// Whether it has expired at `now` (Unix milliseconds).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now)
    }

    /// Whether the rules refuse it outright (a key or value too large; a stored key may carry
    /// its scope's prefix beyond the connector's [`MAX_KEY`]).
    pub fn too_large(&self) -> bool {
        self.value.len() > MAX_VALUE || self.key.len() > MAX_KEY + MAX_SCOPE_PREFIX
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    crate::clock::unix_now_ms()
}

/// A store failed: the database could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CacheError(pub String);

/// Where accounts' caches live.
pub trait CacheStore: Send + Sync {
    /// Makes the store ready to read (opens a database), before a connector that uses it
    /// loads. Called off the async threads: it may wait.
    fn prepare(&self) -> Result<(), CacheError> {
        Ok(())
    }
    /// The value of `key` in `account`'s cache, unless it expired.
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, CacheError>;
    /// `account`'s live entries (a new Python worker starts with them).
    fn entries(&self, account: &str) -> Result<Vec<Entry>, CacheError>;
    /// Which emptying of `account`'s cache is the latest (`None`: a store that is never
    /// emptied). A call reads it before it first uses the cache, and [`CacheStore::put`]
    /// drops what the call set if the cache was emptied since: a token fetched with the
    /// credentials of before.
    fn epoch(&self, _account: &str) -> Result<Option<i64>, CacheError> {
        Ok(None)
    }
    /// Stores `set` under the rules, in one step, unless `epoch` is no longer the account's;
    /// answers how many new keys were ignored because the cache was full.
    fn put(&self, account: &str, epoch: Option<i64>, set: &[Entry]) -> Result<usize, CacheError>;
}

/// One account's entries in memory: key → (value, expiry in Unix milliseconds).
type MemoryCache = HashMap<String, (String, Option<i64>)>;

/// Caches in this process's memory: for checks and tests without a data directory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: Mutex<HashMap<String, MemoryCache>>,
}

impl CacheStore for MemoryStore {
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, CacheError> {
        // A panic while locked cannot leave a map half-updated (single inserts and removals).
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        Ok(accounts
            .get(account)
            .and_then(|c| c.get(key))
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(v, _)| v.clone()))
    }

    fn entries(&self, account: &str) -> Result<Vec<Entry>, CacheError> {
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let mut out: Vec<Entry> = accounts
            .get(account)
            .into_iter()
            .flatten()
            .map(|(k, (v, exp))| Entry { key: k.clone(), value: v.clone(), expires_at_ms: *exp })
            .filter(|e| !e.expired(now))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn put(&self, account: &str, _epoch: Option<i64>, set: &[Entry]) -> Result<usize, CacheError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let cache = accounts.entry(account.to_owned()).or_default();
        let now = now_ms();
        let mut ignored = 0;
        for e in set.iter().filter(|e| !e.too_large()) {
            if cache.len() >= MAX_ENTRIES && !cache.contains_key(&e.key) {
                cache.retain(|_, (_, exp)| exp.is_none_or(|x| x > now));
                if cache.len() >= MAX_ENTRIES {
                    ignored += 1;
                    continue;
                }
            }
            cache.insert(e.key.clone(), (e.value.clone(), e.expires_at_ms));
        }
        Ok(ignored)
    }
}

/// One account's cache, as its connector holds it.
///
/// What calls set is kept in a per-process overlay, seen at once by every call of the
/// account (as when the cache lived in memory: concurrent first issuances of a new ACME
/// account find the key the first one made), and stored when a call ends ([`flush`]).
///
/// [`flush`]: AccountCache::flush
#[derive(Clone)]
pub struct AccountCache {
    store: Arc<dyn CacheStore>,
    account: Arc<str>,
    /// What this view's keys start with in the store: empty for the account's own scope.
    prefix: Arc<str>,
    overlay: Arc<Mutex<Overlay>>,
    /// One flush at a time: two overlapping puts of one key could land in either order.
    flushing: Arc<tokio::sync::Mutex<()>>,
    /// Values this view refuses to keep in a key or value, in any form the redaction knows:
    /// the sensitive values a call's request gave itself ([`AccountCache::for_call`]).
    unshared: Arc<[zeroize::Zeroizing<String>]>,
}

/// Entries set and not yet stored, each with the order it was set in and the epoch of the
/// call that set it.
#[derive(Debug, Default)]
struct Overlay {
    next: u64,
    entries: HashMap<String, (u64, Entry, Option<i64>)>,
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache").field("account", &self.account).finish_non_exhaustive()
    }
}

/// Whether a set was kept for storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Kept; stored when the call ends.
    Kept,
    /// A key or value over the limits.
    TooLarge,
    /// A key starting with a NUL character, which marks a scope's keys.
    Reserved,
    /// [`MAX_ENTRIES`] new keys already wait to be stored.
    Full,
    /// The key or value holds a sensitive value the call's request gave itself.
    RequestSecret,
}

impl Set {
    /// Why a set was not kept, for the log; `None` when it was.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            Set::Kept => None,
            Set::TooLarge => Some("key or value too large"),
            Set::Reserved => Some("a key may not start with a NUL character"),
            Set::Full => Some("cache full"),
            Set::RequestSecret => Some(
                "the key or value holds a sensitive value the request gave, which the calls of other requests would read",
            ),
        }
    }
}

impl AccountCache {
    /// `account`'s cache in `store`.
    pub fn new(store: Arc<dyn CacheStore>, account: &str) -> Self {
        Self {
            store,
            account: account.into(),
            prefix: "".into(),
            overlay: Arc::default(),
            flushing: Arc::default(),
            unshared: Arc::new([]),
        }
    }

    /// The view of the cache a call with `args` uses: its scope ([`AccountCache::scoped`]),
    /// refusing to keep what holds a sensitive value its request gave itself. A scope covers
    /// the account's and the profile's secrets, which every call of the scope carries and
    /// redacts; a request's own (a dynamic PIN) is another request's secret, which that
    /// request's redaction does not know: cached, a script echoing the cached value showed
    /// one requester's PIN to the next (red-team walkthrough of stop 48).
    pub fn for_call(&self, args: &super::Args) -> Self {
        let unshared: Vec<zeroize::Zeroizing<String>> =
            args.request_sensitive_values().map(|v| zeroize::Zeroizing::new(v.to_owned())).collect();
        Self { unshared: unshared.into(), ..self.scoped(args.cache_scope()) }
    }

    /// The view of the cache a call with `scope` ([`scope_of`]) uses: the same entries, store
    /// and overlay, with only the scope's keys seen and set. `None` is the account's own scope.
    pub fn scoped(&self, scope: Option<&str>) -> Self {
        let prefix = scope.map(|s| format!("{SCOPE_MARK}{s}{SCOPE_MARK}")).unwrap_or_default();
        Self { prefix: prefix.into(), ..self.clone() }
    }

    /// The key `key` is stored under in this view.
    fn stored(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The connector's key of stored key `key`, when it is in this view.
    fn seen<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            (!key.starts_with(SCOPE_MARK)).then_some(key)
        } else {
            key.strip_prefix(&*self.prefix)
        }
    }

    /// A cache of its own in memory, for a connector loaded without a registry.
    pub fn in_memory(account: &str) -> Self {
        Self::new(Arc::new(MemoryStore::default()), account)
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        // A panic while locked cannot leave the map half-updated (single inserts and removals).
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`; a store that cannot be read answers nothing (the connector then
    /// does what it does without one: fetches a new token), and says why in the log.
    pub fn get(&self, key: &str) -> Option<String> {
        if key.starts_with(SCOPE_MARK) {
            return None;
        }
        let key = &self.stored(key);
        if let Some((_, e, _)) = self.overlay().entries.get(key) {
            return (!e.expired(now_ms())).then(|| e.value.clone());
        }
        self.store.get(&self.account, key).unwrap_or_else(|e| {
            tracing::warn!(account = %self.account, "the connector cache cannot be read: {e}");
            None
        })
    }

    /// The account's epoch ([`CacheStore::epoch`]), for a call about to use the cache; `None`
    /// when it cannot be read (what the call sets is then stored whatever happened meanwhile).
    pub fn epoch(&self) -> Option<i64> {
        self.store.epoch(&self.account).unwrap_or_else(|e| {
            tracing::warn!(account = %self.account, "the connector cache cannot be read: {e}");
            None
        })
    }

    /// Keeps `entry`, set by a call that began at `epoch`, for every call of the account to
    /// see, until [`AccountCache::flush`] stores it. At most [`MAX_ENTRIES`] keys wait at
    /// once: more could never all be stored, and would only grow host memory.
    pub fn set(&self, mut entry: Entry, epoch: Option<i64>) -> Set {
        if entry.value.len() > MAX_VALUE || entry.key.len() > MAX_KEY {
            return Set::TooLarge;
        }
        if entry.key.starts_with(SCOPE_MARK) {
            return Set::Reserved;
        }
        if !self.unshared.is_empty() {
            // As the redaction finds it, and as it stands anywhere, a short one inside a word
            // too (`pin1234`), which redaction leaves (review of stop 48): a false hit costs a
            // cache miss, a miss another requester's PIN.
            let inside = |text: &str| self.unshared.iter().any(|v| v.len() >= 4 && text.contains(v.as_str()));
            let rules = super::redact::Redactor::new(self.unshared.iter().map(|v| v.as_str()));
            let redacted = |text: &str| rules.redact(text) != text;
            if inside(&entry.key) || inside(&entry.value) || redacted(&entry.key) || redacted(&entry.value) {
                return Set::RequestSecret;
            }
        }
        entry.key = self.stored(&entry.key);
        let mut overlay = self.overlay();
        if overlay.entries.len() >= MAX_ENTRIES && !overlay.entries.contains_key(&entry.key) {
            return Set::Full;
        }
        let n = overlay.next;
        overlay.next += 1;
        overlay.entries.insert(entry.key.clone(), (n, entry, epoch));
        Set::Kept
    }

    /// The account's epoch and live entries — the store's, with what waits to be stored over
    /// them — for a Python call; `None` when the store cannot be read (the worker then keeps
    /// what it has).
    pub async fn entries(&self) -> Option<(Option<i64>, Vec<Entry>)> {
        let (store, account) = (Arc::clone(&self.store), Arc::clone(&self.account));
        // Unsealing up to 256 values is work for a blocking thread. The epoch is read first:
        // an emptying in between costs this call's sets, never lets stale ones through.
        let read = move || Ok::<_, CacheError>((store.epoch(&account)?, store.entries(&account)?));
        let (epoch, stored) = match tokio::task::spawn_blocking(read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::warn!(account = %self.account, "the connector cache cannot be read: {e}");
                return None;
            }
            Err(e) => {
                tracing::warn!(account = %self.account, "the connector cache cannot be read: {e}");
                return None;
            }
        };
        let mut all: HashMap<String, Entry> = stored.into_iter().map(|e| (e.key.clone(), e)).collect();
        let now = now_ms();
        for (_, e, _) in self.overlay().entries.values() {
            if e.expired(now) {
                all.remove(&e.key);
            } else {
                all.insert(e.key.clone(), e.clone());
            }
        }
        // This view's entries only, under the connector's keys.
        let mut out: Vec<Entry> = all
            .into_values()
            .filter_map(|e| self.seen(&e.key).map(str::to_owned).map(|key| Entry { key, ..e }))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Some((epoch, out))
    }

    /// Stores what calls set, in the order they set it, off the async threads. What cannot
    /// be stored is logged, never failed: the call's own result stands (the CA already
    /// answered it). What the store could not take for a failure of its own stays in the
    /// overlay for the next flush; what it refused (the cache full) is dropped.
    pub async fn flush(&self) {
        let _turn = self.flushing.lock().await;
        let mut pending: Vec<(u64, Entry, Option<i64>)> = self.overlay().entries.values().cloned().collect();
        pending.sort_by_key(|(n, _, _)| *n);
        // One put per epoch (nearly always one): a call that began before the cache was
        // emptied is refused alone.
        let mut epochs: Vec<Option<i64>> = pending.iter().map(|(_, _, ep)| *ep).collect();
        epochs.sort_unstable();
        epochs.dedup();
        for epoch in epochs {
            let group: Vec<(u64, Entry)> =
                pending.iter().filter(|(_, _, ep)| *ep == epoch).map(|(n, e, _)| (*n, e.clone())).collect();
            self.put(epoch, group).await;
        }
    }

    async fn put(&self, epoch: Option<i64>, pending: Vec<(u64, Entry)>) {
        let (store, account) = (Arc::clone(&self.store), Arc::clone(&self.account));
        let batch: Vec<Entry> = pending.iter().map(|(_, e)| e.clone()).collect();
        let outcome = tokio::task::spawn_blocking(move || store.put(&account, epoch, &batch)).await;
        let why = match outcome {
            Ok(Ok(ignored)) => {
                // Stored (or refused for good): forgotten here unless set again meanwhile.
                let mut overlay = self.overlay();
                for (n, e) in &pending {
                    if overlay.entries.get(&e.key).is_some_and(|(m, _, _)| m == n) {
                        overlay.entries.remove(&e.key);
                    }
                }
                if ignored == 0 {
                    return;
                }
                format!(
                    "cache-set ignored for {ignored} new key(s): the account's cache is full ({MAX_ENTRIES} entries)"
                )
            }
            Ok(Err(e)) => format!("the connector cache cannot be written: {e}"),
            Err(e) => format!("the connector cache cannot be written: {e}"),
        };
        tracing::warn!(account = %self.account, "{why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, expires_at_ms: Option<i64>) -> Entry {
        Entry { key: key.into(), value: value.into(), expires_at_ms }
    }

    #[test]
    fn the_memory_store_keeps_the_rules() {
        let s = MemoryStore::default();
        let later = Some(now_ms() + 60_000);
        s.put(
            "a",
            None,
            &[
                entry("forever", "a", None),
                entry("big", &"v".repeat(MAX_VALUE + 1), None),
                entry(&"k".repeat(MAX_KEY + MAX_SCOPE_PREFIX + 1), "v", None),
                entry("max", &"v".repeat(MAX_VALUE), None),
            ],
        )
        .expect("put");
        let keys: Vec<String> = s.entries("a").expect("entries").into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["forever", "max"]);
        assert_eq!(s.get("b", "forever").expect("get"), None, "accounts are apart");
        let many: Vec<Entry> = (0..MAX_ENTRIES).map(|i| entry(&format!("k{i}"), "v", later)).collect();
        assert_eq!(s.put("a", None, &many).expect("put"), 2, "full: the last new keys are ignored");
        assert_eq!(s.entries("a").expect("entries").len(), MAX_ENTRIES);
        s.put("a", None, &[entry("forever", "b", None)]).expect("put");
        assert_eq!(s.get("a", "forever").expect("get").as_deref(), Some("b"), "an existing key may change");
        s.put("a", None, &[entry("k0", "v", Some(now_ms() - 1))]).expect("put");
        assert_eq!(s.get("a", "k0").expect("get"), None, "expired");
        assert_eq!(s.put("a", None, &[entry("late", "v", None)]).expect("put"), 0, "an expired entry makes room");
        assert!(s.get("a", "late").expect("get").is_some());
    }

    #[tokio::test]
    async fn a_scope_sees_and_sets_only_its_own_entries() {
        let store = Arc::new(MemoryStore::default());
        let account = AccountCache::new(store.clone(), "a");
        let a = scope_of([("ptok", "profile-a-secret")]);
        let b = scope_of([("ptok", "profile-b-secret")]);
        assert_ne!(a, b);
        assert_eq!(scope_of(std::iter::empty()), None, "no secrets of its own: the account's scope");
        assert_eq!(scope_of([("x", "1"), ("y", "2")]), scope_of([("y", "2"), ("x", "1")]), "order does not count");
        assert_ne!(scope_of([("x", "12")]), scope_of([("x1", "2")]), "names and values are apart");
        let (in_a, in_b) = (account.scoped(a.as_deref()), account.scoped(b.as_deref()));
        assert_eq!(in_a.set(entry("token", "of a", None), None), Set::Kept);
        assert_eq!(account.set(entry("token", "of the account", None), None), Set::Kept);
        assert_eq!(in_b.get("token"), None, "not another scope's, before it is stored");
        assert_eq!(in_a.get("token").as_deref(), Some("of a"));
        in_a.flush().await;
        assert_eq!(in_b.get("token"), None, "nor after");
        assert_eq!(in_a.get("token").as_deref(), Some("of a"));
        assert_eq!(account.get("token").as_deref(), Some("of the account"));
        let keys = |c: &AccountCache| {
            let c = c.clone();
            async move { c.entries().await.expect("entries").1.into_iter().map(|e| (e.key, e.value)).collect::<Vec<_>>() }
        };
        assert_eq!(keys(&in_a).await, [("token".to_owned(), "of a".to_owned())]);
        assert_eq!(keys(&account).await, [("token".to_owned(), "of the account".to_owned())]);
        assert!(keys(&in_b).await.is_empty());
        // A connector cannot reach into a scope by naming its stored key.
        assert_eq!(account.set(entry("\0x\0token", "v", None), None), Set::Reserved);
        let stored = format!("\0{}\0token", a.as_deref().expect("scope"));
        assert_eq!(account.get(&stored), None);
        assert_eq!(in_a.set(entry(&"k".repeat(MAX_KEY), "v", None), None), Set::Kept, "a full-length key fits");
    }

    /// Red-team walkthrough of stop 48: a script cached one requester's PIN (a sensitive
    /// dynamic parameter) and the next requester's call read it back into its error, which
    /// that call's redaction did not know to hide.
    #[test]
    fn a_call_keeps_nothing_holding_a_secret_its_request_gave() {
        let account = AccountCache::in_memory("a");
        let mut args = crate::connector::Args::new();
        args.insert_sensitive("api_key", "account-key-0123");
        args.insert_request_sensitive("pin", "Alice-PIN-1111aaaa");
        let call = account.for_call(&args);
        assert_eq!(call.set(entry("last_pin", "Alice-PIN-1111aaaa", None), None), Set::RequestSecret);
        assert_eq!(call.set(entry("pin:Alice-PIN-1111aaaa", "1", None), None), Set::RequestSecret, "in a key too");
        // In any form the redaction knows.
        assert_eq!(call.set(entry("q", "pin=Alice-PIN-1111aaaa%20", None), None), Set::RequestSecret);
        assert_eq!(call.set(entry("b64", "QWxpY2UtUElOLTExMTFhYWFh", None), None), Set::RequestSecret);
        // A short one inside a word, which redaction leaves standing.
        let mut short = crate::connector::Args::new();
        short.insert_request_sensitive("pin", "4711");
        assert_eq!(account.for_call(&short).set(entry("k", "pin4711", None), None), Set::RequestSecret);
        assert!(Set::RequestSecret.refusal().expect("refused").contains("other requests"));
        // What the scope's calls all carry, and anything else, is kept.
        assert_eq!(call.set(entry("token", "account-key-0123", None), None), Set::Kept);
        assert_eq!(call.set(entry("nonce", "n-42", None), None), Set::Kept);
        assert_eq!(account.for_call(&crate::connector::Args::new()).get("nonce").as_deref(), Some("n-42"));
        assert_eq!(account.get("last_pin"), None);
    }

    /// A store whose writes fail (a full disk, a lost master key).
    struct Failing;

    impl CacheStore for Failing {
        fn get(&self, _: &str, _: &str) -> Result<Option<String>, CacheError> {
            Ok(None)
        }
        fn entries(&self, _: &str) -> Result<Vec<Entry>, CacheError> {
            Err(CacheError("cannot read".into()))
        }
        fn put(&self, _: &str, _: Option<i64>, _: &[Entry]) -> Result<usize, CacheError> {
            Err(CacheError("cannot write".into()))
        }
    }

    #[tokio::test]
    async fn the_overlay_is_seen_at_once_stored_in_order_and_kept_while_the_store_fails() {
        let store = Arc::new(MemoryStore::default());
        let cache = AccountCache::new(store.clone(), "a");
        let other_call = cache.clone();
        assert_eq!(cache.set(entry("token", "t", None), None), Set::Kept);
        assert_eq!(other_call.get("token").as_deref(), Some("t"), "another call sees it before it is stored");
        assert_eq!(store.get("a", "token").expect("get"), None, "not stored yet");
        cache.flush().await;
        assert_eq!(store.get("a", "token").expect("get").as_deref(), Some("t"), "stored when a call ends");
        assert!(cache.overlay().entries.is_empty(), "and forgotten by the overlay");

        // Room for one more: the key set first is the one stored.
        let filler: Vec<Entry> = (0..MAX_ENTRIES - 2).map(|i| entry(&format!("k{i}"), "v", None)).collect();
        store.put("a", None, &filler).expect("put");
        cache.set(entry("first", "1", None), None);
        cache.set(entry("second", "2", None), None);
        cache.flush().await;
        assert!(store.get("a", "first").expect("get").is_some() && store.get("a", "second").expect("get").is_none());
        assert_eq!(cache.entries().await.expect("entries").1.len(), MAX_ENTRIES);

        let failing = AccountCache::new(Arc::new(Failing), "a");
        failing.set(entry("token", "t", None), None);
        failing.flush().await;
        assert_eq!(failing.get("token").as_deref(), Some("t"), "kept in the process while the store fails");
        assert_eq!(failing.entries().await, None, "a worker keeps its copy when the store cannot be read");
        assert_eq!(failing.set(entry(&"k".repeat(MAX_KEY + 1), "v", None), None), Set::TooLarge);
    }

    #[test]
    fn a_ttl_is_wall_clock_time_from_now() {
        let e = Entry::with_ttl("k".into(), "v".into(), 60);
        let left = e.expires_at_ms.expect("expires") - now_ms();
        assert!((59_000..=60_000).contains(&left), "{left}");
        assert_eq!(Entry::with_ttl("k".into(), "v".into(), 0).expires_at_ms, None);
        assert!(!e.expired(now_ms()) && e.expired(now_ms() + 61_000));
    }
}
