//! WASI preview 1 as a deterministic shim. The guest gets args, environ, stdin from the job
//! input, captured stdout/stderr, the job's files as preopened directories (`../fs`), a clock
//! that advances with fuel (and with the sleeps it asks for), and random bytes derived from the
//! job id. No host path, no sockets, no host time, no host randomness: the same job gives the
//! same output, files and fuel on every node. Every preview 1 function is provided; none traps.
//!
//! Host work is paid in fuel before it is done (docs/formats.md, "Fuel"): per iovec walked, per
//! 8 bytes copied between guest memory and the host, per random byte (each is hashed), per
//! filesystem call and per name it walks. So a loop of host calls ends at its fuel or its
//! deadline like any loop, and what it costs depends only on the job: the same fuel on every
//! node.

mod files;
mod poll;

use std::time::Instant;

use wasmi::{Caller, Error, Extern, FuncType, Linker, Memory, ValType};

use super::fs::Opened;
use super::{GuestFault, JobState};

pub const MODULE: &str = "wasi_snapshot_preview1";

// WASI errno values.
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
pub const ENOSYS: i32 = 52;

/// What a guest can ask of one call is capped too: iovecs per read/write (POSIX IOV_MAX) and
/// bytes per random_get.
const IOV_MAX: i32 = 1024;
const RANDOM_MAX: i32 = 1 << 20;

/// Fuel for host work (docs/formats.md): per iovec or string walked, per 8 bytes copied, per
/// random byte. Calibrated so a fuel unit of host work takes no longer than one of guest code.
pub const FUEL_PER_IOVEC: u64 = 8;
pub const FUEL_PER_STRING: u64 = 8;
pub const BYTES_PER_FUEL: u64 = 8;
pub const FUEL_PER_RANDOM_BYTE: u64 = 2;
/// Fuel per filesystem call, and per name it walks or directory entry it visits.
pub const FUEL_PER_FS_CALL: u64 = 64;
pub const FUEL_PER_NAME: u64 = 8;

fn copy_cost(bytes: u64) -> u64 {
    bytes.div_ceil(BYTES_PER_FUEL)
}

/// Takes `cost` fuel before host work is done. Past the store's current slice it takes further
/// slices as the engine does between slices of guest code, checking the deadline at each.
fn charge(c: &mut Caller<'_, JobState>, cost: u64) -> Result<(), Error> {
    if cost == 0 || !c.data().metered {
        return Ok(());
    }
    let mut have = c.get_fuel().unwrap_or(0);
    let mut need = cost;
    loop {
        if need <= have {
            let _ = c.set_fuel(have - need);
            return Ok(());
        }
        need -= have;
        let _ = c.set_fuel(0);
        if Instant::now() >= c.data().deadline {
            return Err(Error::host(GuestFault::Deadline));
        }
        have = c.data_mut().next_slice().ok_or_else(|| Error::host(GuestFault::OutOfFuel))?;
    }
}

/// The total length of `n` iovecs at `iovs`, or None if one lies outside memory.
fn iovec_bytes(m: &[u8], iovs: i32, n: i32) -> Option<u64> {
    let mut total = 0u64;
    for i in 0..n as u32 {
        let base = (iovs as u32).checked_add(i.checked_mul(8)?)?;
        let ptr = get_u32(m, base)?;
        let len = get_u32(m, base.checked_add(4)?)?;
        slice(m, ptr as i32, len)?;
        total += u64::from(len);
    }
    Some(total)
}

/// Bytes of a list of strings as args_get/environ_get write them (NUL-terminated).
fn strings_cost(list: &[Vec<u8>]) -> u64 {
    let bytes: u64 = list.iter().map(|s| s.len() as u64 + 1).sum();
    list.len() as u64 * FUEL_PER_STRING + copy_cost(bytes)
}

/// Realtime clock origin: 2024-01-01T00:00:00Z in ns. Clocks then advance 1 ns per fuel unit.
pub const REALTIME_ORIGIN_NS: u64 = 1_704_067_200_000_000_000;

