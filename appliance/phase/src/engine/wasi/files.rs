//! The descriptor and path calls of preview 1 on the job's filesystem (`engine::fs`): guest
//! memory in, `Fs` calls, guest memory out. Each call pays `FUEL_PER_FS_CALL` and the bytes of
//! its path before it runs, then the names it walked and the bytes it moved.

use wasmi::{Caller, Error, Linker};

use super::{charge, copy_cost, get_u32, memory, put_u32, put_u64, realtime, slice, slice_mut, JobState};
use super::{EFAULT, FUEL_PER_FS_CALL, FUEL_PER_IOVEC, FUEL_PER_NAME, IOV_MAX, MODULE, SUCCESS};
use crate::engine::fs::{Errno, Opened, Whence};

const FAULT: Errno = Errno(EFAULT as u16);

/// Runs `f` on guest memory, the job's state and its realtime clock, after charging for a call
/// that reads `bytes` of guest memory; `f` answers the bytes it moved. Then charges the work
/// the filesystem did.
fn call(
    c: &mut Caller<'_, JobState>,
    bytes: u64,
    f: impl FnOnce(&mut [u8], &mut JobState, u64) -> Result<u64, Errno>,
) -> Result<i32, Error> {
    charge(c, FUEL_PER_FS_CALL + copy_cost(bytes))?;
    let now = realtime(c);
    let Some(mem) = memory(c) else { return Ok(EFAULT) };
    let (data, state) = mem.data_and_store_mut(&mut *c);
    let result = f(data, state, now);
    let work = c.data_mut().fs.take_work();
    let moved = *result.as_ref().unwrap_or(&0);
    charge(c, work * FUEL_PER_NAME + copy_cost(moved))?;
    Ok(match result {
        Ok(_) => SUCCESS,
        Err(e) => e.0 as i32,
    })
}

/// A path argument: guest bytes that must be UTF-8 (`EILSEQ`).
fn path(m: &[u8], ptr: i32, len: i32) -> Result<String, Errno> {
    let bytes = slice(m, ptr, len as u32).ok_or(FAULT)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Errno::ILSEQ)
}

fn out_u32(m: &mut [u8], ptr: i32, v: u32) -> Result<(), Errno> {
    put_u32(m, ptr, v).ok_or(FAULT)
}

fn out_u64(m: &mut [u8], ptr: i32, v: u64) -> Result<(), Errno> {
    put_u64(m, ptr, v).ok_or(FAULT)
}

fn out_bytes(m: &mut [u8], ptr: i32, bytes: &[u8]) -> Result<(), Errno> {
    slice_mut(m, ptr, bytes.len() as u32).ok_or(FAULT)?.copy_from_slice(bytes);
    Ok(())
}

/// The `(ptr, len)` pairs of `n` iovecs at `iovs`, each inside memory.
fn iovecs(m: &[u8], iovs: i32, n: i32) -> Result<Vec<(i32, u32)>, Errno> {
    if !(0..=IOV_MAX).contains(&n) {
        return Err(Errno::INVAL);
    }
    (0..n as u32)
        .map(|i| {
            let base = (iovs as u32).checked_add(i * 8).ok_or(FAULT)?;
            let ptr = get_u32(m, base).ok_or(FAULT)?;
            let len = get_u32(m, base.checked_add(4).ok_or(FAULT)?).ok_or(FAULT)?;
            slice(m, ptr as i32, len).ok_or(FAULT)?;
            Ok((ptr as i32, len))
        })
        .collect()
}

