//! The few raw syscalls std does not offer, and the allocator. Every `unsafe` block of the
//! binary lives under this module.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// Sets TCP_NODELAY on a listening socket; Linux copies it to every accepted connection.
/// Without it a response written in two parts waits for the client's delayed ACK (~40 ms).
pub fn set_nodelay_inherited(listener: &TcpListener) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd we own, a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

pub mod alloc;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// mount(2).
pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: all pointers are live NUL-terminated strings for the duration of the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr() as *const libc::c_void) })
}

/// What reboot(2) should do.
#[derive(Debug, Clone, Copy)]
pub enum RebootCmd {
    Restart,
    PowerOff,
    /// Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
    CadOff,
    /// Boots the kernel loaded by kexec_file_load; returns only on failure.
    Kexec,
}

/// reboot(2). Restart and PowerOff return only on failure.
pub fn reboot(cmd: RebootCmd) -> io::Result<()> {
    let c = match cmd {
        RebootCmd::Restart => libc::RB_AUTOBOOT,
        RebootCmd::PowerOff => libc::RB_POWER_OFF,
        RebootCmd::CadOff => libc::RB_DISABLE_CAD,
        RebootCmd::Kexec => libc::LINUX_REBOOT_CMD_KEXEC as libc::c_int,
    };
    // SAFETY: reboot takes no pointers.
    check(unsafe { libc::reboot(c) })
}

/// sync(2).
pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() }
}

/// finit_module(2) on an open module file; `compressed` lets the kernel decompress it.
pub fn finit_module(file: &std::fs::File, params: &str, compressed: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let p = cstr(params)?;
    let flags: libc::c_long = if compressed { 4 } else { 0 }; // MODULE_INIT_COMPRESSED_FILE
    // SAFETY: a valid fd and a live NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd() as libc::c_long, p.as_ptr(), flags) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    pub fn of(signals: &[libc::c_int]) -> SignalSet {
        // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            SignalSet(set)
        }
    }

    /// Blocks these signals in the calling thread (and threads it starts later).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: a valid set; the old mask is not wanted.
        check(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) })
    }

    /// Unblocks them (a child must not inherit PID 1's blocked mask).
    pub fn unblock(&self) -> io::Result<()> {
        // SAFETY: as above.
        check(unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.0, std::ptr::null_mut()) })
    }

    /// Makes `cmd`'s child start with these signals unblocked: a blocked mask survives
    /// fork and exec, and a service that cannot receive SIGTERM cannot stop cleanly.
    pub fn unblock_in_child(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let set = self.0;
        // SAFETY: pthread_sigmask is async-signal-safe and touches only the child's own mask.
        unsafe {
            cmd.pre_exec(move || {
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
    }

    /// Waits up to `timeout` for one of these (blocked) signals.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid set and timespec; no siginfo wanted.
        let s = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        (s > 0).then_some(s)
    }
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy)]
pub enum ChildExit {
    Code(i32),
    Signal(i32),
}

/// Reaps one exited child without blocking: (pid, how it ended).
pub fn reap_any() -> Option<(i32, ChildExit)> {
    let mut status = 0;
    // SAFETY: a live int for the status.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let how = if libc::WIFEXITED(status) {
        ChildExit::Code(libc::WEXITSTATUS(status))
    } else {
        ChildExit::Signal(libc::WTERMSIG(status))
    };
    Some((pid, how))
}

/// kill(2); `pid` -1 means every process but PID 1.
pub fn kill(pid: i32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::kill(pid, signal) })
}

/// Seconds since boot (CLOCK_BOOTTIME), the clock the kernel's own log stamps use.
pub fn boot_time_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// execv(2) of `path` with no arguments but its name: replaces this process.
pub fn exec(path: &Path) -> io::Error {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    };
    let argv = [p.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NULL-terminated array of live C strings.
    unsafe { libc::execv(p.as_ptr(), argv.as_ptr()) };
    io::Error::last_os_error()
}

/// An anonymous in-memory file (memfd_create(2)) holding `bytes`, rewound, for syscalls that
/// take file descriptors (kexec_file_load) without a writable filesystem.
pub fn memfd_with(name: &str, bytes: &[u8]) -> io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    let n = cstr(name)?;
    // SAFETY: a live NUL-terminated name; the returned fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(n.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(bytes)?;
    f.rewind()?;
    Ok(f)
}

/// Not in libc's aarch64 musl table; the numbers are the kernel's (x86_64 table, asm-generic).
#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 320;
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;

