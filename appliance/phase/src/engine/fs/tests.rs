//! The filesystem's semantics, call by call, with the errnos WASI gives. The same calls made by
//! real guests (C through wasi-libc, Rust std::fs) are tested in tests/job_files.rs.

use std::collections::BTreeMap;
use std::sync::Arc;

use phase_core::job::files::{Change, Entry, Files, FsLimits, Kind, Mount};
use phase_core::sha256;

use super::*;

const ROOT: u32 = 3;
const RW: u64 = rights::ALL;
const RO: u64 = rights::ALL & !rights::FD_WRITE & !rights::FD_FILESTAT_SET_SIZE;

fn file(path: &str, bytes: &[u8]) -> Entry {
    Entry { path: path.into(), kind: Kind::File { sha256: sha256(bytes), size: bytes.len() as u64, executable: false } }
}

fn link(path: &str, target: &str) -> Entry {
    Entry { path: path.into(), kind: Kind::Symlink { target: target.into() } }
}

fn fs_with(entries: Vec<(Entry, &[u8])>, limits: FsLimits) -> Fs {
    let blobs: BTreeMap<_, Arc<[u8]>> =
        entries.iter().map(|(_, b)| (sha256(b), Arc::from(*b))).collect();
    let mount = Mount::new("/d".into(), entries.into_iter().map(|(e, _)| e).collect(), &limits).unwrap();
    Fs::new(Files::new(vec![mount], limits).unwrap(), 0, |d| blobs.get(d).cloned()).unwrap()
}

fn fs() -> Fs {
    fs_with(
        vec![
            (file("a.txt", b"hello"), b"hello"),
            (file("sub/b.txt", b"bee"), b"bee"),
            (link("to-a", "a.txt"), b""),
            (link("out", "../../etc/passwd"), b""),
            (link("loop", "loop"), b""),
            (link("dangling", "nothing"), b""),
        ],
        FsLimits::DEFAULT,
    )
}

fn open(fs: &mut Fs, path: &str, oflags: u16, rights: u64) -> Result<u32, Errno> {
    fs.open(ROOT, true, path, oflags, rights, rights, 0, 7)
}

fn read_all(fs: &mut Fs, fd: u32) -> Vec<u8> {
    fs.read(fd, 1 << 20, Some(0), 0).unwrap()
}

#[test]
fn the_preopen_is_named_and_the_tree_reads_as_given() {
    let mut fs = fs();
    assert_eq!(fs.prestat(ROOT), Ok("/d"));
    assert_eq!(fs.prestat(4), Err(Errno::BADF));
    assert_eq!(fs.prestat(1), Err(Errno::BADF));
    let fd = open(&mut fs, "sub/b.txt", 0, RO).unwrap();
    assert_eq!(fd, 4);
    assert_eq!(read_all(&mut fs, fd), b"bee");
    let fd = open(&mut fs, "to-a", 0, RO).unwrap();
    assert_eq!(fs.read(fd, 2, None, 0).unwrap(), b"he");
    assert_eq!(fs.read(fd, 10, None, 0).unwrap(), b"llo");
    assert_eq!(fs.read(fd, 10, None, 0).unwrap(), b"");
    // Inode numbers come from the tree's order: the root, a.txt, dangling, loop, out, sub, …
    assert_eq!(fs.path_filestat(ROOT, false, "a.txt").unwrap().ino, 2);
    assert_eq!(fs.path_filestat(ROOT, true, "to-a").unwrap().ino, 2);
    let st = fs.path_filestat(ROOT, false, "to-a").unwrap();
    assert_eq!((st.filetype, st.size), (filetype::SYMBOLIC_LINK, 5));
}

