//! Sweeps: one config file with a `[sweep]` table becomes many trials, each a normal run
//! folder under the sweep's folder `<output.dir>/sweeps/<experiment.name>/`.
//!
//! ```text
//! sweep file ──space::expand──► trial values ──config (as overrides)──► one Plan per trial
//!    ──► sweep.json (the trials, by index) ──► `runner trial <folder> --index i` per trial
//!        (local child processes, or Slurm array tasks) ──► trial-<hash>/ run folders
//!    ──► finish: leaderboard, overlaid curves, metric against each swept key
//! ```
//!
//! A trial's folder is named by a hash of its resolved config, so a trial is never run twice:
//! running a sweep again skips completed trials and runs the others again. A trial records its
//! own state in `trial.json` inside its folder, so the state of a sweep is read from files
//! (on a cluster, from the shared filesystem) and not from a scheduler's accounting. Every
//! trial runs in its own process, so one that crashes cannot take the others down.

pub mod local;
pub mod slurm;
pub mod space;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::layering::{segs, Assignment, Step};
use crate::config::{self, Origin, Overrides, Plan, Seg};
use crate::results::{files, write_atomic, RunDir};
use crate::{Error, Result};
pub use space::SweepConfig;

/// `sweep.json`: the trials of a sweep by index, and how to rebuild them.
pub const DEFINITION: &str = "sweep.json";
/// A trial's own record of its state, inside its folder.
pub const TRIAL_STATE: &str = "trial.json";
/// Where the trials' terminal output goes, inside the sweep folder.
pub const LOGS: &str = "logs";

/// A checked sweep: every trial is a valid experiment.
pub struct Sweep {
    /// The sweep file as given.
    pub config_path: PathBuf,
    /// The `[sweep]` table.
    pub spec: SweepConfig,
    /// `<output.dir>/sweeps/<experiment.name>`.
    pub dir: PathBuf,
    /// The trials, in expansion order (duplicates removed).
    pub trials: Vec<Trial>,
    /// Expanded trials dropped because an earlier one has the same config: (dropped, kept).
    pub duplicates: Vec<(usize, usize)>,
    /// The overrides the sweep was read with (recorded so trials are rebuilt the same way).
    pub overrides: Overrides,
}

/// One trial.
pub struct Trial {
    /// Position in the sweep (the Slurm array index).
    pub index: usize,
    /// Folder name, `trial-<hash of the resolved config>`.
    pub name: String,
    /// The swept values as (key, TOML value), in key order.
    pub values: Vec<(String, String)>,
    /// The checked experiment.
    pub plan: Plan,
}

