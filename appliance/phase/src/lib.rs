//! The `phase` node: the OS-facing parts of a Phase appliance. `main.rs` only wires these.
//!
//! Arrows point down: `cli` → `node` → {`api` → `jobs`, `boot`, `p2p`, `pxe`, `http`} →
//! `engine` → `phase_core`; `init` (PID 1) starts a node through `node`'s configuration.

#[macro_use]
pub mod log;
pub mod api;
pub mod boot;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod data_dir;
pub mod durable;
pub mod engine;
pub mod faults;
pub mod http;
pub mod identity;
pub mod image;
pub mod init;
pub mod jobs;
pub mod memory;
pub mod modules;
pub mod node;
pub mod notify;
pub mod p2p;
pub mod pxe;
pub mod sys;
pub mod update;
pub mod workers;

#[global_allocator]
static ALLOCATOR: sys::alloc::CachingAlloc = sys::alloc::CachingAlloc::new();
