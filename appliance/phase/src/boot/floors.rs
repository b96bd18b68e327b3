//! Floors kept on disk (docs/netboot.md, "Floors"): per release (`<channel>/<arch>`), the
//! version floor and the time floor a node has reached, so that they survive a restart. A text
//! file of lines `<channel>/<arch> <version> <unix seconds>`, rewritten whole with
//! `durable::replace`: a crash leaves the old file or the new one, never a part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use phase_core::boot::manifest::Floors;

/// The file's name in a node's data dir.
pub const FILE: &str = "floors";

pub struct FloorFile {
    path: PathBuf,
    floors: BTreeMap<String, Floors>,
}

impl FloorFile {
    /// Reads the file at `path` (none yet: no floors). A line that does not parse is an error
    /// naming the file and the line: floors are never silently lowered.
    pub fn open(path: &Path) -> Result<FloorFile, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut floors = BTreeMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = || format!("{} line {}: expected `<channel>/<arch> <version> <unix seconds>`", path.display(), i + 1);
            let mut w = line.split_whitespace();
            let (Some(release), Some(v), Some(t), None) = (w.next(), w.next(), w.next(), w.next()) else { return Err(bad()) };
            let (version, time) = (v.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?);
            floors.insert(release.to_string(), Floors { version, time });
        }
        Ok(FloorFile { path: path.to_path_buf(), floors })
    }

    /// The floors recorded for `release` (`<channel>/<arch>`).
    pub fn get(&self, release: &str) -> Floors {
        self.floors.get(release).copied().unwrap_or_default()
    }

    /// Raises the floors of `release` to at least `to` and writes the file if they moved.
    pub fn raise(&mut self, release: &str, to: Floors) -> Result<(), String> {
        let now = self.get(release);
        let next = Floors { version: now.version.max(to.version), time: now.time.max(to.time) };
        if next == now && self.floors.contains_key(release) {
            return Ok(());
        }
        self.floors.insert(release.to_string(), next);
        let text: String = self.floors.iter().map(|(r, f)| format!("{r} {} {}\n", f.version, f.time)).collect();
        crate::durable::replace(&self.path, text.as_bytes()).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_persist_only_move_forward_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("phase-floors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let mut f = FloorFile::open(&path).unwrap();
        assert_eq!(f.get("stable/x86_64"), Floors::default());
        f.raise("stable/x86_64", Floors { version: 5, time: 100 }).unwrap();
        f.raise("stable/x86_64", Floors { version: 3, time: 200 }).unwrap();
        let again = FloorFile::open(&path).unwrap();
        assert_eq!(again.get("stable/x86_64"), Floors { version: 5, time: 200 });
        std::fs::write(&path, "stable/x86_64 five 1\n").unwrap();
        assert!(FloorFile::open(&path).err().unwrap().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
