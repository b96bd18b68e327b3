//! Shared test fixtures: the guest programs built by scripts/build-wasm-examples.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bytes of guest `name`; fails loudly if the guests were not built.
pub fn guest(name: &str) -> Vec<u8> {
    let path = repo_root().join("build/wasm").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; build the guests first with scripts/build-wasm-examples", path.display())
    })
}

pub fn guest_path(name: &str) -> PathBuf {
    let path = repo_root().join("build/wasm").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} missing: run scripts/build-wasm-examples", path.display());
    path
}
