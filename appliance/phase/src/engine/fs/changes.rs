//! What a job left in its trees: the entries that differ from those it was given, as core's
//! `Changes` (which the receipt signs), and the bytes of the files they name.

use std::collections::BTreeMap;

use phase_core::job::files::{parent, path_order, Change, Changes, Kind};
use phase_core::{sha256, Digest};

use super::tree::{Data, Fs, Ino};

/// What a job left: the changes and the bytes of every file they name (core's type, which an
/// answer carries).
pub type Left = phase_core::job::answer::LeftFiles;

impl Fs {
    /// Compares each mount's tree now with the tree it was given. A removed entry is listed
    /// only where its parent is still a directory (a removed directory stands for what was in
    /// it). Walks without recursion; hashes only files written since they were given.
    pub fn left(&self) -> Left {
        let mut left = Left::default();
        let mut changes = Vec::new();
        for (m, given) in self.given.mounts().iter().enumerate() {
            let now = self.entries_of(self.mounts[m].1);
            let (mut a, mut b) = (given.entries().iter().peekable(), now.iter().peekable());
            let dirs_now: std::collections::BTreeSet<&str> =
                now.iter().filter(|(_, k, _)| *k == Kind::Dir).map(|(p, _, _)| p.as_str()).collect();
            let mount = m as u32;
            loop {
                match (a.peek(), b.peek()) {
                    (None, None) => break,
                    (Some(old), Some((path, kind, ino))) if old.path == *path => {
                        if old.kind != *kind {
                            self.keep_bytes(kind, *ino, &mut left.data);
                            changes.push(Change { mount, path: path.clone(), kind: Some(kind.clone()) });
                        }
                        a.next();
                        b.next();
                    }
                    (Some(old), next) if next.is_none_or(|(p, _, _)| path_order(&old.path, p).is_lt()) => {
                        if parent(&old.path).is_none_or(|p| dirs_now.contains(p)) {
                            changes.push(Change { mount, path: old.path.clone(), kind: None });
                        }
                        a.next();
                    }
                    (_, Some((path, kind, ino))) => {
                        self.keep_bytes(kind, *ino, &mut left.data);
                        changes.push(Change { mount, path: path.clone(), kind: Some(kind.clone()) });
                        b.next();
                    }
                    (_, None) => unreachable!("handled by the arm above"),
                }
            }
        }
        // Paths the guest made are valid names (checked as it made them), each once.
        left.changes = Changes::new(changes).expect("a tree's paths are valid and unique");
        left
    }

    fn keep_bytes(&self, kind: &Kind, ino: Ino, blobs: &mut BTreeMap<Digest, Vec<u8>>) {
        if let (Kind::File { sha256, .. }, Data::File(b)) = (kind, &self.inode(ino).data) {
            blobs.entry(*sha256).or_insert_with(|| b.as_slice().to_vec());
        }
    }

    /// Every entry below `root` in canonical order, files with their digests.
    fn entries_of(&self, root: Ino) -> Vec<(String, Kind, Ino)> {
        let mut out = Vec::new();
        // Children are pushed in reverse so they are popped in byte order: a pre-order walk
        // in byte order of names is canonical (component) order.
        let mut stack: Vec<(String, Ino)> = Vec::new();
        let push_children = |stack: &mut Vec<(String, Ino)>, prefix: &str, dir: Ino| {
            if let Data::Dir { children, .. } = &self.inode(dir).data {
                for (name, &ino) in children.iter().rev() {
                    let path = match prefix {
                        "" => name.clone(),
                        p => format!("{p}/{name}"),
                    };
                    stack.push((path, ino));
                }
            }
        };
        push_children(&mut stack, "", root);
        while let Some((path, ino)) = stack.pop() {
            let i = self.inode(ino);
            let kind = match &i.data {
                Data::Dir { .. } => {
                    push_children(&mut stack, &path, ino);
                    Kind::Dir
                }
                Data::File(b) => {
                    let bytes = b.as_slice();
                    let digest = i.given.unwrap_or_else(|| sha256(bytes));
                    Kind::File { sha256: digest, size: bytes.len() as u64, executable: i.executable }
                }
                Data::Symlink(t) => Kind::Symlink { target: t.clone() },
            };
            out.push((path, kind, ino));
        }
        out
    }
}
