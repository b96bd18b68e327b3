//! A bounded cache of compiled modules keyed by SHA-256: repeated jobs skip validation and
//! compilation. Bounded by entry count and by total module bytes; evicts least recently used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use phase_core::Digest;

pub struct ModuleCache<T> {
    inner: Mutex<Inner<T>>,
    max_entries: usize,
    max_bytes: usize,
}

struct Inner<T> {
    entries: HashMap<Digest, (Arc<T>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

impl<T> ModuleCache<T> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        ModuleCache {
            inner: Mutex::new(Inner { entries: HashMap::new(), bytes: 0, clock: 0 }),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic elsewhere cannot leave the map half-updated: recover it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &Digest) -> Option<Arc<T>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.get_mut(key).map(|e| {
            e.2 = now;
            e.0.clone()
        })
    }

    pub fn insert(&self, key: Digest, value: Arc<T>, size: usize) {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.entries.insert(key, (value, size, now)) {
            inner.bytes -= old.1;
        }
        inner.bytes += size;
        while inner.entries.len() > self.max_entries.max(1)
            || (inner.bytes > self.max_bytes && inner.entries.len() > 1)
        {
            let Some(oldest) = inner.entries.iter().min_by_key(|(_, e)| e.2).map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_count_and_bytes() {
        let c = ModuleCache::new(2, 100);
        c.insert([1; 32], Arc::new(1), 10);
        c.insert([2; 32], Arc::new(2), 10);
        assert!(c.get(&[1; 32]).is_some());
        c.insert([3; 32], Arc::new(3), 10);
        assert!(c.get(&[2; 32]).is_none(), "2 was least recently used");
        assert!(c.get(&[1; 32]).is_some() && c.get(&[3; 32]).is_some());
        c.insert([4; 32], Arc::new(4), 95);
        assert_eq!(c.len(), 1, "byte cap evicts all but the newest");
    }
}
