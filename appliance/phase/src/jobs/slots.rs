//! Job slots and the other places a job request holds while it waits: a slot per job running
//! here (`max_concurrent`), a permit per job forwarded to a peer (as many), and a place per
//! request waiting on a job running under the same idempotency key (as many). Each is a
//! counter with a cap; a taken place is a guard that gives it back when dropped, however the
//! job ends.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::JobError;

pub(super) struct Slots {
    max: usize,
    running: AtomicUsize,
    forwarding: AtomicUsize,
    waiting: AtomicUsize,
}

/// A place taken; given back when dropped.
pub struct Slot<'a> {
    count: &'a AtomicUsize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

impl Slots {
    pub(super) fn new(max: usize) -> Slots {
        Slots { max, running: AtomicUsize::new(0), forwarding: AtomicUsize::new(0), waiting: AtomicUsize::new(0) }
    }

    fn take<'a>(&self, count: &'a AtomicUsize) -> Result<Slot<'a>, JobError> {
        if count.fetch_add(1, Relaxed) >= self.max {
            count.fetch_sub(1, Relaxed);
            return Err(JobError::Busy { max: self.max });
        }
        Ok(Slot { count })
    }

    /// A slot to run a job here.
    pub(super) fn run(&self) -> Result<Slot<'_>, JobError> {
        self.take(&self.running)
    }

    /// A permit to forward a job to a peer and wait for its answer.
    pub(super) fn forward(&self) -> Result<Slot<'_>, JobError> {
        self.take(&self.forwarding)
    }

    /// A place to wait for a job running under the same idempotency key.
    pub(super) fn wait(&self) -> Result<Slot<'_>, JobError> {
        self.take(&self.waiting)
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }
    pub(super) fn running(&self) -> usize {
        self.running.load(Relaxed)
    }
    pub(super) fn forwarding(&self) -> usize {
        self.forwarding.load(Relaxed)
    }
    pub(super) fn all_running(&self) -> bool {
        self.running() >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_apart_and_come_back_when_dropped() {
        let s = Slots::new(2);
        let (a, b) = (s.run().unwrap(), s.run().unwrap());
        assert!(matches!(s.run(), Err(JobError::Busy { max: 2 })));
        assert!(s.all_running());
        // Forwards and waits have caps of their own.
        let f = s.forward().unwrap();
        assert_eq!((s.running(), s.forwarding()), (2, 1));
        drop((a, f));
        assert_eq!((s.running(), s.forwarding()), (1, 0));
        assert!(s.run().is_ok() && s.wait().is_ok());
        drop(b);
        assert_eq!(s.running(), 0);
    }
}
