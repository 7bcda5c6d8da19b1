//! Looking across runs: `runner ls` lists them, `runner compare` overlays their curves and
//! ranks them in a leaderboard whose columns are the config keys that differ between them.
//! Reads only what runs wrote (history.csv, config.toml, manifest.json, test_metrics.json),
//! so it works on runs from any machine; missing or odd files become notes, not crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plotters::prelude::SeriesLabelPosition;

use crate::plots::curves::{self, Chart, Series};
use crate::results::bounded;
use crate::results::{files, RunDir};
use crate::train::history;
use crate::{Error, Result};

/// What one run left behind, as far as comparing needs it.
#[derive(Clone, Debug)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// `<experiment>/<run id>`.
    pub name: String,
    /// Columns of history.csv by name (`val_accuracy` → one value per epoch).
    pub history: BTreeMap<String, Vec<f64>>,
    /// The resolved config, flattened to `key.path = value`.
    pub config: BTreeMap<String, String>,
    /// manifest.json, when present.
    pub manifest: Option<serde_json::Value>,
    /// test_metrics.json, when present.
    pub test: Option<serde_json::Value>,
}

impl Run {
    /// Reads the run folder `dir`.
    pub fn load(dir: &Path) -> std::result::Result<Run, String> {
        let table = history::Table::read(&dir.join(files::HISTORY_CSV))
            .map_err(|e| format!("no readable {}: {e}", files::HISTORY_CSV))?;
        if table.header.is_empty() {
            return Err(format!("{} is empty", files::HISTORY_CSV));
        }
        let history = table.numbers().map_err(|e| format!("{} {e}", files::HISTORY_CSV))?;
        let config = bounded::read_to_string(&dir.join(files::CONFIG), &bounded::CONFIG)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(|t| flatten(&toml::Value::Table(t)))
            .unwrap_or_default();
        let json = |name: &str| {
            bounded::read(&dir.join(name), &bounded::RUN_FILE).ok().and_then(|t| serde_json::from_slice(&t).ok())
        };
        let name = crate::results::run_name(dir);
        Ok(Run {
            dir: dir.to_path_buf(),
            name,
            history,
            config,
            manifest: json(files::MANIFEST),
            test: json(files::TEST_METRICS),
        })
    }

    /// Best value of `metric` and its epoch (1-based).
    pub fn best(&self, metric: &str, maximize: bool) -> Option<(f64, usize)> {
        let values = self.history.get(metric)?;
        let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
        values.iter().enumerate().fold(None, |best, (i, &v)| match best {
            Some((b, _)) if !better(v, b) => best,
            _ if v.is_finite() => Some((v, i + 1)),
            _ => best,
        })
    }

    /// Wall-clock seconds of training, from the manifest.
    pub fn seconds(&self) -> Option<f64> {
        let epochs = self.manifest.as_ref()?.get("epoch_seconds")?.as_array()?;
        Some(epochs.iter().filter_map(serde_json::Value::as_f64).sum())
    }

    /// `completed`, `failed`, `running` (or `unknown`).
    pub fn status(&self) -> String {
        self.manifest.as_ref().and_then(|m| m["status"]["state"].as_str()).unwrap_or("unknown").to_string()
    }
}