#[test]
fn nothing_outside_the_preopen_is_reachable() {
    let mut fs = fs();
    for path in ["../x", "sub/../../x", "/etc/passwd", "out", "sub/../out"] {
        assert_eq!(open(&mut fs, path, 0, RO), Err(Errno::NOTCAPABLE), "{path}");
    }
    // `..` inside the tree is fine; a directory opened below the root is a capability root of
    // its own, as in every WASI runtime.
    assert!(open(&mut fs, "sub/../a.txt", 0, RO).is_ok());
    let sub = open(&mut fs, "sub", oflags::DIRECTORY, RO).unwrap();
    assert_eq!(fs.open(sub, true, "../a.txt", 0, RO, RO, 0, 0), Err(Errno::NOTCAPABLE));
    assert_eq!(open(&mut fs, "loop", 0, RO), Err(Errno::LOOP));
    assert_eq!(open(&mut fs, "dangling", 0, RO), Err(Errno::NOENT));
    // Not following a link at the end: opening the link itself is ELOOP (ENOTDIR with O_DIRECTORY).
    assert_eq!(fs.open(ROOT, false, "to-a", 0, RO, RO, 0, 0), Err(Errno::LOOP));
    assert_eq!(fs.open(ROOT, false, "to-a", oflags::DIRECTORY, RO, RO, 0, 0), Err(Errno::NOTDIR));
}

#[test]
fn open_flags_give_the_errnos_posix_gives() {
    let mut fs = fs();
    assert_eq!(open(&mut fs, "a.txt", oflags::CREAT | oflags::EXCL, RW), Err(Errno::EXIST));
    // O_EXCL does not follow: a dangling link is there.
    assert_eq!(open(&mut fs, "dangling", oflags::CREAT | oflags::EXCL, RW), Err(Errno::EXIST));
    assert_eq!(open(&mut fs, "a.txt", oflags::DIRECTORY, RO), Err(Errno::NOTDIR));
    assert_eq!(open(&mut fs, "a.txt/", 0, RO), Err(Errno::NOTDIR));
    assert_eq!(open(&mut fs, "a.txt/x", 0, RO), Err(Errno::NOTDIR));
    assert_eq!(open(&mut fs, "sub", 0, RW), Err(Errno::ISDIR));
    assert_eq!(open(&mut fs, "missing", 0, RO), Err(Errno::NOENT));
    assert_eq!(open(&mut fs, "no/such", oflags::CREAT, RW), Err(Errno::NOENT));
    assert_eq!(open(&mut fs, "new/", oflags::CREAT, RW), Err(Errno::ISDIR));
    assert_eq!(open(&mut fs, "", 0, RO), Err(Errno::NOENT));
    assert_eq!(open(&mut fs, &"n".repeat(256), oflags::CREAT, RW), Err(Errno::NAMETOOLONG));
    assert_eq!(open(&mut fs, &"n/".repeat(600), 0, RO), Err(Errno::NAMETOOLONG));
    assert_eq!(fs.open(ROOT, true, "a.txt", 0x10, RO, RO, 0, 0), Err(Errno::INVAL));
    assert_eq!(fs.open(4, true, "a.txt", 0, RO, RO, 0, 0), Err(Errno::BADF));
    let f = open(&mut fs, "a.txt", 0, RO).unwrap();
    assert_eq!(fs.open(f, true, "x", 0, RO, RO, 0, 0), Err(Errno::NOTDIR));
    // Following a dangling link with O_CREAT creates its target.
    let fd = open(&mut fs, "dangling", oflags::CREAT, RW).unwrap();
    assert_eq!(fs.write(fd, b"made", None, 9), Ok(4));
    assert_eq!(fs.path_filestat(ROOT, false, "nothing").unwrap().size, 4);
    let fd = open(&mut fs, "a.txt", oflags::TRUNC, RW).unwrap();
    assert_eq!(read_all(&mut fs, fd), b"");
}

