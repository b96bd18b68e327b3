//! What the node reads from the LAN besides jobs: HTTP heads (`http`), and the DHCP and TFTP
//! packets of machines that boot from it (`dhcp`, `tftp`).

pub mod dhcp;
pub mod http;
pub mod tftp;