/// kexec_file_load(2): loads `kernel` + `initrd` with `cmdline` to be booted by
/// `reboot(RebootCmd::Kexec)`. The kernel checks the image format itself.
pub fn kexec_file_load(kernel: &std::fs::File, initrd: &std::fs::File, cmdline: &str) -> io::Result<()> {
    let c = cstr(cmdline)?;
    let len = cmdline.len() + 1; // the kernel wants the NUL counted
    // SAFETY: two open fds and a live NUL-terminated string of `len` bytes.
    let rc = unsafe {
        libc::syscall(SYS_KEXEC_FILE_LOAD, kernel.as_raw_fd(), initrd.as_raw_fd(), len, c.as_ptr(), 0 as libc::c_ulong)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The memory available for new work, in bytes: `MemAvailable` of /proc/meminfo (free memory
/// plus what the kernel can reclaim), or less where a cgroup v2 `memory.max` of this process or
/// one of its parents (a unit's `MemoryMax=`, a container's limit) leaves less headroom.
pub fn memory_available() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let kb = t.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        kb.checked_mul(1024)
    });
    let group = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|t| cgroup_headroom(&t, |f| std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(f)).ok()));
    match (machine, group) {
        (Some(m), Some(g)) => Some(m.min(g)),
        (m, g) => m.or(g),
    }
}

/// The least headroom (`memory.max` − `memory.current`) along this process's cgroup v2 path
/// (`0::/a/b` in /proc/self/cgroup) and its parents; None where no level sets a limit. `read`
/// reads a file relative to the cgroup root.
fn cgroup_headroom(proc_self_cgroup: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let path = proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut least: Option<u64> = None;
    let mut dir = path.trim_matches('/').to_string();
    loop {
        let at = |f: &str| if dir.is_empty() { f.to_string() } else { format!("{dir}/{f}") };
        let max = read(&at("memory.max")).and_then(|t| t.trim().parse::<u64>().ok());
        if let Some(max) = max {
            let current = read(&at("memory.current")).and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
            let room = max.saturating_sub(current);
            least = Some(least.map_or(room, |l| l.min(room)));
        }
        match dir.rfind('/') {
            Some(i) => dir.truncate(i),
            None if !dir.is_empty() => dir.clear(),
            None => return least,
        }
    }
}

/// Bytes free for unprivileged writers on the filesystem holding `path` (statvfs(2)).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let p = cstr(&path.to_string_lossy())?;
    // SAFETY: an all-zero statvfs is a valid value; the pointers are live for the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// SO_BINDTODEVICE: the socket receives from and sends through `interface` only (a broadcast
/// answer then leaves by that link, not by the default route's). Needs CAP_NET_RAW.
pub fn bind_to_device(socket: &impl AsRawFd, interface: &str) -> io::Result<()> {
    let name = cstr(interface)?;
    let len = name.as_bytes_with_nul().len() as libc::socklen_t;
    // SAFETY: a live socket and a live NUL-terminated name of `len` bytes.
    check(unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), len) })
}

/// The first IPv4 address of `interface` (getifaddrs(3)), or None.
pub fn interface_ipv4(interface: &str) -> Option<std::net::Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut at = list;
    while !at.is_null() && found.is_none() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let entry = unsafe { &*at };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if name.to_bytes() == interface.as_bytes() && !entry.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr; its family says which kind.
            if unsafe { (*entry.ifa_addr).sa_family } as libc::c_int == libc::AF_INET {
                // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// pipe2(2) with O_CLOEXEC: (read end, write end).
pub fn pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) })
}

/// dup2(2): makes `target` (e.g. 2 for stderr) another descriptor for `file`; the copy is
/// inherited by children (no close-on-exec).
pub fn dup_onto(file: &impl AsRawFd, target: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 on a live descriptor; `target` is closed and replaced atomically.
    let rc = unsafe { libc::dup2(file.as_raw_fd(), target) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Bytes waiting in the pipe behind descriptor `fd` (FIONREAD works on either end of a pipe);
/// None when `fd` is not a pipe.
pub fn pipe_pending(fd: libc::c_int) -> Option<usize> {
    // SAFETY: an all-zero stat is a valid value; fstat and ioctl only write into our locals.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    let mut n: libc::c_int = 0;
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return None;
    }
    Some(n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::cgroup_headroom;

    #[test]
    fn the_tightest_cgroup_limit_on_the_path_wins() {
        let files = |f: &str| -> Option<String> {
            Some(match f {
                "system.slice/memory.max" => "1073741824\n",
                "system.slice/memory.current" => "73741824\n",
                "system.slice/phase-node.service/memory.max" => "268435456\n",
                "system.slice/phase-node.service/memory.current" => "8388608\n",
                "memory.max" | "system.slice/other.service/memory.max" => "max\n",
                _ => return None,
            }.to_string())
        };
        assert_eq!(cgroup_headroom("0::/system.slice/phase-node.service\n", files), Some(268435456 - 8388608));
        assert_eq!(cgroup_headroom("0::/system.slice/other.service\n", files), Some(1_000_000_000));
        assert_eq!(cgroup_headroom("0::/\n", files), None, "no limit anywhere");
        assert_eq!(cgroup_headroom("12:memory:/legacy\n", files), None, "cgroup v1 only: no v2 line");
    }
}