/// `fd_read` / `fd_pread` on a file: what fits the iovecs, in order.
pub(super) fn read(c: &mut Caller<'_, JobState>, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> Result<i32, Error> {
    charge(c, n.clamp(0, IOV_MAX) as u64 * FUEL_PER_IOVEC)?;
    call(c, 0, |m, s, now| {
        let list = iovecs(m, iovs, n)?;
        let room: u64 = list.iter().map(|&(_, l)| l as u64).sum();
        let bytes = s.fs.read(fd as u32, room.min(usize::MAX as u64) as usize, at, now)?;
        let mut rest = &bytes[..];
        for (ptr, len) in list {
            let take = rest.len().min(len as usize);
            out_bytes(m, ptr, &rest[..take])?;
            rest = &rest[take..];
        }
        out_u32(m, out, bytes.len() as u32)?;
        Ok(bytes.len() as u64)
    })
}

/// `fd_write` / `fd_pwrite` on a file.
pub(super) fn write(c: &mut Caller<'_, JobState>, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> Result<i32, Error> {
    charge(c, n.clamp(0, IOV_MAX) as u64 * FUEL_PER_IOVEC)?;
    call(c, 0, |m, s, now| {
        let list = iovecs(m, iovs, n)?;
        let mut bytes = Vec::new();
        for (ptr, len) in list {
            bytes.extend_from_slice(slice(m, ptr, len).ok_or(FAULT)?);
        }
        let written = s.fs.write(fd as u32, &bytes, at, now)?;
        out_u32(m, out, written as u32)?;
        Ok(bytes.len() as u64)
    })
}

/// pread/pwrite on stdio cannot seek; on anything but a file the descriptor is wrong.
fn positioned(c: &Caller<'_, JobState>, fd: i32) -> Result<(), i32> {
    match c.data().fs.opened(fd as u32) {
        Ok(Opened::File) => Ok(()),
        Ok(Opened::Stdin | Opened::Stdout | Opened::Stderr) => Err(Errno::SPIPE.0 as i32),
        Ok(_) | Err(_) => Err(Errno::BADF.0 as i32),
    }
}

