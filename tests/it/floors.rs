//! The layering of `src/`: which top-level module may use which. Every top-level module
//! (`src/<name>.rs` or `src/<name>/`) sits on a floor of [`FLOORS`], and may use only modules
//! on lower floors, so the modules form no cycle and each one can be read, tested and changed
//! knowing only what lies beneath it. docs/architecture.md explains the floors.
//!
//! The tests read the source text, not the compiler's view: every `.rs` file under `src/`
//! with comments and string literals blanked, then every `crate::NAME` path (grouped imports
//! `use crate::{a::x, b}` included), every `super::` path that climbs to the crate root, and
//! string literals that are whole paths (serde's `default = "crate::x::f"`). lib.rs and main.rs
//! only declare and start the modules, so they are exempt.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The floors, lowest first. A module may use only modules on a lower floor: never one on its
/// own floor, never one above. Moving a module, or adding one, means changing this table and
/// the one in docs/architecture.md together.
const FLOORS: &[(&str, u32)] = &[
    // Foundations that know nothing of the rest: the error type, random streams, Ctrl-C, the
    // stable hash, and the run folder's file formats.
    ("error", 0),
    ("seed", 0),
    ("interrupt", 0),
    ("hash", 0),
    ("results", 0),
    ("progress", 0),
    // Kernels on dfdx tensors, and the dataset (images to batches).
    ("ops", 1),
    ("data", 1),
    // Layer kinds, shape inference and the network.
    ("model", 2),
    // The experiment file, checked into a Plan (names layer kinds and data settings).
    ("config", 3),
    // Training a Plan's network on a dataset.
    ("train", 4),
    // Pictures of data, histories and sweeps.
    ("plots", 5),
    // The HTML page of a run folder (and of a comparison).
    ("report", 6),
    // Comparing finished runs: overlaid curves and leaderboards.
    ("compare", 7),
    // One experiment end to end: check, prepare, fit, resume, predict, bench.
    ("pipeline", 7),
    // Many experiments: trials, launchers, status.
    ("sweep", 8),
    // The command line.
    ("cli", 9),
];

/// The only files that may name dfdx: a prefix ending in `/` covers a folder.
const DFDX_ALLOWED: &[&str] = &["src/model/", "src/ops/", "src/train/", "src/pipeline/device.rs"];

/// Files at the top of `src/` that declare or start the modules rather than belong to one.
const EXEMPT: &[&str] = &["lib.rs", "main.rs"];

/// Items lib.rs re-exports at the crate root, used everywhere; not a dependency on a module.
const ROOT_REEXPORTS: &[&str] = &["Error", "Result"];

const TABLE: &str = "the floors table in tests/it/floors.rs and docs/architecture.md";

// ---------------------------------------------------------------------------------------------
// Reading the sources

/// One source file, reduced to its code.
struct Source {
    /// `src/sweep/local.rs`.
    rel: String,
    /// Its top-level module (`sweep`), or `None` for lib.rs and main.rs.
    top: Option<String>,
    /// Its module path inside the crate: `["sweep", "local"]`; `["sweep"]` for `sweep/mod.rs`.
    module: Vec<String>,
    /// The original lines, to quote.
    lines: Vec<String>,
    tokens: Vec<Token>,
}

/// A use of another top-level module.
#[derive(Clone, Debug, PartialEq)]
struct Reference {
    /// The first path segment below the crate root (`sweep` in `crate::sweep::x`).
    name: String,
    /// 1-based.
    line: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, sorted by path.
fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let inner: Vec<String> = path
                .strip_prefix(&root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let exempt = inner.len() == 1 && EXEMPT.contains(&inner[0].as_str());
            let mut module: Vec<String> = inner.iter().map(|c| c.trim_end_matches(".rs").to_string()).collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            Source {
                rel: format!("src/{}", inner.join("/")),
                top: (!exempt).then(|| module[0].clone()),
                module,
                lines: text.lines().map(str::to_string).collect(),
                tokens: tokenize(&code_only(&text)),
            }
        })
        .collect()
}

