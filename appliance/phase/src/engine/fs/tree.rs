//! Inodes, path resolution and the path calls (`path_*`).

use std::collections::BTreeMap;
use std::sync::Arc;

use phase_core::job::files::{FsLimits, Kind, MAX_NAME_BYTES};
use phase_core::job::files::Files;
use phase_core::Digest;

use super::fds::{Fd, Open};
use super::{fstflags, oflags, rights, Errno, MAX_SYMLINKS};

pub(super) type Ino = u64;

/// A file's bytes: shared with the job's input until first written.
#[derive(Debug, Clone)]
pub(super) enum Bytes {
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl Bytes {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Shared(b) => b,
            Bytes::Owned(v) => v,
        }
    }

    pub(super) fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Bytes::Shared(b) = self {
            *self = Bytes::Owned(b.to_vec());
        }
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(_) => unreachable!("made owned above"),
        }
    }
}

#[derive(Debug)]
pub(super) enum Data {
    /// Children by name, and the directory holding this one (a mount's root: itself).
    Dir { children: BTreeMap<String, Ino>, parent: Ino },
    File(Bytes),
    Symlink(String),
}

#[derive(Debug)]
pub(super) struct Inode {
    pub(super) data: Data,
    /// Names that refer to it (a directory: 1 while linked).
    pub(super) nlink: u64,
    /// Descriptors open on it: an unlinked inode lives until the last one closes.
    pub(super) open: u32,
    pub(super) mount: u32,
    pub(super) atim: u64,
    pub(super) mtim: u64,
    pub(super) ctim: u64,
    pub(super) executable: bool,
    /// The file's SHA-256 while its bytes are those it was given.
    pub(super) given: Option<Digest>,
}

impl Inode {
    pub(super) fn filetype(&self) -> u8 {
        match self.data {
            Data::Dir { .. } => super::filetype::DIRECTORY,
            Data::File(_) => super::filetype::REGULAR_FILE,
            Data::Symlink(_) => super::filetype::SYMBOLIC_LINK,
        }
    }

    pub(super) fn size(&self) -> u64 {
        match &self.data {
            Data::Dir { children, .. } => children.len() as u64,
            Data::File(b) => b.as_slice().len() as u64,
            Data::Symlink(t) => t.len() as u64,
        }
    }

    pub(super) fn is_dir(&self) -> bool {
        matches!(self.data, Data::Dir { .. })
    }
}

/// What a path names: the directory it ends in, its last name ("" when the path ends in `.`
/// or `..`, naming a directory by itself), the inode there if any, and whether the path ended
/// in a slash.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) dir: Ino,
    pub(super) name: String,
    pub(super) ino: Option<Ino>,
    pub(super) slash: bool,
}

/// A job's filesystem and its descriptors (see the module's documentation).
#[derive(Debug)]
pub struct Fs {
    pub(super) inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    /// Each mount's guest name and root, in order.
    pub(super) mounts: Vec<(String, Ino)>,
    pub(super) limits: FsLimits,
    /// Bytes of all live files, and live inodes.
    pub(super) bytes: u64,
    pub(super) entries: u64,
    pub(super) fds: Vec<Option<Fd>>,
    /// Work done (names walked, entries visited) not yet charged as fuel.
    work: u64,
    /// The job's files as given, kept to tell what changed.
    pub(super) given: Files,
}

