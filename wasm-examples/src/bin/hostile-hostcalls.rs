//! Hostile guest: makes the host work without executing wasm instructions of its own. Each
//! call is a few instructions for the guest but up to a MiB of work for the host: random bytes
//! (hashed), stdin copies, and writes of many iovecs that each carry nothing. The argument
//! names the call: random (default), read, iovecs. Must end at its fuel or deadline like a
//! plain loop.
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> i32;
    fn fd_read(fd: i32, iovs: *const [usize; 2], n: usize, read: *mut usize) -> i32;
    fn fd_write(fd: i32, iovs: *const [usize; 2], n: usize, written: *mut usize) -> i32;
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "random".into());
    let mut buf = vec![0u8; 1 << 20];
    let iovs = vec![[buf.as_mut_ptr() as usize, 0usize]; 1024];
    let mut n = 0usize;
    loop {
        let rc = unsafe {
            match mode.as_str() {
                "read" => fd_read(0, &[buf.as_mut_ptr() as usize, buf.len()], 1, &mut n),
                "iovecs" => fd_write(1, iovs.as_ptr(), iovs.len(), &mut n),
                _ => random_get(buf.as_mut_ptr(), buf.len()),
            }
        };
        std::hint::black_box((rc, n, &buf));
    }
}
