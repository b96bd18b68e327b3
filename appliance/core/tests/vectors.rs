//! The receipt and job-id test vectors in docs/test-vectors/ are generated from fixed inputs
//! here and must match the committed file byte for byte; the PHP SDK checks the same file.
//! Regenerate after an intended format change with PHASE_WRITE_VECTORS=1.

use phase_core::encoding::hex_encode;
use phase_core::job::JobSpec;
use phase_core::job::receipt::{Outcome, Receipt, ReceiptBody, TrapKind};
use phase_core::{sha256, Limits};

fn key(seed_byte: u8) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed_byte; 32]))
}

fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}

fn vector(name: &str, seed: u8, spec: &JobSpec, stdout: &[u8], outcome: Outcome, fuel: u64) -> (String, Receipt) {
    let body = ReceiptBody {
        job_id: spec.job_id(),
        module_sha256: spec.module_sha256,
        input_sha256: spec.input_sha256,
        stdout_sha256: sha256(stdout),
        stderr_sha256: sha256(b""),
        outcome,
        fuel_used: fuel,
        limits: spec.limits,
        wall_time_us: 1234,
        files: None,
    };
    let r = Receipt::sign(body, &key(seed));
    let l = spec.limits;
    let text = format!(
        "    {{\n      \"name\": {name:?},\n      \"valid\": true,\n      \"seed\": \"{}\",\n      \"job\": {{\"module_sha256\": \"{}\", \"input_sha256\": \"{}\", \"args\": {}, \"env\": {}, \"limits\": {{\"fuel\": {}, \"memory_bytes\": {}, \"output_bytes\": {}, \"deadline_ms\": {}}}}},\n      \"job_canonical_hex\": \"{}\",\n      \"job_id\": \"{}\",\n      \"stdout_hex\": \"{}\",\n      \"signed_bytes_hex\": \"{}\",\n      \"receipt\": {}\n    }}",
        hex_encode(&[seed; 32]),
        hex_encode(&spec.module_sha256),
        hex_encode(&spec.input_sha256),
        json_list(&spec.args),
        json_list(&spec.env),
        l.fuel, l.memory_bytes, l.output_bytes, l.deadline_ms,
        hex_encode(&spec.canonical_bytes()),
        hex_encode(&spec.job_id()),
        hex_encode(stdout),
        hex_encode(&r.signed_bytes()),
        r.to_json()
    );
    (text, r)
}

fn invalid(name: &str, receipt: &Receipt, why: &str) -> String {
    format!(
        "    {{\n      \"name\": {name:?},\n      \"valid\": false,\n      \"why\": {why:?},\n      \"receipt\": {}\n    }}",
        receipt.to_json()
    )
}

fn generate() -> String {
    let hello = JobSpec::new(
        sha256(b"hello module bytes"),
        sha256(b"Hello, World"),
        vec![],
        vec![],
        Limits::DEFAULT,
    )
    .unwrap();
    let (v1, r1) = vector("hello exited 0", 1, &hello, b"dlroW ,olleH", Outcome::Exited(0), 121949);
    let with_args = JobSpec::new(
        sha256(b"module"),
        sha256(b""),
        vec!["--n".into(), "ünïcode".into()],
        vec!["A=1".into(), "B=two=2".into()],
        Limits { fuel: 5000, memory_bytes: 1 << 20, output_bytes: 0, deadline_ms: 1 },
    )
    .unwrap();
    let (v2, _) = vector("args env trapped", 2, &with_args, b"", Outcome::Trapped(TrapKind::OutOfFuel), 5000);
    let (v3, _) = vector("exit code 3", 3, &hello, b"partial", Outcome::Exited(3), 1);

    let mut tampered_stdout = r1.clone();
    tampered_stdout.body.stdout_sha256 = sha256(b"dlroW ,olleH!");
    let mut tampered_outcome = r1.clone();
    tampered_outcome.body.outcome = Outcome::Exited(1);
    let mut wrong_key = r1.clone();
    wrong_key.node_key = *key(9).pk;
    let mut fuel = r1.clone();
    fuel.body.fuel_used += 1;
    let invalids = [
        invalid("stdout hash changed", &tampered_stdout, "stdout_sha256 differs from the signed one"),
        invalid("exit code changed", &tampered_outcome, "exit_code differs from the signed one"),
        invalid("other node key", &wrong_key, "node_key is not the signer"),
        invalid("fuel changed", &fuel, "fuel_used differs from the signed one"),
    ];
    let mut all = vec![v1, v2, v3];
    all.extend(invalids);
    format!(
        "{{\n  \"format\": \"phase-receipt/v1\",\n  \"spec\": \"docs/formats.md\",\n  \"generated_by\": \"appliance/core/tests/vectors.rs\",\n  \"vectors\": [\n{}\n  ]\n}}\n",
        all.join(",\n")
    )
}

