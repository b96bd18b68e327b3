//! A node's data dir (`--data-dir`, on an appliance `/data/node` or `/run/phase/node`): what it
//! keeps across restarts, and where. The layout has this one home:
//!
//! ```text
//! node.key         the node's Ed25519 seed (identity.rs)
//! modules/<hex>.wasm   modules uploaded with PUT /v1/modules (modules.rs)
//! results/<id>.json    answers of asynchronous jobs (jobs/queue.rs)
//! floors           version and time floors per release (boot/floors.rs)
//! release/<channel>/<arch>/…   the last update committed here: what a cold boot starts
//!                  (a boot store, init/update.rs)
//! release/attempt  present while a cold boot tries that release, until it is ready
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

/// The node key's file name (also what a boot stick's state carries over into RAM).
pub const KEY_FILE: &str = "node.key";
/// The floors file's name.
pub const FLOORS_FILE: &str = "floors";

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn key(&self) -> PathBuf {
        self.0.join(KEY_FILE)
    }

    pub fn modules(&self) -> PathBuf {
        self.0.join("modules")
    }

    pub fn results(&self) -> PathBuf {
        self.0.join("results")
    }

    pub fn floors(&self) -> PathBuf {
        self.0.join(FLOORS_FILE)
    }

    /// The store of the last committed update (a boot stick's second slot).
    pub fn release(&self) -> PathBuf {
        self.0.join("release")
    }
}
