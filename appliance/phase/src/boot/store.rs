//! A boot store: signed manifests with their artifacts, laid out as
//! `<root>/<channel>/<arch>/{manifest.json, <kernel name>, <initramfs name>[, <drivers name>]}`.
//! `phase publish` writes one; the provider serves one; a netbooted node carries one in its initrd.
//! Opening a store re-checks every artifact against its manifest, so a store that opened
//! serves only what the publisher signed (a partly unpacked initrd cannot pass).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use phase_core::boot::manifest::{Arch, Manifest, Mismatch, MANIFEST_FILE};
use phase_core::Digest;

#[derive(Debug)]
pub enum StoreError {
    Io { path: PathBuf, reason: String },
    Manifest { path: PathBuf, reason: String },
    Layout { path: PathBuf, reason: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, reason } => write!(f, "boot store {}: {reason}", path.display()),
            StoreError::Manifest { path, reason } => write!(f, "boot store manifest {}: {reason}", path.display()),
            StoreError::Layout { path, reason } => write!(f, "boot store {}: {reason}", path.display()),
        }
    }
}
impl std::error::Error for StoreError {}


/// One channel/arch of a store: a manifest whose artifacts were checked.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    /// The manifest exactly as stored (served byte for byte), and its ETag (quoted SHA-256).
    pub manifest_json: String,
    pub manifest_etag: String,
    pub dir: PathBuf,
}

impl Entry {
    pub fn channel(&self) -> &str {
        &self.manifest.body.channel
    }
    pub fn arch(&self) -> Arch {
        self.manifest.body.arch
    }
    /// The artifact called `name` in this entry: its path, size and hash.
    pub fn artifact(&self, name: &str) -> Option<(PathBuf, u64, Digest)> {
        let b = &self.manifest.body;
        b.artifacts().map(|(_, a)| a).find(|a| a.name == name).map(|a| (self.dir.join(&a.name), a.size, a.sha256))
    }
}

#[derive(Debug, Clone, Default)]
pub struct BootStore {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// SHA-256 and length of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, Digest), StoreError> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(io_err(path))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, h.finalize().into()))
}

impl BootStore {
    /// Opens every `<channel>/<arch>/manifest.json` under `root`. With `trusted` keys, each
    /// manifest's signature must verify against one of them (not its time window: a store may
    /// keep serving a release its own clock calls old; clients judge time). Every artifact is
    /// re-hashed. Any bad entry fails the whole store, naming the file and the reason.
    pub fn open(root: &Path, trusted: Option<&[[u8; 32]]>) -> Result<BootStore, StoreError> {
        let mut entries = vec![];
        let mut channels: Vec<_> = std::fs::read_dir(root).map_err(io_err(root))?.flatten().map(|e| e.path()).collect();
        channels.sort();
        for channel_dir in channels.into_iter().filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))) {
            let mut arches: Vec<_> = std::fs::read_dir(&channel_dir).map_err(io_err(&channel_dir))?.flatten().map(|e| e.path()).collect();
            arches.sort();
            // Dot-directories are a release being installed or the one it replaced (`install`).
            let listed = |p: &PathBuf| p.join(MANIFEST_FILE).exists() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            for dir in arches.into_iter().filter(listed) {
                entries.push(Self::open_entry(&dir, trusted)?);
            }
        }
        Ok(BootStore { root: root.to_path_buf(), entries })
    }

    fn open_entry(dir: &Path, trusted: Option<&[[u8; 32]]>) -> Result<Entry, StoreError> {
        let (arch_name, channel_name) = (
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            dir.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        );
        Self::open_entry_as(dir, trusted, &arch_name, &channel_name)
    }

    /// Opens the entry in `dir`, which must hold a `channel_name`/`arch_name` release.
    fn open_entry_as(dir: &Path, trusted: Option<&[[u8; 32]]>, arch_name: &str, channel_name: &str) -> Result<Entry, StoreError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let bad = |reason: String| StoreError::Manifest { path: path.clone(), reason };
        let manifest = Manifest::from_json(text.trim()).map_err(|e| bad(e.to_string()))?;
        let b = &manifest.body;
        // The directory names are where clients look; they must agree with the signed fields.
        if arch_name != b.arch.name() || channel_name != b.channel {
            return Err(StoreError::Layout {
                path: dir.to_path_buf(),
                reason: format!("holds a {}/{} manifest; it belongs in {}/{}", b.channel, b.arch.name(), b.channel, b.arch.name()),
            });
        }
        if let Some(keys) = trusted {
            // Time and rollback are the fetching client's to judge; here: key and signature.
            manifest.verify(keys, b.created_at, b.arch, None).map_err(|e| bad(e.to_string()))?;
        }
        for (which, a) in b.artifacts() {
            let p = dir.join(&a.name);
            let (size, hash) = hash_file(&p)?;
            a.check(size, &hash).map_err(|m| match m {
                Mismatch::Size { expected, .. } => bad(format!("{which} {}: {size} bytes, the manifest says {expected}", p.display())),
                Mismatch::Hash { .. } => bad(format!("{which} {}: SHA-256 differs from the manifest", p.display())),
            })?;
        }
        let manifest_json = text.trim().to_string();
        let manifest_etag = format!("\"{}\"", phase_core::encoding::hex_encode(&phase_core::sha256(manifest_json.as_bytes())));
        Ok(Entry { manifest, manifest_json, manifest_etag, dir: dir.to_path_buf() })
    }

    pub fn find(&self, channel: &str, arch: Arch) -> Option<&Entry> {
        self.entries.iter().find(|e| e.channel() == channel && e.arch() == arch)
    }
}