impl Fs {
    /// The filesystem of `files` at time `at`, each file's bytes from `blob` (by SHA-256; the
    /// caller has checked every blob against its digest), or the digest of one missing. Stdio
    /// takes fds 0–2, mounts 3 onwards.
    pub fn new(files: Files, at: u64, blob: impl Fn(&Digest) -> Option<Arc<[u8]>>) -> Result<Fs, Digest> {
        let mut fs = Fs {
            inodes: BTreeMap::new(),
            next_ino: 1,
            mounts: Vec::new(),
            limits: files.limits,
            bytes: 0,
            entries: 0,
            fds: vec![Some(Fd::stdio(Open::Stdin)), Some(Fd::stdio(Open::Stdout)), Some(Fd::stdio(Open::Stderr))],
            work: 0,
            given: files.clone(),
        };
        for (index, m) in files.mounts().iter().enumerate() {
            let mount = index as u32;
            let root = fs.add(mount, Data::Dir { children: BTreeMap::new(), parent: 0 }, at);
            if let Some(Inode { data: Data::Dir { parent, .. }, .. }) = fs.inodes.get_mut(&root) {
                *parent = root;
            }
            // Canonical order puts each parent before its children.
            let mut dirs: BTreeMap<&str, Ino> = BTreeMap::new();
            for e in m.entries() {
                let (dir, name) = match e.path.rsplit_once('/') {
                    Some((p, n)) => (dirs[p], n),
                    None => (root, e.path.as_str()),
                };
                let (data, given, executable) = match &e.kind {
                    Kind::Dir => (Data::Dir { children: BTreeMap::new(), parent: dir }, None, false),
                    Kind::File { sha256, executable, .. } => {
                        (Data::File(Bytes::Shared(blob(sha256).ok_or(*sha256)?)), Some(*sha256), *executable)
                    }
                    Kind::Symlink { target } => (Data::Symlink(target.clone()), None, false),
                };
                let is_dir = matches!(data, Data::Dir { .. });
                let ino = fs.add(mount, data, at);
                let inode = fs.inodes.get_mut(&ino).expect("just added");
                inode.given = given;
                inode.executable = executable;
                fs.child_insert(dir, name, ino);
                if is_dir {
                    dirs.insert(&e.path, ino);
                }
            }
            fs.mounts.push((m.guest().to_string(), root));
            let mut fd = Fd::node(root, rights::ALL, rights::ALL, 0);
            fd.preopen = Some(m.guest().to_string());
            fs.inodes.get_mut(&root).expect("root").open += 1;
            fs.fds.push(Some(fd));
        }
        Ok(fs)
    }

    /// Work done since the last call, in units the caller turns into fuel.
    pub fn take_work(&mut self) -> u64 {
        std::mem::take(&mut self.work)
    }

    pub(super) fn charge_work(&mut self, units: u64) {
        self.work += units;
    }

    pub(super) fn inode(&self, ino: Ino) -> &Inode {
        self.inodes.get(&ino).expect("an inode a name or a descriptor refers to is live")
    }

    pub(super) fn inode_mut(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("an inode a name or a descriptor refers to is live")
    }

