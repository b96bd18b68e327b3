//! A job's filesystem: the trees a job was given (core's `Files`), held in memory, with the
//! semantics WASI preview 1 gives its path and descriptor calls. Nothing here reaches a host
//! path; every value a guest can observe (inode numbers, timestamps, directory order, errnos)
//! follows from the job alone, so the same job sees the same filesystem on every node.
//!
//! - Inode numbers are given in tree order at load (each mount's root first), then counted up
//!   as the guest creates entries; never reused.
//! - Timestamps are the job's clock (`now` passed to each call), the load time being 0 fuel.
//! - Directories list in byte order of names, after `.` and `..`.
//! - Limits (core's `FsLimits`) end in `ENOSPC`, `EMFILE` and `ENAMETOOLONG`, never a trap.
//!
//! `tree.rs` holds the inodes and path resolution; `fds.rs` the descriptor table and the calls
//! made on descriptors; `changes.rs` what the job left, as core's `Changes`.

mod changes;
mod fds;
mod tree;

pub use changes::Left;
pub use fds::{Filestat, Opened, Whence};
pub use tree::Fs;

/// A WASI preview 1 errno (witx `errno`), returned by every call that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

impl Errno {
    pub const BADF: Errno = Errno(8);
    pub const BUSY: Errno = Errno(10);
    pub const EXIST: Errno = Errno(20);
    pub const FBIG: Errno = Errno(22);
    pub const ILSEQ: Errno = Errno(25);
    pub const INVAL: Errno = Errno(28);
    pub const ISDIR: Errno = Errno(31);
    pub const LOOP: Errno = Errno(32);
    pub const MFILE: Errno = Errno(33);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOSPC: Errno = Errno(51);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTEMPTY: Errno = Errno(55);
    pub const NOTSOCK: Errno = Errno(57);
    pub const NOTSUP: Errno = Errno(58);
    pub const PERM: Errno = Errno(63);
    pub const SPIPE: Errno = Errno(70);
    pub const XDEV: Errno = Errno(75);
    pub const NOTCAPABLE: Errno = Errno(76);
}

/// WASI `filetype` values.
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// WASI `rights` bits the filesystem checks or hands out.
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    /// Every right preview 1 defines (bits 0–29).
    pub const ALL: u64 = (1 << 30) - 1;
    /// What a regular file's descriptor can use.
    pub const FILE: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | (1 << 21) // fd_filestat_get
        | FD_FILESTAT_SET_SIZE
        | (1 << 23) // fd_filestat_set_times
        | (1 << 27); // poll_fd_readwrite
}

/// `path_open`'s `oflags`.
pub mod oflags {
    pub const CREAT: u16 = 1;
    pub const DIRECTORY: u16 = 2;
    pub const EXCL: u16 = 4;
    pub const TRUNC: u16 = 8;
}

/// `fdflags`: append, dsync, nonblock, rsync, sync. Only append changes anything in memory.
pub mod fdflags {
    pub const APPEND: u16 = 1;
    pub const ALL: u16 = 31;
}

/// `fstflags` of the set-times calls.
pub mod fstflags {
    pub const ATIM: u16 = 1;
    pub const ATIM_NOW: u16 = 2;
    pub const MTIM: u16 = 4;
    pub const MTIM_NOW: u16 = 8;
}

/// Host bytes an entry may cost beyond its contents (the inode, its name in a directory, map
/// nodes): what the node's memory budget admits per entry of `FsLimits::entries`.
pub const ENTRY_COST: u64 = 256;

/// Symbolic links followed in one resolution before `ELOOP` (Linux's MAXSYMLINKS).
pub const MAX_SYMLINKS: u32 = 40;


#[cfg(test)]
mod tests;
