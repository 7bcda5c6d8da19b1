//! The files a sweep keeps its state in: `sweep.json` in the sweep folder (what every trial
//! is, so any process on any machine can rebuild one by index) and `trial.json` in each trial
//! folder (where that trial stands). State lives in files, on a cluster on the shared
//! filesystem, because a scheduler's accounting is often absent or slow.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Sweep;
use crate::config::sweep::Prune;
use crate::config::Overrides;
use crate::results::bounded;
use crate::results::write_atomic;
use crate::{Error, Result};

/// `sweep.json`: the trials of a sweep by index, and how to rebuild them.
pub const DEFINITION: &str = "sweep.json";
/// A trial's own record of its state, inside its folder.
pub const TRIAL_STATE: &str = "trial.json";
/// Where the trials' terminal output goes, inside the sweep folder.
pub const LOGS: &str = "logs";

/// `sweep.json`: what `runner trial` needs to rebuild any trial of the sweep by index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Definition {
    /// `runner` version that wrote it.
    pub runner_version: String,
    /// The sweep file as given, relative to `cwd`.
    pub config: PathBuf,
    /// The working directory the sweep was started in (relative paths in the config use it).
    pub cwd: PathBuf,
    /// `--set` arguments given with the sweep.
    pub sets: Vec<String>,
    /// `RUNNER_…` environment variables set when the sweep was started.
    pub env: Vec<(String, String)>,
    /// The ranking metric.
    pub metric: String,
    /// Whether higher is better.
    pub maximize: bool,
    /// The swept keys.
    pub keys: Vec<String>,
    /// When trials stop early (none for sweeps written before pruning existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<Prune>,
    /// The trials by index.
    pub trials: Vec<TrialEntry>,
}

/// One trial in `sweep.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrialEntry {
    /// Index (the Slurm array task id).
    pub index: usize,
    /// Folder name.
    pub name: String,
    /// Swept key and value (TOML) pairs.
    pub values: Vec<(String, String)>,
}

impl Definition {
    /// The definition of `sweep`.
    pub fn of(sweep: &Sweep) -> Result<Definition> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current folder", Path::new("."), e))?;
        Ok(Definition {
            runner_version: env!("CARGO_PKG_VERSION").into(),
            config: sweep.config_path.clone(),
            cwd,
            sets: sweep.overrides.sets.clone(),
            env: sweep.overrides.env.clone(),
            metric: sweep.spec.metric.clone(),
            maximize: sweep.spec.maximize(),
            keys: sweep.spec.keys().into_iter().map(str::to_string).collect(),
            prune: sweep.spec.prune,
            trials: sweep
                .trials
                .iter()
                .map(|t| TrialEntry { index: t.index, name: t.name.clone(), values: t.values.clone() })
                .collect(),
        })
    }

    /// Reads `<dir>/sweep.json`.
    pub fn read(dir: &Path) -> Result<Definition> {
        let path = dir.join(DEFINITION);
        let text = bounded::read(&path, &bounded::RUN_FILE).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "`{}` is not a sweep folder (it has no {DEFINITION}); sweep folders are made by `runner sweep <file>`",
                dir.display()
            )),
            _ => Error::io("reading", &path, e),
        })?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Usage(format!("`{}` is not a sweep definition: {e}", path.display())))
    }

    /// The overrides the sweep was started with.
    pub fn overrides(&self) -> Overrides {
        Overrides { sets: self.sets.clone(), env: self.env.clone(), trial: None }
    }
}

/// Creates the sweep folder and writes `sweep.json`.
pub fn write_definition(sweep: &Sweep) -> Result<Definition> {
    // Each trial reads the config again in its own process; a pipe could be read only once.
    if !crate::config::layering::is_regular(&sweep.config_path) {
        return Err(Error::Usage(format!(
            "`{}` is not a regular file (a pipe?), and a sweep's trials each read the config again in their own \
             process: write it to a file first, such as `sed … base.toml > sweep.toml`, and run that",
            sweep.config_path.display()
        )));
    }
    let definition = Definition::of(sweep)?;
    for dir in [sweep.dir.clone(), sweep.dir.join(LOGS)] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating sweep folder", &dir, e))?;
    }
    let json = serde_json::to_string_pretty(&definition).expect("plain data") + "\n";
    write_atomic(&sweep.dir.join(DEFINITION), json.as_bytes())?;
    Ok(definition)
}

/// Where a trial stands, from the files in its folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TrialState {
    /// Never started (no folder).
    Pending,
    /// Its process says it is running.
    Running {
        /// Machine it runs on.
        host: String,
        /// Its process id there.
        pid: u32,
    },
    /// Trained every epoch.
    Completed,
    /// Stopped by an error.
    Failed {
        /// The error.
        reason: String,
    },
    /// Stopped by Ctrl-C (or the scheduler's SIGINT).
    Interrupted {
        /// What stopped it.
        reason: String,
    },
    /// Stopped early by the sweep's pruning because other trials did better; its checkpoint
    /// is kept, and it runs again (to the end) only with `--retry-pruned`.
    Pruned {
        /// Why.
        reason: String,
    },
}

impl TrialState {
    /// Reads `trial.json` in `dir` (pending when absent).
    pub fn of(dir: &Path) -> TrialState {
        match bounded::read(&dir.join(TRIAL_STATE), &bounded::RUN_FILE) {
            Ok(text) => serde_json::from_slice(&text)
                .unwrap_or_else(|e| TrialState::Failed { reason: format!("unreadable {TRIAL_STATE}: {e}") }),
            Err(_) => TrialState::Pending,
        }
    }

    /// Whether a running trial's process is gone (known only on the machine it ran on).
    pub fn died(&self) -> bool {
        match self {
            TrialState::Running { host, pid } => {
                *host == crate::results::manifest::hostname() && !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }

    /// One word: pending, running, died, completed, failed, interrupted, pruned.
    pub fn word(&self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running { .. } if self.died() => "died",
            TrialState::Running { .. } => "running",
            TrialState::Completed => "completed",
            TrialState::Failed { .. } => "failed",
            TrialState::Interrupted { .. } => "interrupted",
            TrialState::Pruned { .. } => "pruned",
        }
    }

    pub(super) fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(TRIAL_STATE),
            (serde_json::to_string_pretty(self).expect("plain data") + "\n").as_bytes(),
        )
    }
}