/// The top-level modules that exist: `src/<name>.rs` and `src/<name>/`.
fn modules_on_disk() -> BTreeSet<String> {
    std::fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            if p.is_dir() {
                Some(name)
            } else if name.ends_with(".rs") && !EXEMPT.contains(&name.as_str()) {
                Some(name.trim_end_matches(".rs").to_string())
            } else {
                None
            }
        })
        .collect()
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a string literal's contents are a path that the compiler resolves (serde's
/// `default = "crate::x::f"`, `with = "super::m"`): those are kept as code.
fn is_path_literal(s: &str) -> bool {
    let mut segments = s.split("::");
    matches!(segments.next(), Some("crate" | "super"))
        && s.contains("::")
        && segments.all(|seg| {
            !seg.is_empty() && !seg.starts_with(|c: char| c.is_ascii_digit()) && seg.chars().all(is_ident_char)
        })
}

/// The code of a Rust file with comments (line, block, nested block, doc) and the contents of
/// string and character literals blanked, keeping every newline so line numbers stay right.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    // Pushes the newlines of c[from..to], so lines keep their numbers.
    let newlines = |out: &mut String, from: usize, to: usize| {
        out.extend(c[from..to.min(c.len())].iter().filter(|&&ch| ch == '\n'));
    };
    // Whether c[i] starts a raw string: `r` (alone or after `b`) then zero or more `#` and `"`.
    let raw_string = |i: usize| {
        let before = |back: usize| if i >= back { c[i - back] } else { ' ' };
        let mut j = i + 1;
        while at(j) == '#' {
            j += 1;
        }
        c[i] == 'r' && (!is_ident_char(before(1)) || (before(1) == 'b' && !is_ident_char(before(2)))) && at(j) == '"'
    };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let (start, mut depth) = (i, 0usize);
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            newlines(&mut out, start, i);
            out.push(' ');
        } else if raw_string(i) {
            // A raw string r"…", r#"…"#, br"…": ends at a quote followed by as many #.
            let start = i;
            let mut hashes = 0;
            i += 1;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#')) {
                i += 1;
            }
            i = (i + 1 + hashes).min(c.len());
            newlines(&mut out, start, i);
            out.push_str("\"\"");
        } else if ch == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
            let contents: String = c[start + 1..i.saturating_sub(1).max(start + 1)].iter().collect();
            if is_path_literal(&contents) {
                out.push(' ');
                out.push_str(&contents);
                out.push(' ');
            } else {
                newlines(&mut out, start, i);
                out.push_str("\"\"");
            }
        } else if ch == '\'' && at(i + 1) == '\\' {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            i += 3;
            while i < c.len() && c[i] != '\'' && c[i] != '\n' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if ch == '\'' && at(i + 2) == '\'' && at(i + 1) != '\n' {
            // A plain character literal, '"' and '{' included.
            i += 3;
            out.push_str("' '");
        } else {
            // Code, and the quote of a lifetime or loop label.
            out.push(ch);
            i += 1;
        }
    }
    out
}

fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            tokens.push(Token { tok: Tok::Ident(c[start..i].iter().collect()), line });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            tokens.push(Token { tok: Tok::Path, line });
            i += 2;
        } else {
            tokens.push(Token { tok: Tok::Punct(ch), line });
            i += 1;
        }
    }
    tokens
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some(Token { tok: Tok::Ident(s), .. }) => Some(s),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|t| &t.tok == tok)
}

