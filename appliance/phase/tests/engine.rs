//! The job engine against real guests: results, determinism, and every hostile guest.

mod common;

use std::sync::Arc;

use phase::engine::compile_cost::compile_bound;
use phase::engine::{Engine, Execution, Job, ModuleError, DEFAULT_MAX_MODULE_BYTES};
use phase_core::job::JobSpec;
use phase_core::job::receipt::{Outcome, Receipt, TrapKind};
use phase_core::{sha256, Limits};

fn run_with(engine: &Engine, name: &str, input: &[u8], args: &[&str], limits: Limits) -> Execution {
    let bytes = common::guest(name);
    let module = engine.compile(&bytes).expect("guest compiles");
    let spec = JobSpec::new(
        module.sha256,
        sha256(input),
        args.iter().map(|s| s.to_string()).collect(),
        vec!["PHASE_TEST=1".into()],
        limits,
    )
    .unwrap();
    engine.run(&Job { spec, module, input: Arc::from(input), blobs: Default::default(), progress: Default::default() })
}

fn run(name: &str, input: &[u8], limits: Limits) -> Execution {
    run_with(&Engine::new(DEFAULT_MAX_MODULE_BYTES), name, input, &[], limits)
}

#[test]
fn hello_reverses_stdin() {
    let ex = run("hello", b"Hello, World", Limits::DEFAULT);
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}", ex.detail);
    assert_eq!(String::from_utf8_lossy(&ex.stdout), "dlroW ,olleH");
    assert!(ex.stderr.is_empty());
    assert!(ex.fuel_used > 0);
}

#[test]
fn sha256sum_matches_host_digest() {
    let input: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let ex = run("sha256sum", &input, Limits::DEFAULT);
    assert_eq!(ex.outcome, Outcome::Exited(0));
    let want = format!("{}  -\n", phase_core::encoding::hex_encode(&sha256(&input)));
    assert_eq!(String::from_utf8_lossy(&ex.stdout), want);
}

#[test]
fn non_utf8_input_exits_with_the_guests_own_code() {
    let ex = run("hello", &[0xff, 0xfe], Limits::DEFAULT);
    assert_eq!(ex.outcome, Outcome::Exited(2));
    assert!(String::from_utf8_lossy(&ex.stderr).contains("not UTF-8"));
}

#[test]
fn same_job_same_output_and_fuel_on_separate_engines() {
    // Separate engines stand in for separate nodes. The expected line was computed
    // independently (Python sieve + FNV-1a).
    let a = run("cpu-bench", b"200000", Limits::DEFAULT);
    let b = run("cpu-bench", b"200000", Limits::DEFAULT);
    assert_eq!(a.outcome, Outcome::Exited(0));
    assert_eq!(String::from_utf8_lossy(&a.stdout).trim(), "primes<=200000: 17984 fnv1a=a459ee8669edca62");
    assert_eq!((a.stdout, a.fuel_used), (b.stdout, b.fuel_used));
}

#[test]
fn fuel_slicing_does_not_change_fuel_used() {
    // Budgets just above and far above the need give the same fuel figure.
    let big = run("cpu-bench", b"100000", Limits::DEFAULT);
    let tight = run("cpu-bench", b"100000", Limits { fuel: big.fuel_used, ..Limits::DEFAULT });
    assert_eq!(tight.outcome, Outcome::Exited(0), "{:?}", tight.detail);
    assert_eq!(tight.fuel_used, big.fuel_used);
    let short = run("cpu-bench", b"100000", Limits { fuel: big.fuel_used - 1, ..Limits::DEFAULT });
    assert_eq!(short.outcome, Outcome::Trapped(TrapKind::OutOfFuel));
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let ex = run("hostile-loop", b"", Limits { fuel: 20_000_000, ..Limits::DEFAULT });
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::OutOfFuel));
    // The last basic block did not fit in what was left: fuel used stops just short.
    assert!(ex.fuel_used <= 20_000_000 && ex.fuel_used > 19_999_000, "{}", ex.fuel_used);
}

