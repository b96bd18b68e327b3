//! Jobs with files, through the engine: a real program (Rust `std::fs`, unchanged) reads what
//! it was given and leaves its results; what it left is the same on every run; a job without
//! files cannot reach any.

mod common;

use std::sync::Arc;

use phase::engine::{Blobs, Engine, Execution, Job, DEFAULT_MAX_MODULE_BYTES};
use phase_core::job::files::{Change, Entry, Files, FsLimits, Kind, Mount};
use phase_core::job::receipt::{Outcome, TrapKind};
use phase_core::job::JobSpec;
use phase_core::{sha256, Limits};

fn file(path: &str, bytes: &[u8], blobs: &mut Blobs) -> Entry {
    blobs.insert(sha256(bytes), Arc::from(bytes));
    Entry { path: path.into(), kind: Kind::File { sha256: sha256(bytes), size: bytes.len() as u64, executable: false } }
}

fn work_tree(limits: FsLimits) -> (Files, Blobs) {
    let mut blobs = Blobs::new();
    let entries = vec![
        file("in/data.txt", b"alpha\nbravo\ncharlie\n", &mut blobs),
        file("in/old.txt", b"old", &mut blobs),
        file("in/delete-me.txt", b"gone", &mut blobs),
        Entry { path: "in/link".into(), kind: Kind::Symlink { target: "data.txt".into() } },
    ];
    let mount = Mount::new("/work".into(), entries, &limits).unwrap();
    (Files::new(vec![mount], limits).unwrap(), blobs)
}

fn run_files(engine: &Engine, guest: &str, args: &[&str], files: Files, blobs: Blobs) -> Execution {
    let module = engine.compile(&common::guest(guest)).expect("guest compiles");
    let spec = JobSpec::new(module.sha256, sha256(b""), args.iter().map(|s| s.to_string()).collect(), vec![], Limits::DEFAULT)
        .unwrap()
        .with_files(files);
    engine.run(&Job { spec, module, input: Arc::from(&b""[..]), blobs, progress: Default::default() })
}

#[test]
fn a_std_fs_program_reads_its_files_and_leaves_its_results() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let (files, blobs) = work_tree(FsLimits::DEFAULT);
    let ex = run_files(&engine, "files", &["/work"], files.clone(), blobs.clone());
    let out = String::from_utf8_lossy(&ex.stdout);
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}\n{out}\n{}", ex.detail, String::from_utf8_lossy(&ex.stderr));
    let lines: Vec<&str> = out.lines().collect();
    let expect_prefix = [
        "lines: 3",
        "mkdir out: ok ()",
        "write result: ok ()",
        "log: ok \"first\\nsecond\\n\"",
        "in/ lists [\"data.txt\", \"delete-me.txt\", \"link\", \"old.txt\"]",
        "in/ sorted [\"data.txt\", \"delete-me.txt\", \"link\", \"old.txt\"]",
        "rename: ok ()",
        "remove: ok ()",
        "hard link: ok ()",
        "read link: ok \"data.txt\"",
        "through link: ok \"alpha\\nbravo\\ncharlie\\n\"",
    ];
    assert_eq!(&lines[..expect_prefix.len()], expect_prefix, "{out}");
    let rest = &lines[expect_prefix.len()..];
    assert!(rest[0].starts_with("result: 20 bytes, dir false, mtime 1704067200."), "{out}");
    assert_eq!(
        &rest[1..],
        [
            "at 6: \"bravo\"",
            "missing: err NotFound 44",
            // (The kinds are the guest's std's names for the errnos.)
            "rmdir non-empty: err Uncategorized 55",
            // `..` above the preopen is ENOTCAPABLE; a path no preopen holds is ENOENT from
            // wasi-libc, which never asks the host.
            "escape by ..: err Uncategorized 76",
            "host path: err NotFound 44",
            "mkdir exists: err AlreadyExists 20",
            "remove_dir_all: ok ()",
            "tmp gone: err NotFound 44",
        ],
        "{out}"
    );
    // What it left: the changes, in canonical order, with the bytes of every file named.
    let left = ex.left.as_ref().expect("a job with files says what it left");
    let made = |b: &[u8]| Some(Kind::File { sha256: sha256(b), size: b.len() as u64, executable: false });
    let expect = vec![
        Change { mount: 0, path: "in/delete-me.txt".into(), kind: None },
        Change { mount: 0, path: "in/old.txt".into(), kind: None },
        Change { mount: 0, path: "out".into(), kind: Some(Kind::Dir) },
        Change { mount: 0, path: "out/log.txt".into(), kind: made(b"first\nsecond\n") },
        Change { mount: 0, path: "out/moved.txt".into(), kind: made(b"old") },
        Change { mount: 0, path: "out/result.txt".into(), kind: made(b"ALPHA\nBRAVO\nCHARLIE\n") },
        Change { mount: 0, path: "out/same.txt".into(), kind: made(b"ALPHA\nBRAVO\nCHARLIE\n") },
    ];
    assert_eq!(left.changes.changes(), expect.as_slice());
    assert_eq!(left.data.get(&sha256(b"old")).map(Vec::as_slice), Some(&b"old"[..]));
    assert_eq!(left.data.len(), 3);
    // The same job again, on a fresh engine: the same output, fuel and files, byte for byte.
    let again = run_files(&Engine::new(DEFAULT_MAX_MODULE_BYTES), "files", &["/work"], files, blobs);
    assert_eq!((again.stdout, again.fuel_used, again.left.unwrap().changes.digest()), (ex.stdout, ex.fuel_used, left.changes.digest()));
}

