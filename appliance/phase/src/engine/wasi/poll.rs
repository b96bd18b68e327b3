//! `poll_oneoff` and the socket calls. A job has no sockets and no host time: a descriptor is
//! ready at once (stdin holds the rest of the input, files are memory), and a clock
//! subscription that nothing else answers first advances the job's clock to its time (the
//! sleep is the job's, not the host's), so the same job sees the same events on every node.

use wasmi::{Caller, Error, Linker};

use super::{charge, get_u32, job_clock, memory, slice, slice_mut, JobState};
use super::{EFAULT, EINVAL, FUEL_PER_IOVEC, MODULE, REALTIME_ORIGIN_NS, SUCCESS};
use crate::engine::fs::{Errno, Opened};

const SUBSCRIPTION_BYTES: u32 = 48;
const EVENT_BYTES: u32 = 32;
const CLOCK: u8 = 0;
const FD_READ: u8 = 1;
const FD_WRITE: u8 = 2;
/// `subclockflags`: the timeout is an absolute time of the clock.
const ABSTIME: u16 = 1;

struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    nbytes: u64,
}

impl Event {
    fn write(&self, out: &mut [u8]) {
        out.fill(0);
        out[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        out[8..10].copy_from_slice(&self.error.to_le_bytes());
        out[10] = self.kind;
        out[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
    }
}

fn u64_at(m: &[u8], at: u32) -> Option<u64> {
    Some(u64::from_le_bytes(slice(m, at as i32, 8)?.try_into().ok()?))
}

/// Whether descriptor `fd` is ready for `kind`, and how many bytes it offers.
fn readiness(s: &JobState, fd: u32, kind: u8) -> Result<u64, Errno> {
    match (s.fs.opened(fd)?, kind) {
        (Opened::Stdin, FD_READ) => Ok((s.input.len() - s.input_pos) as u64),
        (Opened::Stdout | Opened::Stderr, FD_WRITE) => Ok(0),
        (Opened::File, FD_READ) => s.fs.readable(fd),
        (Opened::File, FD_WRITE) => Ok(0),
        _ => Err(Errno::BADF),
    }
}

fn poll_oneoff(c: &mut Caller<'_, JobState>, subs: i32, events: i32, n: i32, out: i32) -> Result<i32, Error> {
    if n <= 0 {
        return Ok(EINVAL);
    }
    charge(c, n as u64 * FUEL_PER_IOVEC)?;
    let Some(mem) = memory(c) else { return Ok(EFAULT) };
    let now = job_clock(c);
    let (m, s) = mem.data_and_store_mut(&mut *c);
    let mut ready = Vec::new();
    // Clock subscriptions as (index in `ready` order, userdata, due time on the job's clock).
    let mut clocks = Vec::new();
    for i in 0..n as u32 {
        let Some(at) = (subs as u32).checked_add(i * SUBSCRIPTION_BYTES) else { return Ok(EFAULT) };
        let Some(sub) = slice(m, at as i32, SUBSCRIPTION_BYTES) else { return Ok(EFAULT) };
        let userdata = u64::from_le_bytes(sub[0..8].try_into().expect("8 bytes"));
        let kind = sub[8];
        match kind {
            CLOCK => {
                let id = get_u32(m, at + 16).unwrap_or(u32::MAX);
                let timeout = u64_at(m, at + 24).unwrap_or(0);
                let flags = u16::from_le_bytes([sub[40], sub[41]]);
                let due = match (id, flags & ABSTIME != 0) {
                    (0..=3, false) => now.saturating_add(timeout),
                    (0, true) => timeout.saturating_sub(REALTIME_ORIGIN_NS),
                    (1..=3, true) => timeout,
                    _ => {
                        ready.push(Event { userdata, error: Errno::INVAL.0, kind, nbytes: 0 });
                        continue;
                    }
                };
                clocks.push((userdata, due));
            }
            FD_READ | FD_WRITE => {
                let fd = get_u32(m, at + 16).unwrap_or(u32::MAX);
                let event = match readiness(s, fd, kind) {
                    Ok(nbytes) => Event { userdata, error: 0, kind, nbytes },
                    Err(e) => Event { userdata, error: e.0, kind, nbytes: 0 },
                };
                ready.push(event);
            }
            _ => return Ok(EINVAL),
        }
    }
    // Nothing ready: sleep (on the job's clock) until the first clock is due.
    let mut now = now;
    if ready.is_empty() {
        if let Some(first) = clocks.iter().map(|&(_, due)| due).min().filter(|&due| due > now) {
            s.slept_ns = s.slept_ns.saturating_add(first - now);
            now = first;
        }
    }
    for (userdata, due) in clocks {
        if due <= now {
            ready.push(Event { userdata, error: 0, kind: CLOCK, nbytes: 0 });
        }
    }
    for (i, e) in ready.iter().enumerate() {
        let Some(dst) = (events as u32).checked_add(i as u32 * EVENT_BYTES) else { return Ok(EFAULT) };
        let Some(dst) = slice_mut(m, dst as i32, EVENT_BYTES) else { return Ok(EFAULT) };
        e.write(dst);
    }
    if super::put_u32(m, out, ready.len() as u32).is_none() {
        return Ok(EFAULT);
    }
    Ok(SUCCESS)
}

/// A job has no sockets: `ENOTSOCK` for an open descriptor, `EBADF` for any other.
fn not_a_socket(c: &Caller<'_, JobState>, fd: i32) -> i32 {
    match c.data().fs.is_open(fd as u32) {
        true => Errno::NOTSOCK.0 as i32,
        false => Errno::BADF.0 as i32,
    }
}

pub(super) fn add(l: &mut Linker<JobState>) -> Result<(), wasmi::errors::LinkerError> {
    l.func_wrap(MODULE, "poll_oneoff", |mut c: Caller<'_, JobState>, subs: i32, events: i32, n: i32, out: i32| {
        poll_oneoff(&mut c, subs, events, n, out)
    })?;
    l.func_wrap(MODULE, "sock_accept", |c: Caller<'_, JobState>, fd: i32, _flags: i32, _out: i32| not_a_socket(&c, fd))?;
    l.func_wrap(MODULE, "sock_recv", |c: Caller<'_, JobState>, fd: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
        not_a_socket(&c, fd)
    })?;
    l.func_wrap(MODULE, "sock_send", |c: Caller<'_, JobState>, fd: i32, _: i32, _: i32, _: i32, _: i32| {
        not_a_socket(&c, fd)
    })?;
    l.func_wrap(MODULE, "sock_shutdown", |c: Caller<'_, JobState>, fd: i32, _how: i32| not_a_socket(&c, fd))?;
    Ok(())
}
