//! Floors kept on disk (docs/netboot.md, "Floors"): per release (`<channel>/<arch>`), the
//! version floor and the time floor a node has reached, so that they survive a restart. A text
//! file of lines `<channel>/<arch> <version> <unix seconds>`, rewritten whole with
//! `durable::replace`: a crash leaves the old file or the new one, never a part.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use phase_core::boot::manifest::Floors;

/// Why floors could not be read, written or met.
#[derive(Debug)]
pub enum FloorError {
    Io { path: PathBuf, error: std::io::Error },
    /// A line that does not parse (floors are never silently lowered).
    Line { path: PathBuf, line: usize },
    /// A release below the floor recorded for it.
    Below { release: String, version: u64, floor: u64, path: PathBuf },
}

impl fmt::Display for FloorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FloorError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            FloorError::Line { path, line } => write!(f, "{} line {line}: expected `<channel>/<arch> <version> <unix seconds>`", path.display()),
            FloorError::Below { release, version, floor, path } => {
                write!(f, "{release}: version {version} is below the floor {floor} this node recorded in {}", path.display())
            }
        }
    }
}

impl std::error::Error for FloorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FloorError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

pub struct FloorFile {
    path: PathBuf,
    floors: BTreeMap<String, Floors>,
}

impl FloorFile {
    /// Reads the file at `path` (none yet: no floors). A line that does not parse is an error
    /// naming the file and the line: floors are never silently lowered.
    pub fn open(path: &Path) -> Result<FloorFile, FloorError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(FloorError::Io { path: path.to_path_buf(), error }),
        };
        let mut floors = BTreeMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = || FloorError::Line { path: path.to_path_buf(), line: i + 1 };
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
    pub fn raise(&mut self, release: &str, to: Floors) -> Result<(), FloorError> {
        let now = self.get(release);
        let next = Floors { version: now.version.max(to.version), time: now.time.max(to.time) };
        if next == now && self.floors.contains_key(release) {
            return Ok(());
        }
        self.floors.insert(release.to_string(), next);
        let text: String = self.floors.iter().map(|(r, f)| format!("{r} {} {}\n", f.version, f.time)).collect();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| FloorError::Io { path: dir.to_path_buf(), error })?;
        }
        crate::durable::replace(&self.path, text.as_bytes()).map_err(|error| FloorError::Io { path: self.path.clone(), error })
    }

    /// Holds a served store to the floors: a release below one this node served before is
    /// refused (someone swapping the store for an older signed release); the floors of what
    /// it serves are raised.
    pub fn hold(&mut self, store: &crate::boot::store::BootStore) -> Result<(), FloorError> {
        for e in &store.entries {
            let release = format!("{}/{}", e.channel(), e.arch().name());
            let have = self.get(&release);
            if e.manifest.body.check_floor(have.version).is_err() {
                return Err(FloorError::Below { release, version: e.manifest.body.version, floor: have.version, path: self.path.clone() });
            }
            self.raise(&release, have.raised(&e.manifest.body))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_persist_only_move_forward_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("phase-floors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(crate::data_dir::FLOORS_FILE);
        let mut f = FloorFile::open(&path).unwrap();
        assert_eq!(f.get("stable/x86_64"), Floors::default());
        f.raise("stable/x86_64", Floors { version: 5, time: 100 }).unwrap();
        f.raise("stable/x86_64", Floors { version: 3, time: 200 }).unwrap();
        let again = FloorFile::open(&path).unwrap();
        assert_eq!(again.get("stable/x86_64"), Floors { version: 5, time: 200 });
        std::fs::write(&path, "stable/x86_64 five 1\n").unwrap();
        assert!(FloorFile::open(&path).err().unwrap().to_string().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
