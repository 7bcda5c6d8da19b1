//! Layering: a config may `extends = "base.toml"` (relative to the file; chains allowed), and
//! environment variables `RUNNER_<SECTION>__<KEY>` and `--set key=value` arguments override
//! it. A sweep trial's values (`config::sweep`) come between the file and the environment.
//! Precedence: base < file < sweep trial < environment < `--set`. Every value's origin is
//! recorded, so problems are reported where the value came from and the run folder says who
//! set what.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use toml::{Table, Value};

use super::diagnostic::{path_string, Diagnostic, Location, Origin, Seg, Source, Sources};
use crate::results::bounded;
use crate::{Error, Result};

/// Overrides given outside the config file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--set key=value` arguments, in order (later ones win).
    pub sets: Vec<String>,
    /// `RUNNER_<SECTION>__<KEY>=value` environment variables.
    pub env: Vec<(String, String)>,
    /// The values of one sweep trial. When set, the file's `[sweep]` table is dropped: a
    /// trial is a plain experiment.
    pub trial: Option<Vec<Assignment>>,
}

/// One value a sweep trial sets.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// Where: `train.learning_rate`, `model.layers[0].filters`.
    pub key: Vec<Step>,
    /// The value.
    pub value: Value,
    /// Where the value is written in the sweep file.
    pub origin: Origin,
}

impl Overrides {
    /// `sets` plus the `RUNNER_…__…` variables of this process's environment (sorted, so the
    /// order never depends on the environment's).
    pub fn with_env(sets: Vec<String>) -> Self {
        let mut env: Vec<(String, String)> =
            std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_") && k.contains("__")).collect();
        env.sort();
        Overrides { sets, env, trial: None }
    }

    /// These overrides with the values of one sweep trial.
    pub fn with_trial(&self, values: Vec<Assignment>) -> Self {
        Overrides { trial: Some(values), ..self.clone() }
    }
}

/// An owned key-path step.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Borrowed view of owned steps.
pub fn segs(steps: &[Step]) -> Vec<Seg<'_>> {
    steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect()
}

/// Reads `main` and everything it extends, applies `overrides`, and returns the merged table
/// with the files and origins. Syntax errors, `extends` problems and bad override paths are
/// all reported together.
pub fn resolve(main: Source, overrides: &Overrides) -> Result<(Table, Sources)> {
    let mut sources = Sources { files: Vec::new(), origins: BTreeMap::new() };
    let mut table = load_file(main, &mut Vec::new(), &mut sources)?;
    let mut diags = Vec::new();
    if let Some(values) = &overrides.trial {
        table.remove("sweep");
        sources.origins.retain(|k, _| k != "sweep" && !k.starts_with("sweep."));
        for a in values {
            if let Err(message) = apply(&mut table, &a.key, a.value.clone(), &a.origin, &mut sources.origins) {
                let at = match &a.origin {
                    Origin::Sweep { file, key, .. } => Location::File(*file, key.clone()),
                    other => Location::Override(other.to_string()),
                };
                diags.push(Diagnostic { at, message });
            }
        }
    }
    for (name, raw) in &overrides.env {
        let steps = name["RUNNER_".len()..].split("__").map(|s| Step::Key(s.to_lowercase())).collect::<Vec<_>>();
        let origin = Origin::Env(format!("{name}={raw}"));
        if let Err(message) = apply(&mut table, &steps, parse_value(raw), &origin, &mut sources.origins) {
            diags.push(Diagnostic { at: Location::Override(format!("environment variable {name}")), message });
        }
    }
    for arg in &overrides.sets {
        let at = Location::Override(format!("--set {arg}"));
        let Some((key, raw)) = arg.split_once('=') else {
            diags.push(Diagnostic { at, message: "expected key=value, such as train.epochs=20".into() });
            continue;
        };
        match parse_path(key.trim()) {
            Ok(steps) => {
                let origin = Origin::Set(arg.clone());
                if let Err(message) = apply(&mut table, &steps, parse_value(raw.trim()), &origin, &mut sources.origins)
                {
                    diags.push(Diagnostic { at, message });
                }
            }
            Err(message) => diags.push(Diagnostic { at, message }),
        }
    }
    if diags.is_empty() {
        Ok((table, sources))
    } else {
        Err(Error::Config(sources.render_all(&diags)))
    }
}

/// A TOML value (`20`, `[64, 64]`, `"adam"`), or the text itself as a string (`adam`).
pub fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("value = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("value"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// `model.layers[2].filters` → steps.
pub fn parse_path(key: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("`{key}` is not a key path like train.epochs or model.layers[2].filters"));
        }
        steps.push(Step::Key(name.to_string()));
        while let Some(inner) = rest.strip_prefix('[') {
            let (index, after) = inner.split_once(']').ok_or_else(|| format!("`{key}`: unclosed `[`"))?;
            steps.push(Step::Index(index.parse().map_err(|_| format!("`{key}`: `{index}` is not an index"))?));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(format!("`{key}` is not a key path like train.epochs or model.layers[2].filters"));
        }
    }
    Ok(steps)
}

/// Sets `value` at `steps`, creating tables on the way; indices must exist.
fn apply(
    table: &mut Table,
    steps: &[Step],
    value: Value,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) -> std::result::Result<(), String> {
    let mut root = Value::Table(std::mem::take(table));
    let result = set_in(&mut root, steps, value, steps);
    if let Value::Table(t) = root {
        *table = t;
    }
    result?;
    record(&path_string(&segs(steps)), origins, origin);
    Ok(())
}

