//! A CA account's cache (`certhost.cache_get` / `cache_set`) between the host's store
//! (`connector::cache`) and a script worker.
//!
//! The worker's `bootstrap.py` holds the working copy and applies the store's rules as the
//! script sets entries (warnings at the moment a set is ignored). It starts with the account's
//! live entries; each reply carries the entries the call set, which the host stores. Entries
//! travel with the milliseconds they have left, since the worker keeps time on its own
//! monotonic clock.

use super::protocol::{CacheEntry, MAX_FRAME};
use crate::connector::cache::{Entry, now_ms};

/// The entries a worker reported as set, for the store.
pub(super) fn from_worker(set: Vec<CacheEntry>) -> Vec<Entry> {
    let now = now_ms();
    set.into_iter()
        .map(|e| Entry {
            key: e.key,
            value: e.value,
            expires_at_ms: e.expires_in_ms.map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
        })
        .collect()
}

/// The live entries, for a new worker. Should they not fit in one frame (values full of
/// characters JSON must escape), the largest are left out.
pub(super) fn for_worker(entries: Vec<Entry>) -> Vec<CacheEntry> {
    let now = now_ms();
    let mut out: Vec<CacheEntry> = entries
        .into_iter()
        .filter(|e| !e.expired(now))
        .map(|e| CacheEntry {
            expires_in_ms: e.expires_at_ms.map(|at| u64::try_from(at - now).unwrap_or(0).max(1)),
            key: e.key,
            value: e.value,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_cross_to_the_worker_and_back_with_the_time_they_have_left() {
        let now = now_ms();
        let entries = vec![
            Entry { key: "forever".into(), value: "a".into(), expires_at_ms: None },
            Entry { key: "minute".into(), value: "b".into(), expires_at_ms: Some(now + 60_000) },
            Entry { key: "gone".into(), value: "c".into(), expires_at_ms: Some(now - 1) },
        ];
        let sent = for_worker(entries);
        let keys: Vec<&str> = sent.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["minute", "forever"], "expired left out, smallest first");
        let left = sent[0].expires_in_ms.expect("expires");
        assert!((59_000..=60_000).contains(&left), "{left}");
        let back = from_worker(sent);
        assert_eq!(back[1].expires_at_ms, None);
        let at = back[0].expires_at_ms.expect("expires");
        assert!((now + 59_000..=now + 61_000).contains(&at), "{at}");
    }
}
