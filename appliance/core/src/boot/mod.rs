//! Booting: the publisher-signed manifest (`manifest`), the appliance's kernel command line
//! (`cmdline`), rollouts and failure reports (`rollout`), the initramfs archive format (`cpio`), the kernel module index (`kmod`) and
//! the hardware report (`hardware`).

pub mod cmdline;
pub mod cpio;
pub mod hardware;
pub mod kmod;
pub mod manifest;
pub mod rollout;