#[test]
fn infinite_loop_hits_the_deadline_before_a_huge_fuel_budget() {
    let ex = run("hostile-loop", b"", Limits { fuel: Limits::MAX.fuel, deadline_ms: 200, ..Limits::DEFAULT });
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::Deadline));
    assert!(ex.wall_time.as_millis() < 2_000, "deadline overshot: {:?}", ex.wall_time);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let ex = run("hostile-memory", b"", Limits { memory_bytes: 16 << 20, ..Limits::DEFAULT });
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::MemoryLimit), "{:?}", ex.detail);
}

#[test]
fn module_whose_initial_memory_exceeds_the_cap_is_a_memory_limit() {
    let ex = run("hello", b"x", Limits { memory_bytes: 64 * 1024, ..Limits::DEFAULT });
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::MemoryLimit), "{:?}", ex.detail);
}

#[test]
fn deep_recursion_is_a_stack_trap() {
    let ex = run("hostile-recursion", b"", Limits::DEFAULT);
    assert!(
        matches!(
            ex.outcome,
            Outcome::Trapped(TrapKind::StackOverflow | TrapKind::MemoryOutOfBounds)
        ),
        "{:?} {:?}",
        ex.outcome,
        ex.detail
    );
}

#[test]
fn output_flood_is_capped() {
    let ex = run("hostile-output", b"", Limits { output_bytes: 100_000, ..Limits::DEFAULT });
    assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::OutputLimit), "{:?}", ex.detail);
    assert_eq!(ex.stdout.len(), 100_000, "output is kept up to the cap");
}

#[test]
fn a_job_without_files_reaches_no_file_and_no_socket() {
    let ex = run("hostile-wasi", b"", Limits::DEFAULT);
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}", ex.detail);
    assert_eq!(
        String::from_utf8_lossy(&ex.stdout).trim(),
        "sock_accept=8 path_open=8 fs::read=refused"
    );
}

/// Writes its argv buffer to stdout, then argv[1] (through its pointer) and its environ
/// buffer to stderr.
const ARGS_ENV_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $asz (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $ag (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $esz (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $eg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $out (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $w (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $asz (i32.const 0) (i32.const 4)))
    (drop (call $ag (i32.const 1024) (i32.const 2048)))
    (call $out (i32.const 1) (i32.const 2048) (i32.load (i32.const 4)))
    (call $out (i32.const 2) (i32.load (i32.const 1028)) (i32.const 3))
    (drop (call $esz (i32.const 32) (i32.const 36)))
    (drop (call $eg (i32.const 3072) (i32.const 4096)))
    (call $out (i32.const 2) (i32.const 4096) (i32.load (i32.const 36)))))"#;

#[test]
fn args_and_env_reach_the_guest() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let module = engine.compile(&wat::parse_str(ARGS_ENV_WAT).unwrap()).unwrap();
    let spec = JobSpec::new(
        module.sha256,
        sha256(b""),
        vec!["--x".into(), "y".into()],
        vec!["A=1".into(), "B=two".into()],
        Limits::DEFAULT,
    )
    .unwrap();
    let ex = engine.run(&Job { spec, module, input: Arc::from(&b""[..]), blobs: Default::default(), progress: Default::default() });
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}", ex.detail);
    assert_eq!(ex.stdout, b"job\0--x\0y\0", "argv[0] is \"job\", then the args in order");
    assert_eq!(ex.stderr, b"--xA=1\0B=two\0", "argv[1] by its pointer, then the env in order");
}

#[test]
fn the_engine_runs_on_after_a_trap() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let trap = run_with(&engine, "hostile-loop", b"", &[], Limits { fuel: 1000, ..Limits::DEFAULT });
    assert_eq!(trap.outcome, Outcome::Trapped(TrapKind::OutOfFuel));
    let ok = run_with(&engine, "hello", b"ab", &[], Limits::DEFAULT);
    assert_eq!(ok.stdout, b"ba");
}

#[test]
fn compile_errors_are_named() {
    let engine = Engine::new(1000);
    match engine.compile(&common::guest("hello")) {
        Err(ModuleError::TooLarge { max: 1000, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    assert!(matches!(engine.compile(b"\0asm garbage"), Err(ModuleError::Invalid(_))));
    let foreign = wat::parse_str(r#"(module (import "env" "f" (func)) (func (export "_start")))"#).unwrap();
    let err = engine.compile(&foreign).err().expect("foreign import refused");
    assert_eq!(err.to_string(), "module imports env.f: only wasi_snapshot_preview1 functions are provided");
    let wrong_sig = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))) (func (export "_start")))"#,
    )
    .unwrap();
    assert!(matches!(engine.compile(&wrong_sig), Err(ModuleError::UnsupportedImport { .. })));
}