/// Lays out one signed release under `root` (replacing an older one of the same channel and
/// arch) and returns its directory.
pub fn publish(root: &Path, release: &super::release::Release) -> Result<PathBuf, StoreError> {
    let manifest = &release.manifest;
    let b = &manifest.body;
    let mut files = vec![(&b.kernel, &release.kernel), (&b.initramfs, &release.initramfs)];
    match (&b.drivers, &release.drivers) {
        (Some(a), Some(bytes)) => files.push((a, bytes)),
        (None, None) => {}
        _ => return Err(StoreError::Manifest { path: root.to_path_buf(), reason: "the drivers archive and the manifest disagree on whether there is one".into() }),
    }
    for ((which, _), (_, bytes)) in b.artifacts().zip(&files) {
        manifest.check_artifact(which, bytes).map_err(|e| StoreError::Manifest { path: root.to_path_buf(), reason: e.to_string() })?;
    }
    let dir = root.join(&b.channel).join(b.arch.name());
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // Artifacts first, manifest last (atomically): a reader never sees a manifest whose files
    // are not all there.
    for (a, bytes) in files {
        let p = dir.join(&a.name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, release.manifest_json.clone() + "\n").map_err(io_err(&tmp))?;
    let path = dir.join(MANIFEST_FILE);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(dir)
}

/// Installs a verified release under `root` while the store is being served: written whole
/// into `<channel>/.incoming-<arch>`, then renamed into `<channel>/<arch>`; the release it
/// replaces moves to `<channel>/.previous-<arch>` (kept: the release to return to), so a
/// download in progress keeps reading the files it opened and no reader sees a mix. Returns
/// the new entry, its artifacts checked again as they were written.
pub fn install(root: &Path, release: &super::release::Release) -> Result<Entry, StoreError> {
    let b = &release.manifest.body;
    let channel_dir = root.join(&b.channel);
    let (incoming, live, previous) = (channel_dir.join(format!(".incoming-{}", b.arch.name())), channel_dir.join(b.arch.name()), channel_dir.join(format!(".previous-{}", b.arch.name())));
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming).map_err(io_err(&incoming))?;
    }
    // `publish` lays out <dir>/<channel>/<arch>: give it a scratch root whose arch dir is `incoming`.
    let scratch = channel_dir.join(format!(".incoming-{}-root", b.arch.name()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
    }
    let written = publish(&scratch, release)?;
    std::fs::rename(&written, &incoming).map_err(io_err(&incoming))?;
    std::fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
    if live.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(io_err(&previous))?;
        }
        std::fs::rename(&live, &previous).map_err(io_err(&previous))?;
    }
    std::fs::rename(&incoming, &live).map_err(io_err(&live))?;
    BootStore::open_entry(&live, None)
}

/// Opens the release kept in `<channel>/.previous-<arch>` (`install`), its signature checked
/// against `trusted` and every artifact hashed.
pub fn open_previous(root: &Path, channel: &str, arch: Arch, trusted: &[[u8; 32]]) -> Result<Entry, StoreError> {
    let dir = root.join(channel).join(format!(".previous-{}", arch.name()));
    BootStore::open_entry_as(&dir, Some(trusted), arch.name(), channel)
}

/// Serves the kept previous release of `channel`/`arch` again (the served one failed on a
/// node): the served one moves to `.failed-<arch>`, the previous one back in place.
pub fn restore_previous(root: &Path, channel: &str, arch: Arch, trusted: &[[u8; 32]]) -> Result<Entry, StoreError> {
    let previous = open_previous(root, channel, arch, trusted)?;
    let channel_dir = root.join(channel);
    let (live, failed) = (channel_dir.join(arch.name()), channel_dir.join(format!(".failed-{}", arch.name())));
    if failed.exists() {
        std::fs::remove_dir_all(&failed).map_err(io_err(&failed))?;
    }
    std::fs::rename(&live, &failed).map_err(io_err(&failed))?;
    std::fs::rename(&previous.dir, &live).map_err(io_err(&live))?;
    BootStore::open_entry(&live, Some(trusted))
}
