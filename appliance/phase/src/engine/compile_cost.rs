//! What compiling a module may take at most, read from its structure before it is compiled:
//! what the pool reserves for a compilation. wasmi's translation is not a fixed multiple of a
//! module's size: a conditional branch of 4 bytes takes over 200, one that carries values to
//! its label more per value, while data takes one byte per byte. So the bound is a sum over what
//! a module holds: operators, values branches copy, functions, locals and section bytes, each
//! at the most any shape took (`examples/compile_size.rs` prints them; the test
//! `the_compile_bound_covers_every_module_shape_we_know` holds this bound above all of them).

use wasmparser::{BlockType, CompositeInnerType, Operator, Parser, Payload, TypeRef};

/// Per operator, by kind, set so that every shape takes at most 1/1.7 of its bound (the calls
/// shape is the tightest). Most operators (arithmetic, locals, globals, loads and stores): 37
/// at most.
pub const PER_OPERATOR: u64 = 64;
/// Calls: 66.
pub const PER_CALL: u64 = 112;
/// Branches and conditionals (`br`, `br_if`, `br_table`, `if`, `else`): a `br_if` with its
/// condition took 224 for the pair.
pub const PER_BRANCH: u64 = 256;
/// Bulk memory and table operators (`memory.copy`, `memory.fill`, `table.*` …): 212.
pub const PER_BULK: u64 = 384;
/// Per target of a `br_table`: 21 for a label without values.
pub const PER_TARGET: u64 = 40;
/// Per value a branch carries to its label, or a call passes and returns: a `br_if` to a label
/// of 16 values took 47 more per value than one of 1.
pub const PER_VALUE_CARRIED: u64 = 96;
/// Per function: an empty one took 116.
pub const PER_FUNCTION: u64 = 160;
/// Per local a function declares.
pub const PER_LOCAL: u64 = 32;
/// Per byte of the type, import, function, table, memory, global, export, element and start
/// sections: types took 13 at the compilation's peak, exported functions 25.
pub const PER_OTHER_BYTE: u64 = 40;
/// Per byte of data segments and custom sections: kept once (data took 1.01).
pub const PER_DATA_BYTE: u64 = 2;
/// What any module takes besides.
pub const BASE: u64 = 256 << 10;
/// What reading a module's structure holds, per byte of it, at most: 8 bytes per function type
/// (3 bytes of wasm at least), 4 per function (1 at least), 8 per nested block (2 at least).
pub const SCAN_BYTES_PER_BYTE: u64 = 4;

/// The most compiling `wasm` may take (its peak, and what it keeps), in bytes; or why it is
/// not a module.
pub fn compile_bound(wasm: &[u8]) -> Result<u64, String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    // Each function type's (parameters, results); each function's type, imported ones first.
    let mut types: Vec<(u32, u32)> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let (mut imported, mut defined) = (0usize, 0usize);
    let (mut cost, mut counted) = (BASE, 0u64);
    let bytes_of = |range: std::ops::Range<usize>| (range.end - range.start) as u64;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(err)? {
            Payload::TypeSection(r) => {
                for group in r {
                    for t in group.map_err(err)?.into_types() {
                        types.push(match &t.composite_type.inner {
                            CompositeInnerType::Func(f) => (f.params().len() as u32, f.results().len() as u32),
                            _ => (0, 0),
                        });
                    }
                }
            }
            Payload::ImportSection(r) => {
                for import in r {
                    if let TypeRef::Func(t) = import.map_err(err)?.ty {
                        funcs.push(t);
                        imported += 1;
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    funcs.push(t.map_err(err)?);
                }
            }
            Payload::CodeSectionStart { range, .. } => counted += bytes_of(range),
            Payload::CodeSectionEntry(body) => {
                let results = funcs.get(imported + defined).and_then(|t| types.get(*t as usize)).map_or(0, |t| t.1);
                defined += 1;
                cost = cost.saturating_add(PER_FUNCTION);
                for local in body.get_locals_reader().map_err(err)? {
                    cost = cost.saturating_add(u64::from(local.map_err(err)?.0).saturating_mul(PER_LOCAL));
                }
                cost = cost.saturating_add(operators(body.get_operators_reader().map_err(err)?, results, &types, &funcs).map_err(err)?);
            }
            Payload::DataSection(r) => {
                counted += bytes_of(r.range());
                cost = cost.saturating_add(bytes_of(r.range()).saturating_mul(PER_DATA_BYTE));
            }
            Payload::CustomSection(r) => {
                counted += bytes_of(r.range());
                cost = cost.saturating_add(bytes_of(r.range()).saturating_mul(PER_DATA_BYTE));
            }
            _ => {}
        }
    }
    let other = (wasm.len() as u64).saturating_sub(counted);
    Ok(cost.saturating_add(other.saturating_mul(PER_OTHER_BYTE)))
}