#[test]
fn reads_and_writes_honour_rights_positions_and_append() {
    let mut fs = fs();
    let ro = open(&mut fs, "a.txt", 0, RO).unwrap();
    assert_eq!(fs.write(ro, b"x", None, 0), Err(Errno::BADF));
    assert_eq!(fs.set_size(ro, 0, 0), Err(Errno::BADF));
    let rw = open(&mut fs, "a.txt", 0, RW).unwrap();
    assert_eq!(fs.seek(rw, 2, Whence::Set), Ok(2));
    assert_eq!(fs.write(rw, b"LL", None, 0), Ok(2));
    assert_eq!(fs.tell(rw), Ok(4));
    assert_eq!(fs.seek(rw, -1, Whence::End), Ok(4));
    assert_eq!(fs.seek(rw, -9, Whence::Cur), Err(Errno::INVAL));
    // Writing past the end fills the gap with zeros; pwrite leaves the position alone.
    assert_eq!(fs.write(rw, b"!", Some(7), 0), Ok(1));
    assert_eq!(fs.tell(rw), Ok(4));
    assert_eq!(read_all(&mut fs, ro), b"heLLo\0\0!");
    fs.set_flags(rw, fdflags::APPEND).unwrap();
    fs.seek(rw, 0, Whence::Set).unwrap();
    fs.write(rw, b"?", None, 0).unwrap();
    assert_eq!(read_all(&mut fs, ro), b"heLLo\0\0!?");
    assert_eq!(fs.seek(1, 0, Whence::Set), Err(Errno::SPIPE));
    let dir = open(&mut fs, "sub", oflags::DIRECTORY, RO).unwrap();
    assert_eq!(fs.read(dir, 1, None, 0), Err(Errno::BADF));
    assert_eq!(fs.seek(dir, 0, Whence::Set), Err(Errno::BADF));
    assert_eq!(fs.set_rights(rw, rights::FILE, 0), Ok(()));
    assert_eq!(fs.set_rights(ro, rights::FILE, 0), Err(Errno::NOTCAPABLE));
}

#[test]
fn directories_are_made_listed_and_removed_by_posix_rules() {
    let mut fs = fs();
    assert_eq!(fs.create_directory(ROOT, "sub", 0), Err(Errno::EXIST));
    assert_eq!(fs.create_directory(ROOT, "x/y", 0), Err(Errno::NOENT));
    fs.create_directory(ROOT, "new/", 5).unwrap();
    assert_eq!(fs.remove_directory(ROOT, "sub", 0), Err(Errno::NOTEMPTY));
    assert_eq!(fs.remove_directory(ROOT, "a.txt", 0), Err(Errno::NOTDIR));
    assert_eq!(fs.remove_directory(ROOT, ".", 0), Err(Errno::INVAL));
    assert_eq!(fs.unlink_file(ROOT, "sub", 0), Err(Errno::ISDIR));
    assert_eq!(fs.unlink_file(ROOT, "a.txt/", 0), Err(Errno::NOTDIR));
    let sub = open(&mut fs, "sub", oflags::DIRECTORY, RO).unwrap();
    let list = fs.readdir(sub, 0, 4096).unwrap();
    let names = dirent_names(&list);
    assert_eq!(names, [".", "..", "b.txt"]);
    // A cut buffer ends inside an entry; the cookie resumes after the last whole one.
    let cut = fs.readdir(ROOT, 0, 30).unwrap();
    assert_eq!(cut.len(), 30);
    let rest = fs.readdir(ROOT, 1, 4096).unwrap();
    assert_eq!(dirent_names(&rest)[0], "..");
    assert_eq!(dirent_names(&fs.readdir(ROOT, 0, 4096).unwrap()), [".", "..", "a.txt", "dangling", "loop", "new", "out", "sub", "to-a"]);
    // An open file outlives its last name.
    let f = open(&mut fs, "sub/b.txt", 0, RO).unwrap();
    fs.unlink_file(ROOT, "sub/b.txt", 0).unwrap();
    assert_eq!(read_all(&mut fs, f), b"bee");
    fs.remove_directory(ROOT, "sub", 0).unwrap();
    assert_eq!(fs.create_directory(sub, "x", 0), Err(Errno::NOENT));
    let entries = fs.entries;
    fs.close(f).unwrap();
    assert_eq!(fs.entries, entries - 1);
    assert_eq!(fs.close(f), Err(Errno::BADF));
}

fn dirent_names(mut buf: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while buf.len() >= 24 {
        let len = u32::from_le_bytes(buf[16..20].try_into().unwrap()) as usize;
        if buf.len() < 24 + len {
            break;
        }
        names.push(String::from_utf8(buf[24..24 + len].to_vec()).unwrap());
        buf = &buf[24 + len..];
    }
    names
}

