//! Jobs as they travel and are proven: what a job is and its id (`spec`), the request a client
//! or a peer sends (`request`), the answer and its verification (`answer`), the receipt a node
//! signs (`receipt`), the error codes (`error`), and what peers exchange about jobs (`frame`,
//! `load`).

pub mod answer;
pub mod error;
pub mod files;
pub mod frame;
pub mod load;
pub mod receipt;
pub mod request;
mod spec;

pub use spec::*;
