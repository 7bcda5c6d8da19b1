//! Where a sweep stands, read from its files: which trials are left to run, each trial's
//! standing for `runner sweep status` (a table, or JSON of a stable shape: [`Report`]), and
//! the comparison written when the trials end. A trial that says it is running but whose
//! heartbeat has stopped counts as dead (`died`) and runs again (see [`super::heartbeat`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::heartbeat::{self, Clock, Pulse, Verdict};
use super::state::{Definition, TrialEntry, TrialState};
use crate::results::{files, RunDir};
use crate::{Error, Result};

/// The trials of the sweep in `dir` that are to run (or be submitted): all but the completed
/// ones and, unless `retry_pruned`, the pruned ones (counted, second), and those that are
/// running and alive (warned about). A running trial whose heartbeat has stopped, on any
/// machine, is dead and runs again (its `runner trial` goes on from the checkpoint).
pub fn to_run(dir: &Path, definition: &Definition, retry_pruned: bool) -> (Vec<usize>, usize) {
    let mut todo = Vec::new();
    let mut completed = 0;
    let clock = Clock::of(dir);
    for entry in &definition.trials {
        let trial_dir = dir.join(&entry.name);
        match TrialState::of(&trial_dir) {
            TrialState::Completed => completed += 1,
            TrialState::Pruned { .. } if !retry_pruned => completed += 1,
            state @ TrialState::Running { .. } => match heartbeat::verdict(&state, &Pulse::read(&trial_dir, &clock)) {
                Verdict::Dead { why, .. } => {
                    tracing::info!("trial {} ({}) died ({why}); it runs again", entry.index, entry.name);
                    todo.push(entry.index);
                }
                Verdict::Alive => tracing::warn!(
                    "trial {} ({}) is running; leaving it alone (if its process is gone, it counts as dead once its \
                     heartbeat is older than {} intervals, and runs again then)",
                    entry.index,
                    entry.name,
                    heartbeat::DEAD_AFTER
                ),
            },
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
    /// Epochs its config trains (`train.epochs`), once its folder has its config.
    pub epochs_total: Option<usize>,
    /// Its heartbeat.
    pub pulse: Pulse,
    /// Whether it is alive, when it says it is running.
    pub verdict: Verdict,
    /// The machine it runs on (or last ran on).
    pub host: Option<String>,
}

impl Standing {
    /// Its state in one word, `died` for a running trial that is dead.
    pub fn word(&self) -> &'static str {
        match self.verdict {
            Verdict::Dead { .. } => "died",
            Verdict::Alive => self.state.word(),
        }
    }
}

/// Every trial's standing, read from the trial folders; heartbeats are aged by the clock of
/// the sweep folder's filesystem.
pub fn standings(dir: &Path, definition: &Definition) -> Vec<Standing> {
    let clock = Clock::of(dir);
    definition.trials.iter().map(|entry| standing(&dir.join(&entry.name), entry, definition, &clock)).collect()
}

fn standing(trial_dir: &Path, entry: &TrialEntry, definition: &Definition, clock: &Clock) -> Standing {
    let run = crate::compare::Run::load(trial_dir).ok();
    let state = TrialState::of(trial_dir);
    let pulse = Pulse::read(trial_dir, clock);
    let verdict = heartbeat::verdict(&state, &pulse);
    let host = match &state {
        TrialState::Running { host, .. } => Some(host.clone()),
        _ => pulse.heartbeat.as_ref().map(|h| h.host.clone()).or_else(|| {
            let manifest = run.as_ref()?.manifest.as_ref()?;
            Some(manifest.get("host")?.as_str()?.to_string())
        }),
    };
    Standing {
        entry: entry.clone(),
        best: run.as_ref().and_then(|r| r.best(&definition.metric, definition.maximize)),
        epochs: run.as_ref().and_then(|r| r.history.get("epoch")).map_or(0, Vec::len),
        epochs_total: run.as_ref().and_then(|r| r.config.get("train.epochs")?.parse().ok()),
        state,
        pulse,
        verdict,
        host,
    }
}

/// `runner sweep status <folder>` as a table: one line per trial, the reasons of the trials
/// that ended early or died, and a count per state.
pub fn status_report(dir: &Path) -> Result<String> {
    Ok(status(dir)?.table())
}

/// `runner sweep status --json`: where a sweep stands. Its shape is stable (README,
/// "Sweeps"): fields are only ever added.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The sweep folder.
    pub sweep: PathBuf,
    /// The ranking metric.
    pub metric: String,
    /// `maximize` or `minimize`.
    pub goal: &'static str,
    /// A running trial is dead when its heartbeat is older than this many of its intervals.
    pub dead_after_intervals: u32,
    /// Where heartbeat ages were measured from: `filesystem` (the sweep folder's, see
    /// `sweep::heartbeat`) or `local` (this machine's clock, when the folder is read-only).
    pub clock: &'static str,
    /// The trials, by index.
    pub trials: Vec<TrialReport>,
    /// Trials per state.
    pub counts: BTreeMap<&'static str, usize>,
    /// Whether no trial is pending or running (what `--watch` waits for).
    pub ended: bool,
}

