//! What compiled modules hold, measured: the memory a compilation leaves allocated (the
//! module's footprint, as the engine's cache counts it) against the size of its wasm, for the
//! guests and for module shapes chosen to make wasmi's translation large. The worst ratio
//! sets memory::COMPILE_FACTOR, what a compilation reserves per byte of wasm.
//! Usage: compile_size [WASM_DIR [MODULE.wasm...]] (default build/wasm)

use phase::engine::Engine;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "build/wasm".into());
    let engine = Engine::new(64 << 20);
    let mut cases: Vec<(String, Vec<u8>)> = vec![];
    for n in ["hello", "sha256sum", "cpu-bench", "hostile-loop"] {
        match std::fs::read(format!("{dir}/{n}.wasm")) {
            Ok(bytes) => cases.push((n.into(), bytes)),
            Err(e) => eprintln!("{dir}/{n}.wasm: {e} (scripts/build-wasm-examples builds the guests)"),
        }
    }
    // Real programs given by path (an interpreter: scripts/fetch-python-wasi).
    for path in std::env::args().skip(2) {
        match std::fs::read(&path) {
            Ok(bytes) => cases.push((path.rsplit('/').next().unwrap_or(&path).into(), bytes)),
            Err(e) => eprintln!("{path}: {e}"),
        }
    }
    let module = |body: String| wat::parse_str(format!("(module {body})")).expect("valid WAT");
    let repeat = |n: usize, s: &str| s.repeat(n);
    cases.push(("straight-line".into(), module(format!("(func (local i32) {})", repeat(100_000, "(local.set 0 (i32.add (local.get 0) (i32.const 1)))")))));
    cases.push(("empty functions".into(), module(repeat(50_000, "(func)"))));
    cases.push(("calls".into(), module(format!("(func {})", repeat(100_000, "(call 0)")))));
    cases.push(("blocks".into(), module(format!("(func {})", repeat(30_000, "(block (br 0))")))));
    cases.push(("constants".into(), module(format!("(func {})", (0..50_000).map(|i| format!("(drop (i64.const {}))", i * 1_000_003)).collect::<String>()))));
    cases.push(("br_table".into(), module(format!("(func (block (br_table {} (i32.const 0))))", repeat(100_000, "0 ")))));
    println!("{:<16} {:>10} {:>12} {:>7} {:>12} {:>7}", "module", "wasm", "footprint", "ratio", "peak", "ratio");
    for (name, bytes) in cases {
        match engine.compile(&bytes) {
            Ok(m) => {
                let ratio = |n: usize| n as f64 / bytes.len() as f64;
                println!("{name:<16} {:>10} {:>12} {:>7.2} {:>12} {:>7.2}", bytes.len(), m.footprint, ratio(m.footprint), m.compile_peak, ratio(m.compile_peak))
            }
            Err(e) => println!("{name:<16} {:>10} refused: {e}", bytes.len()),
        }
    }
}