#[test]
fn a_job_that_fills_its_limits_gets_the_errno_of_a_full_disk() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    // Room for what it is given and 30 bytes more: writing out/result.txt (20 bytes) fits,
    // the hard link costs nothing, the log (13 bytes) does not fit whole.
    let (files, blobs) = work_tree(FsLimits { bytes: 27 + 30, ..FsLimits::DEFAULT });
    let ex = run_files(&engine, "files", &["/work"], files, blobs);
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::Unreachable), "{:?}", ex.detail);
    let err = String::from_utf8_lossy(&ex.stderr);
    assert!(err.contains("StorageFull") || err.contains("No space left"), "{err}");
}

#[test]
fn a_job_missing_a_file_it_names_is_not_run() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let (files, mut blobs) = work_tree(FsLimits::DEFAULT);
    blobs.remove(&sha256(b"old"));
    let ex = run_files(&engine, "files", &["/work"], files, blobs);
    assert!(ex.host_failure.as_deref().is_some_and(|f| f.contains(&phase_core::encoding::hex_encode(&sha256(b"old")))), "{:?}", ex.host_failure);
}

/// A fresh host directory for the `files` guest: `in/data.txt` and `in/old.txt`.
fn host_work_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("phase-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/data.txt"), "alpha\nbravo\ncharlie\n").unwrap();
    std::fs::write(dir.join("in/old.txt"), "old").unwrap();
    dir
}

/// `phase run` of the `files` guest on `/work`, given `dir` there if any.
fn run_files_guest(dir: Option<&std::path::Path>, extra: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phase"));
    cmd.arg("run").arg(common::guest_path("files")).args(["--arg", "/work", "--input", "/dev/null"]);
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(format!("{}::/work", dir.display()));
    }
    cmd.args(extra).output().unwrap()
}

