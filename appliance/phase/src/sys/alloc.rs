//! The global allocator: the system allocator plus a small cache of freed large blocks.
//!
//! Every job allocates its linear memory afresh (wasmi zero-fills a new `Vec`). Blocks of
//! 64 KiB and more come from mmap in musl and glibc, so each job paid mmap + page faults +
//! munmap: 90 us for a 2-page module under musl, most of a small job's cost. Freed blocks of
//! 64 KiB..4 MiB are kept (at most 16 blocks, 16 MiB in all) and handed out again for the
//! same layout; wasmi zeroes them itself, `alloc_zeroed` zeroes them here.
//!
//! Each thread also counts the bytes it has allocated less those it has freed, so the memory a
//! piece of work leaves behind (a compiled module) can be measured, not guessed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

const MIN_BLOCK: usize = 64 << 10;
const MAX_BLOCK: usize = 4 << 20;
const MAX_TOTAL: usize = 16 << 20;
const SLOTS: usize = 16;
/// Most bytes the block cache holds: memory the node keeps beyond what it accounts for.
pub const CACHED_BYTES_MAX: usize = MAX_TOTAL;

thread_local! {
    // Const-initialised Cells have no destructor: safe to touch from the allocator at any time.
    static NET_ALLOCATED: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count(delta: isize) {
    let now = NET_ALLOCATED.with(|n| {
        let v = n.get().wrapping_add(delta);
        n.set(v);
        v
    });
    PEAK.with(|p| {
        if now > p.get() {
            p.set(now)
        }
    });
}

/// Starts measuring this thread's peak: returns its net allocation now, the base to subtract
/// from `peak_on_this_thread()` later.
pub fn start_peak_on_this_thread() -> isize {
    let now = net_allocated_on_this_thread();
    PEAK.with(|p| p.set(now));
    now
}

/// The highest net allocation this thread reached since `start_peak_on_this_thread`.
pub fn peak_on_this_thread() -> isize {
    PEAK.with(|p| p.get())
}

/// Bytes this thread has allocated less the bytes it has freed, since it started (blocks freed
/// on another thread than the one that allocated them make this drift; take differences over
/// a span of work that frees what it allocates on its own thread).
pub fn net_allocated_on_this_thread() -> isize {
    NET_ALLOCATED.with(|n| n.get())
}

pub struct CachingAlloc {
    locked: AtomicBool,
    cache: UnsafeCell<Cache>,
}

/// Cached blocks as (address, size, align); size 0 marks an empty slot.
struct Cache {
    slots: [(usize, usize, usize); SLOTS],
    total: usize,
}

// SAFETY: `cache` is only touched while `locked` is held (see `with`).
unsafe impl Sync for CachingAlloc {}

impl CachingAlloc {
    pub const fn new() -> CachingAlloc {
        CachingAlloc {
            locked: AtomicBool::new(false),
            cache: UnsafeCell::new(Cache { slots: [(0, 0, 0); SLOTS], total: 0 }),
        }
    }

    /// Runs `f` on the cache under a spin lock (it never allocates, so it cannot recurse).
    fn with<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        // SAFETY: the lock gives exclusive access until it is released below.
        let r = f(unsafe { &mut *self.cache.get() });
        self.locked.store(false, Ordering::Release);
        r
    }

    fn cacheable(layout: &Layout) -> bool {
        (MIN_BLOCK..=MAX_BLOCK).contains(&layout.size())
    }

    fn take(&self, layout: &Layout) -> *mut u8 {
        self.with(|c| {
            let (size, align) = (layout.size(), layout.align());
            match c.slots.iter_mut().find(|s| s.1 == size && s.2 == align) {
                Some(slot) => {
                    let ptr = slot.0 as *mut u8;
                    *slot = (0, 0, 0);
                    c.total -= size;
                    ptr
                }
                None => std::ptr::null_mut(),
            }
        })
    }

    fn keep(&self, ptr: *mut u8, layout: &Layout) -> bool {
        self.with(|c| {
            if c.total + layout.size() > MAX_TOTAL {
                return false;
            }
            match c.slots.iter_mut().find(|s| s.1 == 0) {
                Some(slot) => {
                    *slot = (ptr as usize, layout.size(), layout.align());
                    c.total += layout.size();
                    true
                }
                None => false,
            }
        })
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out was allocated by `System` with the same layout, and is either
// in use or in the cache, never both; `realloc` and `dealloc` pass System blocks back to System.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        if Self::cacheable(&layout) {
            p = self.take(&layout);
        }
        if p.is_null() {
            p = unsafe { System.alloc(layout) };
        }
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        if Self::cacheable(&layout) {
            p = self.take(&layout);
            if !p.is_null() {
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            }
        }
        if p.is_null() {
            p = unsafe { System.alloc_zeroed(layout) };
        }
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        if Self::cacheable(&layout) && self.keep(ptr, &layout) {
            return;
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_freed_block_of_the_same_layout_and_zeroes_on_request() {
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(128 << 10, 16).unwrap();
        unsafe {
            let p = a.alloc(l);
            p.write_bytes(0xab, l.size());
            a.dealloc(p, l);
            let q = a.alloc_zeroed(l);
            assert_eq!(p, q, "the cached block comes back");
            assert!(std::slice::from_raw_parts(q, l.size()).iter().all(|&b| b == 0));
            a.dealloc(q, l);
            // Another size does not get it.
            let other = Layout::from_size_align(256 << 10, 16).unwrap();
            let r = a.alloc(other);
            assert_ne!(r, q);
            a.dealloc(r, other);
        }
    }

    #[test]
    fn holds_at_most_the_total_cap() {
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(MAX_BLOCK, 16).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..6).map(|_| a.alloc(l)).collect();
            for &b in &blocks {
                a.dealloc(b, l);
            }
        }
        assert_eq!(a.with(|c| c.total), MAX_TOTAL, "4 of 6 blocks kept, 2 returned");
    }

    #[test]
    fn counts_what_this_thread_keeps() {
        // The test binary's allocator is the system one: count through CachingAlloc directly.
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(1000, 8).unwrap();
        let before = net_allocated_on_this_thread();
        unsafe {
            let p = a.alloc(l);
            assert_eq!(net_allocated_on_this_thread() - before, 1000);
            let q = a.realloc(p, l, 3000);
            assert_eq!(net_allocated_on_this_thread() - before, 3000);
            a.dealloc(q, Layout::from_size_align(3000, 8).unwrap());
        }
        assert_eq!(net_allocated_on_this_thread(), before);
        let base = start_peak_on_this_thread();
        unsafe {
            let p = a.alloc(l);
            a.dealloc(p, l);
        }
        assert_eq!(peak_on_this_thread() - base, 1000, "the peak outlives the block");
    }
}
