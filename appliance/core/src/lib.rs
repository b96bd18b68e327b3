//! Phase core: the formats Phase nodes and clients exchange, their canonical signing bytes,
//! and their verification. `no_std` + `alloc`, no I/O, no `unsafe`.
//!
//! Like a wire layer: a value that parsed is valid and can be emitted again unchanged.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod encoding;
pub mod job;
pub mod net;

pub use job::receipt::{Outcome, Receipt, ReceiptError, TrapKind};
pub use job::{JobSpec, LimitError, Limits};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
