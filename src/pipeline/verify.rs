//! `runner verify <run>`: the reproducibility promise, proven on demand. The run's recorded
//! config is trained again on the very same images and split (the manifest's fingerprint is
//! checked first) in a scratch folder, and what the run wrote is compared byte for byte with
//! what the rerun wrote: the history, the weights and every plot. When something differs, the
//! first difference is named (the epoch and metric, or the weight tensor, or the file), with
//! what differs between the two environments, since that is usually the cause.
//!
//! With `--epochs N` only the first N epochs are trained again, each exactly as in the full
//! run (schedules still count every configured epoch); their history rows are compared, and
//! the best epoch's weights when the run's best epoch is among them.

use std::path::{Path, PathBuf};

use crate::results::bounded;
use crate::results::manifest::{Manifest, Status};
use crate::results::{files, safetensors, RunDir};
use crate::train::history::Table;
use crate::{Error, Result};

use super::{open, prepare_same, run_with, Limits};

/// Files of a finished run that depend only on the config, the data and the seed, compared
/// after a full rerun (besides every PNG and SVG picture).
const DETERMINISTIC: [&str; 12] = [
    files::HISTORY_CSV,
    files::HISTORY_JSON,
    files::WEIGHTS,
    files::BEST_WEIGHTS,
    files::SUMMARY,
    files::SPLIT,
    files::QUARANTINE,
    files::TEST_METRICS,
    files::PER_CLASS.csv,
    files::PER_CLASS.json,
    files::TEST_PER_CLASS.csv,
    files::TEST_PER_CLASS.json,
];

/// What a verification compared, when everything was identical.
pub struct Verified {
    /// The run folder.
    pub run: PathBuf,
    /// Epochs trained again.
    pub epochs: usize,
    /// Whether the whole run was trained again (else only the first `epochs`).
    pub full: bool,
    /// Files found identical (after a partial rerun, `history.csv` means its first rows).
    pub files: Vec<String>,
}

/// Re-runs the run in `run_dir` (its first `epochs` epochs, or all) in a scratch folder and
/// compares; `keep` leaves the scratch folder in place (its path is logged as a warning, so
/// that `--quiet` shows it too).
pub fn verify(run_dir: &Path, epochs: Option<usize>, keep: bool) -> Result<Verified> {
    let (run_dir, manifest, plan) = open(run_dir)?;
    let completed = manifest.status == Status::Completed;
    // A run stopped in its first epoch has no history yet.
    let recorded = match read_history(&run_dir.join(files::HISTORY_CSV)) {
        Err(Error::Io { source, .. }) if !completed && source.kind() == std::io::ErrorKind::NotFound => {
            Table::default()
        }
        other => other?,
    };
    let finished = recorded.rows.len();
    if finished == 0 && !completed {
        return Err(Error::Usage(format!(
            "the run in `{}` has not finished an epoch, so there is nothing to verify; go on with it with \
             `runner resume {}`",
            run_dir.display(),
            run_dir.display()
        )));
    }
    let until = match epochs {
        Some(0) => return Err(Error::Usage("--epochs must be at least 1".into())),
        Some(n) if n > finished => {
            return Err(Error::Usage(format!(
                "the run in `{}` has finished {finished} epochs; --epochs can be at most that",
                run_dir.display()
            )))
        }
        Some(n) => n,
        None if completed => plan.config.train.epochs,
        None => {
            return Err(Error::Usage(format!(
                "the run in `{}` did not complete (it has {finished} epochs); verify its first epochs with \
                 --epochs {finished}, or finish it with `runner resume` first",
                run_dir.display()
            )))
        }
    };
    let full = epochs.is_none() || (completed && until >= finished);
    // The rerun starts from the same weights file as the run did, or not at all.
    super::warm_start::load_same(&plan, &manifest)?;
    let data = prepare_same(&plan, &manifest)?;
    let scratch = Scratch::new(keep)?;
    tracing::info!("verifying {}: training {until} epochs again in {}", run_dir.display(), scratch.0.display());
    run_with(plan, &data, RunDir { path: scratch.0.clone() }, Limits { until: Some(until), judge: None })?;
    let rerun: Manifest = serde_json::from_slice(
        &bounded::read(&scratch.0.join(files::MANIFEST), &bounded::RUN_FILE)
            .map_err(|e| Error::io("reading", &scratch.0.join(files::MANIFEST), e))?,
    )
    .map_err(|e| Error::Train(format!("the rerun's manifest: {e}")))?;
    let differs = |what: String| Error::NotReproduced(format!("{what}\n{}", environment(&manifest, &rerun)));

    let again = read_history(&scratch.0.join(files::HISTORY_CSV))?;
    let compared = recorded.rows.len().min(until);
    if let Some(what) = history_difference(&recorded, &again, compared) {
        return Err(differs(what));
    }
    if full && again.rows.len() != recorded.rows.len() {
        let (a, b) = (recorded.rows.len(), again.rows.len());
        return Err(differs(format!("the run trained {a} epochs and the rerun {b}")));
    }
    let mut same = match full {
        true => Vec::new(),
        false => vec![files::HISTORY_CSV.to_string()],
    };
    let mut names: Vec<String> = Vec::new();
    if full {
        names.extend(DETERMINISTIC.iter().map(|s| s.to_string()));
        names.extend(pictures(&run_dir)?);
    } else if manifest.best_epoch.map_or(until == finished, |best| best <= until) {
        // A run that did not complete records no best epoch, but its best weights are the best
        // of the epochs it finished: the rerun's when it trained all of them.
        names.push(files::BEST_WEIGHTS.to_string());
    }
    for name in names {
        let (a, b) = (run_dir.join(&name), scratch.0.join(&name));
        // The largest of these files are weights; the rest are far below their limit.
        let original = match bounded::read(&a, &bounded::WEIGHTS) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", &a, e)),
        };
        let Ok(again) = bounded::read(&b, &bounded::WEIGHTS) else {
            return Err(differs(format!("the rerun did not write `{name}`, which the run has")));
        };
        if original != again {
            let what = match name.ends_with(".safetensors") {
                true => weights_difference(&name, &original, &again),
                false => format!("`{name}` differs"),
            };
            return Err(differs(what));
        }
        same.push(name);
    }
    // Early stopping may have ended both before `train.epochs`.
    let epochs = if full { again.rows.len() } else { until };
    Ok(Verified { run: run_dir, epochs, full, files: same })
}

