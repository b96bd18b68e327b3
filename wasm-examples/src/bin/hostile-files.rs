//! Hostile guest on its files: walks `..` and links out of its tree, then fills every limit
//! (entries, bytes, depth, descriptors) as fast as it can. Each attempt must end in an errno,
//! the same on every run, never a trap or a host path; it prints what it got.
use std::fs;
use std::io::Write;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn path_symlink(old: *const u8, old_len: usize, fd: i32, new: *const u8, new_len: usize) -> i32;
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn main() {
    // Out by `..`, by absolute paths, by links made to point out.
    let up = fs::read_dir("/w/../../../..").map(|_| 0).unwrap_or_else(errno);
    let link = |target: &str, name: &str| unsafe { path_symlink(target.as_ptr(), target.len(), 3, name.as_ptr(), name.len()) };
    let made = (link("../../../etc/passwd", "out1"), link("/etc/passwd", "out2"), link("a/../..", "out3"));
    let through = ["/w/out1", "/w/out2", "/w/out3/x"].map(|p| fs::read(p).map(|_| 0).unwrap_or_else(errno));
    println!("up {up}, links made {made:?}, read through {through:?}");
    // Entries until the limit.
    let mut n = 0;
    let stop = loop {
        match fs::create_dir(format!("/w/e{n}")) {
            Ok(()) => n += 1,
            Err(e) => break errno(e),
        }
    };
    println!("entries: {n} made, then errno {stop}");
    for i in 0..n {
        fs::remove_dir(format!("/w/e{i}")).unwrap();
    }
    // Bytes until the limit, 1 MiB at a time.
    let mut f = fs::File::create("/w/big").unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0u64;
    let stop = loop {
        match f.write(&chunk) {
            Ok(0) => break 0,
            Ok(k) => written += k as u64,
            Err(e) => break errno(e),
        }
    };
    drop(f);
    fs::remove_file("/w/big").unwrap();
    println!("bytes: {written} written, then errno {stop}");
    // Depth until the limit.
    let mut path = String::from("/w");
    let mut depth = 0;
    let stop = loop {
        path.push_str("/d");
        match fs::create_dir(&path) {
            Ok(()) => depth += 1,
            Err(e) => break errno(e),
        }
    };
    println!("depth: {depth} made, then errno {stop}");
    // Descriptors until the limit.
    let mut open = Vec::new();
    let stop = loop {
        match fs::File::open("/w") {
            Ok(f) => open.push(f),
            Err(e) => break errno(e),
        }
    };
    println!("descriptors: {} opened, then errno {stop}", open.len());
}