#[test]
fn missing_start_and_wasm_traps_are_classified() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let cases = [
        (r#"(module (func (export "main")))"#, TrapKind::NoEntryPoint),
        (r#"(module (func (export "_start") unreachable))"#, TrapKind::Unreachable),
        (
            r#"(module (func (export "_start") (drop (i32.div_s (i32.const 1) (i32.const 0)))))"#,
            TrapKind::IntegerDivisionByZero,
        ),
        (
            r#"(module (memory 1) (func (export "_start") (drop (i32.load (i32.const 70000)))))"#,
            TrapKind::MemoryOutOfBounds,
        ),
        (r#"(module (func $f (export "_start") (call $f)))"#, TrapKind::StackOverflow),
    ];
    for (wat_src, want) in cases {
        let module = engine.compile(&wat::parse_str(wat_src).unwrap()).unwrap();
        let spec = JobSpec::new(module.sha256, sha256(b""), vec![], vec![], Limits::DEFAULT).unwrap();
        let ex = engine.run(&Job { spec, module, input: Arc::from(&b""[..]), blobs: Default::default(), progress: Default::default() });
        assert_eq!(ex.outcome, Outcome::Trapped(want), "{wat_src}: {:?}", ex.detail);
    }
}

#[test]
fn receipt_of_an_execution_verifies() {
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let bytes = common::guest("hello");
    let module = engine.compile(&bytes).unwrap();
    let spec = JobSpec::new(module.sha256, sha256(b"abc"), vec![], vec![], Limits::DEFAULT).unwrap();
    let ex = engine.run(&Job { spec: spec.clone(), module, input: Arc::from(&b"abc"[..]), blobs: Default::default(), progress: Default::default() });
    let key = ed25519_compact::KeyPair::generate();
    let receipt = Receipt::sign(ex.receipt_body(&spec), &key);
    receipt.verify_signature().unwrap();
    assert_eq!(receipt.body.module_sha256, sha256(&bytes));
    assert_eq!(receipt.body.stdout_sha256, sha256(b"cba"));
    assert_eq!(receipt.body.job_id, spec.job_id());
}

/// Writes 16 bytes of random_get then clock_time_get(monotonic) to stdout.
const RANDOM_CLOCK_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $random (i32.const 100) (i32.const 16)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 116)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 24))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[test]
fn random_and_clock_come_from_the_job_not_the_host() {
    let run_input = |engine: &Engine, input: &[u8]| {
        let module = engine.compile(&wat::parse_str(RANDOM_CLOCK_WAT).unwrap()).unwrap();
        let spec = JobSpec::new(module.sha256, sha256(input), vec![], vec![], Limits::DEFAULT).unwrap();
        engine.run(&Job { spec, module, input: Arc::from(input), blobs: Default::default(), progress: Default::default() })
    };
    let a = run_input(&Engine::new(DEFAULT_MAX_MODULE_BYTES), b"one");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = run_input(&Engine::new(DEFAULT_MAX_MODULE_BYTES), b"one");
    let c = run_input(&Engine::new(DEFAULT_MAX_MODULE_BYTES), b"two");
    assert_eq!(a.stdout.len(), 24);
    assert_eq!(a.stdout, b.stdout, "same job, same random bytes and clock");
    assert_ne!(a.stdout[..16], c.stdout[..16], "another job id, other random bytes");
    let clock = u64::from_le_bytes(a.stdout[16..24].try_into().unwrap());
    assert!(clock > 0 && clock <= a.fuel_used, "clock advances with fuel: {clock}");
}

#[test]
fn fuel_does_not_depend_on_a_warm_module_cache() {
    // A cold node compiles the module for this job; a warm one reuses its compilation.
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let cold = run_with(&engine, "sha256sum", b"abc", &[], Limits::DEFAULT);
    let warm = run_with(&engine, "sha256sum", b"abc", &[], Limits::DEFAULT);
    assert_eq!(cold.fuel_used, warm.fuel_used);
}

