//! Config problems rendered as `file:line:col: message` with the offending line and a caret,
//! the way compilers print them, or naming the override (`--set`, environment variable) the
//! value came from. All problems are reported together.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A config file's name and text, kept to point at problems in it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as the user gave it (or as `extends` resolved it).
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

/// One step of a key path.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    /// `data` in `data.path`.
    Key(&'a str),
    /// `2` in `model.layers[2]`.
    Index(usize),
}

/// A key path as the user writes it: `model.layers[2].filters`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out += k,
            Seg::Key(k) => out += &format!(".{k}"),
            Seg::Index(i) => out += &format!("[{i}]"),
        }
    }
    out
}

/// Where a value of the resolved config came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file, by index into `Sources::files`.
    File(usize),
    /// An environment variable, as `NAME=value`.
    Env(String),
    /// A `--set key=value` argument, as written.
    Set(String),
    /// A value of sweep trial `trial`, written in file `file` (by index into `Sources::files`)
    /// at `value` (the list entry or distribution) under the swept key at `key`.
    Sweep {
        /// Index of the trial in the sweep.
        trial: usize,
        /// The file holding the `[sweep]` table.
        file: usize,
        /// Byte span of the swept key, when written in the file.
        key: Option<Range<usize>>,
        /// Byte span of the value (or distribution), when written in the file.
        value: Option<Range<usize>>,
    },
}

/// Where a problem is.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// In a file (by index into `Sources::files`), at a byte range when known.
    File(usize, Option<Range<usize>>),
    /// In an override, named as the user wrote it.
    Override(String),
}

/// One problem.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Where it is.
    pub at: Location,
    /// What is wrong and what to do.
    pub message: String,
}

/// The files a config was read from (the one named on the command line first, then what it
/// `extends`), and the origin of every value that did not come from the defaults.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Config files; index 0 is the one named on the command line.
    pub files: Vec<Source>,
    /// Origin of each key path that was set (`train.epochs`, `model.layers`), see [`path_string`].
    pub origins: BTreeMap<String, Origin>,
}

impl From<Source> for Sources {
    fn from(source: Source) -> Self {
        Sources { files: vec![source], origins: BTreeMap::new() }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(i) => write!(f, "file #{i}"),
            Origin::Env(s) => write!(f, "environment variable {s}"),
            Origin::Set(s) => write!(f, "--set {s}"),
            Origin::Sweep { trial, .. } => write!(f, "sweep trial {trial}"),
        }
    }
}

impl Source {
    /// Byte span of the value (or table header) at `path`, if it is written in the file.
    pub fn locate(&self, path: &[Seg]) -> Option<Range<usize>> {
        self.find(path, false)
    }

    /// Byte span of the last key of `path` itself (for an unknown key), if written in the file.
    pub fn locate_key(&self, path: &[Seg]) -> Option<Range<usize>> {
        self.find(path, true)
    }

    fn find(&self, path: &[Seg], key_only: bool) -> Option<Range<usize>> {
        use toml_edit::{Item, TableLike, Value};
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut table: &dyn TableLike = doc.as_table();
        let mut span = None;
        let mut segs = path.iter().peekable();
        while let Some(seg) = segs.next() {
            let Seg::Key(k) = *seg else { break };
            let key_span = table.key(k).and_then(|key| key.span());
            let item = table.get(k)?;
            span = if key_only && segs.peek().is_none() { key_span } else { item.span().or(key_span) };
            match item {
                Item::Value(Value::Array(list)) => {
                    if let Some(Seg::Index(i)) = segs.peek() {
                        segs.next();
                        span = list.get(*i)?.span();
                    }
                }
                Item::Table(t) => table = t,
                Item::Value(Value::InlineTable(t)) => table = t,
                Item::ArrayOfTables(list) => {
                    if let Some(Seg::Index(i)) = segs.peek() {
                        segs.next();
                        let t = list.get(*i)?;
                        span = t.span();
                        table = t;
                    }
                }
                _ => {}
            }
        }
        span
    }

    /// 1-based line and column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// `file:line:col: message`, the line and a caret under `span`.
    pub fn render(&self, span: Option<&Range<usize>>, message: &str) -> String {
        let file = self.path.display();
        let Some(span) = span else {
            return format!("error: {file}: {message}");
        };
        let (line, col) = self.line_col(span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("");
        let width = text.chars().count().saturating_sub(col - 1).max(1);
        let carets = self.text[span.clone()].lines().next().map_or(1, |s| s.chars().count()).clamp(1, width);
        let gutter = " ".repeat(line.to_string().len());
        format!(
            "error: {file}:{line}:{col}: {message}\n{gutter} |\n{line} | {text}\n{gutter} | {}{}",
            " ".repeat(col - 1),
            "^".repeat(carets)
        )
    }
}

impl Sources {
    /// The file named on the command line.
    pub fn main(&self) -> &Source {
        &self.files[0]
    }

