//! The `cache` capability: a small in-memory key-value store kept across calls and runs (an
//! OAuth2 access token fetched once for many steps, say), scoped per step kind so that one
//! plugin never reads another's entries. It lives in memory only: nothing cached here is
//! ever written to disk.

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
        if ttl.is_zero() || value.len() > MAX_VALUE_BYTES {
            entries.remove(&slot);
            return;
        }
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&slot) {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= MAX_ENTRIES
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(slot, _)| slot.clone())
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(slot, (value, now + ttl.min(MAX_TTL)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
}