impl Trial {
    /// `train.learning_rate=0.001, model.layers[0].filters=16`
    pub fn label(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every machine and every Rust version, for
/// names that must survive upgrades.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether `config_path` declares a `[sweep]` (read only as far as needed to know).
pub fn declared(config_path: &Path, overrides: &Overrides) -> Result<bool> {
    Ok(config::load(config_path, overrides)?.0.sweep.is_some())
}

/// A sweep file read and its `[sweep]` table checked and expanded; trials not yet checked.
struct Declared {
    /// The sweep file's config (with `[sweep]`).
    config: config::Config,
    /// Where its values came from.
    sources: config::Sources,
    /// The `[sweep]` table.
    spec: SweepConfig,
    /// Every trial's values, in expansion order.
    expanded: Vec<Vec<space::Swept>>,
}

impl Declared {
    fn read(config_path: &Path, overrides: &Overrides) -> Result<Declared> {
        let (config, sources) = config::load(config_path, overrides)?;
        let Some(spec) = config.sweep.clone() else {
            return Err(Error::Usage(format!(
                "{} has no [sweep] table; run it with `runner {}`, or add [sweep.grid] with the keys to vary",
                config_path.display(),
                config_path.display()
            )));
        };
        let problems = spec.problems();
        if !problems.is_empty() {
            let diags: Vec<_> = problems
                .into_iter()
                .map(|(path, message)| {
                    let mut steps = vec![Step::Key("sweep".into())];
                    steps.extend(path);
                    sources.at(&segs(&steps), message)
                })
                .collect();
            return Err(Error::Config(sources.render_all(&diags)));
        }
        // A swept key also set by --set or the environment would make every trial the same.
        let set_keys: Vec<String> = overrides
            .sets
            .iter()
            .filter_map(|s| s.split_once('=').map(|(k, _)| k.trim().to_string()))
            .chain(overrides.env.iter().map(|(k, _)| k["RUNNER_".len()..].replace("__", ".").to_lowercase()))
            .collect();
        if let Some(key) = spec.keys().into_iter().find(|k| set_keys.iter().any(|s| s == k)) {
            return Err(Error::Usage(format!(
                "`{key}` is swept by {} and also set by --set or the environment, which would make every \
                 trial the same; drop one of them",
                config_path.display()
            )));
        }
        let expanded = spec.expand(config.experiment.seed);
        Ok(Declared { config, sources, spec, expanded })
    }

    /// Expanded trial `index` as a checked experiment: its values become overrides that point
    /// back at where the sweep declares them.
    fn trial_plan(&self, config_path: &Path, overrides: &Overrides, index: usize) -> Result<Plan> {
        let sources = &self.sources;
        let assignments = self.expanded[index]
            .iter()
            .map(|swept| {
                let declared = segs(&swept.declared_at);
                let file = match sources.origin(&declared) {
                    Origin::File(i) => i,
                    _ => 0,
                };
                let source = &sources.files[file];
                let key_path =
                    &declared[..declared.len() - usize::from(matches!(declared.last(), Some(Seg::Index(_))))];
                let origin = Origin::Sweep {
                    trial: index,
                    file,
                    key: source.locate_key(key_path),
                    value: source.locate(&declared),
                };
                let key = config::layering::parse_path(&swept.key).expect("checked by problems()");
                Assignment { key, value: swept.value.clone(), origin }
            })
            .collect();
        let (config, sources) = config::load(config_path, &overrides.with_trial(assignments))?;
        config::validate(config, sources)
    }

    /// Expanded trial `index`'s values as (key, TOML value).
    fn shown(&self, index: usize) -> Vec<(String, String)> {
        self.expanded[index].iter().map(|s| (s.key.clone(), s.value.to_string())).collect()
    }
}

/// Reads the sweep file, checks its `[sweep]` table, expands it and checks every trial as a
/// complete experiment. All problems of all trials are reported together, each once, with
/// the trials it affects.
pub fn plan(config_path: &Path, overrides: &Overrides) -> Result<Sweep> {
    let declared = Declared::read(config_path, overrides)?;
    let mut trials: Vec<Trial> = Vec::new();
    let mut duplicates = Vec::new();
    let mut failures: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let total = declared.expanded.len();
    for index in 0..total {
        match declared.trial_plan(config_path, overrides, index) {
            Ok(plan) => {
                let name = trial_name(&plan);
                match trials.iter().find(|t| t.name == name) {
                    Some(first) => duplicates.push((index, first.index)),
                    None => trials.push(Trial { index: trials.len(), name, values: declared.shown(index), plan }),
                }
            }
            Err(Error::Config(rendered)) => {
                failures.entry(without_count(&rendered)).or_default().push(index);
            }
            Err(other) => return Err(other),
        }
    }
    if !failures.is_empty() {
        let bad: usize = failures.values().map(Vec::len).sum();
        let mut out: Vec<String> =
            failures.iter().map(|(body, indices)| format!("{body}\n  ({})", which_trials(indices, total))).collect();
        out.push(format!(
            "{bad} of {total} trials have problems in {}; nothing was run",
            declared.sources.main().path.display()
        ));
        return Err(Error::Config(out.join("\n\n")));
    }
    let Declared { config, spec, .. } = declared;
    let dir = config.output.dir.join("sweeps").join(&config.experiment.name);
    Ok(Sweep { config_path: config_path.to_path_buf(), spec, dir, trials, duplicates, overrides: overrides.clone() })
}

/// The one trial of the sweep in `config_path` recorded as `entry` in `sweep.json`, checked
/// alone (a trial process needs no other). Fails when the file no longer gives that trial.
fn plan_entry(config_path: &Path, overrides: &Overrides, entry: &TrialEntry) -> Result<Trial> {
    let declared = Declared::read(config_path, overrides)?;
    let changed = || {
        Error::Usage(format!(
            "{} changed since the sweep was written, so it no longer has trial {} ({}); start the sweep \
             again (`runner sweep {}`)",
            config_path.display(),
            entry.index,
            entry.name,
            config_path.display()
        ))
    };
    let index = (0..declared.expanded.len()).find(|&i| declared.shown(i) == entry.values).ok_or_else(changed)?;
    let plan = declared.trial_plan(config_path, overrides, index)?;
    let name = trial_name(&plan);
    if name != entry.name {
        return Err(changed());
    }
    Ok(Trial { index: entry.index, name, values: entry.values.clone(), plan })
}

/// Scans each dataset folder the trials use (once per folder) and checks every trial's last
/// layer against its classes, so a sweep fails before any trial runs rather than in each.
pub fn check_data(sweep: &Sweep) -> Result<()> {
    let mut classes: BTreeMap<PathBuf, std::result::Result<Vec<String>, String>> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for trial in &sweep.trials {
        let path = &trial.plan.config.data.path;
        let found = classes
            .entry(path.clone())
            .or_insert_with(|| crate::data::scan(path).map(|l| l.classes).map_err(|e| e.to_string()));
        let problem = match found {
            Err(message) => Some(message.clone()),
            Ok(names) => config::check_classes(&trial.plan, names).err().map(|e| e.to_string()),
        };
        if let Some(problem) = problem {
            failures.entry(without_count(&problem)).or_default().push(trial.index);
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let total = sweep.trials.len();
    let mut out: Vec<String> =
        failures.iter().map(|(body, indices)| format!("{body}\n  ({})", which_trials(indices, total))).collect();
    out.push(format!(
        "{} of {total} trials cannot use their data; nothing was run",
        failures.values().map(Vec::len).sum::<usize>()
    ));
    Err(Error::Data(out.join("\n\n")))
}

/// A config error's text without its closing "N problems in FILE; nothing was run" line: the
/// sweep reports problems of many trials and gives its own count.
fn without_count(rendered: &str) -> String {
    match rendered.rsplit_once("\n\n") {
        Some((body, last)) if last.ends_with("; nothing was run") => body.to_string(),
        _ => rendered.to_string(),
    }
}

/// `in trials 0, 3 of the sweep`, `in every trial of the sweep`.
fn which_trials(indices: &[usize], total: usize) -> String {
    if indices.len() == total {
        return "in every trial of the sweep".into();
    }
    let shown: Vec<String> = indices.iter().take(12).map(usize::to_string).collect();
    let more = if indices.len() > 12 { format!(" and {} more", indices.len() - 12) } else { String::new() };
    format!("in trial{} {}{more} of the sweep", if indices.len() == 1 { "" } else { "s" }, shown.join(", "))
}

/// `trial-<48-bit hash>` of the resolved config, ignoring `[output]` (where results go does
/// not change what is trained).
fn trial_name(plan: &Plan) -> String {
    let mut config = plan.config.clone();
    config.output = Default::default();
    let text = toml::to_string(&config).unwrap_or_default();
    format!("trial-{:012x}", fnv1a(text.as_bytes()) >> 16)
}

/// `runner check` on a sweep file: every trial checked, listed with its values and model size.
pub fn check_report(sweep: &Sweep) -> String {
    let thousands = crate::model::summary::thousands;
    let mut out = format!(
        "{}: the sweep is valid: {} trials, each a valid experiment\n",
        sweep.config_path.display(),
        sweep.trials.len()
    );
    for (dropped, kept) in &sweep.duplicates {
        out += &format!("  (expanded trial {dropped} has the same config as trial {kept}; it runs once)\n");
    }
    let maximize = if sweep.spec.maximize() { "maximize" } else { "minimize" };
    out += &format!("Ranked by the best {} ({maximize}); folder {}\n\n", sweep.spec.metric, sweep.dir.display());
    out += &format!("{:>5}  {:<20} {:>12}  values\n", "index", "folder", "parameters");
    for t in &sweep.trials {
        out +=
            &format!("{:>5}  {:<20} {:>12}  {}\n", t.index, t.name, thousands(t.plan.model.param_count()), t.label());
    }
    out
}

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
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "`{}` is not a sweep folder (it has no {DEFINITION}); sweep folders are made by `runner sweep <file>`",
                dir.display()
            )),
            _ => Error::io("reading", &path, e),
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("`{}` is not a sweep definition: {e}", path.display())))
    }

    /// The overrides the sweep was started with.
    pub fn overrides(&self) -> Overrides {
        Overrides { sets: self.sets.clone(), env: self.env.clone(), trial: None }
    }
}

