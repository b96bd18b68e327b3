//! Booting: the publisher-signed manifest (`manifest`), the appliance's kernel command line
//! (`cmdline`), and the initramfs archive format (`cpio`).

pub mod cmdline;
pub mod cpio;
pub mod manifest;
