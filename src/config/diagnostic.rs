//! Config problems rendered as `file:line:col: message` with the offending line and a caret,
//! the way compilers print them. All problems of a file are reported together.

use std::ops::Range;
use std::path::PathBuf;

/// A config file's name and text, kept to point at problems in it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as the user gave it.
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

/// One step of a key path: a table key or an index into an array of tables.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    /// `data` in `data.path`.
    Key(&'a str),
    /// `2` in `model.layers[2]`.
    Index(usize),
}

/// One problem, optionally located in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong and what to do.
    pub message: String,
}

impl Source {
    /// Byte span of the value (or table header) at `path`, if it is written in the file.
    pub fn locate(&self, path: &[Seg]) -> Option<Range<usize>> {
        use toml_edit::{Item, TableLike, Value};
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut table: &dyn TableLike = doc.as_table();
        let mut span = None;
        let mut segs = path.iter().peekable();
        while let Some(seg) = segs.next() {
            let Seg::Key(k) = *seg else { break };
            let item = table.get(k)?;
            span = item.span().or_else(|| table.key(k).and_then(|key| key.span()));
            match item {
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

    /// A diagnostic pointing at `path` (or at the file as a whole when it is not written).
    pub fn at(&self, path: &[Seg], message: impl Into<String>) -> Diagnostic {
        Diagnostic { span: self.locate(path), message: message.into() }
    }

    /// 1-based line and column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// `file:line:col` of the value at `path`, or just the file when it is not written there.
    pub fn position(&self, path: &[Seg]) -> String {
        match self.locate(path) {
            Some(span) => {
                let (line, col) = self.line_col(span.start);
                format!("{}:{line}:{col}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }

    /// Renders one diagnostic.
    pub fn render(&self, d: &Diagnostic) -> String {
        let file = self.path.display();
        let Some(span) = &d.span else {
            return format!("error: {file}: {}", d.message);
        };
        let (line, col) = self.line_col(span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("");
        let width = text.chars().count().saturating_sub(col - 1).max(1);
        let carets = self.text[span.clone()].lines().next().map_or(1, |s| s.chars().count()).clamp(1, width);
        let gutter = " ".repeat(line.to_string().len());
        format!(
            "error: {file}:{line}:{col}: {}\n{gutter} |\n{line} | {text}\n{gutter} | {}{}",
            d.message,
            " ".repeat(col - 1),
            "^".repeat(carets)
        )
    }

    /// Renders all diagnostics, followed by a count.
    pub fn render_all(&self, diags: &[Diagnostic]) -> String {
        let mut out: Vec<String> = diags.iter().map(|d| self.render(d)).collect();
        let n = diags.len();
        out.push(format!("{n} problem{} in {}; nothing was run", if n == 1 { "" } else { "s" }, self.path.display()));
        out.join("\n\n")
    }
}
