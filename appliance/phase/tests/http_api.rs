//! The HTTP API of a real `phase node` process, over loopback.

mod common;

use common::*;
use phase_core::encoding::{base64_decode, base64_encode, hex_encode};
use phase_core::job::receipt::{Outcome, Receipt, TrapKind};
use phase_core::sha256;

include!("../examples/common/shapes.rs");

fn job_body(module: &[u8], input: &[u8], extra: &str) -> Vec<u8> {
    format!(
        "{{\"module\":\"{}\",\"input\":\"{}\"{extra}}}",
        base64_encode(module),
        base64_encode(input)
    )
    .into_bytes()
}

fn metric(node: &Node, line_prefix: &str) -> u64 {
    let text = node.request("GET", "/metrics", b"").text();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix} in\n{text}"))
}

#[test]
fn hello_job_returns_output_and_a_receipt_that_binds_everything() {
    let node = Node::start(&[]);
    let status = node.request("GET", "/v1/status", b"");
    assert_eq!(status.status, 200);
    let node_key = json_string(&status.text(), "node_key");
    assert_eq!(node.request("GET", "/health", b"").status, 200);

    let module = guest("hello");
    let resp = node.request("POST", "/v1/jobs", &job_body(&module, b"Hello, World", ""));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = resp.text();
    let stdout = base64_decode(&json_string(&text, "stdout")).unwrap();
    assert_eq!(stdout, b"dlroW ,olleH");
    assert_eq!(json_u64(&text, "exit_code"), Some(0));

    let receipt = Receipt::from_json(&receipt_of(&text)).unwrap();
    receipt.verify_signature().unwrap();
    assert_eq!(hex_encode(&receipt.node_key), node_key);
    assert_eq!(receipt.body.module_sha256, sha256(&module));
    assert_eq!(receipt.body.input_sha256, sha256(b"Hello, World"));
    assert_eq!(receipt.body.stdout_sha256, sha256(&stdout));
    assert_eq!(receipt.body.outcome, Outcome::Exited(0));
    assert_eq!(hex_encode(&receipt.body.job_id), json_string(&text, "job_id"));
    assert_eq!(metric(&node, "phase_jobs_total{outcome=\"exited\"}"), 1);
}

#[test]
fn uploaded_module_runs_by_hash_with_the_same_result() {
    let node = Node::start(&[]);
    let module = guest("sha256sum");
    let put = node.request("PUT", "/v1/modules", &module);
    assert_eq!(put.status, 201, "{}", put.text());
    let hash = json_string(&put.text(), "module_sha256");
    assert_eq!(hash, hex_encode(&sha256(&module)));
    assert_eq!(node.request("PUT", "/v1/modules", &module).status, 200, "second upload is not new");

    let by_hash = format!("{{\"module_sha256\":\"{hash}\",\"input\":\"{}\"}}", base64_encode(b"abc"));
    let a = node.request("POST", "/v1/jobs", by_hash.as_bytes());
    let b = node.request("POST", "/v1/jobs", &job_body(&module, b"abc", ""));
    assert_eq!((a.status, b.status), (200, 200));
    for f in ["job_id", "stdout"] {
        assert_eq!(json_string(&a.text(), f), json_string(&b.text(), f));
    }
    assert_eq!(json_u64(&a.text(), "fuel_used"), json_u64(&b.text(), "fuel_used"));
    let out = base64_decode(&json_string(&a.text(), "stdout")).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with(&hex_encode(&sha256(b"abc"))));

    let missing = format!("{{\"module_sha256\":\"{}\"}}", "ab".repeat(32));
    let r = node.request("POST", "/v1/jobs", missing.as_bytes());
    assert_eq!((r.status, json_string(&r.text(), "error").as_str()), (404, "module_not_found"));
}

#[test]
fn idempotency_key_returns_the_first_result_without_running_again() {
    let node = Node::start(&[]);
    let module = guest("hello");
    let body = job_body(&module, b"once", ",\"idempotency_key\":\"order-42\"");
    let first = node.request("POST", "/v1/jobs", &body);
    let second = node.request("POST", "/v1/jobs", &body);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(receipt_of(&first.text()), receipt_of(&second.text()), "same signed receipt");
    assert!(matches!(json_field(&second.text(), "replayed"), miniserde::json::Value::Bool(true)));
    assert_eq!(metric(&node, "phase_jobs_total{outcome=\"exited\"}"), 1, "ran once");

    let other = job_body(&module, b"twice", ",\"idempotency_key\":\"order-42\"");
    let conflict = node.request("POST", "/v1/jobs", &other);
    assert_eq!(conflict.status, 409);
    assert_eq!(json_string(&conflict.text(), "error"), "idempotency_conflict");
}

