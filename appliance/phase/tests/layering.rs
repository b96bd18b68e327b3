//! The binary crate's layering, read from its sources: which top-level module names which
//! (`crate::x` paths and `use crate::{…}` groups, test modules left out). No import circle
//! between modules, and arrows only point down: `cli` → `node` → {`api` → `jobs`, `boot`,
//! `p2p`, `http`} → `engine`; the jobs domain never names the HTTP layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules lib.rs declares.
fn modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';').map(str::to_string)).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module -> the modules its non-test code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let tops = modules();
    let mut edges: BTreeMap<String, BTreeSet<String>> = tops.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for top in &tops {
        let mut files = vec![];
        let (dir, file) = (src().join(top), src().join(format!("{top}.rs")));
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        if file.exists() {
            files.push(file);
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Test modules sit at the end of a file, behind #[cfg(test)].
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let mut named: Vec<&str> = code.split("crate::").skip(1).map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("")).collect();
            for group in code.split("use crate::{").skip(1) {
                let inner = group.split('}').next().unwrap_or("");
                named.extend(inner.split(',').map(|p| p.trim().split("::").next().unwrap_or("").trim()));
            }
            for n in named {
                if n != top && tops.contains(n) {
                    edges.get_mut(top).unwrap().insert(n.to_string());
                }
            }
        }
    }
    edges
}

/// Everything `from` reaches.
fn reach(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for n in edges.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    seen
}

#[test]
fn no_module_reaches_itself() {
    let edges = graph();
    assert!(edges.len() > 15, "lib.rs lists the modules: {:?}", edges.keys());
    for m in edges.keys() {
        let r = reach(&edges, m);
        assert!(!r.contains(m), "an import circle through {m}: it reaches {r:?}\n{edges:#?}");
    }
}

#[test]
fn arrows_point_down() {
    let edges = graph();
    let names = |m: &str| reach(&edges, m);
    // The domain of jobs knows nothing of HTTP, the API, the node that wires it, or PID 1.
    for above in ["http", "api", "node", "cli", "init", "faults", "notify"] {
        assert!(!names("jobs").contains(above), "jobs reaches {above}: {:?}", edges["jobs"]);
    }
    // The API translates; it is wired by the node, not the other way round.
    for above in ["node", "cli", "init"] {
        assert!(!names("api").contains(above), "api reaches {above}: {:?}", edges["api"]);
    }
    // The node is wired from the command line or by PID 1; it knows neither.
    for above in ["cli", "init"] {
        assert!(!names("node").contains(above), "node reaches {above}: {:?}", edges["node"]);
    }
    // The leaves stay leaves.
    for leaf in ["engine", "p2p", "http", "memory", "cache", "sys", "clock", "data_dir"] {
        for above in ["jobs", "api", "node", "cli", "init", "boot", "pxe"] {
            assert!(!names(leaf).contains(above), "{leaf} reaches {above}: {:?}", edges[leaf]);
        }
    }
    // Only the command line (and main) starts anything from the command line.
    for (m, out) in &edges {
        assert!(m == "cli" || !out.contains("cli"), "{m} names cli");
    }
}
