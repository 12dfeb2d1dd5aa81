//! Guardrails for the code's shape (issue "One request path"): no import circle between the
//! source files of `crates/core/src`, `crates/config/src` and `crates/testkit/src`, and no file
//! over 800 lines of non-test code. A file's module path is its path; an edge is any
//! `crate::a::b` path (resolved to the longest prefix that is a file) or `super::x` path in its
//! non-test code. A `mod.rs` naming its children (`pub mod x;`, `pub use x::Y;`) is not
//! counted: that is where a folder's public names are gathered, not a dependency of the
//! parent's code on its children. The same check runs between rooms (top-level modules, a
//! folder counting as one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Module → the modules its code names.
type Edges = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `policy/mod.rs` → `policy`, `policy/stack.rs` → `policy::stack`, `lib.rs` → ``.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).expect("under root").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        parts.pop();
    }
    parts.join("::")
}

/// The code before the unit tests, without comments.
fn code_of(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end].lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Module paths after `prefix` (`crate::` or `super::`): identifiers joined by `::`.
fn paths_after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    code.match_indices(prefix).map(move |(i, _)| {
        let rest = &code[i + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        rest[..end].split("::").filter(|s| !s.is_empty()).collect()
    })
}

fn graph(root: &Path) -> (Edges, Vec<(PathBuf, usize)>) {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(root, f), f.clone())).collect();
    let mut edges: Edges = BTreeMap::new();
    let mut sizes = Vec::new();
    for (m, f) in &modules {
        let text = std::fs::read_to_string(f).expect("read source");
        let code = code_of(&text);
        sizes.push((f.clone(), code.lines().count()));
        let out = edges.entry(m.clone()).or_default();
        for p in paths_after(&code, "crate::") {
            if let Some(k) = (1..=p.len()).rev().find(|&k| modules.contains_key(&p[..k].join("::"))) {
                let target = p[..k].join("::");
                if &target != m {
                    out.insert(target);
                }
            }
        }
        // `super::x` from `a::b::c` (a file) names `a::b::x` or an item of `a::b`.
        let parent: Vec<&str> = m.split("::").collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        for p in paths_after(&code, "super::") {
            let Some(first) = p.first() else { continue };
            let mut child = parent.to_vec();
            child.push(first);
            let target = if modules.contains_key(&child.join("::")) { child.join("::") } else { parent.join("::") };
            if &target != m && modules.contains_key(&target) {
                out.insert(target);
            }
        }
    }
    (edges, sizes)
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(edges: &Edges) -> Vec<Vec<String>> {
    struct T<'a> {
        e: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let e = t.e;
        for w in e.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        e: edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn check(crate_src: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(crate_src);
    let (edges, sizes) = graph(&root);
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles between files of {crate_src}: {found:?}");
    // The same at the level of rooms (top-level modules: a folder counts as one), so a circle
    // that passes through a folder's `mod.rs` and one of its files is caught too.
    let mut rooms: Edges = BTreeMap::new();
    for (m, out) in &edges {
        let room = m.split("::").next().unwrap_or_default().to_string();
        let entry = rooms.entry(room.clone()).or_default();
        for w in out {
            let other = w.split("::").next().unwrap_or_default();
            if other != room {
                entry.insert(other.to_string());
            }
        }
    }
    let found = circles(&rooms);
    assert!(found.is_empty(), "import circles between rooms of {crate_src}: {found:?}");
    let big: Vec<_> = sizes.iter().filter(|(_, n)| *n > MAX_LINES).collect();
    assert!(big.is_empty(), "files over {MAX_LINES} lines of non-test code: {big:?}");
}

#[test]
fn core_has_no_import_circle_and_no_oversized_file() {
    check("src");
}

#[test]
fn config_has_no_import_circle_and_no_oversized_file() {
    check("../config/src");
}

#[test]
fn testkit_has_no_import_circle_and_no_oversized_file() {
    check("../testkit/src");
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut e: Edges = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("c".into());
    e.entry("c".into()).or_default().insert("a".into());
    e.entry("d".into()).or_default().insert("a".into());
    assert_eq!(circles(&e), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
}
