//! A CA account's cache (`certhost.cache_get` / `cache_set`), kept by the host so it outlives
//! the account's workers, as the WASM cache outlives a trapped call.
//!
//! The worker's `bootstrap.py` holds the working copy and applies the rules of the WASM cache
//! (`connector::wasm::host_impl`): a ttl of 0 means no expiry; a value over 64 KiB or a key
//! over 1 KiB (UTF-8 bytes) is ignored with a warning; at 256 entries a new key first purges
//! expired entries and is ignored with a warning if the cache is still full. Each reply
//! carries the entries the call set; the host applies them here under the same rules and
//! hands the whole cache to the next worker it starts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::protocol::{CacheEntry, MAX_FRAME};

/// At most this many entries, values of at most this many bytes, keys of at most this many
/// bytes: the limits of the WASM cache.
pub(super) const MAX_ENTRIES: usize = 256;
pub(super) const MAX_VALUE: usize = 64 * 1024;
pub(super) const MAX_KEY: usize = 1024;

/// The host's copy of one account's cache.
#[derive(Debug, Default)]
pub(super) struct AccountCache {
    entries: HashMap<String, (String, Option<Instant>)>,
}

impl AccountCache {
    /// Applies the entries a worker reports as set during a call.
    pub(super) fn apply(&mut self, set: Vec<CacheEntry>) {
        let now = Instant::now();
        for e in set {
            if e.value.len() > MAX_VALUE || e.key.len() > MAX_KEY {
                continue;
            }
            if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&e.key) {
                self.entries.retain(|_, (_, exp)| exp.is_none_or(|x| x > now));
                if self.entries.len() >= MAX_ENTRIES {
                    continue;
                }
            }
            let expiry = e.expires_in_ms.map(|ms| now + Duration::from_millis(ms));
            self.entries.insert(e.key, (e.value, expiry));
        }
    }

    /// The live entries, for a new worker. Should they not fit in one frame (values full of
    /// characters JSON must escape), the largest are left out.
    pub(super) fn snapshot(&mut self) -> Vec<CacheEntry> {
        let now = Instant::now();
        self.entries.retain(|_, (_, exp)| exp.is_none_or(|x| x > now));
        let mut out: Vec<CacheEntry> = self
            .entries
            .iter()
            .map(|(k, (v, exp))| CacheEntry {
                key: k.clone(),
                value: v.clone(),
                expires_in_ms: exp.map(|x| u64::try_from((x - now).as_millis()).unwrap_or(u64::MAX).max(1)),
            })
            .collect();
        out.sort_by_key(|e| e.key.len() + e.value.len());
        let budget = MAX_FRAME / 2;
        let mut used = 0;
        out.retain(|e| {
            used += serde_json::to_string(e).map(|s| s.len()).unwrap_or(usize::MAX / 2);
            used <= budget
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, ms: Option<u64>) -> CacheEntry {
        CacheEntry { key: key.into(), value: value.into(), expires_in_ms: ms }
    }

    #[test]
    fn the_host_copy_keeps_the_wasm_rules() {
        let mut c = AccountCache::default();
        c.apply(vec![
            entry("forever", "a", None),
            entry("big", &"v".repeat(MAX_VALUE + 1), None),
            entry(&"k".repeat(MAX_KEY + 1), "v", None),
            entry("max", &"v".repeat(MAX_VALUE), None),
        ]);
        let keys: Vec<String> = c.snapshot().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["forever", "max"]);
        c.apply((0..MAX_ENTRIES).map(|i| entry(&format!("k{i}"), "v", Some(60_000))).collect());
        assert_eq!(c.snapshot().len(), MAX_ENTRIES, "full: later new keys are ignored");
        c.apply(vec![entry("forever", "b", None)]);
        assert!(c.snapshot().iter().any(|e| e.key == "forever" && e.value == "b"), "an existing key may change");
        c.entries.insert("k0".into(), ("v".into(), Some(Instant::now())));
        c.apply(vec![entry("late", "v", None)]);
        let snap = c.snapshot();
        assert!(snap.iter().any(|e| e.key == "late") && !snap.iter().any(|e| e.key == "k0"), "expired purged");
        assert!(snap.iter().all(|e| e.key != "k1" || e.expires_in_ms.is_some_and(|ms| ms <= 60_000)));
    }
}