/// `a.b = 1`, `model.layers[2].filters = 64`, ... (strings without quotes).
fn flatten(value: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: String, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for (i, v) in items.iter().enumerate() {
                    walk(format!("{prefix}[{i}]"), v, out);
                }
            }
            toml::Value::String(s) => {
                out.insert(prefix, s.clone());
            }
            other => {
                out.insert(prefix, other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(String::new(), value, &mut out);
    out
}

/// Run folders in `paths`: each path is a run (it has history.csv or manifest.json) or a
/// folder searched three levels deep (`results/`, `results/<experiment>/`, and the trials in
/// `results/sweeps/<sweep>/`). Sorted.
pub fn discover(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn is_run(p: &Path) -> bool {
        p.join(files::HISTORY_CSV).is_file() || p.join(files::MANIFEST).is_file()
    }
    fn walk(p: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if is_run(p) {
            out.push(p.to_path_buf());
        } else if depth > 0 {
            for entry in std::fs::read_dir(p).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), depth - 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, 3, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Config keys whose values differ between `runs` (the output folder never counts).
pub fn differing_keys(runs: &[Run]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    keys.into_iter()
        .filter(|k| !k.starts_with("output."))
        .filter(|k| runs.iter().map(|r| r.config.get(*k)).collect::<BTreeSet<_>>().len() > 1)
        .cloned()
        .collect()
}

/// What `runner compare` wrote.
pub struct Comparison {
    /// The output folder.
    pub dir: PathBuf,
    /// The leaderboard as Markdown (also in `leaderboard.md`).
    pub leaderboard: String,
}

/// Compares the runs found in `paths`, ranked by `metric` (higher is better when `maximize`),
/// writing curves, `leaderboard.md` and `leaderboard.csv` into `out` (default: the
/// next `results/comparisons/compare-NNN`).
pub fn compare(paths: &[PathBuf], out: Option<&Path>, metric: &str, maximize: bool) -> Result<Comparison> {
    let mut notes = Vec::new();
    let mut runs = Vec::new();
    for dir in discover(paths) {
        match Run::load(&dir) {
            Ok(run) => runs.push(run),
            Err(why) => notes.push(format!("{}: skipped, {why}", dir.display())),
        }
    }
    if runs.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(Error::Usage(format!("no run folders (with history.csv) found in {}", shown.join(", "))));
    }
    for run in runs.iter().filter(|r| !r.history.contains_key(metric)) {
        let have: Vec<&str> = run.history.keys().map(String::as_str).filter(|k| *k != "epoch").collect();
        notes.push(format!("{}: has no `{metric}` (it has {}); ranked last", run.name, have.join(", ")));
    }
    let keys = differing_keys(&runs);
    // Legend: the run, then the values that set it apart (cut to fit a legend).
    let label = |run: &Run| {
        let parts: Vec<String> =
            keys.iter().map(|k| format!("{k}={}", run.config.get(k).map_or("-", String::as_str))).collect();
        let text = if parts.is_empty() { run.name.clone() } else { format!("{}: {}", run.name, parts.join(", ")) };
        if text.chars().count() > 64 {
            format!("{}…", text.chars().take(63).collect::<String>())
        } else {
            text
        }
    };
    // Rank: best metric first; runs without it last, in path order.
    runs.sort_by(|a, b| {
        let (x, y) = (a.best(metric, maximize).map(|b| b.0), b.best(metric, maximize).map(|b| b.0));
        match (x, y) {
            (Some(x), Some(y)) if maximize => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.dir.cmp(&b.dir),
        }
    });

    let dir = match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating output folder", dir, e))?;
            RunDir { path: dir.to_path_buf() }
        }
        None => RunDir::create_numbered(Path::new("results"), "comparisons", "compare")?,
    };
    for (stem, title, y_label, train, val, legend) in [
        (
            "compare_accuracy",
            "Accuracy (validation solid, training dashed)",
            "Accuracy",
            "accuracy",
            "val_accuracy",
            SeriesLabelPosition::LowerRight,
        ),
        (
            "compare_loss",
            "Loss (validation solid, training dashed)",
            "Loss",
            "loss",
            "val_loss",
            SeriesLabelPosition::UpperRight,
        ),
    ] {
        let mut series = Vec::new();
        for (color, run) in runs.iter().enumerate() {
            if let Some(values) = run.history.get(val) {
                series.push(Series { name: label(run), values: values.clone(), color, dashed: false });
            }
            if let Some(values) = run.history.get(train) {
                series.push(Series { name: String::new(), values: values.clone(), color, dashed: true });
            }
        }
        let chart = Chart { stem, title: title.into(), y_label, legend, series };
        let picture = curves::render(&chart).map_err(Error::Train)?;
        dir.write(&format!("{stem}.png"), &picture.png)?;
        dir.write(&format!("{stem}.svg"), &picture.svg)?;
    }

    // Leaderboard rows: rank, run, differing keys, best metric, best epoch, test, time, status.
    let mut header = vec!["rank".to_string(), "run".to_string()];
    header.extend(keys.iter().cloned());
    header.extend([
        format!("best {metric}"),
        "best epoch".into(),
        "test accuracy".into(),
        "test loss".into(),
        "seconds".into(),
        "status".into(),
    ]);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let mut row = vec![(i + 1).to_string(), run.name.clone()];
            row.extend(keys.iter().map(|k| run.config.get(k).cloned().unwrap_or_else(|| "-".into())));
            let best = run.best(metric, maximize);
            row.push(best.map_or("-".into(), |b| format!("{:.4}", b.0)));
            row.push(best.map_or("-".into(), |b| b.1.to_string()));
            let test =
                |k: &str| run.test.as_ref().and_then(|t| t[k].as_f64()).map_or("-".into(), |v| format!("{v:.4}"));
            row.push(test("accuracy"));
            row.push(test("loss"));
            row.push(run.seconds().map_or("-".into(), |s| format!("{s:.1}")));
            row.push(run.status());
            row
        })
        .collect();
    let goal = if maximize { "higher is better" } else { "lower is better" };
    let mut md = format!(
        "# Leaderboard: best `{metric}` ({goal})\n\n| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in &rows {
        md += &format!("| {} |\n", row.join(" | "));
    }
    md += "\nCurves: `compare_accuracy.png`, `compare_loss.png` (and `.svg`).\n";
    if !notes.is_empty() {
        md += "\nNotes:\n";
        for note in &notes {
            md += &format!("- {note}\n");
        }
    }
    if let Some((cv_md, cv_rows)) = cross_validation(&runs, &keys, metric, maximize) {
        md += &cv_md;
        dir.write("cross_validation.csv", crate::results::csv_table(&cv_rows))?;
    }
    let csv = crate::results::csv_table(std::iter::once(&header).chain(&rows));
    dir.write("leaderboard.md", &md)?;
    dir.write("leaderboard.csv", &csv)?;
    dir.write(files::REPORT, crate::report::comparison_page(&dir.path))?;
    Ok(Comparison { dir: dir.path, leaderboard: md })
}

