//! The descriptor table and the calls made on descriptors (`fd_*`). Stdio are descriptors
//! like any other (they can be closed or renumbered); their bytes stay with the caller, which
//! asks `opened` what a descriptor is before reading or writing.

use super::tree::{Data, Fs, Ino};
use super::{fdflags, filetype, rights, Errno};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    Stdin,
    Stdout,
    Stderr,
    Node(Ino),
}

#[derive(Debug, Clone)]
pub(super) struct Fd {
    pub(super) open: Open,
    pub(super) rights: u64,
    pub(super) inheriting: u64,
    pub(super) flags: u16,
    pub(super) pos: u64,
    /// A preopened directory's guest name (it moves with the descriptor).
    pub(super) preopen: Option<String>,
}

impl Fd {
    pub(super) fn stdio(open: Open) -> Fd {
        let rights = match open {
            Open::Stdin => rights::FD_READ | (1 << 27) | (1 << 21),
            _ => rights::FD_WRITE | (1 << 27) | (1 << 21),
        };
        Fd { open, rights, inheriting: 0, flags: 0, pos: 0, preopen: None }
    }

    pub(super) fn node(ino: Ino, rights: u64, inheriting: u64, flags: u16) -> Fd {
        Fd { open: Open::Node(ino), rights, inheriting, flags, pos: 0, preopen: None }
    }

    pub(super) fn ino(&self) -> Option<Ino> {
        match self.open {
            Open::Node(ino) => Some(ino),
            _ => None,
        }
    }
}

/// What a descriptor is, for the caller that holds stdio's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Stdin,
    Stdout,
    Stderr,
    File,
    Dir,
    Symlink,
}

/// `fd_seek`'s `whence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Set,
    Cur,
    End,
}

impl Whence {
    pub fn from_wasi(w: u8) -> Option<Whence> {
        [Whence::Set, Whence::Cur, Whence::End].get(w as usize).copied()
    }
}

/// WASI `filestat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filestat {
    pub dev: u64,
    pub ino: u64,
    pub filetype: u8,
    pub nlink: u64,
    pub size: u64,
    pub atim: u64,
    pub mtim: u64,
    pub ctim: u64,
}

impl Filestat {
    /// The 64 bytes of `filestat` in guest memory.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16] = self.filetype;
        b[24..32].copy_from_slice(&self.nlink.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.to_le_bytes());
        b[40..48].copy_from_slice(&self.atim.to_le_bytes());
        b[48..56].copy_from_slice(&self.mtim.to_le_bytes());
        b[56..64].copy_from_slice(&self.ctim.to_le_bytes());
        b
    }
}

/// WASI `fdstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fdstat {
    pub filetype: u8,
    pub flags: u16,
    pub rights: u64,
    pub inheriting: u64,
}

impl Fdstat {
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0] = self.filetype;
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.rights.to_le_bytes());
        b[16..24].copy_from_slice(&self.inheriting.to_le_bytes());
        b
    }
}

/// One directory entry as `fd_readdir` writes it: a 24-byte header, then the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub next: u64,
    pub ino: u64,
    pub filetype: u8,
    pub name: String,
}

impl Dirent {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[self.filetype, 0, 0, 0]);
        out.extend_from_slice(self.name.as_bytes());
    }
}

impl Fs {
    pub(super) fn fd(&self, fd: u32) -> Result<&Fd, Errno> {
        self.fds.get(fd as usize).and_then(Option::as_ref).ok_or(Errno::BADF)
    }

    fn fd_mut(&mut self, fd: u32) -> Result<&mut Fd, Errno> {
        self.fds.get_mut(fd as usize).and_then(Option::as_mut).ok_or(Errno::BADF)
    }

