//! A cache bounded by entry count and by the total size of its values (as measured by the
//! caller), keyed by SHA-256 digests; the least recently used entry goes first. It holds
//! compiled modules, module bytes, and the answers kept for idempotency keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use phase_core::Digest;

pub struct SizedCache<T> {
    inner: Mutex<Inner<T>>,
    max_entries: usize,
    max_bytes: usize,
}

struct Inner<T> {
    entries: HashMap<Digest, (Arc<T>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

impl<T> SizedCache<T> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        SizedCache {
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

    /// Inserts `value` of `size` bytes, evicting the least recently used entries until both
    /// bounds hold. A value larger than the byte cap is not kept (returns false).
    pub fn insert(&self, key: Digest, value: Arc<T>, size: usize) -> bool {
        if size > self.max_bytes {
            self.remove(&key);
            return false;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.entries.insert(key, (value, size, now)) {
            inner.bytes -= old.1;
        }
        inner.bytes += size;
        while inner.entries.len() > self.max_entries.max(1)
            || inner.bytes > self.max_bytes
        {
            let Some(oldest) = inner.entries.iter().min_by_key(|(_, e)| e.2).map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.1;
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total size of the values held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn remove(&self, key: &Digest) -> Option<Arc<T>> {
        let mut inner = self.lock();
        let (value, size, _) = inner.entries.remove(key)?;
        inner.bytes -= size;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_count_and_bytes() {
        let c = SizedCache::new(2, 100);
        c.insert([1; 32], Arc::new(1), 10);
        c.insert([2; 32], Arc::new(2), 10);
        assert!(c.get(&[1; 32]).is_some());
        c.insert([3; 32], Arc::new(3), 10);
        assert!(c.get(&[2; 32]).is_none(), "2 was least recently used");
        assert!(c.get(&[1; 32]).is_some() && c.get(&[3; 32]).is_some());
        c.insert([4; 32], Arc::new(4), 95);
        assert_eq!((c.len(), c.bytes()), (1, 95), "byte cap evicts all but the newest");
        assert!(!c.insert([5; 32], Arc::new(5), 101), "larger than the cap: not kept");
        assert_eq!(c.len(), 1);
        assert!(c.remove(&[4; 32]).is_some());
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }
}
