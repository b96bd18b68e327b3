//! The `phase` node: the OS-facing parts of a Phase appliance. `main.rs` only wires these.

pub mod engine;