    fn add(&mut self, mount: u32, data: Data, now: u64) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        if let Data::File(b) = &data {
            self.bytes += b.as_slice().len() as u64;
        }
        self.entries += 1;
        let inode =
            Inode { data, nlink: 1, open: 0, mount, atim: now, mtim: now, ctim: now, executable: false, given: None };
        self.inodes.insert(ino, inode);
        ino
    }

    fn child_insert(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Data::Dir { children, .. } = &mut self.inode_mut(dir).data {
            children.insert(name.to_string(), ino);
        }
    }

    /// Drops an inode no name and no descriptor refers to any more.
    pub(super) fn release(&mut self, ino: Ino) {
        let i = self.inode(ino);
        if i.nlink == 0 && i.open == 0 {
            let i = self.inodes.remove(&ino).expect("live");
            if let Data::File(b) = &i.data {
                self.bytes -= b.as_slice().len() as u64;
            }
            self.entries -= 1;
        }
    }

    /// Room for one more entry (`ENOSPC` at the limit).
    fn room_for_entry(&self) -> Result<(), Errno> {
        if self.entries >= self.limits.entries {
            return Err(Errno::NOSPC);
        }
        Ok(())
    }

    /// Resizes a file's bytes to `len`, within the byte limit (`ENOSPC`).
    pub(super) fn resize(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let old = self.inode(ino).size();
        if len > old && len - old > self.limits.bytes - self.bytes {
            return Err(Errno::NOSPC);
        }
        // Zeros written to grow a file are paid like bytes copied (8 per fuel unit; a unit of
        // work is 8 fuel), so a loop of growing and shrinking costs what it does.
        self.work += len.saturating_sub(old) / 64;
        let Data::File(b) = &mut self.inode_mut(ino).data else { return Err(Errno::BADF) };
        b.to_mut().resize(len as usize, 0);
        self.inode_mut(ino).given = None;
        self.bytes = self.bytes - old + len;
        Ok(())
    }

    /// How many directories `dir` sits below its mount's root.
    fn depth(&mut self, mut dir: Ino) -> u64 {
        let mut depth = 0;
        loop {
            self.work += 1;
            match self.inode(dir).data {
                Data::Dir { parent, .. } if parent != dir => {
                    depth += 1;
                    dir = parent;
                }
                _ => return depth,
            }
        }
    }

    /// Directories below `dir` at the deepest (0 when it holds none), walked without
    /// recursion.
    fn height(&mut self, dir: Ino) -> u64 {
        let (mut deepest, mut work) = (0, 0);
        let mut stack = vec![(dir, 0u64)];
        while let Some((d, h)) = stack.pop() {
            deepest = deepest.max(h);
            if let Data::Dir { children, .. } = &self.inode(d).data {
                work += children.len() as u64;
                for &c in children.values() {
                    if self.inodes[&c].is_dir() {
                        stack.push((c, h + 1));
                    }
                }
            }
        }
        self.work += work;
        deepest
    }

    /// A new name in `dir` at its depth: `ENAMETOOLONG` past the name or depth limit, `ENOENT`
    /// in a removed directory.
    fn check_new_name(&mut self, dir: Ino, name: &str, height: u64) -> Result<(), Errno> {
        if name.len() > MAX_NAME_BYTES {
            return Err(Errno::NAMETOOLONG);
        }
        if self.inode(dir).nlink == 0 {
            return Err(Errno::NOENT);
        }
        if self.depth(dir) + height > self.limits.depth {
            return Err(Errno::NAMETOOLONG);
        }
        Ok(())
    }

    /// The directory a descriptor is open on (`EBADF` if none, `ENOTDIR` if not a directory).
    pub(super) fn dir_of(&self, fd: u32) -> Result<Ino, Errno> {
        let ino = self.fd(fd)?.ino().ok_or(Errno::NOTDIR)?;
        match self.inode(ino).is_dir() {
            true => Ok(ino),
            false => Err(Errno::NOTDIR),
        }
    }

    /// Resolves `path` below the directory `base`, following symbolic links in the middle and,
    /// if `follow`, at the end. Nothing above `base` is reachable: a `..` or a link that would
    /// leave it, and any absolute path, is `ENOTCAPABLE`.
    pub(super) fn walk(&mut self, base: Ino, path: &str, follow: bool) -> Result<Found, Errno> {
        if path.len() as u64 > self.limits.path_bytes {
            return Err(Errno::NAMETOOLONG);
        }
        if path.is_empty() {
            return Err(Errno::NOENT);
        }
        if path.contains('\0') {
            return Err(Errno::ILSEQ);
        }
        if path.starts_with('/') {
            return Err(Errno::NOTCAPABLE);
        }
        let mut slash = path.ends_with('/');
        // Names still to walk, last first.
        let mut todo: Vec<String> = Vec::new();
        push_names(&mut todo, path)?;
        let mut stack = vec![base];
        let mut links = 0u32;
        while let Some(name) = todo.pop() {
            self.work += 1;
            let here = *stack.last().expect("never empty");
            let last = todo.is_empty();
            if name == "." || name == ".." {
                if name == ".." {
                    if stack.len() == 1 {
                        return Err(Errno::NOTCAPABLE);
                    }
                    stack.pop();
                }
                if last {
                    let dir = *stack.last().expect("never empty");
                    return Ok(Found { dir, name: String::new(), ino: Some(dir), slash });
                }
                continue;
            }
            if name.len() > MAX_NAME_BYTES {
                return Err(Errno::NAMETOOLONG);
            }
            let Data::Dir { children, .. } = &self.inode(here).data else { return Err(Errno::NOTDIR) };
            let Some(&child) = children.get(&name) else {
                return match last {
                    true => Ok(Found { dir: here, name, ino: None, slash }),
                    false => Err(Errno::NOENT),
                };
            };
            match &self.inode(child).data {
                Data::Symlink(target) if !last || follow || slash => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    if target.starts_with('/') {
                        return Err(Errno::NOTCAPABLE);
                    }
                    if last && target.ends_with('/') {
                        slash = true;
                    }
                    let target = target.clone();
                    push_names(&mut todo, &target)?;
                }
                Data::Dir { .. } => {
                    if last {
                        return Ok(Found { dir: here, name, ino: Some(child), slash });
                    }
                    stack.push(child);
                }
                _ if last => return Ok(Found { dir: here, name, ino: Some(child), slash }),
                _ => return Err(Errno::NOTDIR),
            }
        }
        // Only a path of slashes gets here: it names `base`.
        Ok(Found { dir: base, name: String::new(), ino: Some(base), slash })
    }

    /// `path_open`: the new descriptor.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        dirfd: u32,
        follow: bool,
        path: &str,
        oflags: u16,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u16,
        now: u64,
    ) -> Result<u32, Errno> {
        let base = self.dir_of(dirfd)?;
        let inheritable = self.fd(dirfd)?.inheriting;
        if oflags & !(oflags::CREAT | oflags::DIRECTORY | oflags::EXCL | oflags::TRUNC) != 0
            || fdflags & !super::fdflags::ALL != 0
        {
            return Err(Errno::INVAL);
        }
        let creat = oflags & oflags::CREAT != 0;
        let excl = creat && oflags & oflags::EXCL != 0;
        let directory = oflags & oflags::DIRECTORY != 0;
        let write = rights_base & rights::FD_WRITE != 0;
        let f = self.walk(base, path, follow && !excl)?;
        let ino = match f.ino {
            Some(_) if excl => return Err(Errno::EXIST),
            Some(ino) => {
                let node = self.inode(ino);
                match &node.data {
                    Data::Symlink(_) if directory => return Err(Errno::NOTDIR),
                    Data::Symlink(_) => return Err(Errno::LOOP),
                    Data::Dir { .. } if write || oflags & oflags::TRUNC != 0 => return Err(Errno::ISDIR),
                    Data::File(_) if directory || f.slash => return Err(Errno::NOTDIR),
                    _ => {}
                }
                ino
            }
            None if !creat => return Err(Errno::NOENT),
            None if directory => return Err(Errno::INVAL),
            None if f.slash => return Err(Errno::ISDIR),
            None => {
                self.check_new_name(f.dir, &f.name, 0)?;
                self.room_for_entry()?;
                let mount = self.inode(f.dir).mount;
                let ino = self.add(mount, Data::File(Bytes::Owned(Vec::new())), now);
                self.child_insert(f.dir, &f.name, ino);
                self.touch_dir(f.dir, now);
                ino
            }
        };
        let fd = self.lowest_free_fd()?;
        let is_file = !self.inode(ino).is_dir();
        if is_file && oflags & oflags::TRUNC != 0 && self.inode(ino).size() > 0 {
            self.resize(ino, 0)?;
            let i = self.inode_mut(ino);
            i.mtim = now;
            i.ctim = now;
        }
        let mut base_rights = rights_base & inheritable;
        if is_file {
            base_rights &= rights::FILE;
        }
        let d = Fd::node(ino, base_rights, rights_inheriting & inheritable, fdflags);
        self.inode_mut(ino).open += 1;
        self.fds[fd as usize] = Some(d);
        Ok(fd)
    }

    pub(super) fn touch_dir(&mut self, dir: Ino, now: u64) {
        let d = self.inode_mut(dir);
        d.mtim = now;
        d.ctim = now;
    }

    /// `path_create_directory`.
    pub fn create_directory(&mut self, dirfd: u32, path: &str, now: u64) -> Result<(), Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, false)?;
        if f.ino.is_some() {
            return Err(Errno::EXIST);
        }
        self.check_new_name(f.dir, &f.name, 1)?;
        self.room_for_entry()?;
        let mount = self.inode(f.dir).mount;
        let ino = self.add(mount, Data::Dir { children: BTreeMap::new(), parent: f.dir }, now);
        self.child_insert(f.dir, &f.name, ino);
        self.touch_dir(f.dir, now);
        Ok(())
    }

    /// Removes the name `f.name` from `f.dir` and drops the inode if nothing else holds it.
    fn unlink_found(&mut self, dir: Ino, name: &str, ino: Ino, now: u64) {
        if let Data::Dir { children, .. } = &mut self.inode_mut(dir).data {
            children.remove(name);
        }
        self.touch_dir(dir, now);
        let i = self.inode_mut(ino);
        i.nlink -= 1;
        i.ctim = now;
        self.release(ino);
    }

    /// `path_remove_directory`.
    pub fn remove_directory(&mut self, dirfd: u32, path: &str, now: u64) -> Result<(), Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, false)?;
        let ino = f.ino.ok_or(Errno::NOENT)?;
        if f.name.is_empty() {
            return Err(Errno::INVAL);
        }
        match &self.inode(ino).data {
            Data::Dir { children, .. } if !children.is_empty() => Err(Errno::NOTEMPTY),
            Data::Dir { .. } => {
                self.unlink_found(f.dir, &f.name, ino, now);
                Ok(())
            }
            _ => Err(Errno::NOTDIR),
        }
    }

    /// `path_unlink_file`.
    pub fn unlink_file(&mut self, dirfd: u32, path: &str, now: u64) -> Result<(), Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, false)?;
        let ino = f.ino.ok_or(Errno::NOENT)?;
        if f.name.is_empty() || self.inode(ino).is_dir() {
            return Err(Errno::ISDIR);
        }
        if f.slash {
            return Err(Errno::NOTDIR);
        }
        self.unlink_found(f.dir, &f.name, ino, now);
        Ok(())
    }

    /// `path_symlink`: a link at `path` whose target is `target` (kept as given; following
    /// it is checked when it is followed).
    pub fn symlink(&mut self, target: &str, dirfd: u32, path: &str, now: u64) -> Result<(), Errno> {
        let base = self.dir_of(dirfd)?;
        if target.len() as u64 > self.limits.path_bytes {
            return Err(Errno::NAMETOOLONG);
        }
        if target.is_empty() {
            return Err(Errno::NOENT);
        }
        if target.contains('\0') {
            return Err(Errno::ILSEQ);
        }
        let f = self.walk(base, path, false)?;
        if f.ino.is_some() {
            return Err(Errno::EXIST);
        }
        if f.slash {
            return Err(Errno::NOENT);
        }
        self.check_new_name(f.dir, &f.name, 0)?;
        self.room_for_entry()?;
        let mount = self.inode(f.dir).mount;
        let ino = self.add(mount, Data::Symlink(target.to_string()), now);
        self.child_insert(f.dir, &f.name, ino);
        self.touch_dir(f.dir, now);
        Ok(())
    }

    /// `path_readlink`: the link's target.
    pub fn readlink(&mut self, dirfd: u32, path: &str) -> Result<String, Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, false)?;
        match &self.inode(f.ino.ok_or(Errno::NOENT)?).data {
            Data::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::INVAL),
        }
    }

    /// `path_link`: a second name for a file or link (directories: `EPERM`).
    pub fn link(&mut self, old_fd: u32, follow: bool, old_path: &str, new_fd: u32, new_path: &str, now: u64) -> Result<(), Errno> {
        let old_base = self.dir_of(old_fd)?;
        let new_base = self.dir_of(new_fd)?;
        let src = self.walk(old_base, old_path, follow)?;
        let ino = src.ino.ok_or(Errno::NOENT)?;
        if self.inode(ino).is_dir() {
            return Err(Errno::PERM);
        }
        if src.slash {
            return Err(Errno::NOTDIR);
        }
        let dst = self.walk(new_base, new_path, false)?;
        if dst.ino.is_some() {
            return Err(Errno::EXIST);
        }
        if dst.slash {
            return Err(Errno::NOENT);
        }
        if self.inode(dst.dir).mount != self.inode(ino).mount {
            return Err(Errno::XDEV);
        }
        self.check_new_name(dst.dir, &dst.name, 0)?;
        self.child_insert(dst.dir, &dst.name, ino);
        self.touch_dir(dst.dir, now);
        let i = self.inode_mut(ino);
        i.nlink += 1;
        i.ctim = now;
        Ok(())
    }

    /// `path_rename`, with POSIX `rename`'s rules for what it may replace.
    pub fn rename(&mut self, old_fd: u32, old_path: &str, new_fd: u32, new_path: &str, now: u64) -> Result<(), Errno> {
        let old_base = self.dir_of(old_fd)?;
        let new_base = self.dir_of(new_fd)?;
        let src = self.walk(old_base, old_path, false)?;
        let ino = src.ino.ok_or(Errno::NOENT)?;
        let dst = self.walk(new_base, new_path, false)?;
        if src.name.is_empty() {
            return Err(Errno::INVAL);
        }
        if dst.name.is_empty() {
            return Err(Errno::BUSY);
        }
        let is_dir = self.inode(ino).is_dir();
        if !is_dir && (src.slash || dst.slash) {
            return Err(Errno::NOTDIR);
        }
        if self.inode(dst.dir).mount != self.inode(ino).mount {
            return Err(Errno::XDEV);
        }
        if let Some(old) = dst.ino {
            if old == ino {
                return Ok(());
            }
            match (is_dir, &self.inode(old).data) {
                (true, Data::Dir { children, .. }) if !children.is_empty() => return Err(Errno::NOTEMPTY),
                (true, Data::Dir { .. }) => {}
                (true, _) => return Err(Errno::NOTDIR),
                (false, Data::Dir { .. }) => return Err(Errno::ISDIR),
                (false, _) => {}
            }
        }
        if is_dir {
            // A directory cannot move into itself or below it.
            let mut d = dst.dir;
            loop {
                self.work += 1;
                if d == ino {
                    return Err(Errno::INVAL);
                }
                match self.inode(d).data {
                    Data::Dir { parent, .. } if parent != d => d = parent,
                    _ => break,
                }
            }
        }
        let height = match is_dir {
            true => 1 + self.height(ino),
            false => 0,
        };
        if dst.dir != src.dir || height > 0 {
            self.check_new_name(dst.dir, &dst.name, height)?;
        } else if dst.name.len() > MAX_NAME_BYTES {
            return Err(Errno::NAMETOOLONG);
        }
        if let Some(old) = dst.ino {
            self.unlink_found(dst.dir, &dst.name, old, now);
        }
        if let Data::Dir { children, .. } = &mut self.inode_mut(src.dir).data {
            children.remove(&src.name);
        }
        self.child_insert(dst.dir, &dst.name, ino);
        if let Data::Dir { parent, .. } = &mut self.inode_mut(ino).data {
            *parent = dst.dir;
        }
        self.touch_dir(src.dir, now);
        self.touch_dir(dst.dir, now);
        self.inode_mut(ino).ctim = now;
        Ok(())
    }

    /// `path_filestat_get`.
    pub fn path_filestat(&mut self, dirfd: u32, follow: bool, path: &str) -> Result<super::Filestat, Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, follow)?;
        let ino = f.ino.ok_or(Errno::NOENT)?;
        if f.slash && !self.inode(ino).is_dir() {
            return Err(Errno::NOTDIR);
        }
        Ok(self.stat(ino))
    }

    /// `path_filestat_set_times`.
    pub fn path_set_times(&mut self, dirfd: u32, follow: bool, path: &str, atim: u64, mtim: u64, flags: u16, now: u64) -> Result<(), Errno> {
        let base = self.dir_of(dirfd)?;
        let f = self.walk(base, path, follow)?;
        let ino = f.ino.ok_or(Errno::NOENT)?;
        self.set_times(ino, atim, mtim, flags, now)
    }

    pub(super) fn set_times(&mut self, ino: Ino, atim: u64, mtim: u64, flags: u16, now: u64) -> Result<(), Errno> {
        use fstflags::*;
        if flags & !(ATIM | ATIM_NOW | MTIM | MTIM_NOW) != 0
            || flags & (ATIM | ATIM_NOW) == ATIM | ATIM_NOW
            || flags & (MTIM | MTIM_NOW) == MTIM | MTIM_NOW
        {
            return Err(Errno::INVAL);
        }
        let i = self.inode_mut(ino);
        if flags & ATIM != 0 {
            i.atim = atim;
        } else if flags & ATIM_NOW != 0 {
            i.atim = now;
        }
        if flags & MTIM != 0 {
            i.mtim = mtim;
        } else if flags & MTIM_NOW != 0 {
            i.mtim = now;
        }
        i.ctim = now;
        Ok(())
    }

    pub(super) fn stat(&self, ino: Ino) -> super::Filestat {
        let i = self.inode(ino);
        super::Filestat {
            dev: i.mount as u64 + 1,
            ino,
            filetype: i.filetype(),
            nlink: i.nlink,
            size: i.size(),
            atim: i.atim,
            mtim: i.mtim,
            ctim: i.ctim,
        }
    }
}

/// Pushes the names of `path` onto `todo` so that the first is popped first.
fn push_names(todo: &mut Vec<String>, path: &str) -> Result<(), Errno> {
    let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
    // A resolution's names are bounded by the path limit times the links it may follow.
    if todo.len() + names.len() > 1 << 20 {
        return Err(Errno::NAMETOOLONG);
    }
    todo.extend(names.into_iter().rev().map(String::from));
    Ok(())
}
