//! The `cache` capability: a small in-memory key-value store kept across calls and runs (an
//! OAuth2 access token fetched once for many steps, say), scoped per step kind so that one
//! plugin never reads another's entries. It lives in memory only: nothing cached here is
//! ever written to disk. Each step kind has a quota of entries and bytes: a plugin that fills
//! its share evicts its own entries, never another kind's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Entries kept at most; expired ones go first, then the soonest to expire.
const MAX_ENTRIES: usize = 10_000;
/// Longest a plugin may keep an entry.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest value kept.
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest key kept; a longer one is never stored (and never found).
const MAX_KEY_BYTES: usize = 1024;
/// Entries one step kind may keep.
const MAX_ENTRIES_PER_KIND: usize = 1_000;
/// Bytes of values one step kind may keep.
const MAX_BYTES_PER_KIND: usize = 4 * 1024 * 1024;

type Entries = HashMap<(String, String), (String, Instant)>;

#[derive(Default)]
pub struct KvCache {
    entries: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl KvCache {
    pub fn get(&self, scope: &str, key: &str) -> Option<String> {
        let mut entries = self.lock();
        let slot = (scope.to_owned(), key.to_owned());
        match entries.get(&slot) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(&slot);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `ttl`; a zero TTL removes the entry.
    pub fn set(&self, scope: &str, key: &str, value: String, ttl: Duration) {
        let mut entries = self.lock();
        let slot = (scope.to_owned(), key.to_owned());
        if ttl.is_zero() || value.len() > MAX_VALUE_BYTES || key.len() > MAX_KEY_BYTES {
            entries.remove(&slot);
            return;
        }
        let now = Instant::now();
        entries.remove(&slot);
        entries.retain(|_, (_, expires)| *expires > now);
        // The kind's own quota: its soonest-to-expire entries make room.
        loop {
            let (count, bytes) = entries
                .iter()
                .filter(|((kind, _), _)| kind == scope)
                .fold((0, 0), |(count, bytes), (_, (value, _))| {
                    (count + 1, bytes + value.len())
                });
            if count < MAX_ENTRIES_PER_KIND && bytes + value.len() <= MAX_BYTES_PER_KIND {
                break;
            }
            if !evict_soonest(&mut entries, |kind| kind == scope) {
                break;
            }
        }
        if entries.len() >= MAX_ENTRIES {
            evict_soonest(&mut entries, |_| true);
        }
        entries.insert(slot, (value, now + ttl.min(MAX_TTL)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes the entry that expires first among those of kinds `of_kind` accepts; false when
/// there is none.
fn evict_soonest(entries: &mut Entries, of_kind: impl Fn(&str) -> bool) -> bool {
    let soonest = entries
        .iter()
        .filter(|((kind, _), _)| of_kind(kind))
        .min_by_key(|(_, (_, expires))| *expires)
        .map(|(slot, _)| slot.clone());
    soonest.is_some_and(|slot| entries.remove(&slot).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_stay_in_their_scope() {
        let cache = KvCache::default();
        cache.set("http", "token", "abc".into(), Duration::from_millis(50));
        assert_eq!(cache.get("http", "token").as_deref(), Some("abc"));
        assert_eq!(cache.get("graphql", "token"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("http", "token"), None);
        cache.set("http", "token", "abc".into(), Duration::from_secs(10));
        cache.set("http", "token", String::new(), Duration::ZERO);
        assert_eq!(cache.get("http", "token"), None);
    }

    #[test]
    fn a_kind_that_fills_its_quota_evicts_only_its_own_entries() {
        let cache = KvCache::default();
        cache.set("oauth", "token", "kept".into(), Duration::from_secs(60));
        for index in 0..MAX_ENTRIES_PER_KIND + 500 {
            cache.set(
                "greedy",
                &index.to_string(),
                "x".into(),
                Duration::from_secs(60),
            );
        }
        assert_eq!(cache.get("oauth", "token").as_deref(), Some("kept"));
        let greedy = cache
            .lock()
            .keys()
            .filter(|(kind, _)| kind == "greedy")
            .count();
        assert_eq!(greedy, MAX_ENTRIES_PER_KIND);
        let big = "y".repeat(MAX_VALUE_BYTES);
        for index in 0..(MAX_BYTES_PER_KIND / MAX_VALUE_BYTES) + 10 {
            cache.set(
                "bulky",
                &index.to_string(),
                big.clone(),
                Duration::from_secs(60),
            );
        }
        let bytes: usize = cache
            .lock()
            .iter()
            .filter(|((kind, _), _)| kind == "bulky")
            .map(|(_, (value, _))| value.len())
            .sum();
        assert!(bytes <= MAX_BYTES_PER_KIND, "{bytes}");
        assert_eq!(cache.get("oauth", "token").as_deref(), Some("kept"));
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        cache.set("greedy", &long_key, "x".into(), Duration::from_secs(60));
        assert_eq!(cache.get("greedy", &long_key), None, "keys are bounded too");
    }
}