/// The committed vector file equals what the implementation generates (PHASE_WRITE_VECTORS=1
/// rewrites it: only with a new format version).
fn check_committed(name: &str, generated: &str) {
    let path = format!("{}/../../docs/test-vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("PHASE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(committed, generated, "{name} changed: a format change needs a new format version");
}

#[test]
fn committed_vectors_match_the_implementation() {
    check_committed("receipt-v1.json", &generate());
}

#[test]
fn vector_receipts_verify_or_fail_as_labelled() {
    let text = generate();
    let mut checked = 0;
    for block in text.split("\"name\": ").skip(1) {
        let valid = block.contains("\"valid\": true");
        let receipt_json = block.split("\"receipt\": ").nth(1).unwrap().lines().next().unwrap();
        let r = Receipt::from_json(receipt_json).unwrap();
        assert_eq!(r.verify_signature().is_ok(), valid, "{}", &block[..40]);
        assert_eq!(r.to_json(), receipt_json, "re-emits the same JSON");
        checked += 1;
    }
    assert_eq!(checked, 7);
}

mod boot_manifest {
    use phase_core::encoding::hex_encode;
    use phase_core::boot::manifest::{Arch, Artifact, Manifest, ManifestBody};
    use phase_core::boot::rollout::{position, FailureReport, Notice, ReleaseId, Rollout};

    fn generate() -> String {
        let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32]));
        let body = ManifestBody {
            channel: "stable".into(),
            arch: Arch::X86_64,
            version: 42,
            created_at: 1_767_225_600,
            expires_at: 1_769_817_600,
            kernel: Artifact { name: "kernel".into(), size: 2_708_480, sha256: phase_core::sha256(b"kernel bytes") },
            initramfs: Artifact { name: "initramfs.cpio.zst".into(), size: 2_512_141, sha256: phase_core::sha256(b"initramfs bytes") },
            cmdline: "console=ttyS0 phase.mode=local".into(),
            drivers: None,
            rollout: None,
        };
        let m = Manifest::sign(body.clone(), &key).unwrap();
        let mut tampered = m.clone();
        tampered.body.cmdline.push_str(" init=/bin/sh");
        let with_drivers = Manifest::sign(
            ManifestBody { drivers: Some(Artifact { name: "drivers.cpio.zst".into(), size: 757_938, sha256: phase_core::sha256(b"drivers bytes") }), ..body.clone() },
            &key,
        )
        .unwrap();
        // A rollout: a tenth of the fleet at once, everyone after ten minutes.
        let with_rollout = Manifest::sign(ManifestBody { version: 43, rollout: Some(Rollout::parse("0:10,600:100").unwrap()), ..body }, &key).unwrap();
        let node_key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([6; 32]));
        let report = FailureReport::sign(ReleaseId::of(&with_rollout), 1_767_300_000, "not healthy within 120 s: no peer reached", &node_key);
        format!(
            "{{\n  \"format\": \"phase-boot-manifest/v1\",\n  \"spec\": \"docs/formats.md\",\n  \"generated_by\": \"appliance/core/tests/vectors.rs\",\n  \"seed\": \"{}\",\n  \"key_id\": \"{}\",\n  \"signed_bytes_hex\": \"{}\",\n  \"manifest\": {},\n  \"tampered_manifest\": {},\n  \"with_drivers_signed_bytes_hex\": \"{}\",\n  \"manifest_with_drivers\": {},\n  \"with_rollout_signed_bytes_hex\": \"{}\",\n  \"manifest_with_rollout\": {},\n  \"node_seed\": \"{}\",\n  \"rollout_position_of_node\": {},\n  \"failure_report_signed_bytes_hex\": \"{}\",\n  \"failure_report\": {}\n}}\n",
            hex_encode(&[5; 32]),
            m.key_id(),
            hex_encode(&m.body.signed_bytes(&m.publisher_key)),
            m.to_json(),
            tampered.to_json(),
            hex_encode(&with_drivers.body.signed_bytes(&with_drivers.publisher_key)),
            with_drivers.to_json(),
            hex_encode(&with_rollout.body.signed_bytes(&with_rollout.publisher_key)),
            with_rollout.to_json(),
            hex_encode(&[6; 32]),
            position(&with_rollout.publisher_key, "stable", &node_key.pk),
            hex_encode(&FailureReport::signed_bytes(&report.release, &report.node_key, report.at, &report.reason)),
            report.to_json()
        )
    }

    #[test]
    fn committed_manifest_vectors_match_and_verify() {
        let generated = generate();
        super::check_committed("boot-manifest-v1.json", &generated);
        let line = |name: &str| generated.lines().find(|l| l.contains(name)).unwrap().split_once(": ").unwrap().1.trim_end_matches(',').to_string();
        let m = Manifest::from_json(&line("\"manifest\"")).unwrap();
        let now = 1_768_000_000;
        m.verify(&[m.publisher_key], now, Arch::X86_64, Some(42)).unwrap();
        let t = Manifest::from_json(&line("\"tampered_manifest\"")).unwrap();
        assert!(t.verify(&[t.publisher_key], now, Arch::X86_64, None).is_err());
        let d = Manifest::from_json(&line("\"manifest_with_drivers\"")).unwrap();
        d.verify(&[d.publisher_key], now, Arch::X86_64, Some(42)).unwrap();
        assert_eq!(d.body.drivers.as_ref().map(|a| a.size), Some(757_938));
        let r = Manifest::from_json(&line("\"manifest_with_rollout\"")).unwrap();
        r.verify(&[r.publisher_key], now, Arch::X86_64, Some(42)).unwrap();
        assert_eq!(r.body.rollout.as_ref().map(Rollout::describe).as_deref(), Some("0s:10%,600s:100%"));
        let Ok(Notice::Failure(f)) = Notice::parse(line("\"failure_report\"").as_bytes()) else { panic!("the failure report parses and verifies") };
        assert_eq!(f.release, ReleaseId::of(&r));
    }
}