/// One trial in a [`Report`].
#[derive(Clone, Debug, Serialize)]
pub struct TrialReport {
    /// Its index (the Slurm array task id).
    pub index: usize,
    /// Its folder's name.
    pub name: String,
    /// The swept keys and their values (TOML text).
    pub values: BTreeMap<String, String>,
    /// pending, running, died, completed, failed, interrupted or pruned.
    pub state: &'static str,
    /// Why it failed, was interrupted or pruned, or died.
    pub reason: Option<String>,
    /// Epochs finished.
    pub epoch: usize,
    /// Epochs its config trains, when known.
    pub epochs: Option<usize>,
    /// The best value of the metric so far.
    pub best: Option<Best>,
    /// The machine it runs or last ran on.
    pub host: Option<String>,
    /// Its process id, while it says it is running.
    pub pid: Option<u32>,
    /// Its last heartbeat.
    pub heartbeat: Option<Beat>,
}

/// The best value of the metric and its epoch (1-based).
#[derive(Clone, Debug, Serialize)]
pub struct Best {
    /// The value.
    pub value: f64,
    /// Its epoch, 1-based.
    pub epoch: usize,
}

/// A trial's last heartbeat, as read.
#[derive(Clone, Debug, Serialize)]
pub struct Beat {
    /// Seconds since it was written (see `sweep::heartbeat` for how it is measured).
    pub age_seconds: Option<f64>,
    /// Its counter.
    pub beat: u64,
    /// Seconds between beats.
    pub interval_seconds: f64,
    /// Epochs finished when it was written.
    pub epoch: usize,
    /// Machine and process that wrote it.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Slurm job id, when Slurm ran it.
    pub job: Option<String>,
    /// The writer's clock, UTC.
    pub time: String,
}

/// Where the sweep in `dir` stands, read from its files.
pub fn status(dir: &Path) -> Result<Report> {
    let definition = Definition::read(dir)?;
    let clock = Clock::of(dir);
    let standings: Vec<Standing> =
        definition.trials.iter().map(|entry| standing(&dir.join(&entry.name), entry, &definition, &clock)).collect();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let trials: Vec<TrialReport> = standings
        .iter()
        .map(|s| {
            *counts.entry(s.word()).or_default() += 1;
            let reason = match (&s.state, &s.verdict) {
                (_, Verdict::Dead { why, .. }) => Some(why.clone()),
                (
                    TrialState::Failed { reason } | TrialState::Interrupted { reason } | TrialState::Pruned { reason },
                    _,
                ) => Some(reason.clone()),
                _ => None,
            };
            TrialReport {
                index: s.entry.index,
                name: s.entry.name.clone(),
                values: s.entry.values.iter().cloned().collect(),
                state: s.word(),
                reason,
                epoch: s.epochs,
                epochs: s.epochs_total,
                best: s.best.map(|(value, epoch)| Best { value, epoch }),
                host: s.host.clone(),
                pid: match s.state {
                    TrialState::Running { pid, .. } => Some(pid),
                    _ => None,
                },
                heartbeat: s.pulse.heartbeat.as_ref().map(|h| Beat {
                    age_seconds: s.pulse.age.map(|a| (a * 10.0).round() / 10.0),
                    beat: h.beat,
                    interval_seconds: h.interval_seconds,
                    epoch: h.epoch,
                    host: h.host.clone(),
                    pid: h.pid,
                    job: h.job.clone(),
                    time: h.time.clone(),
                }),
            }
        })
        .collect();
    Ok(Report {
        sweep: dir.to_path_buf(),
        metric: definition.metric.clone(),
        goal: if definition.maximize { "maximize" } else { "minimize" },
        dead_after_intervals: heartbeat::DEAD_AFTER,
        clock: clock.source(),
        ended: trials.iter().all(|t| t.state != "pending" && t.state != "running"),
        trials,
        counts,
    })
}

impl Report {
    /// The table `runner sweep status` prints: per trial its state, epochs, best metric so
    /// far, heartbeat age (while running), host and values; then why trials ended early or
    /// died, and the count per state.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>5}  {:<20} {:<11} {:>7}  {:<18} {:<10} {:<12} values\n",
            "index",
            "folder",
            "state",
            "epoch",
            format!("best {}", self.metric),
            "heartbeat",
            "host"
        );
        for t in &self.trials {
            let epoch = t.epochs.map_or(t.epoch.to_string(), |n| format!("{}/{n}", t.epoch));
            let best = t.best.as_ref().map_or("-".into(), |b| format!("{:.4} (epoch {})", b.value, b.epoch));
            let beat = match (t.state, t.heartbeat.as_ref().and_then(|h| h.age_seconds)) {
                ("running" | "died", Some(age)) => format!("{} ago", heartbeat::seconds(age)),
                _ => "-".into(),
            };
            let values = t.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            out += &format!(
                "{:>5}  {:<20} {:<11} {epoch:>7}  {best:<18} {beat:<10} {:<12} {values}\n",
                t.index,
                t.name,
                t.state,
                t.host.as_deref().unwrap_or("-")
            );
        }
        for t in &self.trials {
            let Some(reason) = &t.reason else { continue };
            let reason = reason.lines().next().unwrap_or("");
            match t.state {
                "died" => {
                    out += &format!(
                        "trial {} died: {reason}; running the sweep again goes on from its checkpoint\n",
                        t.index
                    )
                }
                word => out += &format!("trial {} {word}: {reason}\n", t.index),
            }
        }
        let counts: Vec<String> = self.counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
        out += &format!("{} trials: {}\n", self.trials.len(), counts.join(", "));
        out
    }
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
            let why = match (&s.state, &s.verdict) {
                (TrialState::Failed { reason } | TrialState::Interrupted { reason }, _) => reason.clone(),
                (_, Verdict::Dead { why, .. }) => format!("died: {why}"),
                _ => s.word().to_string(),
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