/// Adds every descriptor and path call but `fd_read`/`fd_write` (which serve stdio too).
pub(super) fn add(l: &mut Linker<JobState>) -> Result<(), wasmi::errors::LinkerError> {
    type C<'a> = Caller<'a, JobState>;
    type R = Result<i32, Error>;
    l.func_wrap(MODULE, "fd_pread", |mut c: C<'_>, fd: i32, iovs: i32, n: i32, at: i64, out: i32| -> R {
        if let Err(e) = positioned(&c, fd) {
            return Ok(e);
        }
        read(&mut c, fd, iovs, n, Some(at as u64), out)
    })?;
    l.func_wrap(MODULE, "fd_pwrite", |mut c: C<'_>, fd: i32, iovs: i32, n: i32, at: i64, out: i32| -> R {
        if let Err(e) = positioned(&c, fd) {
            return Ok(e);
        }
        write(&mut c, fd, iovs, n, Some(at as u64), out)
    })?;
    l.func_wrap(MODULE, "fd_close", |mut c: C<'_>, fd: i32| -> R { call(&mut c, 0, |_, s, _| s.fs.close(fd as u32).map(|_| 0)) })?;
    l.func_wrap(MODULE, "fd_renumber", |mut c: C<'_>, from: i32, to: i32| -> R {
        call(&mut c, 0, |_, s, _| s.fs.renumber(from as u32, to as u32).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_seek", |mut c: C<'_>, fd: i32, offset: i64, whence: i32, out: i32| -> R {
        call(&mut c, 0, |m, s, _| {
            let whence = u8::try_from(whence).ok().and_then(Whence::from_wasi).ok_or(Errno::INVAL)?;
            let pos = s.fs.seek(fd as u32, offset, whence)?;
            out_u64(m, out, pos).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "fd_tell", |mut c: C<'_>, fd: i32, out: i32| -> R {
        call(&mut c, 0, |m, s, _| out_u64(m, out, s.fs.tell(fd as u32)?).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_fdstat_get", |mut c: C<'_>, fd: i32, out: i32| -> R {
        call(&mut c, 0, |m, s, _| out_bytes(m, out, &s.fs.fdstat(fd as u32)?.to_bytes()).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_fdstat_set_flags", |mut c: C<'_>, fd: i32, flags: i32| -> R {
        call(&mut c, 0, |_, s, _| s.fs.set_flags(fd as u32, u16::try_from(flags).map_err(|_| Errno::INVAL)?).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_fdstat_set_rights", |mut c: C<'_>, fd: i32, base: i64, inheriting: i64| -> R {
        call(&mut c, 0, |_, s, _| s.fs.set_rights(fd as u32, base as u64, inheriting as u64).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_filestat_get", |mut c: C<'_>, fd: i32, out: i32| -> R {
        call(&mut c, 0, |m, s, _| out_bytes(m, out, &s.fs.fd_filestat(fd as u32)?.to_bytes()).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_filestat_set_size", |mut c: C<'_>, fd: i32, size: i64| -> R {
        call(&mut c, 0, |_, s, now| s.fs.set_size(fd as u32, size as u64, now).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_filestat_set_times", |mut c: C<'_>, fd: i32, atim: i64, mtim: i64, flags: i32| -> R {
        call(&mut c, 0, |_, s, now| {
            s.fs.fd_set_times(fd as u32, atim as u64, mtim as u64, flags as u16, now).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "fd_advise", |mut c: C<'_>, fd: i32, offset: i64, len: i64, advice: i32| -> R {
        call(&mut c, 0, |_, s, _| {
            let advice = u8::try_from(advice).map_err(|_| Errno::INVAL)?;
            s.fs.advise(fd as u32, offset as u64, len as u64, advice).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "fd_allocate", |mut c: C<'_>, fd: i32, offset: i64, len: i64| -> R {
        call(&mut c, 0, |_, s, now| s.fs.allocate(fd as u32, offset as u64, len as u64, now).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_sync", |mut c: C<'_>, fd: i32| -> R { call(&mut c, 0, |_, s, _| s.fs.sync(fd as u32).map(|_| 0)) })?;
    l.func_wrap(MODULE, "fd_datasync", |mut c: C<'_>, fd: i32| -> R {
        call(&mut c, 0, |_, s, _| s.fs.sync(fd as u32).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "fd_prestat_get", |mut c: C<'_>, fd: i32, out: i32| -> R {
        call(&mut c, 0, |m, s, _| {
            let len = s.fs.prestat(fd as u32)?.len() as u32;
            out_bytes(m, out, &[0; 4])?; // tag 0: a directory
            out_u32(m, out.wrapping_add(4), len).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "fd_prestat_dir_name", |mut c: C<'_>, fd: i32, buf: i32, len: i32| -> R {
        call(&mut c, 0, |m, s, _| {
            let name = s.fs.prestat(fd as u32)?;
            // A buffer shorter than the name is the guest's error (wasi-libc asks for the length).
            if (len.max(0) as usize) < name.len() {
                return Err(Errno::NAMETOOLONG);
            }
            let name = name.as_bytes().to_vec();
            out_bytes(m, buf, &name).map(|_| name.len() as u64)
        })
    })?;
    l.func_wrap(MODULE, "fd_readdir", |mut c: C<'_>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32| -> R {
        call(&mut c, 0, |m, s, _| {
            let room = (len as u32).min(16 << 20) as usize;
            slice(m, buf, room as u32).ok_or(FAULT)?;
            let bytes = s.fs.readdir(fd as u32, cookie as u64, room)?;
            out_bytes(m, buf, &bytes)?;
            out_u32(m, used, bytes.len() as u32).map(|_| bytes.len() as u64)
        })
    })?;
    l.func_wrap(MODULE, "path_open", |mut c: C<'_>, fd: i32, dirflags: i32, p: i32, len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, out: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, now| {
            let path = path(m, p, len)?;
            let (oflags, fdflags) = (u16::try_from(oflags).map_err(|_| Errno::INVAL)?, u16::try_from(fdflags).map_err(|_| Errno::INVAL)?);
            // Check the result's place first so a fault never leaves a descriptor behind.
            slice(m, out, 4).ok_or(FAULT)?;
            let new = s.fs.open(fd as u32, dirflags & 1 != 0, &path, oflags, base as u64, inheriting as u64, fdflags, now)?;
            out_u32(m, out, new).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "path_create_directory", |mut c: C<'_>, fd: i32, p: i32, len: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, now| s.fs.create_directory(fd as u32, &path(m, p, len)?, now).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "path_remove_directory", |mut c: C<'_>, fd: i32, p: i32, len: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, now| s.fs.remove_directory(fd as u32, &path(m, p, len)?, now).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "path_unlink_file", |mut c: C<'_>, fd: i32, p: i32, len: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, now| s.fs.unlink_file(fd as u32, &path(m, p, len)?, now).map(|_| 0))
    })?;
    l.func_wrap(MODULE, "path_filestat_get", |mut c: C<'_>, fd: i32, flags: i32, p: i32, len: i32, out: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, _| {
            let st = s.fs.path_filestat(fd as u32, flags & 1 != 0, &path(m, p, len)?)?;
            out_bytes(m, out, &st.to_bytes()).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "path_filestat_set_times", |mut c: C<'_>, fd: i32, flags: i32, p: i32, len: i32, atim: i64, mtim: i64, fst: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, now| {
            let path = path(m, p, len)?;
            s.fs.path_set_times(fd as u32, flags & 1 != 0, &path, atim as u64, mtim as u64, fst as u16, now).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "path_readlink", |mut c: C<'_>, fd: i32, p: i32, len: i32, buf: i32, buf_len: i32, used: i32| -> R {
        call(&mut c, len as u32 as u64, |m, s, _| {
            let target = s.fs.readlink(fd as u32, &path(m, p, len)?)?;
            // Cut to the buffer, as readlink(2) and wasmtime do.
            let n = target.len().min(buf_len.max(0) as usize);
            out_bytes(m, buf, &target.as_bytes()[..n])?;
            out_u32(m, used, n as u32).map(|_| n as u64)
        })
    })?;
    l.func_wrap(MODULE, "path_symlink", |mut c: C<'_>, old: i32, old_len: i32, fd: i32, p: i32, len: i32| -> R {
        let bytes = old_len as u32 as u64 + len as u32 as u64;
        call(&mut c, bytes, |m, s, now| {
            let target = path(m, old, old_len)?;
            s.fs.symlink(&target, fd as u32, &path(m, p, len)?, now).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "path_link", |mut c: C<'_>, old_fd: i32, flags: i32, old: i32, old_len: i32, fd: i32, p: i32, len: i32| -> R {
        let bytes = old_len as u32 as u64 + len as u32 as u64;
        call(&mut c, bytes, |m, s, now| {
            let (from, to) = (path(m, old, old_len)?, path(m, p, len)?);
            s.fs.link(old_fd as u32, flags & 1 != 0, &from, fd as u32, &to, now).map(|_| 0)
        })
    })?;
    l.func_wrap(MODULE, "path_rename", |mut c: C<'_>, old_fd: i32, old: i32, old_len: i32, fd: i32, p: i32, len: i32| -> R {
        let bytes = old_len as u32 as u64 + len as u32 as u64;
        call(&mut c, bytes, |m, s, now| {
            let (from, to) = (path(m, old, old_len)?, path(m, p, len)?);
            s.fs.rename(old_fd as u32, &from, fd as u32, &to, now).map(|_| 0)
        })
    })?;
    // No signals: a job cannot be killed by itself other than by proc_exit or a trap.
    l.func_wrap(MODULE, "proc_raise", |_: C<'_>, _sig: i32| -> i32 { Errno::NOTSUP.0 as i32 })?;
    Ok(())
}