/// A scratch folder for the rerun, removed when dropped unless kept.
struct Scratch(PathBuf, bool);

impl Scratch {
    fn new(keep: bool) -> Result<Scratch> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("runner-verify-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| Error::io("creating the scratch folder", &path, e))?;
        Ok(Scratch(path, keep))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        match self.1 {
            // Asked for with --keep, so shown even with --quiet.
            true => tracing::warn!("the rerun is kept in {}", self.0.display()),
            false => {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

fn read_history(path: &Path) -> Result<Table> {
    Table::read(path).map_err(|e| Error::io("reading", path, e))
}

/// The first of the first `epochs` rows where the rerun's history differs: the epoch, the
/// column and both values.
fn history_difference(run: &Table, rerun: &Table, epochs: usize) -> Option<String> {
    if run.header != rerun.header {
        return Some(format!(
            "the history's columns differ: `{}` in the run, `{}` in the rerun",
            run.header.join(","),
            rerun.header.join(",")
        ));
    }
    for (i, row) in run.rows.iter().take(epochs).enumerate() {
        let Some(again) = rerun.rows.get(i) else {
            return Some(format!("the rerun stopped after {i} epochs; the run has {}", run.rows.len()));
        };
        if let Some(j) = (0..row.len().max(again.len())).find(|&j| row.get(j) != again.get(j)) {
            let field = |r: &Vec<String>| r.get(j).cloned().unwrap_or_else(|| "nothing".into());
            return Some(format!(
                "epoch {}: {} is {} in the run and {} in the rerun",
                i + 1,
                run.header.get(j).map_or("?", String::as_str),
                field(row),
                field(again)
            ));
        }
    }
    None
}

/// The first weight tensor that differs between two weight files, where and by how much.
fn weights_difference(name: &str, run: &[u8], rerun: &[u8]) -> String {
    let (Ok(a), Ok(b)) = (safetensors::from_bytes(run), safetensors::from_bytes(rerun)) else {
        return format!("`{name}` differs (and one of the files cannot be read)");
    };
    for ((tensor, dims, x), (_, dims_b, y)) in a.iter().zip(&b) {
        if dims != dims_b {
            return format!("`{name}`: tensor `{tensor}` has shape {dims:?} in the run and {dims_b:?} in the rerun");
        }
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
            let largest = x.iter().zip(y).map(|(p, q)| f64::from((p - q).abs())).fold(0.0, f64::max);
            return format!(
                "`{name}`: tensor `{tensor}` differs, first at element {i} ({} in the run, {} in the rerun); \
                 largest difference {largest:.3e}",
                x[i], y[i]
            );
        }
    }
    format!("`{name}` differs in its tensor list or metadata")
}

/// The pictures a run folder holds, by file name.
fn pictures(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".png") || n.ends_with(".svg"))
        .collect();
    names.sort();
    Ok(names)
}

/// What differs between the environment the run recorded and the rerun's, line by line.
fn environment(run: &Manifest, rerun: &Manifest) -> String {
    let facts = |m: &Manifest| {
        [
            ("runner", m.runner_version.clone()),
            ("matrix kernel", m.kernel.clone()),
            ("CPU features", m.cpu_features.join(" ")),
            ("threads", m.threads.to_string()),
            ("device", m.device.clone()),
            ("host", m.host.clone()),
        ]
    };
    let changed: Vec<String> = facts(run)
        .into_iter()
        .zip(facts(rerun))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((what, a), (_, b))| {
            let a = if a.is_empty() { "not recorded".into() } else { a };
            format!("  {what}: {a} in the run, {b} now")
        })
        .collect();
    match changed.is_empty() {
        true => {
            "The environment is the same as the run's (runner version, kernel, CPU features, threads, device, host)."
                .into()
        }
        false => format!("What differs from the run's environment:\n{}", changed.join("\n")),
    }
}
