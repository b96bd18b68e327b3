//! Hostile guest: a job given no files reaches for a socket and a host file. Each call must
//! return an errno (EBADF = 8: there is no descriptor 3), never trap and never reach the host;
//! the guest prints what it got.
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn sock_accept(fd: i32, flags: i32, out_fd: *mut i32) -> i32;
    fn path_open(
        dirfd: i32,
        dirflags: i32,
        path: *const u8,
        path_len: usize,
        oflags: i32,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: i32,
        out_fd: *mut i32,
    ) -> i32;
}

fn main() {
    let mut fd = 0i32;
    let accept = unsafe { sock_accept(3, 0, &mut fd) };
    let path = b"/etc/passwd";
    let open = unsafe { path_open(3, 0, path.as_ptr(), path.len(), 0, 0, 0, 0, &mut fd) };
    let file = std::fs::read("/etc/passwd").map(|_| "read").unwrap_or("refused");
    println!("sock_accept={accept} path_open={open} fs::read={file}");
}