/// Creates the sweep folder and writes `sweep.json`.
pub fn write_definition(sweep: &Sweep) -> Result<Definition> {
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
}

impl TrialState {
    /// Reads `trial.json` in `dir` (pending when absent).
    pub fn of(dir: &Path) -> TrialState {
        match std::fs::read_to_string(dir.join(TRIAL_STATE)) {
            Ok(text) => serde_json::from_str(&text)
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

    /// One word: pending, running, died, completed, failed, interrupted.
    pub fn word(&self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running { .. } if self.died() => "died",
            TrialState::Running { .. } => "running",
            TrialState::Completed => "completed",
            TrialState::Failed { .. } => "failed",
            TrialState::Interrupted { .. } => "interrupted",
        }
    }

    fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(TRIAL_STATE),
            (serde_json::to_string_pretty(self).expect("plain data") + "\n").as_bytes(),
        )
    }
}

/// `runner trial <sweep folder> --index i`: runs one trial of a sweep in its folder, the way
/// local sweeps and Slurm array tasks do. A completed trial is left alone; any other earlier
/// attempt is replaced.
pub fn run_trial(sweep_dir: &Path, index: usize) -> Result<()> {
    let sweep_dir = std::fs::canonicalize(sweep_dir).map_err(|e| Error::io("opening sweep folder", sweep_dir, e))?;
    let definition = Definition::read(&sweep_dir)?;
    let Some(entry) = definition.trials.get(index) else {
        return Err(Error::Usage(format!(
            "the sweep in `{}` has trials 0 to {}; there is no trial {index}",
            sweep_dir.display(),
            definition.trials.len().saturating_sub(1)
        )));
    };
    std::env::set_current_dir(&definition.cwd)
        .map_err(|e| Error::io("entering the sweep's working folder", &definition.cwd, e))?;
    let trial = plan_entry(&definition.config, &definition.overrides(), entry)?;
    let dir = sweep_dir.join(&trial.name);
    let before = TrialState::of(&dir);
    if before == TrialState::Completed {
        tracing::info!("trial {index} ({}) is already completed; nothing to do", trial.name);
        return Ok(());
    }
    // Stopped by Ctrl-C, the scheduler or a kill: go on from its checkpoint. Failed (or never
    // begun training): start over, since the cause may have been mended.
    let resume = matches!(before, TrialState::Interrupted { .. })
        || (matches!(before, TrialState::Running { .. }) && before.died());
    let resume = resume && dir.join(files::MANIFEST).is_file();
    if !resume && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("clearing the earlier attempt in", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating trial folder", &dir, e))?;
    let running = TrialState::Running { host: crate::results::manifest::hostname(), pid: std::process::id() };
    running.write(&dir)?;
    tracing::info!("trial {index} of {}: {}", definition.trials.len(), trial.label());
    let result = if resume {
        crate::run::resume(&dir)
    } else {
        crate::run::prepare(&trial.plan)
            .and_then(|data| crate::run::run_in(trial.plan, &data, RunDir { path: dir.clone() }))
    };
    let state = match &result {
        Ok(_) => TrialState::Completed,
        Err(Error::Interrupted(at)) => TrialState::Interrupted { reason: format!("interrupted at {at}") },
        Err(e) => TrialState::Failed { reason: e.to_string() },
    };
    state.write(&dir)?;
    result.map(|_| ())
}

/// The trials of the sweep in `dir` that are to run (or be submitted): all but the completed
/// ones (counted, second) and those whose process is still alive (warned about: if its job is
/// gone on another machine, deleting its `trial.json` lets it run again).
pub fn to_run(dir: &Path, definition: &Definition) -> (Vec<usize>, usize) {
    let mut todo = Vec::new();
    let mut completed = 0;
    for entry in &definition.trials {
        match TrialState::of(&dir.join(&entry.name)) {
            TrialState::Completed => completed += 1,
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
            TrialState::Failed { reason } | TrialState::Interrupted { reason } => {
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
    let unfinished = standings
        .iter()
        .filter(|s| s.state != TrialState::Completed)
        .map(|s| {
            let why = match &s.state {
                TrialState::Failed { reason } | TrialState::Interrupted { reason } => reason.clone(),
                other => other.word().to_string(),
            };
            (s.entry.index, why)
        })
        .collect();
    let completed = standings.iter().filter(|s| s.state == TrialState::Completed).count();
    Ok(Finish { completed, unfinished, leaderboard })
}

/// `runner sweep <file>` (and `runner <file>` for a sweep file) on this machine: checks every
/// trial, writes `sweep.json`, runs the trials that are not completed `jobs` at a time, then
/// writes the comparison. Fails (after finishing the others) when any trial did not complete.
pub fn run_local(config_path: &Path, overrides: &Overrides, jobs: usize) -> Result<Finish> {
    let sweep = plan(config_path, overrides)?;
    check_data(&sweep)?;
    let definition = write_definition(&sweep)?;
    let cores = local::cores();
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let jobs = if jobs > cores {
        tracing::warn!("--jobs {jobs} is more than the {cores} cores; running {cores} trials at a time");
        cores
    } else {
        jobs
    };
    let (todo, skipped) = to_run(&sweep.dir, &definition);
    tracing::info!(
        "sweep of {} trials in {}: {skipped} already completed, {} to run, {jobs} at a time with {} threads each",
        definition.trials.len(),
        sweep.dir.display(),
        todo.len(),
        (cores / jobs).max(1)
    );
    local::run(&sweep.dir, &definition, &todo, jobs)?;
    let finish = finish(&sweep.dir)?;
    if let Some(board) = &finish.leaderboard {
        print!("{board}");
    }
    println!("{}", finish.summary(skipped));
    if crate::interrupt::requested() {
        return Err(Error::SweepInterrupted(format!(
            "{} of {} trials completed; run the sweep again to run the others (completed trials are kept)",
            finish.completed,
            definition.trials.len()
        )));
    }
    if !finish.unfinished.is_empty() {
        return Err(Error::Train(format!(
            "{} of {} trials did not complete; run the sweep again to retry them",
            finish.unfinished.len(),
            definition.trials.len()
        )));
    }
    Ok(finish)
}

impl Finish {
    /// `4 trials: 3 completed (1 skipped as already completed), 1 not completed:` and the reasons.
    pub fn summary(&self, skipped: usize) -> String {
        let total = self.completed + self.unfinished.len();
        let skipped = if skipped > 0 { format!(" ({skipped} skipped as already completed)") } else { String::new() };
        let mut out = format!("Sweep: {total} trials: {} completed{skipped}", self.completed);
        if !self.unfinished.is_empty() {
            out += &format!(", {} not completed:", self.unfinished.len());
            for (index, why) in &self.unfinished {
                out += &format!("\n  trial {index}: {}", why.lines().next().unwrap_or(""));
            }
        }
        out
    }
}