#[test]
fn host_calls_cannot_be_made_to_do_unmetered_work() {
    // fd_write with a huge iovec count and random_get of the whole memory: EINVAL (28) at
    // once, written to memory and then printed, instead of seconds of host work no fuel pays for.
    let src = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
      (memory (export "memory") 1000)
      (func (export "_start")
        (i32.store8 (i32.const 100) (i32.add (i32.const 48) (call $write (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 8))))
        (i32.store8 (i32.const 101) (i32.add (i32.const 48) (call $read (i32.const 0) (i32.const 0) (i32.const 2000000) (i32.const 8))))
        (i32.store8 (i32.const 102) (i32.add (i32.const 48) (call $random (i32.const 0) (i32.const 60000000))))
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.const 3))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let module = engine.compile(&wat::parse_str(src).unwrap()).unwrap();
    let spec = JobSpec::new(module.sha256, sha256(b""), vec![], vec![], Limits::DEFAULT).unwrap();
    let ex = engine.run(&Job { spec, module, input: Arc::from(&b""[..]), blobs: Default::default(), progress: Default::default() });
    assert_eq!(ex.outcome, Outcome::Exited(0), "{:?}", ex.detail);
    // 48 + 28 = 'L' for each EINVAL.
    assert_eq!(ex.stdout, b"LLL");
    assert!(ex.wall_time.as_millis() < 500, "{:?}", ex.wall_time);
}

#[test]
fn loops_of_host_calls_end_at_their_deadline_and_their_fuel() {
    // Each call is a handful of guest instructions and up to a MiB of host work (hashing random
    // bytes, walking 1024 iovecs). That work is paid in fuel, so the loop meets its deadline
    // like any loop, and runs out of a small fuel budget after the same fuel on every run.
    for mode in ["random", "iovecs"] {
        let started = std::time::Instant::now();
        let deadline = Limits { fuel: Limits::MAX.fuel, deadline_ms: 1000, ..Limits::DEFAULT };
        let ex = run_with(&Engine::new(DEFAULT_MAX_MODULE_BYTES), "hostile-hostcalls", b"", &[mode], deadline);
        assert_eq!(ex.outcome, Outcome::Trapped(TrapKind::Deadline), "{mode}: {:?}", ex.detail);
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "{mode}: deadline 1 s, took {:?}", started.elapsed());

        let small = Limits { fuel: 300_000_000, ..Limits::DEFAULT };
        let a = run_with(&Engine::new(DEFAULT_MAX_MODULE_BYTES), "hostile-hostcalls", b"", &[mode], small);
        let b = run_with(&Engine::new(DEFAULT_MAX_MODULE_BYTES), "hostile-hostcalls", b"", &[mode], small);
        assert_eq!(a.outcome, Outcome::Trapped(TrapKind::OutOfFuel), "{mode}: {:?}", a.detail);
        assert_eq!((a.fuel_used, &a.stdout), (b.fuel_used, &b.stdout), "{mode}: deterministic");
        assert!(a.wall_time < std::time::Duration::from_secs(3), "{mode}: 300 M fuel took {:?}", a.wall_time);
    }
}

include!("../examples/common/shapes.rs");

#[test]
fn the_compile_bound_covers_every_module_shape_we_know() {
    // What a compilation reserves (engine/compile_cost.rs, from the module's structure) must
    // cover what it takes, at its peak and kept, for every shape a hostile client could repeat,
    // and for the guests.
    let engine = Engine::new(DEFAULT_MAX_MODULE_BYTES);
    let mut shapes = compile_shapes();
    for g in ["hello", "files", "sha256sum", "wasi-conformance"] {
        shapes.push((g, common::guest(g)));
    }
    let mut tightest = (f64::MAX, "");
    for (name, bytes) in &shapes {
        let m = engine.compile(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bound = compile_bound(bytes).unwrap();
        let most = m.footprint.max(m.compile_peak) as u64;
        assert!(most <= bound, "{name}: {most} bytes to compile, above its bound {bound}");
        let margin = bound as f64 / most as f64;
        if margin < tightest.0 {
            tightest = (margin, name);
        }
    }
    // A shape within 25% of its bound is a warning to raise the constants.
    assert!(tightest.0 > 1.25, "{} takes {:.2} of its bound", tightest.1, 1.0 / tightest.0);
    // Not a module: named, before anything is compiled.
    assert!(compile_bound(b"\0asm\x01\0\0\0\x0a\x05").is_err());
}
