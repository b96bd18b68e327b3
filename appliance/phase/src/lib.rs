//! The `phase` node: the OS-facing parts of a Phase appliance. `main.rs` only wires these.

#[macro_use]
pub mod log;
pub mod api;
pub mod boot;
pub mod cache;
pub mod cli;
pub mod durable;
pub mod engine;
pub mod http;
pub mod identity;
pub mod image;
pub mod init;
pub mod memory;
pub mod modules;
pub mod node;
pub mod notify;
pub mod p2p;
pub mod pxe;
pub mod queue;
pub mod remote;
pub mod service;
pub mod sys;
pub mod workers;

#[global_allocator]
static ALLOCATOR: sys::alloc::CachingAlloc = sys::alloc::CachingAlloc::new();
