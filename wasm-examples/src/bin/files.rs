//! A program that works on files through Rust's `std::fs`, unchanged from how it would run on
//! a desktop: it is given a directory (`/work`, the first argument names it) holding `in/`, and
//! leaves its results in `out/`. It prints one line per step, errors by their kind and errno,
//! so a test can hold every step to what WASI preview 1 gives.
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::UNIX_EPOCH;

fn show<T: std::fmt::Debug>(step: &str, r: std::io::Result<T>) {
    match r {
        Ok(v) => println!("{step}: ok {v:?}"),
        Err(e) => println!("{step}: err {:?} {}", e.kind(), e.raw_os_error().unwrap_or(0)),
    }
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "/work".into());
    let p = |rel: &str| format!("{root}/{rel}");
    let data = fs::read_to_string(p("in/data.txt")).expect("in/data.txt is given");
    println!("lines: {}", data.lines().count());
    show("mkdir out", fs::create_dir(p("out")));
    show("write result", fs::write(p("out/result.txt"), data.to_uppercase()));
    let mut log = OpenOptions::new().create(true).append(true).open(p("out/log.txt")).unwrap();
    writeln!(log, "first").unwrap();
    writeln!(log, "second").unwrap();
    drop(log);
    show("log", fs::read_to_string(p("out/log.txt")));
    let mut names: Vec<String> = fs::read_dir(p("in")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    println!("in/ lists {names:?}");
    names.sort();
    println!("in/ sorted {names:?}");
    show("rename", fs::rename(p("in/old.txt"), p("out/moved.txt")));
    show("remove", fs::remove_file(p("in/delete-me.txt")));
    show("hard link", fs::hard_link(p("out/result.txt"), p("out/same.txt")));
    show("read link", fs::read_link(p("in/link")));
    show("through link", fs::read_to_string(p("in/link")));
    let meta = fs::metadata(p("out/result.txt")).unwrap();
    let mtime = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
    println!("result: {} bytes, dir {}, mtime {}.{:09}", meta.len(), meta.is_dir(), mtime.as_secs(), mtime.subsec_nanos());
    let mut f = fs::File::open(p("in/data.txt")).unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    let mut five = [0u8; 5];
    f.read_exact(&mut five).unwrap();
    println!("at 6: {:?}", String::from_utf8_lossy(&five));
    show("missing", fs::read(p("missing")));
    show("rmdir non-empty", fs::remove_dir(p("out")));
    show("escape by ..", fs::read(p("../etc/passwd")));
    show("host path", fs::read("/etc/passwd"));
    show("mkdir exists", fs::create_dir(p("in")));
    show("remove_dir_all", fs::create_dir_all(p("tmp/a/b")).and_then(|_| fs::write(p("tmp/a/b/f"), "x")).and_then(|_| fs::remove_dir_all(p("tmp"))));
    show("tmp gone", fs::metadata(p("tmp")).map(|m| m.is_dir()));
}