/// Functions the shim implements, with their signatures (`i`=i32, `I`=i64; `>` then results).
pub const IMPLEMENTED: &[(&str, &str)] = &[
    ("args_get", "ii>i"),
    ("args_sizes_get", "ii>i"),
    ("environ_get", "ii>i"),
    ("environ_sizes_get", "ii>i"),
    ("clock_res_get", "ii>i"),
    ("clock_time_get", "iIi>i"),
    ("fd_advise", "iIIi>i"),
    ("fd_allocate", "iII>i"),
    ("fd_close", "i>i"),
    ("fd_datasync", "i>i"),
    ("fd_fdstat_get", "ii>i"),
    ("fd_fdstat_set_flags", "ii>i"),
    ("fd_fdstat_set_rights", "iII>i"),
    ("fd_filestat_get", "ii>i"),
    ("fd_filestat_set_size", "iI>i"),
    ("fd_filestat_set_times", "iIIi>i"),
    ("fd_pread", "iiiIi>i"),
    ("fd_prestat_get", "ii>i"),
    ("fd_prestat_dir_name", "iii>i"),
    ("fd_pwrite", "iiiIi>i"),
    ("fd_read", "iiii>i"),
    ("fd_readdir", "iiiIi>i"),
    ("fd_renumber", "ii>i"),
    ("fd_seek", "iIii>i"),
    ("fd_sync", "i>i"),
    ("fd_tell", "ii>i"),
    ("fd_write", "iiii>i"),
    ("path_create_directory", "iii>i"),
    ("path_filestat_get", "iiiii>i"),
    ("path_filestat_set_times", "iiiiIIi>i"),
    ("path_link", "iiiiiii>i"),
    ("path_open", "iiiiiIIii>i"),
    ("path_readlink", "iiiiii>i"),
    ("path_remove_directory", "iii>i"),
    ("path_rename", "iiiiii>i"),
    ("path_symlink", "iiiii>i"),
    ("path_unlink_file", "iii>i"),
    ("poll_oneoff", "iiii>i"),
    ("proc_exit", "i>"),
    ("proc_raise", "i>i"),
    ("random_get", "ii>i"),
    ("sched_yield", ">i"),
    ("sock_accept", "iii>i"),
    ("sock_recv", "iiiiii>i"),
    ("sock_send", "iiiii>i"),
    ("sock_shutdown", "ii>i"),
];

/// The signature string of a function type, in the notation of `IMPLEMENTED`.
pub fn signature(ty: &FuncType) -> Option<String> {
    let mut s = String::new();
    let code = |t: &ValType| match t {
        ValType::I32 => Some('i'),
        ValType::I64 => Some('I'),
        _ => None,
    };
    for t in ty.params() {
        s.push(code(t)?);
    }
    s.push('>');
    for t in ty.results() {
        s.push(code(t)?);
    }
    Some(s)
}

fn memory(caller: &Caller<'_, JobState>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Runs `f` on guest memory and job state; a missing memory export or an out-of-bounds
/// access gives EFAULT.
fn with_mem(
    caller: &mut Caller<'_, JobState>,
    f: impl FnOnce(&mut [u8], &mut JobState) -> Option<i32>,
) -> i32 {
    let Some(mem) = memory(caller) else { return EFAULT };
    let (data, state) = mem.data_and_store_mut(caller);
    f(data, state).unwrap_or(EFAULT)
}

fn slice(mem: &[u8], ptr: i32, len: u32) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    mem.get(start..start.checked_add(len as usize)?)
}

fn slice_mut(mem: &mut [u8], ptr: i32, len: u32) -> Option<&mut [u8]> {
    let start = ptr as u32 as usize;
    mem.get_mut(start..start.checked_add(len as usize)?)
}

fn put_u32(mem: &mut [u8], ptr: i32, v: u32) -> Option<()> {
    slice_mut(mem, ptr, 4)?.copy_from_slice(&v.to_le_bytes());
    Some(())
}

fn put_u64(mem: &mut [u8], ptr: i32, v: u64) -> Option<()> {
    slice_mut(mem, ptr, 8)?.copy_from_slice(&v.to_le_bytes());
    Some(())
}

fn get_u32(mem: &[u8], ptr: u32) -> Option<u32> {
    Some(u32::from_le_bytes(slice(mem, ptr as i32, 4)?.try_into().ok()?))
}

