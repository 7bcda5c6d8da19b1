//! Where a sweep stands, read from its files: which trials are left to run, each trial's
//! standing for `runner sweep status`, and the comparison written when the trials end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::state::{Definition, TrialEntry, TrialState, TRIAL_STATE};
use crate::results::{files, RunDir};
use crate::{Error, Result};

/// The trials of the sweep in `dir` that are to run (or be submitted): all but the completed
/// ones and, unless `retry_pruned`, the pruned ones (counted, second), and those whose process
/// is still alive (warned about: if its job is gone on another machine, deleting its
/// `trial.json` lets it run again).
pub fn to_run(dir: &Path, definition: &Definition, retry_pruned: bool) -> (Vec<usize>, usize) {
    let mut todo = Vec::new();
    let mut completed = 0;
    for entry in &definition.trials {
        match TrialState::of(&dir.join(&entry.name)) {
            TrialState::Completed => completed += 1,
            TrialState::Pruned { .. } if !retry_pruned => completed += 1,
            state @ TrialState::Running { .. } if !state.died() => tracing::warn!(
                "trial {} ({}) says it is running; leaving it alone (if its process is gone, delete {} and run again)",
                entry.index,
                entry.name,
                dir.join(&entry.name).join(TRIAL_STATE).display()
            ),
            _ => todo.push(entry.index),
        }
    }
    (todo, completed)
}

/// One trial's standing, for reports.
pub struct Standing {
    /// The trial.
    pub entry: TrialEntry,
    /// Its state.
    pub state: TrialState,
    /// Best value of the sweep metric so far, and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs finished.
    pub epochs: usize,
}

/// Every trial's standing, read from the trial folders.
pub fn standings(dir: &Path, definition: &Definition) -> Vec<Standing> {
    definition
        .trials
        .iter()
        .map(|entry| {
            let trial_dir = dir.join(&entry.name);
            let run = crate::compare::Run::load(&trial_dir).ok();
            Standing {
                entry: entry.clone(),
                state: TrialState::of(&trial_dir),
                best: run.as_ref().and_then(|r| r.best(&definition.metric, definition.maximize)),
                epochs: run.as_ref().and_then(|r| r.history.get("epoch")).map_or(0, Vec::len),
            }
        })
        .collect()
}

/// `runner sweep status <folder>`: one line per trial and a count per state.
pub fn status_report(dir: &Path) -> Result<String> {
    let definition = Definition::read(dir)?;
    let standings = standings(dir, &definition);
    let metric = &definition.metric;
    let mut out = format!(
        "{:>5}  {:<20} {:<12} {:>6}  {:<18} values\n",
        "index",
        "folder",
        "state",
        "epochs",
        format!("best {metric}")
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &standings {
        *counts.entry(s.state.word()).or_default() += 1;
        let best = s.best.map_or("-".into(), |(v, e)| format!("{v:.4} (epoch {e})"));
        let values = s.entry.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
        out += &format!(
            "{:>5}  {:<20} {:<12} {:>6}  {best:<18} {values}\n",
            s.entry.index,
            s.entry.name,
            s.state.word(),
            s.epochs
        );
    }
    for s in &standings {
        match &s.state {
            TrialState::Failed { reason } | TrialState::Interrupted { reason } | TrialState::Pruned { reason } => {
                out +=
                    &format!("trial {} {}: {}\n", s.entry.index, s.state.word(), reason.lines().next().unwrap_or(""));
            }
            TrialState::Running { host, pid } if s.state.died() => {
                out += &format!(
                    "trial {}: process {pid} on {host} is gone without finishing; running the sweep again retries it\n",
                    s.entry.index
                );
            }
            _ => {}
        }
    }
    let counts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    out += &format!("{} trials: {}\n", standings.len(), counts.join(", "));
    Ok(out)
}

/// What the end of a sweep found.
pub struct Finish {
    /// Completed trials.
    pub completed: usize,
    /// Failed, interrupted, died or never run: (index, why).
    pub unfinished: Vec<(usize, String)>,
    /// Stopped early by pruning, as meant: (index, why).
    pub pruned: Vec<(usize, String)>,
    /// The leaderboard, when any trial has a history.
    pub leaderboard: Option<String>,
}

/// The end of a sweep (also `runner sweep compare`): the comparison of every trial with a
/// history (curves, leaderboard, report) and the metric against each swept key, written into
/// the sweep folder.
pub fn finish(dir: &Path) -> Result<Finish> {
    let definition = Definition::read(dir)?;
    let standings = standings(dir, &definition);
    let with_history: Vec<PathBuf> =
        standings.iter().map(|s| dir.join(&s.entry.name)).filter(|d| d.join(files::HISTORY_CSV).is_file()).collect();
    let leaderboard = if with_history.is_empty() {
        None
    } else {
        let c = crate::compare::compare(&with_history, Some(dir), &definition.metric, definition.maximize)?;
        for (i, key) in definition.keys.iter().enumerate() {
            let points: Vec<(String, f64)> = standings
                .iter()
                .filter_map(|s| {
                    let value = s.entry.values.iter().find(|(k, _)| k == key)?.1.clone();
                    Some((value, s.best?.0))
                })
                .collect();
            let stem = format!("sweep_{i}_{}", key.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
            let picture = crate::plots::sweep::render(key, &definition.metric, definition.maximize, &points);
            let picture = picture.map_err(|e| Error::Train(format!("drawing {stem}: {e}")))?;
            let rd = RunDir { path: dir.to_path_buf() };
            rd.write(&format!("{stem}.png"), &picture.png)?;
            rd.write(&format!("{stem}.svg"), &picture.svg)?;
        }
        Some(c.leaderboard)
    };
    let pruned = standings
        .iter()
        .filter_map(|s| match &s.state {
            TrialState::Pruned { reason } => Some((s.entry.index, reason.clone())),
            _ => None,
        })
        .collect();
    let unfinished = standings
        .iter()
        .filter(|s| s.state != TrialState::Completed && !matches!(s.state, TrialState::Pruned { .. }))
        .map(|s| {
            let why = match &s.state {
                TrialState::Failed { reason } | TrialState::Interrupted { reason } => reason.clone(),
                other => other.word().to_string(),
            };
            (s.entry.index, why)
        })
        .collect();
    let completed = standings.iter().filter(|s| s.state == TrialState::Completed).count();
    Ok(Finish { completed, unfinished, pruned, leaderboard })
}

impl Finish {
    /// `4 trials: 3 completed (1 skipped as already completed), 1 not completed:` and the reasons.
    pub fn summary(&self, skipped: usize) -> String {
        let total = self.completed + self.pruned.len() + self.unfinished.len();
        let ended = if self.pruned.is_empty() { "completed" } else { "completed or pruned" };
        let skipped = if skipped > 0 { format!(" ({skipped} skipped as already {ended})") } else { String::new() };
        let mut out = format!("Sweep: {total} trials: {} completed{skipped}", self.completed);
        if !self.pruned.is_empty() {
            let which: Vec<String> = self.pruned.iter().map(|(i, _)| i.to_string()).collect();
            out += &format!(
                ", {} pruned (trial{} {}; --retry-pruned runs them to the end)",
                self.pruned.len(),
                if self.pruned.len() == 1 { "" } else { "s" },
                which.join(", ")
            );
        }
        if !self.unfinished.is_empty() {
            out += &format!(", {} not completed:", self.unfinished.len());
            for (index, why) in &self.unfinished {
                out += &format!("\n  trial {index}: {}", why.lines().next().unwrap_or(""));
            }
        }
        out
    }
}