/// The first segments named by the path or use tree starting at `tokens[i]`, just after
/// `crate::`: `a::x` gives `a`; `{a::{x, y}, b, self}` gives `a` and `b`; `*` nothing.
fn first_segments(tokens: &[Token], i: usize) -> Vec<Reference> {
    match tokens.get(i) {
        Some(Token { tok: Tok::Ident(name), line }) if name != "self" => {
            vec![Reference { name: name.clone(), line: *line }]
        }
        Some(Token { tok: Tok::Punct('{'), .. }) => {
            let mut found = Vec::new();
            let (mut j, mut depth, mut item_start) = (i + 1, 1usize, true);
            while j < tokens.len() && depth > 0 {
                match &tokens[j].tok {
                    Tok::Punct('{') => depth += 1,
                    Tok::Punct('}') => depth -= 1,
                    Tok::Punct(',') if depth == 1 => {
                        item_start = true;
                        j += 1;
                        continue;
                    }
                    Tok::Ident(name) if item_start && depth == 1 && name != "self" => {
                        found.push(Reference { name: name.clone(), line: tokens[j].line });
                    }
                    _ => {}
                }
                item_start = false;
                j += 1;
            }
            found
        }
        _ => Vec::new(),
    }
}

/// Every path in `tokens` that leaves the module tree of the file's own top-level module for
/// another: `crate::NAME…` (also `$crate::` in macros), and `super::…` chains that climb to
/// the crate root. `module` is the file's module path; inline `mod x { … }` blocks deepen it.
fn references(tokens: &[Token], module: &[String]) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    // Inline modules open at this point, with the brace depth inside each.
    let mut inline: Vec<usize> = Vec::new();
    let mut pending_mod = false;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                if pending_mod {
                    inline.push(depth);
                    pending_mod = false;
                }
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(word)
                if word == "mod" && ident(tokens, i + 1).is_some() && is(tokens, i + 2, &Tok::Punct('{')) =>
            {
                pending_mod = true;
            }
            Tok::Ident(word) if word == "crate" && is(tokens, i + 1, &Tok::Path) => {
                found.extend(first_segments(tokens, i + 2));
                i += 2;
                continue;
            }
            Tok::Ident(word) if word == "super" && !(i > 0 && is(tokens, i - 1, &Tok::Path)) => {
                let mut j = i;
                let mut climbs = 0;
                while ident(tokens, j) == Some("super") && is(tokens, j + 1, &Tok::Path) {
                    climbs += 1;
                    j += 2;
                }
                // The depth of the module this path is written in, inline modules included.
                if climbs > 0 && climbs == module.len() + inline.len() {
                    found.extend(first_segments(tokens, j));
                }
                if climbs > 0 {
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The graph

/// Edges between top-level modules: from → to → (file, line) of each use.
type Graph = BTreeMap<String, BTreeMap<String, Vec<(String, usize)>>>;

struct Layering {
    sources: Vec<Source>,
    modules: BTreeSet<String>,
    graph: Graph,
    /// `crate::NAME` where NAME is neither a module nor a root re-export: (file, line, name).
    unknown: Vec<(String, usize, String)>,
}

fn layering() -> Layering {
    let sources = sources();
    let modules = modules_on_disk();
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), BTreeMap::new())).collect();
    let mut unknown = Vec::new();
    for source in &sources {
        let Some(top) = &source.top else { continue };
        for r in references(&source.tokens, &source.module) {
            if ROOT_REEXPORTS.contains(&r.name.as_str()) || &r.name == top {
                continue;
            }
            if modules.contains(&r.name) {
                graph.entry(top.clone()).or_default().entry(r.name).or_default().push((source.rel.clone(), r.line));
            } else {
                unknown.push((source.rel.clone(), r.line, r.name));
            }
        }
    }
    Layering { sources, modules, graph, unknown }
}

impl Layering {
    fn quote(&self, file: &str, line: usize) -> String {
        let text = self.sources.iter().find(|s| s.rel == file).and_then(|s| s.lines.get(line - 1));
        format!("{file}:{line}: {}", text.map_or("", |t| t.trim()))
    }