/// Writes NUL-terminated strings as a C `char**` array plus buffer.
fn put_strings(mem: &mut [u8], list: &[Vec<u8>], ptrs: i32, buf: i32) -> Option<i32> {
    let mut at = buf as u32;
    for (i, s) in list.iter().enumerate() {
        put_u32(mem, ptrs.wrapping_add(4 * i as i32), at)?;
        let dst = slice_mut(mem, at as i32, s.len() as u32 + 1)?;
        dst[..s.len()].copy_from_slice(s);
        dst[s.len()] = 0;
        at = at.checked_add(s.len() as u32 + 1)?;
    }
    Some(SUCCESS)
}

fn put_sizes(mem: &mut [u8], list: &[Vec<u8>], count: i32, size: i32) -> Option<i32> {
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    put_u32(mem, count, list.len() as u32)?;
    put_u32(mem, size, bytes as u32)?;
    Some(SUCCESS)
}

/// Fuel consumed so far: the deterministic stand-in for elapsed time.
fn fuel_consumed(caller: &Caller<'_, JobState>) -> u64 {
    let left = caller.get_fuel().unwrap_or(0);
    caller.data().fuel_granted.saturating_sub(left)
}

/// The job's monotonic clock in ns: its fuel, plus the time it slept (`poll_oneoff`).
fn job_clock(caller: &Caller<'_, JobState>) -> u64 {
    fuel_consumed(caller).saturating_add(caller.data().slept_ns)
}

/// The job's realtime clock in ns since 1970.
fn realtime(caller: &Caller<'_, JobState>) -> u64 {
    REALTIME_ORIGIN_NS.saturating_add(job_clock(caller))
}