/// The folds of a cross-validation (runs that differ in `data.fold`), grouped by the other
/// keys that differ: for each group, the mean and standard deviation over its folds of every
/// history column at each fold's best epoch (by `metric`) and of the test metrics, as a
/// Markdown section and CSV rows (header first). Groups are ranked by the mean of `metric`.
/// `None` when the runs are not folds.
fn cross_validation(runs: &[Run], keys: &[String], metric: &str, maximize: bool) -> Option<(String, Vec<Vec<String>>)> {
    if !keys.iter().any(|k| k == "data.fold") {
        return None;
    }
    let others: Vec<&String> = keys.iter().filter(|k| *k != "data.fold").collect();
    let mut groups: BTreeMap<Vec<String>, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        let point = others.iter().map(|k| run.config.get(*k).cloned().unwrap_or_else(|| "-".into())).collect();
        groups.entry(point).or_default().push(run);
    }
    // Columns: the ranking metric first, then the other history columns, then the test split's.
    let mut columns: Vec<String> = vec![metric.to_string()];
    for run in runs {
        for c in run.history.keys() {
            if !["epoch", "learning_rate"].contains(&c.as_str()) && !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    let tests = ["test accuracy", "test loss"];
    let value = |run: &Run, column: &str| -> Option<f64> {
        match column.strip_prefix("test ") {
            Some(k) => run.test.as_ref()?[k].as_f64(),
            None => {
                let (_, epoch) = run.best(metric, maximize)?;
                run.history.get(column)?.get(epoch - 1).copied()
            }
        }
    };
    let all: Vec<&str> = columns.iter().map(String::as_str).chain(tests).collect();
    let mut stats: Vec<(Vec<String>, usize, Vec<Option<(f64, f64)>>)> = groups
        .into_iter()
        .map(|(point, runs)| {
            let row = all
                .iter()
                .map(|c| {
                    let v: Vec<f64> = runs.iter().filter_map(|r| value(r, c)).filter(|v| v.is_finite()).collect();
                    mean_sd(&v)
                })
                .collect();
            (point, runs.len(), row)
        })
        .collect();
    stats.sort_by(|a, b| {
        let (x, y) = (a.2[0].map(|s| s.0), b.2[0].map(|s| s.0));
        match (x, y) {
            (Some(x), Some(y)) if maximize => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => y.is_some().cmp(&x.is_some()),
        }
    });
    // Columns no fold has a value for (the test split's, without one) are left out.
    let kept: Vec<usize> = (0..all.len()).filter(|&c| stats.iter().any(|s| s.2[c].is_some())).collect();
    let all: Vec<&str> = kept.iter().map(|&c| all[c]).collect();
    for (_, _, row) in &mut stats {
        *row = kept.iter().map(|&c| row[c]).collect();
    }
    let mut header: Vec<String> = vec!["rank".into()];
    header.extend(others.iter().map(|k| k.to_string()));
    header.push("folds".into());
    let mut csv_header = header.clone();
    for c in &all {
        header.push(c.to_string());
        csv_header.extend([format!("{c} mean"), format!("{c} sd")]);
    }
    let mut md = format!(
        "\n## Cross-validation: mean ± standard deviation over the folds\n\nEach fold counts with its best \
         epoch by `{metric}`; the standard deviation divides by folds − 1.\n\n| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    let mut csv = vec![csv_header];
    for (rank, (point, n, row)) in stats.iter().enumerate() {
        let mut cells = vec![(rank + 1).to_string()];
        cells.extend(point.iter().cloned());
        cells.push(n.to_string());
        let mut csv_cells = cells.clone();
        for s in row {
            cells.push(s.map_or("-".into(), |(m, sd)| format!("{m:.4} ± {sd:.4}")));
            csv_cells.extend(match s {
                Some((m, sd)) => [m.to_string(), sd.to_string()],
                None => [String::new(), String::new()],
            });
        }
        md += &format!("| {} |\n", cells.join(" | "));
        csv.push(csv_cells);
    }
    Some((md, csv))
}

/// Mean and sample standard deviation (n − 1; 0 for one value) of `v`; `None` when empty.
fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() < 2 { 0.0 } else { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) };
    Some((mean, var.sqrt()))
}