#[test]
fn rename_link_and_symlink_follow_posix() {
    let mut fs = fs();
    fs.create_directory(ROOT, "d1", 0).unwrap();
    fs.create_directory(ROOT, "d1/inner", 0).unwrap();
    assert_eq!(fs.rename(ROOT, "d1", ROOT, "d1/inner/x", 0), Err(Errno::INVAL));
    assert_eq!(fs.rename(ROOT, "a.txt", ROOT, "sub", 0), Err(Errno::ISDIR));
    assert_eq!(fs.rename(ROOT, "d1", ROOT, "a.txt", 0), Err(Errno::NOTDIR));
    assert_eq!(fs.rename(ROOT, "d1", ROOT, "sub", 0), Err(Errno::NOTEMPTY));
    assert_eq!(fs.rename(ROOT, "nope", ROOT, "x", 0), Err(Errno::NOENT));
    assert_eq!(fs.rename(ROOT, "a.txt", ROOT, "a.txt", 0), Ok(()));
    fs.rename(ROOT, "a.txt", ROOT, "sub/b.txt", 0).unwrap();
    assert_eq!(fs.path_filestat(ROOT, false, "a.txt"), Err(Errno::NOENT));
    let f = open(&mut fs, "sub/b.txt", 0, RO).unwrap();
    assert_eq!(read_all(&mut fs, f), b"hello");
    fs.rename(ROOT, "d1/inner", ROOT, "moved", 0).unwrap();
    let f = open(&mut fs, "moved/../d1", oflags::DIRECTORY, RO).unwrap();
    assert!(f > 3);
    assert_eq!(fs.link(ROOT, false, "sub", ROOT, "l", 0), Err(Errno::PERM));
    fs.link(ROOT, false, "sub/b.txt", ROOT, "hard", 0).unwrap();
    assert_eq!(fs.path_filestat(ROOT, false, "hard").unwrap().nlink, 2);
    assert_eq!(fs.link(ROOT, false, "sub/b.txt", ROOT, "hard", 0), Err(Errno::EXIST));
    assert_eq!(fs.symlink("x", ROOT, "hard", 0), Err(Errno::EXIST));
    assert_eq!(fs.symlink("x", ROOT, "nolink/", 0), Err(Errno::NOENT));
    assert_eq!(fs.symlink("", ROOT, "e", 0), Err(Errno::NOENT));
    fs.symlink("/abs", ROOT, "abs", 0).unwrap();
    assert_eq!(fs.readlink(ROOT, "abs").as_deref(), Ok("/abs"));
    assert_eq!(open(&mut fs, "abs", 0, RO), Err(Errno::NOTCAPABLE));
    assert_eq!(fs.readlink(ROOT, "hard"), Err(Errno::INVAL));
}

#[test]
fn limits_end_in_the_errnos_of_a_full_disk() {
    let limits = FsLimits { bytes: 10, entries: 4, depth: 2, open_files: 6, ..FsLimits::DEFAULT };
    let mut fs = fs_with(vec![(file("a", b"12345"), b"12345")], limits);
    let f = open(&mut fs, "new", oflags::CREAT, RW).unwrap();
    // 5 bytes left: a write is cut to them, the next gets ENOSPC.
    assert_eq!(fs.write(f, b"abcdefgh", None, 0), Ok(5));
    assert_eq!(fs.write(f, b"i", None, 0), Err(Errno::NOSPC));
    assert_eq!(fs.set_size(f, 11, 0), Err(Errno::FBIG));
    assert_eq!(fs.set_size(f, 6, 0), Err(Errno::NOSPC));
    fs.set_size(f, 1, 0).unwrap();
    assert_eq!(fs.write(f, b"xyzw", Some(1), 0), Ok(4));
    fs.create_directory(ROOT, "d", 0).unwrap();
    // Entries: root, a, new, d = 4.
    assert_eq!(fs.create_directory(ROOT, "e", 0), Err(Errno::NOSPC));
    fs.unlink_file(ROOT, "a", 0).unwrap();
    fs.create_directory(ROOT, "d/e", 0).unwrap();
    fs.unlink_file(ROOT, "new", 0).unwrap();
    assert_eq!(fs.create_directory(ROOT, "d/e/f", 0), Err(Errno::NAMETOOLONG));
    // Open files: 3 stdio + root + f = 5 of 6.
    let g = open(&mut fs, "d", oflags::DIRECTORY, RO).unwrap();
    assert_eq!(open(&mut fs, "d", oflags::DIRECTORY, RO), Err(Errno::MFILE));
    fs.close(g).unwrap();
    assert!(open(&mut fs, "d", oflags::DIRECTORY, RO).is_ok());
}