    /// The files (with lines) that make the edge from → to, one file per entry.
    fn edge_files(&self, from: &str, to: &str) -> String {
        let mut by_file: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (file, line) in &self.graph[from][to] {
            by_file.entry(file).or_default().push(*line);
        }
        by_file
            .iter()
            .map(|(file, lines)| {
                let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                format!("{file}:{}", lines.join(","))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn reachable(&self, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in self.graph.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    }

    /// The shortest cycle through `start`, as a list of modules ending where it began.
    fn cycle_through(&self, start: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = VecDeque::from([start.to_string()]);
        while let Some(m) = queue.pop_front() {
            for next in self.graph[&m].keys() {
                if next == start {
                    let mut chain = vec![start.to_string(), m.clone()];
                    let mut at = m.clone();
                    while let Some(prev) = came_from.get(&at) {
                        chain.push(prev.clone());
                        at = prev.clone();
                    }
                    chain.reverse();
                    return Some(chain);
                }
                if next != start && !came_from.contains_key(next) {
                    came_from.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        None
    }
}

fn floor_of(module: &str) -> Option<u32> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn floors_the_module_graph_has_no_cycle() {
    let l = layering();
    let reach: BTreeMap<&String, BTreeSet<String>> = l.modules.iter().map(|m| (m, l.reachable(m))).collect();
    // Strongly connected groups of modules, each reported once, by its first member.
    let mut reported = BTreeSet::new();
    let mut problems = Vec::new();
    for m in &l.modules {
        if reported.contains(m) || !reach[m].contains(m) {
            continue;
        }
        let group: BTreeSet<&String> =
            l.modules.iter().filter(|o| reach[m].contains(*o) && reach[*o].contains(m)).collect();
        reported.extend(group.iter().map(|g| (*g).clone()));
        let chain = l.cycle_through(m).expect("a module that reaches itself lies on a cycle");
        let mut text = format!("cycle: {}\n", chain.join(" → "));
        for pair in chain.windows(2) {
            text += &format!("    {} → {}: {}\n", pair[0], pair[1], l.edge_files(&pair[0], &pair[1]));
        }
        if group.len() > chain.len() - 1 {
            let names: Vec<&str> = group.iter().map(|g| g.as_str()).collect();
            text += &format!("    (these modules all reach one another: {})\n", names.join(", "));
        }
        problems.push(text);
    }
    assert!(
        problems.is_empty(),
        "the top-level modules of src/ depend on one another in a circle; break each cycle by moving \
         the shared code down to a lower floor ({TABLE}):\n\n{}",
        problems.join("\n")
    );
}

#[test]
fn floors_each_module_uses_only_lower_floors() {
    let mut seen = BTreeSet::new();
    for (m, _) in FLOORS {
        assert!(seen.insert(*m), "`{m}` is listed twice in the floors table in tests/it/floors.rs");
    }
    let l = layering();
    let mut problems = Vec::new();
    for m in &l.modules {
        if floor_of(m).is_none() {
            let place = if src_dir().join(m).is_dir() { format!("src/{m}/") } else { format!("src/{m}.rs") };
            problems.push(format!("module `{m}` ({place}) has no floor: add it to {TABLE}"));
        }
    }
    for (m, _) in FLOORS {
        if !l.modules.contains(*m) {
            problems.push(format!(
                "the floors table lists `{m}`, but there is no src/{m}.rs or src/{m}/: remove it from {TABLE} \
                 (or create the module)"
            ));
        }
    }
    for (from, edges) in &l.graph {
        let Some(from_floor) = floor_of(from) else { continue };
        for (to, uses) in edges {
            let Some(to_floor) = floor_of(to) else { continue };
            if to_floor >= from_floor {
                let place = if to_floor == from_floor { "on the same floor" } else { "above it" };
                let mut text = format!("`{from}` (floor {from_floor}) uses `{to}` (floor {to_floor}, {place}):\n");
                for (file, line) in uses {
                    text += &format!("    {}\n", l.quote(file, *line));
                }
                problems.push(text.trim_end().to_string());
            }
        }
    }
    for (file, line, name) in &l.unknown {
        problems.push(format!(
            "`crate::{name}` is neither a top-level module nor one of the crate root's re-exports {ROOT_REEXPORTS:?}; \
             name it through its module (or list the re-export in tests/it/floors.rs):\n    {}",
            l.quote(file, *line)
        ));
    }
    assert!(
        problems.is_empty(),
        "a module may use only modules on lower floors ({TABLE}); move the code that is needed \
         below to a lower floor, or pass it in from above:\n\n{}",
        problems.join("\n")
    );
}

#[test]
fn floors_only_model_ops_train_and_the_device_choice_use_dfdx() {
    let l = layering();
    let mut problems = Vec::new();
    for s in &l.sources {
        if DFDX_ALLOWED.iter().any(|a| if a.ends_with('/') { s.rel.starts_with(a) } else { s.rel == *a }) {
            continue;
        }
        let t = &s.tokens;
        let mut lines = BTreeSet::new();
        for i in 0..t.len() {
            let names_dfdx = ident(t, i) == Some("dfdx")
                && (is(t, i + 1, &Tok::Path)
                    || matches!(i.checked_sub(1).and_then(|p| ident(t, p)), Some("use" | "crate")));
            if names_dfdx {
                lines.insert(t[i].line);
            }
        }
        problems.extend(lines.into_iter().map(|line| format!("    {}", l.quote(&s.rel, line))));
    }
    assert!(
        problems.is_empty(),
        "only {} may use dfdx; everything else works on plain Rust values (go through `model`, \
         `train` or `pipeline::device` instead):\n{}",
        DFDX_ALLOWED.join(", "),
        problems.join("\n")
    );
}

/// The reader itself, on code written to trip it up.
#[test]
fn floors_reader_finds_every_crate_path_and_nothing_else() {
    let text = r##"
//! Docs mention crate::docs_only and dfdx::nothing.
use crate::{a::{x, y::{self, z}}, b, self as _};
use crate::c::D;
/* block /* nested crate::nested */ crate::block */
fn f<'a>(s: &'a str) -> char {
    let _ = "crate::not_a_path here";
    let _ = r#"crate::raw "# ;
    let _ = '{';
    let _ = '\'';
    let _ = "crate::e::f";
    crate :: g ::h();
    $crate::m!();
    super::super::k::f();
    '}'
}
mod tests {
    use super::*;
    use super::super::p;
}
"##;
    let names = |module: &[&str]| -> Vec<(String, usize)> {
        let module: Vec<String> = module.iter().map(|m| m.to_string()).collect();
        references(&tokenize(&code_only(text)), &module).into_iter().map(|r| (r.name, r.line)).collect()
    };
    let expected = |extra: &[(&str, usize)]| -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = [("a", 3), ("b", 3), ("c", 4), ("e", 11), ("g", 12), ("m", 13)]
            .iter()
            .map(|(n, l)| (n.to_string(), *l))
            .collect();
        v.extend(extra.iter().map(|(n, l)| (n.to_string(), *l)));
        v.sort_by_key(|(_, l)| *l);
        v
    };
    // In src/sweep/local.rs, `super::super::` reaches the crate root; inside its inline
    // `mod tests`, it only reaches `sweep`.
    assert_eq!(names(&["sweep", "local"]), expected(&[("k", 14)]));
    // In src/sweep/mod.rs, `super::super::k` is past the root (not valid Rust, so not counted),
    // and the inline module's `super::super::p` reaches the root.
    assert_eq!(names(&["sweep"]), expected(&[("p", 19)]));
    assert_eq!(code_only(text).lines().count(), text.lines().count(), "line numbers are kept");
    assert!(is_path_literal("super::yes") && !is_path_literal("crate::") && !is_path_literal("crate::a b"));
}
