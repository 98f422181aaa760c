//! The in-process cache of secret values, keyed by name, with time passed in (`now`) so that it is
//! pure and tested without sleeping.
//!
//! - A value checked less than `interval` ago is returned as is ([`Cache::fresh`]): no I/O.
//! - Otherwise the client lists the caller's secrets (one `GET /v1/secrets`: names and versions) and
//!   hands the list to [`Cache::apply_list`]: every entry whose version is unchanged counts as
//!   checked now; an entry whose version changed, or whose name is gone, is dropped (and wiped), so
//!   that only those are read again.
//! - A value read is stored with [`Cache::insert`], checked now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::secret::{SecretInfo, Value};

/// The cache (one per client and its clones).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    value: Arc<Value>,
    checked_at: Instant,
}

impl Cache {
    /// The value of `name` if it was checked less than `interval` before `now`.
    pub(crate) fn fresh(&self, name: &str, now: Instant, interval: Duration) -> Option<Arc<Value>> {
        let entry = self.entries.get(name)?;
        (now.saturating_duration_since(entry.checked_at) < interval).then(|| Arc::clone(&entry.value))
    }

    /// Applies the server's list of names and current versions, seen at `now`.
    pub(crate) fn apply_list(&mut self, listed: &[SecretInfo], now: Instant) {
        let current: HashMap<&str, u64> = listed.iter().map(|s| (s.name.as_str(), s.version)).collect();
        self.entries.retain(|name, entry| current.get(name.as_str()) == Some(&entry.value.version));
        for entry in self.entries.values_mut() {
            entry.checked_at = entry.checked_at.max(now);
        }
    }

    /// The cached value of `name` whatever its age (right after [`Cache::apply_list`]: the
    /// current one, if cached).
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Value>> {
        self.entries.get(name).map(|e| Arc::clone(&e.value))
    }

    /// Stores a value read at `now`; returns it as shared.
    pub(crate) fn insert(&mut self, name: &str, value: Value, now: Instant) -> Arc<Value> {
        let value = Arc::new(value);
        self.entries.insert(name.to_string(), Entry { value: Arc::clone(&value), checked_at: now });
        value
    }

    /// Forgets `name` (it is gone on the server).
    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// How many values are cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn value(version: u64, text: &str) -> Value {
        Value {
            version,
            json: Zeroizing::new(format!("{{\"value\":\"{text}\"}}")),
            single: Ok(Zeroizing::new(text.into())),
        }
    }

    fn listed(items: &[(&str, u64)]) -> Vec<SecretInfo> {
        items.iter().map(|(n, v)| SecretInfo { name: n.to_string(), version: *v }).collect()
    }

    fn text(v: &Arc<Value>) -> String {
        v.single.as_ref().map(|s| s.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_value_is_fresh_for_the_check_interval_then_must_be_checked() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let mut cache = Cache::default();
        assert!(cache.fresh("db", t0, interval).is_none(), "nothing cached");
        cache.insert("db", value(1, "one"), t0);
        let cases = [(0, true), (1, true), (9_999, true), (10_000, false), (60_000, false)];
        for (ms, fresh) in cases {
            let at = t0 + Duration::from_millis(ms);
            assert_eq!(cache.fresh("db", at, interval).is_some(), fresh, "{ms} ms");
        }
        // Interval zero: every get checks.
        assert!(cache.fresh("db", t0, Duration::ZERO).is_none());
        // A clock reading before the check (another thread's older `now`) is not "stale".
        assert!(cache.fresh("db", t0 - Duration::from_millis(5), interval).is_some());
        assert!(cache.fresh("other", t0, interval).is_none());
    }

    #[test]
    fn one_list_rechecks_every_unchanged_value_and_drops_the_changed_and_the_gone() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let later = t0 + Duration::from_secs(30);
        let mut cache = Cache::default();
        cache.insert("same", value(2, "s"), t0);
        cache.insert("rotated", value(1, "r1"), t0);
        cache.insert("deleted", value(1, "d"), t0);
        assert!(cache.fresh("same", later, interval).is_none(), "stale before the check");

        cache.apply_list(&listed(&[("same", 2), ("rotated", 2), ("new", 1)]), later);
        assert_eq!(cache.fresh("same", later, interval).map(|v| text(&v)), Some("s".into()), "checked now");
        assert!(cache.get("rotated").is_none(), "a changed version is read again");
        assert!(cache.get("deleted").is_none(), "a gone name is dropped");
        assert!(cache.get("new").is_none(), "a listed name is not a value");
        assert_eq!(cache.len(), 1);

        cache.insert("rotated", value(2, "r2"), later);
        assert_eq!(cache.fresh("rotated", later, interval).map(|v| text(&v)), Some("r2".into()));
        // A list seen earlier than a value's own check does not age it.
        cache.apply_list(&listed(&[("same", 2), ("rotated", 2)]), t0);
        assert!(cache.fresh("rotated", later, interval).is_some());
        cache.remove("rotated");
        assert!(cache.get("rotated").is_none());
        // An empty list (the service has no secrets left) empties the cache.
        cache.apply_list(&[], later);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_value_handed_out_outlives_its_eviction() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        let held = cache.insert("db", value(1, "kept"), t0);
        cache.apply_list(&[], t0);
        assert_eq!(text(&held), "kept");
    }
}