#[test]
fn concurrent_requests_with_one_key_run_the_job_once() {
    let node = Node::start(&["--max-concurrent", "4"]);
    let body = job_body(&guest("cpu-bench"), b"3000000", ",\"idempotency_key\":\"k\"");
    let addr = node.addr;
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &body))
        })
        .collect();
    let receipts: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            receipt_of(&r.text())
        })
        .collect();
    assert!(receipts.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(metric(&node, "phase_jobs_total{outcome=\"exited\"}"), 1);
}

#[test]
fn bad_requests_get_json_errors_and_the_node_keeps_serving() {
    let node = Node::start(&["--max-module-bytes", "200000"]);
    let hello = guest("hello");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_request"),
        (b"[1,2]".to_vec(), 400, "invalid_request"),
        (job_body(&hello, b"", ",\"limit\":{\"fuel\":5}"), 400, "invalid_request"),
        (job_body(&hello, b"", ",\"limits\":{\"fuell\":5}"), 400, "invalid_request"),
        (job_body(&hello, b"", ",\"limits\":{\"fuel\":-5}"), 400, "invalid_request"),
        (job_body(&hello, b"", ",\"args\":\"notalist\""), 400, "invalid_request"),
        (b"{\"module\":\"@@@@\"}".to_vec(), 400, "invalid_request"),
        (b"{\"input\":\"\"}".to_vec(), 400, "invalid_request"),
        (b"{\"module_sha256\":\"zz\"}".to_vec(), 400, "invalid_request"),
        (vec![0xff, 0xfe], 400, "invalid_request"),
        (job_body(b"\0asm\x01\0\0\0\x05", b"", ""), 422, "invalid_module"),
        (job_body(&hello, b"", ",\"limits\":{\"fuel\":0}"), 422, "limit_out_of_range"),
        (job_body(&hello, b"", ",\"limits\":{\"deadline_ms\":999999999}"), 422, "limit_out_of_range"),
        (job_body(&hello, b"", ",\"env\":[\"NOEQUALS\"]"), 422, "invalid_args_env"),
        (job_body(&hello, b"", ",\"idempotency_key\":\"\""), 400, "invalid_request"),
        (job_body(&vec![0u8; 300_000], b"", ""), 413, "module_too_large"),
    ];
    for (body, status, code) in cases {
        let r = node.request("POST", "/v1/jobs", &body);
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(json_string(&r.text(), "error"), code, "{}", r.text());
        assert!(!json_string(&r.text(), "message").is_empty());
    }
    // Type errors name the field.
    for (extra, says) in [
        (",\"limits\":{\"fuel\":-5}", "limits.fuel must be an unsigned integer"),
        (",\"args\":\"notalist\"", "args must be an array of strings"),
        (",\"env\":[1]", "env must be an array of strings"),
        (",\"limits\":7", "limits must be an object"),
        (",\"idempotency_key\":3", "idempotency_key must be a string"),
    ] {
        let r = node.request("POST", "/v1/jobs", &job_body(&hello, b"", extra));
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(json_string(&r.text(), "message"), says);
    }
    // null is "not given".
    let r = node.request("POST", "/v1/jobs", &job_body(&hello, b"n", ",\"args\":null,\"limits\":null"));
    assert_eq!(r.status, 200, "{}", r.text());
    let huge = vec![b'x'; 2_000_000];
    assert_eq!(node.request("PUT", "/v1/modules", &huge).status, 413);
    assert_eq!(node.request("GET", "/v1/jobs", b"").status, 405);
    assert_eq!(node.request("GET", "/nope", b"").status, 404);
    let ok = node.request("POST", "/v1/jobs", &job_body(&hello, b"ok", ""));
    assert_eq!(ok.status, 200, "still serving: {}", ok.text());
    assert!(metric(&node, "phase_jobs_rejected_total{reason=\"invalid\"}") >= 10);
}