/// Builds a linker with every implemented function.
pub fn linker(engine: &wasmi::Engine) -> Result<Linker<JobState>, wasmi::errors::LinkerError> {
    let mut l = Linker::<JobState>::new(engine);
    l.func_wrap(MODULE, "args_get", |mut c: Caller<'_, JobState>, argv: i32, buf: i32| -> Result<i32, Error> {
        let cost = strings_cost(&c.data().args);
        charge(&mut c, cost)?;
        Ok(with_mem(&mut c, |m, s| put_strings(m, &s.args, argv, buf)))
    })?;
    l.func_wrap(MODULE, "args_sizes_get", |mut c: Caller<'_, JobState>, n: i32, size: i32| {
        with_mem(&mut c, |m, s| put_sizes(m, &s.args, n, size))
    })?;
    l.func_wrap(MODULE, "environ_get", |mut c: Caller<'_, JobState>, env: i32, buf: i32| -> Result<i32, Error> {
        let cost = strings_cost(&c.data().env);
        charge(&mut c, cost)?;
        Ok(with_mem(&mut c, |m, s| put_strings(m, &s.env, env, buf)))
    })?;
    l.func_wrap(MODULE, "environ_sizes_get", |mut c: Caller<'_, JobState>, n: i32, size: i32| {
        with_mem(&mut c, |m, s| put_sizes(m, &s.env, n, size))
    })?;
    l.func_wrap(MODULE, "clock_res_get", |mut c: Caller<'_, JobState>, id: i32, out: i32| {
        if !(0..=3).contains(&id) {
            return EINVAL;
        }
        with_mem(&mut c, |m, _| put_u64(m, out, 1).map(|_| SUCCESS))
    })?;
    l.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, JobState>, id: i32, _precision: i64, out: i32| {
            let ns = job_clock(&c);
            let now = match id {
                0 => REALTIME_ORIGIN_NS.saturating_add(ns), // realtime
                1..=3 => ns,                                // monotonic, process, thread cputime
                _ => return EINVAL,
            };
            with_mem(&mut c, |m, _| put_u64(m, out, now).map(|_| SUCCESS))
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, JobState>, fd: i32, iovs: i32, n: i32, written: i32| -> Result<i32, Error> {
            let fd = match c.data().fs.opened(fd as u32) {
                Ok(Opened::Stdout) => 1,
                Ok(Opened::Stderr) => 2,
                Ok(Opened::File) => return files::write(&mut c, fd, iovs, n, None, written),
                _ => return Ok(EBADF),
            };
            if !(0..=IOV_MAX).contains(&n) {
                return Ok(EINVAL);
            }
            charge(&mut c, n as u64 * FUEL_PER_IOVEC)?;
            let Some(mem) = memory(&c) else { return Ok(EFAULT) };
            let Some(bytes) = iovec_bytes(mem.data(&c), iovs, n) else { return Ok(EFAULT) };
            charge(&mut c, copy_cost(bytes))?;
            let mut fault = None;
            let errno = with_mem(&mut c, |m, s| {
                let mut total = 0u32;
                for i in 0..n as u32 {
                    let base = (iovs as u32).checked_add(i.checked_mul(8)?)?;
                    let ptr = get_u32(m, base)?;
                    let len = get_u32(m, base.checked_add(4)?)?;
                    let bytes = slice(m, ptr as i32, len)?;
                    if let Err(f) = s.capture(fd, bytes) {
                        fault = Some(f);
                        return Some(SUCCESS);
                    }
                    total = total.wrapping_add(len);
                }
                put_u32(m, written, total)?;
                Some(SUCCESS)
            });
            match fault {
                Some(f) => Err(Error::host(f)),
                None => Ok(errno),
            }
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, JobState>, fd: i32, iovs: i32, n: i32, read: i32| -> Result<i32, Error> {
            match c.data().fs.opened(fd as u32) {
                Ok(Opened::Stdin) => {}
                Ok(Opened::File) => return files::read(&mut c, fd, iovs, n, None, read),
                _ => return Ok(EBADF),
            }
            if !(0..=IOV_MAX).contains(&n) {
                return Ok(EINVAL);
            }
            charge(&mut c, n as u64 * FUEL_PER_IOVEC)?;
            let Some(mem) = memory(&c) else { return Ok(EFAULT) };
            let Some(room) = iovec_bytes(mem.data(&c), iovs, n) else { return Ok(EFAULT) };
            let s = c.data();
            let copied = room.min((s.input.len() - s.input_pos) as u64);
            charge(&mut c, copy_cost(copied))?;
            Ok(with_mem(&mut c, |m, s| {
                let mut total = 0u32;
                for i in 0..n as u32 {
                    let base = (iovs as u32).checked_add(i.checked_mul(8)?)?;
                    let ptr = get_u32(m, base)?;
                    let len = get_u32(m, base.checked_add(4)?)?;
                    let rest = &s.input[s.input_pos..];
                    let take = rest.len().min(len as usize);
                    slice_mut(m, ptr as i32, take as u32)?.copy_from_slice(&rest[..take]);
                    s.input_pos += take;
                    total += take as u32;
                    if take < len as usize {
                        break;
                    }
                }
                put_u32(m, read, total)?;
                Some(SUCCESS)
            }))
        },
    )?;
    l.func_wrap(MODULE, "proc_exit", |_: Caller<'_, JobState>, code: i32| -> Result<(), Error> {
        Err(Error::i32_exit(code))
    })?;
    l.func_wrap(MODULE, "random_get", |mut c: Caller<'_, JobState>, buf: i32, len: i32| -> Result<i32, Error> {
        if !(0..=RANDOM_MAX).contains(&len) {
            return Ok(EINVAL);
        }
        charge(&mut c, len as u64 * FUEL_PER_RANDOM_BYTE)?;
        Ok(with_mem(&mut c, |m, s| {
            s.random.fill(slice_mut(m, buf, len as u32)?);
            Some(SUCCESS)
        }))
    })?;
    l.func_wrap(MODULE, "sched_yield", |_: Caller<'_, JobState>| SUCCESS)?;
    files::add(&mut l)?;
    poll::add(&mut l)?;
    Ok(l)
}

/// Adds a stub returning ENOSYS for a WASI function the shim does not implement.
pub fn define_enosys(
    linker: &mut Linker<JobState>,
    name: &str,
    ty: FuncType,
) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_new(MODULE, name, ty, |_, _, results| {
        results[0] = wasmi::Val::I32(ENOSYS);
        Ok(())
    })?;
    Ok(())
}

/// The deterministic random stream: SHA-256("phase-random/v1\n" || job id || counter).
pub struct RandomStream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl RandomStream {
    pub fn new(job_id: [u8; 32]) -> Self {
        RandomStream { seed: job_id, counter: 0, block: [0; 32], used: 32 }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        use sha2::Digest as _;
        for byte in out {
            if self.used == 32 {
                let mut h = sha2::Sha256::new();
                h.update(b"phase-random/v1\n");
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

impl GuestFault {
    pub fn is_fault(e: &Error) -> Option<GuestFault> {
        e.downcast_ref::<GuestFault>().copied()
    }
}