/// `runner ls`: one line per run under `root`: experiment, run id, status, best validation
/// accuracy, start date.
pub fn ls(root: &Path) -> Result<String> {
    if !root.is_dir() {
        return Err(Error::Usage(format!("`{}` is not a folder of runs", root.display())));
    }
    let mut out =
        format!("{:<24} {:<18} {:<11} {:<26} {}\n", "experiment", "run", "status", "best val_accuracy", "started");
    let runs = discover(&[root.to_path_buf()]);
    for dir in &runs {
        let run = Run::load(dir);
        let (experiment, id) = {
            let mut parts = dir.iter().rev();
            let id = parts.next().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (parts.next().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(), id)
        };
        let (status, best, started) = match &run {
            Ok(r) => (
                r.status(),
                r.best("val_accuracy", true).map_or("-".into(), |(v, e)| format!("{v:.4} (epoch {e})")),
                r.manifest.as_ref().and_then(|m| m["started_at"].as_str()).unwrap_or("-").to_string(),
            ),
            Err(why) => ("unreadable".into(), why.clone(), "-".into()),
        };
        out += &format!("{experiment:<24} {id:<18} {status:<11} {best:<26} {started}\n");
    }
    if runs.is_empty() {
        out += &format!("(no runs under {})\n", root.display());
    }
    Ok(out)
}
