//! What compiled modules hold, measured: the memory a compilation leaves allocated (the
//! module's footprint, as the engine's cache counts it) against the size of its wasm, for the
//! guests and for module shapes chosen to make wasmi's translation large, beside the bound a
//! compilation reserves (engine/compile_cost.rs).
//! Usage: compile_size [WASM_DIR [MODULE.wasm...]] (default build/wasm)

use phase::engine::compile_cost::compile_bound;
use phase::engine::Engine;

include!("common/shapes.rs");

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
    cases.extend(compile_shapes().into_iter().map(|(n, b)| (n.to_string(), b)));
    println!("{:<34} {:>10} {:>12} {:>7} {:>12} {:>7} {:>12} {:>6}", "module", "wasm", "footprint", "ratio", "peak", "ratio", "bound", "margin");
    for (name, bytes) in cases {
        match engine.compile(&bytes) {
            Ok(m) => {
                let ratio = |n: usize| n as f64 / bytes.len() as f64;
                let bound = compile_bound(&bytes).unwrap_or(0);
                let margin = bound as f64 / m.footprint.max(m.compile_peak) as f64;
                println!("{name:<34} {:>10} {:>12} {:>7.2} {:>12} {:>7.2} {bound:>12} {margin:>6.2}", bytes.len(), m.footprint, ratio(m.footprint), m.compile_peak, ratio(m.compile_peak))
            }
            Err(e) => println!("{name:<34} {:>10} refused: {e}", bytes.len()),
        }
    }
}
