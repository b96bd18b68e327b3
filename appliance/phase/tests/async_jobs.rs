//! Asynchronous jobs against a real `phase node` (docs/api.md, "Asynchronous jobs"): submit
//! with `Prefer: respond-async`, poll, and verify the result with the shared answer check;
//! the queue bound; cancelling a queued and a running job (no receipt); results kept across
//! a restart with a data dir.

mod common;

use std::time::{Duration, Instant};

use common::{guest, http_with, json_string, json_u64, HttpResponse, Node};
use phase_core::job::answer::{Answer, Asked};
use phase_core::encoding::{base64_encode, hex_decode_array};
use phase_core::job::RequestedLimits;
use phase_core::sha256;

const ASYNC: &str = "Prefer: respond-async\r\n";

fn body(module: &[u8], input: &[u8], extra: &str) -> Vec<u8> {
    format!("{{\"module\":\"{}\",\"input\":\"{}\"{extra}}}", base64_encode(module), base64_encode(input)).into_bytes()
}

fn submit(node: &Node, body: &[u8]) -> HttpResponse {
    http_with(node.addr, "POST", "/v1/jobs", ASYNC, body)
}

/// Polls the job until `until` holds for its status text, or fails after `within`.
fn poll(node: &Node, id: &str, within: Duration, until: impl Fn(&str) -> bool) -> String {
    let give_up = Instant::now() + within;
    loop {
        let r = node.request("GET", &format!("/v1/jobs/{id}"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
        if until(&r.text()) {
            return r.text();
        }
        assert!(Instant::now() < give_up, "job {id} still {} after {within:?}\n{}", r.text(), node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(text: &str) -> String {
    json_string(text, "status")
}

/// The `result` object of a done job, as text.
fn result_of(text: &str) -> String {
    let at = text.find("\"result\":").expect("a result") + "\"result\":".len();
    text[at..text.len() - 1].to_string()
}

#[test]
fn an_async_job_is_queued_polled_and_its_result_verifies() {
    let node = Node::start(&["--max-concurrent", "1"]);
    let node_key = hex_decode_array::<32>(&json_string(&node.request("GET", "/v1/status", b"").text(), "node_key")).unwrap();
    let module = guest("hello");
    let r = submit(&node, &body(&module, b"async hello", ""));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json_string(&r.text(), "job_id");
    assert_eq!(r.header("Location"), Some(format!("/v1/jobs/{id}").as_str()));
    assert_eq!(json_string(&r.text(), "location"), format!("/v1/jobs/{id}"));
    let done = poll(&node, &id, Duration::from_secs(30), |t| status(t) == "done");
    let answer = Answer::parse(&result_of(&done)).unwrap();
    let limits = RequestedLimits::default();
    let asked = Asked { module_sha256: &sha256(&module), input_sha256: &sha256(b"async hello"), args: &[], env: &[], limits: &limits, signer: Some(&node_key), files: None };
    answer.verify(&asked).unwrap();
    assert_eq!(answer.stdout, b"olleh cnysa");
    assert_eq!(phase_core::encoding::hex_encode(&answer.job_id), id, "the id given at once is the job's id");
    // The same job again is not run again: the kept result.
    let again = submit(&node, &body(&module, b"async hello", ""));
    assert_eq!((again.status, json_string(&again.text(), "status")), (202, "done".to_string()), "{}", again.text());
    assert!(again.text().contains("\"existing\":true"));
    assert_eq!(node.log().matches("exited 0").count(), 1, "ran once");
    // Redundancy is for synchronous jobs.
    let r = submit(&node, &body(&module, b"x", ",\"redundancy\":2"));
    assert_eq!((r.status, json_string(&r.text(), "error")), (400, "invalid_request".to_string()));
    // Unknown and malformed ids.
    assert_eq!(node.request("GET", &format!("/v1/jobs/{}", "0".repeat(64)), b"").status, 404);
    assert_eq!(node.request("GET", "/v1/jobs/../status", b"").status, 404);
}

#[test]
fn a_full_queue_answers_429_and_queued_and_running_jobs_can_be_cancelled() {
    let node = Node::start(&["--max-concurrent", "1", "--max-queued", "2"]);
    let spin = guest("hostile-loop");
    let long = ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":60000}";
    let (ids, tokens): (Vec<String>, Vec<String>) = (0..3)
        .map(|i| {
            let r = submit(&node, &body(&spin, format!("{i}").as_bytes(), long));
            assert_eq!(r.status, 202, "{}", r.text());
            (json_string(&r.text(), "job_id"), json_string(&r.text(), "cancel_token"))
        })
        .unzip();
    let cancel = |i: usize| node.request("DELETE", &format!("/v1/jobs/{}?token={}", ids[i], tokens[i]), b"");
    // Only a submitter can cancel: a wrong token is refused.
    for wrong in [String::new(), "0".repeat(32), tokens[1].clone()] {
        let r = node.request("DELETE", &format!("/v1/jobs/{}?token={wrong}", ids[2]), b"");
        assert_eq!((r.status, json_string(&r.text(), "error")), (403, "forbidden".to_string()), "{wrong}");
    }
    // Job ids are computable, so a squatter may have submitted first: an identical submission
    // gets a token of its own, and the first submitter's cancel only releases its own hold.
    let again = submit(&node, &body(&spin, b"2", long));
    assert!(again.text().contains("\"existing\":true"), "{}", again.text());
    let second = json_string(&again.text(), "cancel_token");
    assert_ne!(second, tokens[2]);
    let c = cancel(2);
    assert_eq!((c.status, status(&c.text())), (202, "queued".to_string()), "{}", c.text());
    assert!(c.text().contains("\"released\":true,\"holders\":1"), "{}", c.text());
    assert_eq!(status(&node.request("GET", &format!("/v1/jobs/{}", ids[2]), b"").text()), "queued", "it goes on for the other submitter");
    // The first runs (fuel grows), the other two wait: the queue holds 2.
    let running = poll(&node, &ids[0], Duration::from_secs(10), |t| status(t) == "running" && json_u64(t, "fuel_used").unwrap_or(0) > 0);
    assert_eq!(json_string(&poll(&node, &ids[2], Duration::from_secs(5), |_| true), "status"), "queued");
    let full = submit(&node, &body(&spin, b"3", long));
    assert_eq!(full.status, 429, "{}", full.text());
    assert_eq!(json_string(&full.text(), "error"), "queue_full");
    assert_eq!(full.header("Retry-After"), Some("1"));
    // Cancel a queued job (its last holder): it never runs.
    let c = node.request("DELETE", &format!("/v1/jobs/{}?token={second}", ids[2]), b"");
    assert_eq!((c.status, status(&c.text())), (200, "cancelled".to_string()), "{}", c.text());
    // Cancel the running one: it stops within a fuel slice, with no receipt.
    let c = cancel(0);
    assert_eq!((c.status, status(&c.text())), (202, "cancelling".to_string()), "{}", c.text());
    let ended = poll(&node, &ids[0], Duration::from_secs(10), |t| status(t) == "cancelled");
    assert!(!ended.contains("receipt"), "{ended}");
    assert!(node.log().contains("cancelled after"), "{}", node.log());
    // The second now runs; cancelling an ended job is refused.
    poll(&node, &ids[1], Duration::from_secs(10), |t| status(t) == "running");
    let c = cancel(2);
    assert_eq!((c.status, json_string(&c.text(), "error")), (409, "already_ended".to_string()));
    let metrics = node.request("GET", "/metrics", b"").text();
    assert!(metrics.contains("phase_async_jobs{state=\"running\"} 1") && metrics.contains("phase_async_jobs{state=\"ended\"} 2"), "{metrics}");
    cancel(1);
    poll(&node, &ids[1], Duration::from_secs(10), |t| status(t) == "cancelled");
    assert!(node.request("GET", "/metrics", b"").text().contains("phase_jobs_cancelled_total 2"));
    drop(running);
}

#[test]
fn results_are_kept_across_a_restart_with_a_data_dir() {
    let dir = std::env::temp_dir().join(format!("phase-async-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = guest("hello");
    let (id, first) = {
        let node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
        let r = submit(&node, &body(&module, b"kept", ""));
        let id = json_string(&r.text(), "job_id");
        let done = poll(&node, &id, Duration::from_secs(30), |t| status(t) == "done");
        (id, done)
    };
    let node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
    let r = node.request("GET", &format!("/v1/jobs/{id}"), b"");
    assert_eq!((r.status, r.text()), (200, first), "the same answer after the restart");
    assert!(node.log().contains("kept results read back"), "{}", node.log());
    // A file that is not a kept result is removed at start, never served.
    std::fs::write(dir.join("results").join(format!("{}.json", "a".repeat(64))), b"garbage").unwrap();
    drop(node);
    let node = Node::start(&["--data-dir", dir.to_str().unwrap()]);
    assert_eq!(node.request("GET", &format!("/v1/jobs/{}", "a".repeat(64)), b"").status, 404);
    assert!(!dir.join("results").join(format!("{}.json", "a".repeat(64))).exists());
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_is_readable_while_the_job_runs_and_matches_the_signed_answer() {
    let node = Node::start(&[]);
    let module = guest("ticker");
    let limits = ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":120000}";
    let r = submit(&node, &body(&module, b"30 3000000", limits));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json_string(&r.text(), "job_id");
    // Read stdout by offsets as it grows; note every length seen while the job ran.
    let (mut read, mut seen_running) = (Vec::new(), Vec::new());
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let out = node.request("GET", &format!("/v1/jobs/{id}/output?stream=stdout&offset={}", read.len()), b"");
        assert_eq!(out.status, 200, "{}", out.text());
        let status = out.header("Phase-Job-Status").unwrap().to_string();
        let total: usize = out.header("Phase-Output-Total").unwrap().parse().unwrap();
        read.extend_from_slice(&out.body);
        assert!(read.len() <= total, "never more than the stream holds: {} > {total}", read.len());
        if status == "running" {
            seen_running.push(total);
        }
        if status == "done" {
            assert_eq!(read.len(), total);
            break;
        }
        assert!(Instant::now() < give_up, "still {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let expected: String = (1..=30).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(String::from_utf8(read).unwrap(), expected);
    assert!(seen_running.iter().any(|&n| n > 0 && n < expected.len()), "partial output seen while running: {seen_running:?}");
    // The signed answer carries the same bytes, and stderr is readable once done.
    let done = node.request("GET", &format!("/v1/jobs/{id}"), b"").text();
    let answer = Answer::parse(&result_of(&done)).unwrap();
    assert_eq!(answer.stdout, expected.as_bytes());
    assert_eq!(answer.receipt.body.stdout_sha256, sha256(expected.as_bytes()));
    let err = node.request("GET", &format!("/v1/jobs/{id}/output?stream=stderr"), b"");
    assert_eq!((err.status, err.body.as_slice()), (200, &b"done\n"[..]));
    // Bad parameters are refused by name.
    let bad = node.request("GET", &format!("/v1/jobs/{id}/output?stream=stdin"), b"");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let bad = node.request("GET", &format!("/v1/jobs/{id}/output?offset=-1"), b"");
    assert_eq!(bad.status, 400, "{}", bad.text());
}

#[test]
fn a_queued_job_to_run_here_waits_for_a_slot_instead_of_failing_busy() {
    // A node with peers and one slot, held by a synchronous job: a queued job placed here
    // waits for the slot (a synchronous one would get 429 busy).
    let node = Node::start(&["--max-concurrent", "1", "--p2p", "/ip4/127.0.0.1/tcp/0"]);
    let addr = node.addr;
    let spin = guest("hostile-loop");
    let holder = std::thread::spawn(move || {
        common::http(addr, "POST", "/v1/jobs", &body(&spin, b"", ",\"limits\":{\"fuel\":1000000000000,\"deadline_ms\":1500}")).status
    });
    let give_up = Instant::now() + Duration::from_secs(10);
    while json_u64(&node.request("GET", "/v1/status", b"").text(), "jobs_in_flight") != Some(1) {
        assert!(Instant::now() < give_up, "the synchronous job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = submit(&node, &body(&guest("hello"), b"waits", ",\"placement\":\"local\""));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = format!("{}.local", json_string(&r.text(), "job_id"));
    assert_eq!(json_string(&r.text(), "location"), format!("/v1/jobs/{id}"));
    let done = poll(&node, &id, Duration::from_secs(30), |t| !["queued", "running"].contains(&status(t).as_str()));
    assert_eq!(status(&done), "done", "{done}");
    assert_eq!(holder.join().unwrap(), 200, "the synchronous job ended at its deadline");
}

/// Submits `body` asynchronously from source address `source` (any of 127/8 stands for
/// another host): (status, body text).
fn submit_from(node: &Node, source: [u8; 4], body: &[u8]) -> (u16, String) {
    let mut c = common::Raw::connect_from(node.addr, source);
    let head = format!("POST /v1/jobs HTTP/1.1\r\nHost: x\r\n{ASYNC}Connection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    c.send(head.as_bytes()).unwrap();
    c.send(body).unwrap();
    let raw = c.read_all();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer");
    (common::status_of(&raw).unwrap(), String::from_utf8_lossy(&raw[split + 4..]).into_owned())
}

#[test]
fn a_client_filling_the_kept_answers_cannot_take_another_clients_answer_away() {
    // At an appliance's memory budget and at a host's.
    for budget in ["201326592", "0"] {
        kept_answers_hold_at(budget);
    }
}

fn kept_answers_hold_at(budget: &str) {
    // 4 MiB of kept results: 3 MiB for asynchronous answers, 768 KiB per address that holds
    // some; the largest output limit is what 3 MiB can keep (2.1875 MiB).
    let mut args = vec!["--max-result-bytes", "4194304", "--max-concurrent", "2"];
    if budget != "0" {
        args.extend(["--memory-budget", budget]);
    }
    let node = Node::start(&args);
    let st = node.request("GET", "/v1/status", b"").text();
    let max_output = json_u64(&miniserde::json::to_string(&common::json_field(&st, "max_limits")), "output_bytes").unwrap();
    assert_eq!(max_output, 35 * 65536, "{st}");
    // The honest client's job: done, its answer kept.
    let module = guest("hello");
    let (code, text) = submit_from(&node, [127, 0, 0, 1], &body(&module, b"mine", ""));
    assert_eq!(code, 202, "{text}");
    let honest = json_string(&text, "job_id");
    let kept = poll(&node, &honest, Duration::from_secs(30), |t| status(t) == "done");
    // Another address: a job at the output cap is taken (its first), and runs to the cap.
    let flood = guest("hostile-output");
    let at_cap = format!(",\"limits\":{{\"output_bytes\":{max_output}}}");
    let (code, text) = submit_from(&node, [127, 0, 0, 2], &body(&flood, b"1", &at_cap));
    assert_eq!(code, 202, "{text}");
    let big = json_string(&text, "job_id");
    let done = poll(&node, &big, Duration::from_secs(60), |t| status(t) == "done");
    assert!(done.len() > max_output as usize, "the flood's answer holds its output");
    // Its second is beyond its share; a third address finds the node full. Nothing kept went.
    for (source, why) in [([127, 0, 0, 2], "address"), ([127, 0, 0, 3], "kept answers")] {
        let (code, text) = submit_from(&node, source, &body(&flood, source[3].to_string().as_bytes(), &at_cap));
        assert_eq!((code, json_string(&text, "error")), (503, "results_full".to_string()), "{text}");
        assert!(json_string(&text, "message").contains(why), "{text}");
    }
    let r = node.request("GET", &format!("/v1/jobs/{honest}"), b"");
    assert_eq!((r.status, r.text()), (200, kept), "the honest answer was taken away");
    // Output reads decode the chunk asked for from the kept JSON.
    let out = node.request("GET", &format!("/v1/jobs/{big}/output?offset={}&max=5", max_output - 3), b"");
    assert_eq!((out.status, out.body.as_slice(), out.header("Phase-Output-Total")), (200, &b"xxx"[..], Some(max_output.to_string().as_str())));
    let out = node.request("GET", &format!("/v1/jobs/{honest}/output"), b"");
    assert_eq!(out.body, b"enim");
    // Both jobs ended: nothing is reserved any more, and the kept bytes are their answers.
    let metrics = node.request("GET", "/metrics", b"").text();
    assert!(metrics.contains("\nphase_async_reserved_bytes 0\n"), "{metrics}");
    let kept: u64 = metrics.lines().find_map(|l| l.strip_prefix("phase_async_kept_bytes ")).unwrap().parse().unwrap();
    assert!(kept > max_output / 3 * 4 && kept < max_output / 3 * 4 + 64 * 1024, "kept {kept}");
}