    /// The lowest descriptor number free, within the open-files limit (`EMFILE`).
    pub(super) fn lowest_free_fd(&mut self) -> Result<u32, Errno> {
        let open = self.fds.iter().filter(|f| f.is_some()).count() as u64;
        if open >= self.limits.open_files {
            return Err(Errno::MFILE);
        }
        match self.fds.iter().position(Option::is_none) {
            Some(i) => Ok(i as u32),
            None => {
                self.fds.push(None);
                Ok(self.fds.len() as u32 - 1)
            }
        }
    }

    /// What `fd` is open on.
    pub fn opened(&self, fd: u32) -> Result<Opened, Errno> {
        Ok(match self.fd(fd)?.open {
            Open::Stdin => Opened::Stdin,
            Open::Stdout => Opened::Stdout,
            Open::Stderr => Opened::Stderr,
            Open::Node(ino) => match self.inode(ino).data {
                Data::Dir { .. } => Opened::Dir,
                Data::File(_) => Opened::File,
                Data::Symlink(_) => Opened::Symlink,
            },
        })
    }

    /// A regular file's inode behind `fd` with `right` (`EBADF` for anything else).
    fn file(&self, fd: u32, right: u64) -> Result<Ino, Errno> {
        let d = self.fd(fd)?;
        match d.open {
            Open::Node(ino) if matches!(self.inode(ino).data, Data::File(_)) && d.rights & right == right => Ok(ino),
            Open::Stdin | Open::Stdout | Open::Stderr if right & (rights::FD_SEEK | rights::FD_TELL) != 0 => {
                Err(Errno::SPIPE)
            }
            _ => Err(Errno::BADF),
        }
    }

    /// `fd_close`.
    pub fn close(&mut self, fd: u32) -> Result<(), Errno> {
        let d = self.fds.get_mut(fd as usize).and_then(Option::take).ok_or(Errno::BADF)?;
        if let Some(ino) = d.ino() {
            self.inode_mut(ino).open -= 1;
            self.release(ino);
        }
        Ok(())
    }