#[test]
fn what_a_job_left_is_the_difference_from_what_it_was_given() {
    let mut fs = fs();
    assert!(fs.left().changes.is_empty());
    let f = open(&mut fs, "sub/new.txt", oflags::CREAT, RW).unwrap();
    fs.write(f, b"result", None, 0).unwrap();
    // Written over with what it held: no change of its own (its rename is one).
    let b = open(&mut fs, "to-a", 0, RW).unwrap();
    fs.write(b, b"hello", Some(0), 0).unwrap();
    fs.rename(ROOT, "a.txt", ROOT, "renamed.txt", 0).unwrap();
    fs.unlink_file(ROOT, "sub/b.txt", 0).unwrap();
    fs.unlink_file(ROOT, "loop", 0).unwrap();
    let left = fs.left();
    let made = |b: &[u8]| Some(Kind::File { sha256: sha256(b), size: b.len() as u64, executable: false });
    let expect = vec![
        Change { mount: 0, path: "a.txt".into(), kind: None },
        Change { mount: 0, path: "loop".into(), kind: None },
        Change { mount: 0, path: "renamed.txt".into(), kind: made(b"hello") },
        Change { mount: 0, path: "sub/b.txt".into(), kind: None },
        Change { mount: 0, path: "sub/new.txt".into(), kind: made(b"result") },
    ];
    assert_eq!(left.changes.changes(), expect.as_slice());
    assert_eq!(left.data.get(&sha256(b"result")).map(Vec::as_slice), Some(&b"result"[..]));
    assert_eq!(left.data.get(&sha256(b"hello")).map(Vec::as_slice), Some(&b"hello"[..]));
    // A removed directory stands for its contents.
    let mut fs = fs_with(vec![(file("sub/b.txt", b"bee"), b"bee")], FsLimits::DEFAULT);
    fs.unlink_file(ROOT, "sub/b.txt", 0).unwrap();
    fs.remove_directory(ROOT, "sub", 0).unwrap();
    assert_eq!(fs.left().changes.changes(), [Change { mount: 0, path: "sub".into(), kind: None }]);
}

#[test]
fn timestamps_are_the_jobs_clock() {
    let mut fs = fs();
    assert_eq!(fs.path_filestat(ROOT, false, "a.txt").unwrap().mtim, 0);
    let f = fs.open(ROOT, true, "n", oflags::CREAT, RW, RW, 0, 42).unwrap();
    assert_eq!(fs.fd_filestat(f).unwrap().ctim, 42);
    fs.write(f, b"x", None, 50).unwrap();
    assert_eq!(fs.fd_filestat(f).unwrap().mtim, 50);
    assert_eq!(fs.fd_set_times(f, 1, 2, fstflags::ATIM | fstflags::MTIM, 60), Ok(()));
    let st = fs.fd_filestat(f).unwrap();
    assert_eq!((st.atim, st.mtim, st.ctim), (1, 2, 60));
    assert_eq!(fs.fd_set_times(f, 1, 2, fstflags::ATIM | fstflags::ATIM_NOW, 60), Err(Errno::INVAL));
    assert_eq!(fs.path_filestat(ROOT, false, ".").unwrap().mtim, 42);
}

#[test]
fn renumber_and_close_move_descriptors_stdio_included() {
    let mut fs = fs();
    let f = open(&mut fs, "a.txt", 0, RW).unwrap();
    assert_eq!(fs.renumber(f, 9), Err(Errno::BADF));
    fs.renumber(f, 1).unwrap();
    assert_eq!(fs.opened(1), Ok(Opened::File));
    assert_eq!(fs.opened(f), Err(Errno::BADF));
    fs.close(0).unwrap();
    assert_eq!(open(&mut fs, "sub/b.txt", 0, RO), Ok(0));
    fs.close(ROOT).unwrap();
    assert_eq!(fs.prestat(ROOT), Err(Errno::BADF));
}