    /// Where the value at `path` came from: the origin of the longest set prefix of the path
    /// (so `model.layers[2].filters` falls back to the file that wrote `model.layers`).
    pub fn origin(&self, path: &[Seg]) -> Origin {
        (0..=path.len())
            .rev()
            .find_map(|n| self.origins.get(&path_string(&path[..n])))
            .cloned()
            .unwrap_or(Origin::File(0))
    }

    /// `origin` for a person: the file's path, or the environment variable, `--set` or sweep
    /// trial.
    pub fn describe(&self, origin: &Origin) -> String {
        match origin {
            Origin::File(i) => self.files[*i].path.display().to_string(),
            other => other.to_string(),
        }
    }

    /// A diagnostic about the value at `path`.
    pub fn at(&self, path: &[Seg], message: impl Into<String>) -> Diagnostic {
        self.diagnostic(path, false, message.into())
    }

    /// A diagnostic about the key at the end of `path` (an unknown key).
    pub fn at_key(&self, path: &[Seg], message: impl Into<String>) -> Diagnostic {
        self.diagnostic(path, true, message.into())
    }

    fn diagnostic(&self, path: &[Seg], key: bool, message: String) -> Diagnostic {
        let at = match self.origin(path) {
            Origin::File(i) => {
                let file = &self.files[i];
                let span = if key { file.locate_key(path) } else { file.locate(path) };
                // Not written there (a default or a missing key): point at the nearest parent.
                let span = span.or_else(|| (1..path.len()).rev().find_map(|n| file.locate(&path[..n])));
                Location::File(i, span)
            }
            Origin::Env(name) => Location::Override(format!("environment variable {name}")),
            Origin::Set(arg) => Location::Override(format!("--set {arg}")),
            Origin::Sweep { file, key: key_span, value, .. } => {
                Location::File(file, if key { key_span } else { value })
            }
        };
        Diagnostic { at, message }
    }

    /// `file:line:col` of the value at `path`, or the override it came from.
    pub fn position(&self, path: &[Seg]) -> String {
        match self.at(path, "").at {
            Location::File(i, Some(span)) => {
                let (line, col) = self.files[i].line_col(span.start);
                format!("{}:{line}:{col}", self.files[i].path.display())
            }
            Location::File(i, None) => self.files[i].path.display().to_string(),
            Location::Override(name) => name,
        }
    }

    /// The line the value at `path` is written on, when it comes from a file.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        match self.at(path, "").at {
            Location::File(i, Some(span)) => Some(self.files[i].line_col(span.start).0),
            _ => None,
        }
    }

    /// Renders one diagnostic.
    pub fn render(&self, d: &Diagnostic) -> String {
        match &d.at {
            Location::File(i, span) => self.files[*i].render(span.as_ref(), &d.message),
            Location::Override(name) => format!("error: {name}: {}", d.message),
        }
    }

    /// Renders all diagnostics in file order (overrides last), followed by a count.
    pub fn render_all(&self, diags: &[Diagnostic]) -> String {
        let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
        sorted.sort_by_key(|d| match &d.at {
            Location::File(i, span) => (0, *i, span.as_ref().map_or(0, |s| s.start)),
            Location::Override(_) => (1, 0, 0),
        });
        let mut out: Vec<String> = sorted.iter().map(|d| self.render(d)).collect();
        let n = diags.len();
        let file = self.main().path.display();
        out.push(format!("{n} problem{} in {file}; nothing was run", if n == 1 { "" } else { "s" }));
        out.join("\n\n")
    }
}

/// "did you mean `x`?" for a serde message naming an unknown key or value and the expected
/// ones, when one expected name is close to the unknown one.
pub fn suggestion(message: &str) -> Option<String> {
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|m| m.split('`').next())?;
    let expected = message.split_once("expected")?.1;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let (best, distance) = candidates.iter().map(|c| (*c, edit_distance(unknown, c))).min_by_key(|(_, d)| *d)?;
    // One edit in three characters (a swapped pair counts as two edits here).
    (distance <= unknown.len().max(best.len()).div_ceil(3).max(1)).then(|| format!("did you mean `{best}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