/// What a function body's operators may take: each by its kind, and the values its branches
/// carry to their labels (a label's arity: a block's or an if's results, a loop's parameters,
/// the function's results) and its calls pass and return.
fn operators(mut r: wasmparser::OperatorsReader<'_>, results: u32, types: &[(u32, u32)], funcs: &[u32]) -> wasmparser::Result<u64> {
    let block = |bt: BlockType| match bt {
        BlockType::Empty => (0, 0),
        BlockType::Type(_) => (0, 1),
        BlockType::FuncType(i) => types.get(i as usize).copied().unwrap_or((0, 0)),
    };
    let call = |t: Option<&(u32, u32)>| t.map_or(0, |(p, q)| u64::from(*p) + u64::from(*q)).saturating_mul(PER_VALUE_CARRIED).saturating_add(PER_CALL);
    let mut labels: Vec<u32> = vec![results];
    let label = |labels: &[u32], depth: u32| u64::from(labels.len().checked_sub(1 + depth as usize).map_or(0, |i| labels[i])).saturating_mul(PER_VALUE_CARRIED);
    let mut cost = 0u64;
    while !r.eof() {
        let op = r.read()?;
        let c = match op {
            Operator::Block { blockty } => {
                labels.push(block(blockty).1);
                PER_OPERATOR
            }
            Operator::Loop { blockty } => {
                labels.push(block(blockty).0);
                PER_OPERATOR
            }
            Operator::If { blockty } => {
                labels.push(block(blockty).1);
                PER_BRANCH
            }
            Operator::Else => PER_BRANCH,
            Operator::End => {
                labels.pop();
                PER_OPERATOR
            }
            Operator::Br { relative_depth }
            | Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth } => PER_BRANCH + label(&labels, relative_depth),
            Operator::BrTable { targets } => {
                let mut c = PER_BRANCH + PER_TARGET + label(&labels, targets.default());
                for t in targets.targets() {
                    c = c.saturating_add(PER_TARGET + label(&labels, t?));
                }
                c
            }
            Operator::Return => PER_BRANCH + u64::from(results).saturating_mul(PER_VALUE_CARRIED),
            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                call(funcs.get(function_index as usize).and_then(|t| types.get(*t as usize)))
            }
            Operator::CallIndirect { type_index, .. }
            | Operator::ReturnCallIndirect { type_index, .. }
            | Operator::CallRef { type_index }
            | Operator::ReturnCallRef { type_index } => call(types.get(type_index as usize)),
            Operator::MemoryCopy { .. }
            | Operator::MemoryFill { .. }
            | Operator::MemoryInit { .. }
            | Operator::DataDrop { .. }
            | Operator::MemoryGrow { .. }
            | Operator::TableCopy { .. }
            | Operator::TableFill { .. }
            | Operator::TableInit { .. }
            | Operator::ElemDrop { .. }
            | Operator::TableGrow { .. }
            | Operator::TableGet { .. }
            | Operator::TableSet { .. }
            | Operator::TableSize { .. } => PER_BULK,
            _ => PER_OPERATOR,
        };
        cost = cost.saturating_add(c);
    }
    Ok(cost)
}