#[test]
fn hostile_guests_end_with_named_traps_in_signed_receipts() {
    let node = Node::start(&[]);
    let cases = [
        ("hostile-loop", ",\"limits\":{\"fuel\":50000000}", TrapKind::OutOfFuel),
        ("hostile-loop", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":300}", TrapKind::Deadline),
        ("hostile-memory", ",\"limits\":{\"memory_bytes\":8388608}", TrapKind::MemoryLimit),
        ("hostile-output", ",\"limits\":{\"output_bytes\":4096}", TrapKind::OutputLimit),
    ];
    for (guest_name, extra, want) in cases {
        let r = node.request("POST", "/v1/jobs", &job_body(&guest(guest_name), b"", extra));
        assert_eq!(r.status, 200, "{guest_name}: {}", r.text());
        assert_eq!(json_string(&r.text(), "trap"), want.name(), "{guest_name}");
        let receipt = Receipt::from_json(&receipt_of(&r.text())).unwrap();
        receipt.verify_signature().unwrap();
        assert_eq!(receipt.body.outcome, Outcome::Trapped(want));
    }
    let r = node.request("POST", "/v1/jobs", &job_body(&guest("hostile-recursion"), b"", ""));
    assert!(["stack_overflow", "memory_out_of_bounds"].contains(&json_string(&r.text(), "trap").as_str()));
    assert_eq!(node.request("GET", "/health", b"").status, 200);
    assert_eq!(metric(&node, "phase_jobs_total{outcome=\"trapped\"}"), 5);
}

#[test]
fn a_full_node_answers_429_and_recovers() {
    let node = Node::start(&["--max-concurrent", "1"]);
    let addr = node.addr;
    let slow = job_body(&guest("hostile-loop"), b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":1500}");
    let busy_job = std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &slow));
    // Wait until the slow job holds the only slot.
    for _ in 0..100 {
        if metric(&node, "phase_jobs_in_flight") == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = node.request("POST", "/v1/jobs", &job_body(&guest("hello"), b"x", ""));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(node.request("GET", "/v1/status", b"").status, 200, "status answers while busy");
    assert_eq!(json_string(&busy_job.join().unwrap().text(), "trap"), "deadline");
    let r = node.request("POST", "/v1/jobs", &job_body(&guest("hello"), b"x", ""));
    assert_eq!(r.status, 200);
}

