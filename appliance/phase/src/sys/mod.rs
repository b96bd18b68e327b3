//! The few raw syscalls std does not offer, and the allocator. Every `unsafe` block of the
//! binary lives under this module.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// Sets TCP_NODELAY on a listening socket; Linux copies it to every accepted connection.
/// Without it a response written in two parts waits for the client's delayed ACK (~40 ms).
pub fn set_nodelay_inherited(listener: &TcpListener) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd we own, a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

pub mod alloc;