    /// `fd_renumber`: `from` replaces `to`, which must be open.
    pub fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        self.fd(from)?;
        self.fd(to)?;
        if from == to {
            return Ok(());
        }
        self.close(to)?;
        let d = self.fds[from as usize].take();
        self.fds[to as usize] = d;
        Ok(())
    }

    /// Reads up to `max` bytes at `at` (pread) or at the descriptor's position, which moves.
    pub fn read(&mut self, fd: u32, max: usize, at: Option<u64>, now: u64) -> Result<Vec<u8>, Errno> {
        let ino = match self.file(fd, rights::FD_READ) {
            Err(Errno::SPIPE) | Err(Errno::BADF) if at.is_some() && self.is_stdio(fd) => return Err(Errno::SPIPE),
            r => r?,
        };
        let pos = at.unwrap_or(self.fd(fd)?.pos);
        let i = self.inode_mut(ino);
        let Data::File(b) = &i.data else { return Err(Errno::BADF) };
        let bytes = b.as_slice();
        let start = (pos.min(bytes.len() as u64)) as usize;
        let end = start + max.min(bytes.len() - start);
        let out = bytes[start..end].to_vec();
        i.atim = now;
        if at.is_none() {
            self.fd_mut(fd)?.pos = pos + out.len() as u64;
        }
        Ok(out)
    }

    fn is_stdio(&self, fd: u32) -> bool {
        matches!(self.fd(fd).map(|d| d.open), Ok(Open::Stdin | Open::Stdout | Open::Stderr))
    }

    /// Writes `bytes` at `at` (pwrite) or at the position (the end with `APPEND`), which
    /// moves. What does not fit the byte limit is not written; nothing fitting is `ENOSPC`.
    pub fn write(&mut self, fd: u32, bytes: &[u8], at: Option<u64>, now: u64) -> Result<usize, Errno> {
        let ino = match self.file(fd, rights::FD_WRITE) {
            Err(Errno::SPIPE) | Err(Errno::BADF) if at.is_some() && self.is_stdio(fd) => return Err(Errno::SPIPE),
            r => r?,
        };
        let d = self.fd(fd)?;
        let size = self.inode(ino).size();
        let pos = match at {
            Some(p) => p,
            None if d.flags & fdflags::APPEND != 0 => size,
            None => d.pos,
        };
        if bytes.is_empty() {
            return Ok(0);
        }
        let room = (self.limits.bytes - self.bytes).saturating_add(size).saturating_sub(pos);
        if pos > self.limits.bytes || room == 0 {
            return Err(Errno::NOSPC);
        }
        let n = bytes.len().min(room.min(usize::MAX as u64) as usize);
        let end = pos + n as u64;
        if end > size {
            self.resize(ino, end)?;
        }
        let i = self.inode_mut(ino);
        let Data::File(b) = &mut i.data else { return Err(Errno::BADF) };
        b.to_mut()[pos as usize..end as usize].copy_from_slice(&bytes[..n]);
        i.given = None;
        i.mtim = now;
        i.ctim = now;
        if at.is_none() {
            self.fd_mut(fd)?.pos = end;
        }
        Ok(n)
    }

    /// `fd_seek`: the new position.
    pub fn seek(&mut self, fd: u32, offset: i64, whence: Whence) -> Result<u64, Errno> {
        let ino = self.file(fd, rights::FD_SEEK)?;
        let size = self.inode(ino).size();
        let d = self.fd_mut(fd)?;
        let from = match whence {
            Whence::Set => 0,
            Whence::Cur => d.pos,
            Whence::End => size,
        };
        let to = (from as i128) + offset as i128;
        if to < 0 || to > i64::MAX as i128 {
            return Err(Errno::INVAL);
        }
        d.pos = to as u64;
        Ok(d.pos)
    }

    /// `fd_tell`.
    pub fn tell(&self, fd: u32) -> Result<u64, Errno> {
        self.file(fd, rights::FD_TELL)?;
        Ok(self.fd(fd)?.pos)
    }

    /// `fd_fdstat_get`.
    pub fn fdstat(&self, fd: u32) -> Result<Fdstat, Errno> {
        let d = self.fd(fd)?;
        let filetype = match d.open {
            Open::Node(ino) => self.inode(ino).filetype(),
            _ => filetype::CHARACTER_DEVICE,
        };
        Ok(Fdstat { filetype, flags: d.flags, rights: d.rights, inheriting: d.inheriting })
    }

    /// `fd_fdstat_set_flags`.
    pub fn set_flags(&mut self, fd: u32, flags: u16) -> Result<(), Errno> {
        if flags & !fdflags::ALL != 0 {
            return Err(Errno::INVAL);
        }
        self.fd_mut(fd)?.flags = flags;
        Ok(())
    }

    /// `fd_fdstat_set_rights`: rights can only be dropped.
    pub fn set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> Result<(), Errno> {
        let d = self.fd_mut(fd)?;
        if base & !d.rights != 0 || inheriting & !d.inheriting != 0 {
            return Err(Errno::NOTCAPABLE);
        }
        d.rights = base;
        d.inheriting = inheriting;
        Ok(())
    }

    /// `fd_filestat_get`.
    pub fn fd_filestat(&self, fd: u32) -> Result<Filestat, Errno> {
        match self.fd(fd)?.open {
            Open::Node(ino) => Ok(self.stat(ino)),
            _ => Ok(Filestat { filetype: filetype::CHARACTER_DEVICE, ..Filestat::default() }),
        }
    }

    /// `fd_filestat_set_size`.
    pub fn set_size(&mut self, fd: u32, size: u64, now: u64) -> Result<(), Errno> {
        let ino = self.file(fd, rights::FD_FILESTAT_SET_SIZE)?;
        if size > self.limits.bytes {
            return Err(Errno::FBIG);
        }
        self.resize(ino, size)?;
        let i = self.inode_mut(ino);
        i.mtim = now;
        i.ctim = now;
        Ok(())
    }

    /// `fd_filestat_set_times`.
    pub fn fd_set_times(&mut self, fd: u32, atim: u64, mtim: u64, flags: u16, now: u64) -> Result<(), Errno> {
        match self.fd(fd)?.open {
            Open::Node(ino) => self.set_times(ino, atim, mtim, flags, now),
            _ => Err(Errno::BADF),
        }
    }

    /// `fd_advise`: checked, then nothing to do in memory.
    pub fn advise(&mut self, fd: u32, offset: u64, len: u64, advice: u8) -> Result<(), Errno> {
        self.file(fd, 0)?;
        if advice > 5 || offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return Err(Errno::INVAL);
        }
        Ok(())
    }

    /// `fd_allocate`: the file is at least `offset + len` bytes after it.
    pub fn allocate(&mut self, fd: u32, offset: u64, len: u64, now: u64) -> Result<(), Errno> {
        let ino = self.file(fd, rights::FD_WRITE)?;
        let end = offset.checked_add(len).ok_or(Errno::INVAL)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        if end > self.limits.bytes {
            return Err(Errno::FBIG);
        }
        if end > self.inode(ino).size() {
            self.resize(ino, end)?;
            let i = self.inode_mut(ino);
            i.mtim = now;
            i.ctim = now;
        }
        Ok(())
    }

    /// `fd_sync`, `fd_datasync`: memory is the disk; stdio cannot be synced (`EINVAL`).
    pub fn sync(&self, fd: u32) -> Result<(), Errno> {
        match self.fd(fd)?.open {
            Open::Node(_) => Ok(()),
            _ => Err(Errno::INVAL),
        }
    }

    /// `fd_readdir`: entries from `cookie` on (`.` is 0, `..` 1, then names in byte order),
    /// as many as `room` bytes may hold, the last one whole or cut (as the spec asks).
    pub fn readdir(&mut self, fd: u32, cookie: u64, room: usize) -> Result<Vec<u8>, Errno> {
        let d = self.fd(fd)?;
        let ino = d.ino().ok_or(Errno::BADF)?;
        if d.rights & rights::FD_READDIR == 0 {
            return Err(Errno::BADF);
        }
        let Data::Dir { children, parent } = &self.inode(ino).data else { return Err(Errno::NOTDIR) };
        let children_len = children.len();
        let mut out = Vec::new();
        let dots = [(".", ino), ("..", *parent)];
        let skip = cookie.saturating_sub(2).min(usize::MAX as u64) as usize;
        let names = children.iter().skip(skip).map(|(n, i)| (n.as_str(), *i));
        let mut next = cookie;
        let mut walked = 0u64;
        for (name, child) in dots.into_iter().skip(cookie.min(2) as usize).chain(names) {
            walked += 1;
            next += 1;
            let filetype = self.inodes.get(&child).map(|i| i.filetype()).unwrap_or(filetype::UNKNOWN);
            Dirent { next, ino: child, filetype, name: name.to_string() }.write(&mut out);
            if out.len() >= room {
                out.truncate(room);
                break;
            }
        }
        // Entries skipped to reach the cookie are walked too: paid like those listed.
        self.charge_work(walked + skip.min(children_len) as u64);
        Ok(out)
    }

    /// `fd_prestat_get` and `fd_prestat_dir_name`: a preopened directory's name.
    pub fn prestat(&self, fd: u32) -> Result<&str, Errno> {
        self.fd(fd)?.preopen.as_deref().ok_or(Errno::BADF)
    }

    /// Whether `fd` is open at all (`sock_*` tell a bad descriptor from a non-socket).
    pub fn is_open(&self, fd: u32) -> bool {
        self.fd(fd).is_ok()
    }

    /// Bytes left to read at a file descriptor's position (`poll_oneoff`'s `nbytes`).
    pub fn readable(&self, fd: u32) -> Result<u64, Errno> {
        let ino = self.file(fd, 0)?;
        Ok(self.inode(ino).size().saturating_sub(self.fd(fd)?.pos))
    }
}