#[test]
fn data_dir_keeps_the_key_and_modules_across_restarts() {
    let dir = std::env::temp_dir().join(format!("phase-http-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let module = guest("hello");
    let (key, hash) = {
        let node = Node::start(&["--data-dir", d]);
        let put = node.request("PUT", "/v1/modules", &module);
        (json_string(&node.request("GET", "/v1/status", b"").text(), "node_key"), json_string(&put.text(), "module_sha256"))
    };
    let node = Node::start(&["--data-dir", d]);
    assert_eq!(json_string(&node.request("GET", "/v1/status", b"").text(), "node_key"), key);
    let r = node.request("POST", "/v1/jobs", format!("{{\"module_sha256\":\"{hash}\",\"input\":\"YWI=\"}}").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(base64_decode(&json_string(&r.text(), "stdout")).unwrap(), b"ba");
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_module_store_refuses_uploads_and_inline_modules_never_touch_disk() {
    let dir = std::env::temp_dir().join(format!("phase-http-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = Node::start(&["--data-dir", dir.to_str().unwrap(), "--max-disk-module-bytes", "100000"]);
    // Inline modules are remembered in RAM only.
    assert_eq!(node.request("POST", "/v1/jobs", &job_body(&guest("hello"), b"x", "")).status, 200);
    assert_eq!(std::fs::read_dir(dir.join("modules")).unwrap().count(), 0);
    // Already held in RAM (200), and now persisted.
    assert_eq!(node.request("PUT", "/v1/modules", &guest("hello")).status, 200);
    assert_eq!(std::fs::read_dir(dir.join("modules")).unwrap().count(), 1);
    let full = node.request("PUT", "/v1/modules", &guest("sha256sum"));
    assert_eq!(full.status, 507, "{}", full.text());
    assert_eq!(json_string(&full.text(), "error"), "storage");
    assert!(json_string(&full.text(), "message").contains("module store is full"));
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_module_upload_streams_to_the_data_dir_and_holds_no_memory_while_it_arrives() {
    let dir = std::env::temp_dir().join(format!("phase-http-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = guest("sha256sum");
    let half = module.len() / 2;
    let head = format!("PUT /v1/modules HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", module.len());
    let free = |node: &Node| metric(node, "phase_memory_free_bytes ");
    let uploads = || std::fs::read_dir(dir.join("modules")).map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".upload-")).count()).unwrap_or(0);
    // Half a module sent, the rest not yet: held in memory without a data dir (paid as it
    // arrives), on disk with one.
    for data_dir in [false, true] {
        let node = if data_dir { Node::start(&["--data-dir", dir.to_str().unwrap()]) } else { Node::start(&[]) };
        let before = free(&node);
        let mut raw = Raw::connect(node.addr);
        raw.send(head.as_bytes()).unwrap();
        raw.send(&module[..half]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let during = free(&node);
        if data_dir {
            assert_eq!(during, before, "a streamed upload holds no memory while it arrives");
            assert_eq!(uploads(), 1);
        } else {
            assert!(before - during >= half as u64, "in memory: {before} -> {during}");
        }
        raw.send(&module[half..]).unwrap();
        assert_eq!(raw.one_response(), Some(201));
        assert_eq!(free(&node), before, "everything given back");
        let by_hash = format!("{{\"module_sha256\":\"{}\",\"input\":\"{}\"}}", hex_encode(&sha256(&module)), base64_encode(b"abc"));
        assert_eq!(node.request("POST", "/v1/jobs", by_hash.as_bytes()).status, 200);
    }
    assert_eq!(uploads(), 0);
    assert!(dir.join("modules").join(format!("{}.wasm", hex_encode(&sha256(&module)))).exists());
    // Kept across a restart; an invalid module streamed leaves nothing.
    let node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
    let by_hash = format!("{{\"module_sha256\":\"{}\",\"input\":\"{}\"}}", hex_encode(&sha256(&module)), base64_encode(b"abc"));
    assert_eq!(node.request("POST", "/v1/jobs", by_hash.as_bytes()).status, 200);
    let bad = node.request("PUT", "/v1/modules", b"\0asm but not really a module");
    assert_eq!((bad.status, json_string(&bad.text(), "error")), (422, "invalid_module".into()), "{}", bad.text());
    assert_eq!(std::fs::read_dir(dir.join("modules")).unwrap().count(), 1, "only the valid module");
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_module_whose_worst_case_compilation_does_not_fit_the_pool_is_refused() {
    // 120 KB of branches carrying 16 values: compiling takes 28 MB (231 bytes per byte, where
    // 40 per byte were once reserved); its bound, read from its operators, is 56 MB, more than
    // the pool of a 32 MiB budget, whatever the module cap says.
    let module = compile_shapes().into_iter().find(|(name, _)| *name == "br_if, 16 values").unwrap().1;
    let node = Node::start(&["--memory-budget", "33554432", "--max-module-bytes", "1048576"]);
    let r = node.request("PUT", "/v1/modules", &module);
    assert_eq!((r.status, json_string(&r.text(), "error")), (503, "no_memory".into()), "{}", r.text());
    // Within a pool that holds its bound, it compiles.
    let roomy = Node::start(&["--max-module-bytes", "1048576"]);
    assert_eq!(roomy.request("PUT", "/v1/modules", &module).status, 201);
}

#[test]
fn requests_waiting_on_a_running_key_are_bounded_in_number() {
    // One slot, so at most one request may wait on a running key; a second gets a 429 at once
    // instead of holding a worker until the job ends.
    let node = Node::start(&["--max-concurrent", "1"]);
    let addr = node.addr;
    let slow = job_body(&guest("hostile-loop"), b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":2000},\"idempotency_key\":\"k\"");
    let first = {
        let b = slow.clone();
        std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &b))
    };
    for _ in 0..100 {
        if metric(&node, "phase_jobs_in_flight") == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let waiter = {
        let b = slow.clone();
        std::thread::spawn(move || http(addr, "POST", "/v1/jobs", &b))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let extra = node.request("POST", "/v1/jobs", &slow);
    assert_eq!((extra.status, json_string(&extra.text(), "error").as_str()), (429, "busy"), "{}", extra.text());
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "answered at once");
    let (a, w) = (first.join().unwrap(), waiter.join().unwrap());
    assert_eq!((a.status, w.status), (200, 200));
    assert_eq!(receipt_of(&a.text()), receipt_of(&w.text()), "the waiter got the first run's result");
}

#[test]
fn phase_receipt_verify_checks_a_whole_answer_against_its_request() {
    let node = Node::start(&[]);
    let key = json_string(&node.request("GET", "/v1/status", b"").text(), "node_key");
    let request = job_body(&guest("hello"), b"Hello", ",\"args\":[\"-v\"]");
    let answer = node.request("POST", "/v1/jobs", &request).text();
    let dir = std::env::temp_dir().join(format!("phase-answer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let verify = |answer: &str, request: &[u8]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_phase"))
            .args(["receipt", "verify", "--answer", &file("a.json", answer.as_bytes()), "--request", &file("r.json", request), "--key", &key])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = verify(&answer, &request);
    assert_eq!(code, Some(0), "{out}");
    let forged = answer.replacen(&json_string(&answer, "stdout"), &base64_encode(b"forged"), 1);
    let (code, out) = verify(&forged, &request);
    assert!(code == Some(1) && out.contains("stdout is not what the receipt signs"), "{out}");
    let (code, out) = verify(&answer, &job_body(&guest("hello"), b"Hello", ",\"args\":[\"-q\"]"));
    assert!(code == Some(1) && out.contains("another job"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_job_the_host_fails_is_a_node_error_never_a_signed_result() {
    // 800 MB of address space, a 1 GiB memory limit admitted by the budget: the host cannot
    // give the guest what its limit allows. wasmi would hand the guest a failed memory.grow
    // (-1) and the node would sign whatever the guest did then: a result of the host, not the job.
    let node = Node::start_with_address_space(800_000, &["--memory-budget", "8589934592", "--max-memory-bytes", "1073741824", "--max-concurrent", "1"]);
    let greedy = job_body(&guest("hostile-memory"), b"", ",\"limits\":{\"memory_bytes\":1073741824,\"fuel\":1000000000000,\"deadline_ms\":60000}");
    let r = node.request("POST", "/v1/jobs", &greedy);
    assert_eq!((r.status, json_string(&r.text(), "error").as_str()), (503, "host_failure"), "{}", r.text());
    assert!(!r.text().contains("receipt"), "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(metric(&node, "phase_jobs_host_failures_total"), 1);
    // The node serves on, and a job within what the host can give is a result as before.
    let ok = node.request("POST", "/v1/jobs", &job_body(&guest("hostile-memory"), b"", ",\"limits\":{\"memory_bytes\":8388608}"));
    assert_eq!((ok.status, json_string(&ok.text(), "trap").as_str()), (200, "memory_limit"), "{}", ok.text());
}

/// A node in this process, started as `phase node` starts one.
fn in_process() -> phase::node::Node {
    let mut config = phase::node::NodeConfig::new("127.0.0.1:0");
    config.memory_budget = Some(256 << 20);
    config.max_connections = Some(64);
    phase::node::Node::start(config).unwrap()
}

#[test]
fn two_nodes_in_one_process_keep_their_own_state() {
    // Nothing of a node is process-wide: keys, kept results and counters are each node's own.
    let (a, b) = (in_process(), in_process());
    let body = job_body(&guest("hello"), b"one process", ",\"idempotency_key\":\"shared-key\"");
    let ra = http(a.addr(), "POST", "/v1/jobs", &body);
    let rb = http(b.addr(), "POST", "/v1/jobs", &body);
    assert_eq!((ra.status, rb.status), (200, 200));
    let (ka, kb) = (Receipt::from_json(&receipt_of(&ra.text())).unwrap().node_key, Receipt::from_json(&receipt_of(&rb.text())).unwrap().node_key);
    assert_ne!(ka, kb, "each signs with its own key");
    // The same key on the other node ran the job there: no cache is shared.
    assert!(matches!(json_field(&rb.text(), "replayed"), miniserde::json::Value::Bool(false)));
    assert!(matches!(json_field(&http(a.addr(), "POST", "/v1/jobs", &body).text(), "replayed"), miniserde::json::Value::Bool(true)));
    let count = |n: &phase::node::Node| {
        let text = http(n.addr(), "GET", "/metrics", b"").text();
        text.lines().find(|l| l.starts_with("phase_jobs_total{outcome=\"exited\"}")).and_then(|l| l.rsplit(' ').next()).unwrap().to_string()
    };
    assert_eq!((count(&a), count(&b)), ("1".to_string(), "1".to_string()));
    a.stop();
    b.stop();
}
