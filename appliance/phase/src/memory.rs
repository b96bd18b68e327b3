//! The node's memory budget: what it may hold on behalf of clients and peers (request bodies
//! and frames, running jobs, compilations, caches), sized to the machine and reserved before
//! anything is allocated, so that no sequence of requests can make the node run out of memory.
//! What does not fit is refused at once (503 `no_memory`, docs/api.md), never queued.
//!
//! The budget is split once, at start: each cache gets a byte cap of its own, and the rest is
//! the pool from which requests, jobs and compilations reserve what they may use at most.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// A job's memory beyond its linear memory and output: wasmi's value stack (1 MB at most),
/// call frames, the store and its WASI state.
pub const JOB_OVERHEAD: u64 = 2 << 20;
/// The largest module a node takes by default is this fraction of its pool: what compiling one
/// takes is reserved from its structure (engine/compile_cost.rs), a 26 MB interpreter about
/// 280 MB, so a module of pool/12 usually compiles while jobs run beside it (on a machine of
/// 1 GiB, 800 MiB available: a pool of 404 MiB); one whose bound does not fit what is free is
/// refused (`no_memory`).
pub const MODULE_SHARE: u64 = 12;

/// What a job may use at most: its linear memory cap, its output (captured, with Vec growth,
/// then base64 in the answer: 4x), and the engine's overhead.
pub fn job_reservation(memory_bytes: u64, output_bytes: u64) -> u64 {
    memory_bytes.saturating_add(output_bytes.saturating_mul(4)).saturating_add(JOB_OVERHEAD)
}

/// A pool of bytes that reservations draw from.
#[derive(Debug)]
pub struct Budget {
    capacity: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(capacity: u64) -> Arc<Budget> {
        Arc::new(Budget { capacity, used: AtomicU64::new(0) })
    }

    /// Reserves `bytes` if they fit in what is left; the reservation returns them when dropped.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut used = self.used.load(Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|&n| n <= self.capacity)?;
            match self.used.compare_exchange_weak(used, next, Relaxed, Relaxed) {
                Ok(_) => return Some(Reservation { budget: self.clone(), bytes }),
                Err(now) => used = now,
            }
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used())
    }
}

/// Bytes held from a budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `more` bytes to this reservation if they fit (for what grows as it arrives).
    pub fn try_grow(&mut self, more: u64) -> bool {
        match self.budget.try_reserve(more) {
            Some(extra) => {
                self.bytes += extra.bytes;
                std::mem::forget(extra);
                true
            }
            None => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Relaxed);
    }
}

/// How a node's memory budget is split (docs/api.md, "Memory").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Everything the node may hold for others.
    pub budget: u64,
    /// Module bytes kept in RAM (uploaded or sent inline), least recently used first out.
    pub module_store: u64,
    /// Compiled modules, by their measured size.
    pub compiled: u64,
    /// Job answers kept for idempotency keys (local runs and placed jobs).
    pub results: u64,
    /// The rest: request bodies, peer frames, running jobs, compilations.
    pub pool: u64,
}

/// The smallest budget a node runs with (below it a default job would not fit).
pub const MIN_BUDGET: u64 = 32 << 20;

impl MemoryPlan {
    /// Splits `budget`: an eighth each for module bytes and compiled modules, a sixteenth for
    /// kept results (or `results` if given, within the budget), the rest to the pool.
    pub fn new(budget: u64, results: Option<u64>) -> MemoryPlan {
        let budget = budget.max(MIN_BUDGET);
        let module_store = budget / 8;
        let compiled = budget / 8;
        let results = results.unwrap_or(budget / 16).min(budget / 4);
        MemoryPlan { budget, module_store, compiled, results, pool: budget - module_store - compiled - results }
    }

    /// The default budget on this machine: three quarters of the memory available when the
    /// node starts, less what the allocator may keep cached. The quarter left is headroom for
    /// what the node does not account for (thread stacks, the peer network's buffers).
    pub fn default_budget() -> u64 {
        let available = crate::sys::memory_available().unwrap_or(512 << 20);
        available.saturating_sub(crate::sys::alloc::CACHED_BYTES_MAX as u64) / 4 * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_or_are_refused_and_give_back_when_dropped() {
        let b = Budget::new(100);
        let r1 = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let r2 = b.try_reserve(40).unwrap();
        assert_eq!((b.used(), b.free()), (100, 0));
        assert!(b.try_reserve(1).is_none() && b.try_reserve(u64::MAX).is_none());
        drop(r1);
        assert_eq!(b.free(), 60);
        drop(r2);
        assert_eq!(b.used(), 0);
        assert!(b.try_reserve(0).is_some());
        let mut r = b.try_reserve(10).unwrap();
        assert!(r.try_grow(80) && !r.try_grow(11));
        assert_eq!((r.bytes(), b.used()), (90, 90));
        drop(r);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_plan_splits_the_whole_budget() {
        let p = MemoryPlan::new(128 << 20, None);
        assert_eq!(p.module_store + p.compiled + p.results + p.pool, p.budget);
        assert_eq!((p.module_store, p.results), (16 << 20, 8 << 20));
        assert_eq!(MemoryPlan::new(128 << 20, Some(1 << 40)).results, 32 << 20, "results take at most a quarter");
        assert_eq!(MemoryPlan::new(1, None).budget, MIN_BUDGET);
        assert_eq!(job_reservation(u64::MAX, 1), u64::MAX);
    }
}