/// Job answers (docs/formats.md "Answer"): what a client receives and verifies against what it
/// asked. Valid ones re-emit byte for byte; each invalid one names the check that catches it.
mod answer {
    use phase_core::encoding::hex_encode;
    use phase_core::job::answer::{Answer, AnswerError, Asked, LeftFiles};
    use phase_core::job::files::{Change, Changes, FsLimits, Kind};
    use phase_core::job::request::{JobRequest, RequestedFiles};
    use phase_core::job::receipt::{FileDigests, Outcome, Receipt, ReceiptBody, TrapKind};
    use phase_core::job::{JobSpec, Limits, RequestedLimits};
    use phase_core::net::peer::PeerName;
    use phase_core::sha256;

    /// What a client asked: module, input, args, env, the limits it set and its files.
    struct Ask {
        module: Vec<u8>,
        input: Vec<u8>,
        args: Vec<String>,
        env: Vec<String>,
        limits: RequestedLimits,
        files: Option<RequestedFiles>,
    }

    impl Ask {
        fn json(&self) -> String {
            let list = |l: &[String]| format!("[{}]", l.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));
            let l = &self.limits;
            let set: Vec<String> = [("fuel", l.fuel), ("memory_bytes", l.memory_bytes), ("output_bytes", l.output_bytes), ("deadline_ms", l.deadline_ms)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("\"{k}\": {v}")))
                .collect();
            let files = self.files.as_ref().map(|f| format!(", \"files\": {}", f.to_json())).unwrap_or_default();
            format!(
                "{{\"module_sha256\": \"{}\", \"input_sha256\": \"{}\", \"args\": {}, \"env\": {}, \"limits\": {{{}}}{files}}}",
                hex_encode(&sha256(&self.module)),
                hex_encode(&sha256(&self.input)),
                list(&self.args),
                list(&self.env),
                set.join(", ")
            )
        }
    }

    /// The answer a node with key `seed` gives for `ask` (its limits resolved against the
    /// defaults), with what it ran and said.
    fn answered(seed: u8, ask: &Ask, stdout: &[u8], stderr: &[u8], outcome: Outcome, fuel: u64, detail: Option<&str>) -> Answer {
        answered_with(seed, ask, stdout, stderr, outcome, fuel, detail, None)
    }

    /// As `answered`, for a job with files that left `left`.
    #[allow(clippy::too_many_arguments)]
    fn answered_with(seed: u8, ask: &Ask, stdout: &[u8], stderr: &[u8], outcome: Outcome, fuel: u64, detail: Option<&str>, left: Option<LeftFiles>) -> Answer {
        let limits = Limits::resolve(&ask.limits, &Limits::DEFAULT, &Limits::MAX).unwrap();
        let mut spec = JobSpec::new(sha256(&ask.module), sha256(&ask.input), ask.args.clone(), ask.env.clone(), limits).unwrap();
        let given = ask.files.as_ref().map(|f| f.resolve(&FsLimits::MAX).unwrap());
        if let Some(g) = &given {
            spec = spec.with_files(g.clone());
        }
        let body = ReceiptBody {
            job_id: spec.job_id(),
            module_sha256: spec.module_sha256,
            input_sha256: spec.input_sha256,
            stdout_sha256: sha256(stdout),
            stderr_sha256: sha256(stderr),
            outcome,
            fuel_used: fuel,
            limits,
            wall_time_us: 1234,
            files: given.map(|g| FileDigests { limits: g.limits, given: g.digest(), left: left.as_ref().map(|l| l.changes.digest()).unwrap_or_default() }),
        };
        let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let answer = Answer::new(Receipt::sign(body, &key), stdout.to_vec(), stderr.to_vec(), detail.map(str::to_string));
        match left {
            Some(l) => answer.with_files(l),
            None => answer,
        }
    }

    fn entry(name: &str, why: Option<&str>, ask: &Ask, answer: &str) -> String {
        let verdict = match why {
            None => "\"valid\": true".to_string(),
            Some(w) => format!("\"valid\": false,\n      \"why\": {w:?}"),
        };
        format!("    {{\n      \"name\": {name:?},\n      {verdict},\n      \"asked\": {},\n      \"answer\": {answer}\n    }}", ask.json())
    }

    fn cases() -> Vec<(&'static str, Option<&'static str>, Ask, String)> {
        let hello = || Ask { module: b"hello module bytes".to_vec(), input: b"Hello, World".to_vec(), args: vec![], env: vec![], limits: RequestedLimits::default(), files: None };
        let ok = answered(1, &hello(), b"dlroW ,olleH", b"", Outcome::Exited(0), 121_949, None);
        let trapping = Ask {
            module: b"module".to_vec(),
            input: vec![],
            args: vec!["--n".into(), "\u{fc}n\u{ef}code".into()],
            env: vec!["A=1".into()],
            limits: RequestedLimits { fuel: Some(5000), deadline_ms: Some(1), ..Default::default() },
            files: None,
        };
        let mut placed = answered(2, &trapping, b"partial", b"warning: \"quoted\"\n", Outcome::Trapped(TrapKind::OutOfFuel), 5000, Some("fuel exhausted: the guest said \"more\"\n"));
        placed.executor = Some(PeerName::parse("12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A").unwrap());
        placed.replayed = true;
        let forged = Answer { stdout: b"dlroW ,olleH!".to_vec(), ..ok.clone() };
        let other_job = answered(1, &Ask { args: vec!["--another-job".into()], ..hello() }, b"dlroW ,olleH", b"", Outcome::Exited(0), 121_949, None);
        let fuel = Answer { fuel_used: ok.fuel_used + 1, ..ok.clone() };
        let exit = Answer { outcome: Outcome::Exited(1), ..ok.clone() };
        let small = Ask { limits: RequestedLimits { output_bytes: Some(4), ..Default::default() }, ..hello() };
        let over = answered(1, &small, b"dlroW ,olleH", b"", Outcome::Exited(0), 121_949, None);
        let mut resigned = ok.clone();
        resigned.receipt.body.fuel_used += 1;
        // A job with files: given /work/in/a.txt and a link, it wrote out/r.txt and an empty
        // directory, and removed in/a.txt.
        let files_body = r#"{"mounts":[{"guest":"/work","entries":[{"path":"in/a.txt","data":"YWxwaGEK"},{"path":"in/l","symlink":"a.txt"}]}],"limits":{"depth":8}}"#;
        let given = JobRequest::parse(format!("{{\"module\":\"AA==\",\"files\":{files_body}}}").as_bytes()).unwrap().files;
        let with_files = Ask { files: given, ..hello() };
        let r_txt = b"ALPHA\n".to_vec();
        let changes = Changes::new(vec![
            Change { mount: 0, path: "in/a.txt".into(), kind: None },
            Change { mount: 0, path: "out".into(), kind: Some(Kind::Dir) },
            Change { mount: 0, path: "out/empty".into(), kind: Some(Kind::Dir) },
            Change { mount: 0, path: "out/r.txt".into(), kind: Some(Kind::File { sha256: sha256(&r_txt), size: 6, executable: false }) },
        ])
        .unwrap();
        let left = LeftFiles { changes: changes.clone(), data: [(sha256(&r_txt), r_txt.clone())].into_iter().collect() };
        let files_ok = answered_with(3, &with_files, b"", b"", Outcome::Exited(0), 5_000, None, Some(left.clone()));
        let mut tampered = files_ok.clone();
        tampered.files.as_mut().unwrap().data.insert(sha256(&r_txt), b"OMEGA\n".to_vec());
        let mut dropped = files_ok.clone();
        dropped.files.as_mut().unwrap().changes = Changes::new(changes.changes()[1..].to_vec()).unwrap();
        let other_files = Ask { files: JobRequest::parse(br#"{"module":"AA==","files":{"mounts":[{"guest":"/work","entries":[{"path":"in/a.txt","data":"YmV0YQo="}]}]}}"#).unwrap().files, ..hello() };
        vec![
            ("hello, exited 0", None, hello(), ok.to_json()),
            ("trapped with a detail, placed on a peer, replayed", None, trapping, placed.to_json()),
            ("stdout other than signed", Some("stdout"), hello(), forged.to_json()),
            ("the genuine answer of another job", Some("job"), hello(), other_job.to_json()),
            ("fuel other than signed", Some("fuel_used"), hello(), fuel.to_json()),
            ("exit status other than signed", Some("exit status"), hello(), exit.to_json()),
            ("limits other than asked", Some("limits"), Ask { limits: RequestedLimits { fuel: Some(5), ..Default::default() }, ..hello() }, ok.to_json()),
            ("receipt changed after signing", Some("signature"), hello(), resigned.to_json()),
            ("output beyond the output limit its receipt names", Some("output limit"), small, over.to_json()),
            ("files in, files out", None, Ask { files: with_files.files.clone(), ..hello() }, files_ok.to_json()),
            ("a file's bytes other than signed", Some("file data"), Ask { files: with_files.files.clone(), ..hello() }, tampered.to_json()),
            ("a change left out", Some("files"), Ask { files: with_files.files.clone(), ..hello() }, dropped.to_json()),
            ("the genuine answer for other files", Some("set of files"), other_files, files_ok.to_json()),
        ]
    }

    fn generate() -> String {
        let entries: Vec<String> = cases().iter().map(|(name, why, ask, answer)| entry(name, *why, ask, answer)).collect();
        format!(
            "{{\n  \"format\": \"phase-answer/v1\",\n  \"spec\": \"docs/formats.md\",\n  \"generated_by\": \"appliance/core/tests/vectors.rs\",\n  \"vectors\": [\n{}\n  ]\n}}\n",
            entries.join(",\n")
        )
    }

    #[test]
    fn committed_answer_vectors_match_reemit_and_verify_as_labelled() {
        let generated = generate();
        super::check_committed("answer-v1.json", &generated);
        let mut checked = 0;
        for (name, why, ask, answer_json) in cases() {
            // Read from the committed text, as a client reads it.
            let line = generated.lines().find(|l| l.trim_start().starts_with("\"answer\": ") && l.contains(&answer_json)).unwrap();
            let text = line.trim_start().strip_prefix("\"answer\": ").unwrap();
            let answer = Answer::parse(text).unwrap();
            assert_eq!(answer.to_json(), text, "{name}: re-emitted byte for byte");
            let (module, input) = (sha256(&ask.module), sha256(&ask.input));
            let asked = Asked { module_sha256: &module, input_sha256: &input, args: &ask.args, env: &ask.env, limits: &ask.limits, signer: None, files: ask.files.as_ref() };
            let result = answer.verify(&asked);
            match why {
                None => assert_eq!(result, Ok(()), "{name}"),
                Some("stdout") => assert_eq!(result, Err(AnswerError::NotSigned("stdout")), "{name}"),
                Some("fuel_used") => assert_eq!(result, Err(AnswerError::NotSigned("fuel_used")), "{name}"),
                Some("exit status") => assert_eq!(result, Err(AnswerError::NotSigned("exit status")), "{name}"),
                Some("job") => assert!(matches!(result, Err(AnswerError::OtherJob(_))), "{name}: {result:?}"),
                Some("limits") => assert_eq!(result, Err(AnswerError::OtherJob("set of limits")), "{name}"),
                Some("signature") => assert!(matches!(result, Err(AnswerError::Receipt(_))), "{name}: {result:?}"),
                Some("output limit") => assert_eq!(result, Err(AnswerError::OverLimit { len: 12, limit: 4 }), "{name}"),
                Some("file data") => assert_eq!(result, Err(AnswerError::NotSigned("file data")), "{name}"),
                Some("files") => assert_eq!(result, Err(AnswerError::NotSigned("files")), "{name}"),
                Some("set of files") => assert_eq!(result, Err(AnswerError::OtherJob("set of files")), "{name}"),
                Some(other) => panic!("{name}: no check named {other}"),
            }
            checked += 1;
        }
        assert_eq!(checked, 13);
    }
}