#[test]
fn phase_run_dir_gives_a_host_directory_and_writes_back_what_the_job_left() {
    let dir = host_work_dir("run-dir");
    std::fs::write(dir.join("in/delete-me.txt"), "gone").unwrap();
    std::os::unix::fs::symlink("data.txt", dir.join("in/link")).unwrap();
    let run = |extra: &[&str]| run_files_guest(Some(&dir), extra);
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("lines: 3\n"), "{stdout}");
    // The host directory is what a live mount would have left.
    assert_eq!(std::fs::read_to_string(dir.join("out/result.txt")).unwrap(), "ALPHA\nBRAVO\nCHARLIE\n");
    assert_eq!(std::fs::read_to_string(dir.join("out/moved.txt")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(dir.join("out/log.txt")).unwrap(), "first\nsecond\n");
    assert!(!dir.join("in/old.txt").exists() && !dir.join("in/delete-me.txt").exists() && !dir.join("tmp").exists());
    assert_eq!(std::fs::read_link(dir.join("in/link")).unwrap(), std::path::Path::new("data.txt"));
    // Run again on what it left: out/ exists now, so the program's mkdir fails, and the
    // answer (JSON) carries the files it changed, verified against its v2 receipt.
    std::fs::write(dir.join("in/old.txt"), "old").unwrap();
    std::fs::write(dir.join("in/delete-me.txt"), "gone").unwrap();
    let out = run(&["--json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{json}");
    let answer = phase_core::job::answer::Answer::parse(json.trim()).unwrap();
    assert!(answer.receipt.body.files.is_some());
    let paths: Vec<&str> = answer.files.as_ref().unwrap().changes.changes().iter().map(|c| c.path.as_str()).collect();
    // out/moved.txt and out/result.txt were written again with the bytes they held: no change.
    assert_eq!(paths, ["in/delete-me.txt", "in/old.txt", "out/log.txt"]);
    assert_eq!(std::fs::read_to_string(dir.join("out/log.txt")).unwrap(), "first\nsecond\nfirst\nsecond\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn phase_run_dir_takes_the_file_limits_of_the_job_and_signs_them() {
    let dir = host_work_dir("run-limits");
    let run = |extra: &[&str], with_dir: bool| run_files_guest(with_dir.then_some(dir.as_path()), extra);
    let text = |o: &std::process::Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // Limits asked are the job's: in its receipt, and met as a full disk by the guest (the
    // files given are 23 bytes; result.txt needs 20 more).
    let out = run(&["--json", "--files-bytes", "30", "--files-entries", "50", "--files-open-files", "20"], true);
    assert!(out.status.success(), "{}", text(&out));
    let answer = phase_core::job::answer::Answer::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let limits = answer.receipt.body.files.unwrap().limits;
    assert_eq!((limits.bytes, limits.entries, limits.open_files, limits.depth), (30, 50, 20, FsLimits::DEFAULT.depth));
    assert!(answer.stderr.windows(11).any(|w| w == b"StorageFull") || String::from_utf8_lossy(&answer.stderr).contains("No space left"), "{}", String::from_utf8_lossy(&answer.stderr));
    // What the trapped job left is written back as a live mount would have it: the 7 bytes
    // of result.txt that fitted (a short write, then ENOSPC), and an empty log.
    assert_eq!(std::fs::read_to_string(dir.join("out/result.txt")).unwrap(), "ALPHA\nB");
    assert_eq!(std::fs::read_to_string(dir.join("out/log.txt")).unwrap(), "");
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    // A tree larger than the limit asked is refused before the job runs; so are limits above
    // the maxima, below the minima, and limits without a tree.
    for (extra, with_dir, why) in [
        (&["--files-bytes", "10"][..], true, "bytes of files"),
        (&["--files-open-files", "3"][..], true, "open_files"),
        (&["--files-entries", "99999999"][..], true, "entries"),
        (&["--files-depth", "3"][..], false, "give a --dir"),
    ] {
        let out = run(extra, with_dir);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(text(&out).contains(why), "{extra:?}: {}", text(&out));
    }
    assert!(dir.join("in/old.txt").exists() && !dir.join("out").exists(), "a refused job leaves the directory as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tree wasm-examples/c/wasi-conformance.c expects in its mount "/t".
fn conformance_tree() -> (Files, Blobs) {
    let mut blobs = Blobs::new();
    let link = |path: &str, target: &str| Entry { path: path.into(), kind: Kind::Symlink { target: target.into() } };
    let entries = vec![
        file("f", b"hello", &mut blobs),
        file("d/g", b"g", &mut blobs),
        link("ln", "f"),
        link("dangling", "none"),
        link("loop", "loop"),
        link("abs", "/etc/passwd"),
    ];
    let mount = Mount::new("/t".into(), entries, &FsLimits::DEFAULT).unwrap();
    (Files::new(vec![mount], FsLimits::DEFAULT).unwrap(), blobs)
}

#[test]
fn every_preview1_file_call_gives_the_errno_the_spec_gives_to_a_c_program() {
    let (files, blobs) = conformance_tree();
    let ex = run_files(&Engine::new(DEFAULT_MAX_MODULE_BYTES), "wasi-conformance", &[], files, blobs);
    let out = String::from_utf8_lossy(&ex.stdout);
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}\n{out}", ex.detail);
    assert!(out.lines().filter(|l| l.starts_with("ok ")).count() >= 90, "{out}");
    assert!(out.ends_with("0 failures\n"), "{out}");
}

#[test]
fn a_hostile_guest_leaves_its_tree_by_no_path_and_meets_each_limit_as_an_errno() {
    let limits = FsLimits { bytes: 3 << 20, entries: 500, ..FsLimits::DEFAULT };
    let mount = Mount::new("/w".into(), vec![], &limits).unwrap();
    let files = Files::new(vec![mount], limits).unwrap();
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let ex = run_files(&engine, "hostile-files", &[], files.clone(), Blobs::new());
    let out = String::from_utf8_lossy(&ex.stdout).to_string();
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}\n{out}\n{}", ex.detail, String::from_utf8_lossy(&ex.stderr));
    assert_eq!(
        out,
        // `..` above the preopen and links followed out of it: ENOTCAPABLE (76); a link through
        // a directory that does not exist ends there (ENOENT, 44) before its `..` is walked.
        // Entries: 500 less the root and the three links; bytes: 3 MiB; depth 64; 128
        // descriptors less stdio and the preopen.
        "up 76, links made (0, 0, 0), read through [76, 76, 44]\n\
         entries: 496 made, then errno 51\n\
         bytes: 3145728 written, then errno 51\n\
         depth: 64 made, then errno 37\n\
         descriptors: 124 opened, then errno 33\n"
    );
    // The same errnos at the same fuel on every run.
    let again = run_files(&engine, "hostile-files", &[], files, Blobs::new());
    assert_eq!((again.stdout, again.fuel_used), (ex.stdout, ex.fuel_used));
}

#[test]
fn phase_receipt_verify_checks_an_answer_with_files_against_its_request() {
    use phase_core::job::answer::Answer;
    use phase_core::job::receipt::Receipt;
    use phase_core::job::request::{JobRequest, PeerFiles, PeerModule, RequestedFiles};
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let (files, blobs) = work_tree(FsLimits::DEFAULT);
    let ex = run_files(&engine, "files", &["/work"], files.clone(), blobs.clone());
    let module = common::guest("files");
    let spec = JobSpec::new(sha256(&module), sha256(b""), vec!["/work".into()], vec![], Limits::DEFAULT).unwrap().with_files(files.clone());
    let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32]));
    let receipt = Receipt::sign(ex.receipt_body(&spec), &key);
    let answer = Answer::new(receipt, ex.stdout.clone(), ex.stderr.clone(), None).with_files(ex.left.clone().unwrap());
    let data = blobs.iter().map(|(d, b)| (*d, b.to_vec())).collect();
    let request = |files: RequestedFiles| {
        let req = JobRequest::parse(format!("{{\"module_sha256\":\"{}\",\"args\":[\"/work\"]}}", phase_core::encoding::hex_encode(&sha256(&module))).as_bytes()).unwrap();
        JobRequest { files: Some(files), ..req }.to_peer_json(PeerModule::Hash(&sha256(&module)), PeerFiles::Inline)
    };
    let dir = std::env::temp_dir().join(format!("phase-verify-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("answer.json"), answer.to_json()).unwrap();
    let verify = |req: String| {
        std::fs::write(dir.join("request.json"), req).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_phase"))
            .args(["receipt", "verify", "--answer"])
            .arg(dir.join("answer.json"))
            .arg("--request")
            .arg(dir.join("request.json"))
            .output()
            .unwrap()
    };
    let ok = verify(request(RequestedFiles::from_files(&files, data)));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // The same answer against a request whose files differ by one entry is refused.
    let (other, _) = work_tree(FsLimits { depth: 9, ..FsLimits::DEFAULT });
    let bad = verify(request(RequestedFiles::from_files(&other, Default::default())));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("file limits"), "{}", String::from_utf8_lossy(&bad.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file job on a node whose tree names `data.txt` by hash (uploaded before), the rest inline;
/// 1 MiB of files at most, so that a node at the smallest memory budget admits it.
fn job_naming_a_blob(data: &[u8]) -> Vec<u8> {
    use phase_core::encoding::{base64_encode, hex_encode};
    format!(
        r#"{{"module":"{}","input":"","args":["/work"],"files":{{"mounts":[{{"guest":"/work","entries":[{{"path":"in/data.txt","sha256":"{}","size":{}}},{{"path":"in/old.txt","data":"{}"}}]}}],"limits":{{"bytes":1048576}}}}}}"#,
        base64_encode(&common::guest("files")),
        hex_encode(&sha256(data)),
        data.len(),
        base64_encode(b"old"),
    )
    .into_bytes()
}

#[test]
fn a_blob_uploaded_once_streams_to_the_data_dir_and_jobs_name_it_by_hash() {
    use common::{json_string, json_u64, Node, Raw};
    use phase_core::encoding::hex_encode;
    let dir = std::env::temp_dir().join(format!("phase-blobs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.to_str().unwrap();
    let uploads = || std::fs::read_dir(dir.join("modules")).map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".upload-")).count()).unwrap_or(0);
    let path = |bytes: &[u8]| format!("/v1/blobs/{}", hex_encode(&sha256(bytes)));
    // The smallest memory budget (its pool ~22 MiB) and a 48 MiB disk cap: a 40 MB blob is
    // streamed to disk, never held in memory.
    let args = ["--data-dir", data_dir, "--memory-budget", "33554432", "--max-disk-module-bytes", "50331648"];
    let node = Node::start(&args);
    let big: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    let put = node.request("PUT", &path(&big), &big);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(json_string(&put.text(), "sha256"), hex_encode(&sha256(&big)));
    assert_eq!(json_u64(&put.text(), "size"), Some(big.len() as u64));
    let stored = dir.join("modules").join(format!("{}.blob", hex_encode(&sha256(&big))));
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), big.len() as u64);
    // Held already: answered from its name, the body not read (so not stored twice).
    let again = node.request("PUT", &path(&big), &big);
    assert_eq!((again.status, json_u64(&again.text(), "size")), (200, Some(big.len() as u64)), "{}", again.text());
    // Bytes that are not what they are named are not kept; a name that is not a SHA-256 is
    // refused from the head.
    let wrong = node.request("PUT", &path(b"something else"), b"alpha");
    assert_eq!((wrong.status, json_string(&wrong.text(), "error")), (422, "invalid_files".into()), "{}", wrong.text());
    assert_eq!(node.request("PUT", "/v1/blobs/ABC", b"x").status, 400);
    assert_eq!(node.request("GET", &path(&big), b"").status, 405);
    // Beyond the disk cap: refused from its head, before a byte is stored.
    let over_bytes = vec![7u8; 11_000_000];
    let over = node.request("PUT", &path(&over_bytes), &over_bytes);
    assert_eq!((over.status, json_string(&over.text(), "error")), (507, "storage".into()), "{}", over.text());
    // An upload cut halfway leaves no file and gives its bytes under the cap back: then a
    // blob that needs them fits.
    let eight = vec![9u8; 8_000_000];
    let mut cut = Raw::connect(node.addr);
    cut.send(format!("PUT {} HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n", path(&eight)).as_bytes()).unwrap();
    cut.send(&eight[..4_000_000]).unwrap();
    drop(cut);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while uploads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(uploads(), 0, "a cut upload leaves no file");
    let data = b"alpha\nbravo\ncharlie\n";
    assert_eq!(node.request("PUT", &path(data), data).status, 201);
    let r = node.request("PUT", &path(&eight), &eight);
    assert_eq!(r.status, 201, "the cut upload's bytes were given back: {}", r.text());
    // A job names the blob by hash; it reads it as any file.
    let r = node.request("POST", "/v1/jobs", &job_naming_a_blob(data));
    assert_eq!(r.status, 200, "{}", r.text());
    let stdout = phase_core::encoding::base64_decode(&json_string(&r.text(), "stdout")).unwrap();
    assert!(String::from_utf8_lossy(&stdout).starts_with("lines: 3\n"), "{}", String::from_utf8_lossy(&stdout));
    // Kept across a restart, re-hashed when read: a blob changed on disk is not found, and
    // goes, so that it can be sent again.
    drop(node);
    let node = Node::start(&args);
    assert_eq!(node.request("POST", "/v1/jobs", &job_naming_a_blob(data)).status, 200);
    std::fs::write(dir.join("modules").join(format!("{}.blob", hex_encode(&sha256(data)))), b"alpha\nbravo\nCHARLIE\n").unwrap();
    let r = node.request("POST", "/v1/jobs", &job_naming_a_blob(data));
    assert_eq!((r.status, json_string(&r.text(), "error")), (404, "file_not_found".into()), "{}", r.text());
    assert_eq!(node.request("PUT", &path(data), data).status, 201, "sent again");
    assert_eq!(node.request("POST", "/v1/jobs", &job_naming_a_blob(data)).status, 200);
    // A file only in RAM (sent inline with a job) is not kept: uploading it stores it on disk.
    let inline = b"delta\necho\n";
    let body = String::from_utf8(job_naming_a_blob(data)).unwrap().replace(
        &format!(r#""sha256":"{}","size":{}"#, hex_encode(&sha256(data)), data.len()),
        &format!(r#""data":"{}""#, phase_core::encoding::base64_encode(inline)),
    );
    assert_eq!(node.request("POST", "/v1/jobs", body.as_bytes()).status, 200);
    assert_eq!(node.request("PUT", &path(inline), inline).status, 201, "kept only now");
    assert!(dir.join("modules").join(format!("{}.blob", hex_encode(&sha256(inline)))).exists());
    drop(node);
    // Without a data dir a blob is held in RAM, within the RAM share for modules and files.
    let node = Node::start(&["--memory-budget", "33554432"]);
    assert_eq!(node.request("PUT", &path(data), data).status, 201);
    assert_eq!(node.request("POST", "/v1/jobs", &job_naming_a_blob(data)).status, 200);
    let r = node.request("PUT", &path(&big), &big);
    assert_eq!((r.status, json_string(&r.text(), "error")), (413, "body_too_large".into()), "{}", r.text());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn phase_run_takes_a_module_larger_than_any_node_cap() {
    // hello, with a custom section of 70 MB after it: beyond the 64 MiB a node ever takes.
    let mut wasm = common::guest("hello");
    let payload = 70_000_000u32;
    wasm.push(0);
    let mut n = payload + 2;
    while n >= 0x80 {
        wasm.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    wasm.push(n as u8);
    wasm.extend_from_slice(b"\x01x");
    wasm.resize(wasm.len() + payload as usize, 0);
    let path = std::env::temp_dir().join(format!("phase-big-module-{}.wasm", std::process::id()));
    std::fs::write(&path, &wasm).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phase")).arg("run").arg(&path).args(["--input", "/dev/null"]).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Not a module: named as such before anything is compiled.
    let bad = std::env::temp_dir().join(format!("phase-bad-module-{}.wasm", std::process::id()));
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x0a\x05").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phase")).arg("run").arg(&bad).args(["--input", "/dev/null"]).output().unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid wasm module"), "{}", String::from_utf8_lossy(&out.stderr));
}
