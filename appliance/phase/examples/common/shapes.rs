// Module shapes chosen to make wasmi's translation large, per byte of wasm: one per kind of
// operator and section a hostile client could repeat. Shared by examples/compile_size.rs (which
// prints what each costs) and tests/engine.rs (which holds engine/compile_cost.rs's bound
// above all of them).
fn compile_shapes() -> Vec<(&'static str, Vec<u8>)> {
    let m = |body: String| wat::parse_str(format!("(module {body})")).expect("valid WAT");
    let r = |n: usize, s: &str| s.repeat(n);
    vec![
        ("straight-line", m(format!("(func (local i32) {})", r(100_000, "(local.set 0 (i32.add (local.get 0) (i32.const 1)))")))),
        ("empty functions", m(r(50_000, "(func)"))),
        ("calls", m(format!("(func {})", r(100_000, "(call 0)")))),
        ("calls, 8 params", m(format!("(func $g (param {})) (func {})", r(8, "i32 "), r(20_000, &format!("(call $g {})", r(8, "(i32.const 0)")))))),
        ("calls, 8 results", m(format!("(func $g (result {}) {}) (func {})", r(8, "i32 "), r(8, "(i32.const 0)"), r(20_000, &format!("(call $g) {}", r(8, "(drop)")))))),
        ("call_indirect", m(format!("(type $t (func)) (table 1 funcref) (func {})", r(50_000, "(call_indirect (type $t) (i32.const 0))")))),
        ("blocks", m(format!("(func {})", r(30_000, "(block (br 0))")))),
        ("loops", m(format!("(func {})", r(30_000, "(loop)")))),
        ("if/else", m(format!("(func (param i32) {})", r(30_000, "(if (local.get 0) (then (nop)) (else (nop)))")))),
        ("br_if, 16 values", m(format!("(type $t (func (result {}))) (func (param i32) (block (type $t) {} {}) {})", r(16, "i32 "), r(16, "(i32.const 0)"), r(30_000, "(br_if 0 (local.get 0))"), r(16, "(drop)")))),
        ("br_if, 1 value", m(format!("(func (param i32) (result i32) (block (result i32) (i32.const 0) {}))", r(50_000, "(br_if 0 (local.get 0))")))),
        ("br_if to a loop, 16 values", m(format!("(type $t (func (param {}))) (func (param i32) {} (loop (type $t) {} {}))", r(16, "i32 "), r(16, "(i32.const 0)"), r(30_000, "(br_if 0 (local.get 0))"), r(16, "(drop)")))),
        ("br_table, 500 labels with a value", m(format!("(func (param i32) (result i32) {} (i32.const 0) (br_table {} (local.get 0)) {})", r(500, "(block (result i32)"), (0..500).map(|i| format!("{} ", i % 500)).collect::<String>().repeat(60), r(500, ")")))),
        ("br_table", m(format!("(func (param i32) (block (br_table {} (local.get 0))))", r(100_000, "0 ")))),
        ("br_tables, 16 targets", m(format!("(func (param i32) (block {}))", r(5_000, &format!("(br_table {} (local.get 0))", r(16, "0 ")))))),
        ("select", m(format!("(func (param i32) {})", r(50_000, "(drop (select (i32.const 1) (i32.const 2) (local.get 0)))")))),
        ("memory", m(format!("(memory 1) (func {})", r(50_000, "(i32.store (i32.const 0) (i32.load (i32.const 4)))")))),
        ("bulk memory", m(format!("(memory 1) (func {})", r(30_000, "(memory.copy (i32.const 0) (i32.const 8) (i32.const 4)) (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))")))),
        ("tables", m(format!("(table 10 funcref) (func (param i32) {})", r(30_000, "(table.set 0 (local.get 0) (table.get 0 (local.get 0))) (drop (table.size 0))")))),
        ("memory size and grow", m(format!("(memory 1) (func {})", r(30_000, "(drop (memory.grow (i32.const 0))) (drop (memory.size))")))),
        ("floats", m(format!("(func (param f64) {})", r(30_000, "(drop (f64.sqrt (f64.add (local.get 0) (f64.const 1.5))))")))),
        ("conversions", m(format!("(func (param i64) {})", r(30_000, "(drop (f32.convert_i64_s (i64.rotl (local.get 0) (i64.extend_i32_u (i32.wrap_i64 (local.get 0))))))")))),
        ("tail calls", m(format!("(func $g (param i32)) (func (param i32) {} (return_call $g (local.get 0)))", r(30_000, "(block (br_if 0 (local.get 0)) (return_call $g (local.get 0)))")))),
        ("element segment", m(format!("(table 100000 funcref) (func $f) (elem (i32.const 0) func {})", r(100_000, "$f ")))),
        ("ref.func and tables", m(format!("(table 10 funcref) (func $f) (elem declare func $f) (func {})", r(30_000, "(table.set 0 (i32.const 1) (ref.func $f)) (drop (ref.is_null (table.get 0 (i32.const 2))))")))),
        ("globals", m(format!("(global $g (mut i32) (i32.const 0)) (func {})", r(50_000, "(global.set $g (global.get $g))")))),
        ("locals", m(format!("(func (local {}) {})", r(20_000, "i64 "), r(10_000, "(drop (local.get 19999))")))),
        ("custom section", {
            let mut w = m(String::new());
            w.extend_from_slice(&[0, 0x83, 0xa1, 0x3d, 1, b'x']); // id 0, 1 003 651 bytes, name "x"
            w.resize(w.len() + 1_003_649, 0);
            w
        }),
        ("constants", m(format!("(func {})", (0..50_000).map(|i| format!("(drop (i64.const {}))", i * 1_000_003)).collect::<String>()))),
        ("data", m(format!("(memory 20) (data (i32.const 0) \"{}\")", r(1_000_000, "a")))),
        ("exports", m((0..20_000).map(|i| format!("(func (export \"f{i}\"))")).collect::<String>())),
        ("types", m((0..20_000).map(|i| format!("(type (func (param {})))", r(i % 30 + 1, "i32 "))).collect::<String>())),
    ]
}