fn set_in(here: &mut Value, steps: &[Step], value: Value, all: &[Step]) -> std::result::Result<(), String> {
    let Some((first, rest)) = steps.split_first() else {
        *here = value;
        return Ok(());
    };
    let shown = path_string(&segs(&all[..all.len() - rest.len()]));
    match (here, first) {
        (Value::Table(t), Step::Key(k)) if rest.is_empty() => {
            t.insert(k.clone(), value);
            Ok(())
        }
        (Value::Table(t), Step::Key(k)) => {
            set_in(t.entry(k.clone()).or_insert_with(|| Value::Table(Table::new())), rest, value, all)
        }
        (Value::Array(a), Step::Index(i)) => {
            let len = a.len();
            let item = a.get_mut(*i).ok_or_else(|| {
                format!(
                    "`{shown}`: the list has {len} entries (0 to {}), so index {i} is out of range",
                    len.saturating_sub(1)
                )
            })?;
            set_in(item, rest, value, all)
        }
        (_, Step::Index(_)) => Err(format!("`{shown}`: not a list, so it has no index")),
        (_, Step::Key(_)) => Err(format!("`{shown}`: its parent holds a value, not a table")),
    }
}

/// Records `origin` for `path`, dropping older origins below it (the value was replaced).
fn record(path: &str, origins: &mut BTreeMap<String, Origin>, origin: &Origin) {
    origins.retain(|k, _| !(k == path || k.starts_with(&format!("{path}.")) || k.starts_with(&format!("{path}["))));
    origins.insert(path.to_string(), origin.clone());
}

/// Records `origin` for `path` and every table key below it.
fn record_tree(path: &str, value: &Value, origins: &mut BTreeMap<String, Origin>, origin: &Origin) {
    record(path, origins, origin);
    if let Value::Table(t) = value {
        for (k, v) in t {
            record_tree(&format!("{path}.{k}"), v, origins, origin);
        }
    }
}

/// Merges `over` into `into` (tables merge key by key; anything else replaces), recording
/// each value's origin.
fn merge(into: &mut Table, over: Table, prefix: &str, origin: &Origin, origins: &mut BTreeMap<String, Origin>) {
    for (k, v) in over {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b, &path, origin, origins),
            (_, v) => {
                record_tree(&path, &v, origins, origin);
                into.insert(k, v);
            }
        }
    }
}

/// The text of the config file at `path`, at most [`bounded::CONFIG`] long. A file that is not a
/// regular file (a pipe, a FIFO, the shell's `<(…)` as `/dev/fd/N`) can be read only once, so
/// its text is kept for the rest of the process: the look at whether it declares a sweep and
/// the plan made after it read the same text. A regular file is read afresh each time.
pub fn read(path: &Path) -> std::io::Result<String> {
    static KEPT: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(text) = kept.get(path) {
        return Ok(text.clone());
    }
    let text = bounded::read_to_string(path, &bounded::CONFIG)?;
    if !is_regular(path) {
        kept.insert(path.to_path_buf(), text.clone());
    }
    Ok(text)
}

/// Whether `path` is a regular file (after symlinks), rather than a pipe or a device.
pub fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The folder a config's relative `extends` is taken from: the config's own folder, or the
/// current folder for a config read from a pipe (`/dev/fd/63` says nothing of where the text
/// came from, so relative names mean what they mean in the shell that made the pipe).
fn folder_of(config: &Path) -> &Path {
    match config.parent() {
        Some(folder) if is_regular(config) => folder,
        _ => Path::new(""),
    }
}

/// Reads one file (index in `sources.files` = load order) and what it extends.
/// `chain` holds the files being read (canonical path, path as shown), to detect cycles.
fn load_file(source: Source, chain: &mut Vec<(PathBuf, String)>, sources: &mut Sources) -> Result<Table> {
    let index = sources.files.len();
    sources.files.push(source.clone());
    let mut table: Table = toml::from_str(&source.text).map_err(|e| {
        let d = Diagnostic { at: Location::File(index, e.span()), message: e.message().trim().to_string() };
        Error::Config(sources.render_all(&[d]))
    })?;
    let at_extends = |sources: &Sources, message: String| {
        let span = sources.files[index].locate(&[Seg::Key("extends")]);
        Error::Config(sources.render_all(&[Diagnostic { at: Location::File(index, span), message }]))
    };
    let identity = std::fs::canonicalize(&source.path).unwrap_or_else(|_| source.path.clone());
    chain.push((identity, source.path.display().to_string()));
    let mut merged = match table.remove("extends") {
        None => Table::new(),
        Some(Value::String(rel)) => {
            let path = folder_of(&source.path).join(&rel);
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(start) = chain.iter().position(|(p, _)| *p == canonical) {
                let cycle: Vec<&str> = chain[start..]
                    .iter()
                    .map(|(_, shown)| shown.as_str())
                    .chain(std::iter::once(chain[start].1.as_str()))
                    .collect();
                return Err(at_extends(sources, format!("`extends` makes a cycle: {}", cycle.join(" → "))));
            }
            let text = read(&path)
                .map_err(|e| at_extends(sources, format!("cannot read the base config `{}`: {e}", path.display())))?;
            load_file(Source { path, text }, chain, sources)?
        }
        Some(_) => return Err(at_extends(sources, "`extends` must be a file name, such as \"base.toml\"".into())),
    };
    chain.pop();
    merge(&mut merged, table, "", &Origin::File(index), &mut sources.origins);
    Ok(merged)
}
