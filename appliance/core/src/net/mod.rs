//! What the node reads from the LAN besides jobs: HTTP heads (`http`), and the DHCP and TFTP
//! packets of machines that boot from it (`dhcp`, `tftp`), and how peers are named and what
//! they announce (`peer`).

pub mod dhcp;
pub mod http;
pub mod peer;
pub mod tftp;
