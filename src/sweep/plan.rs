//! Planning a sweep: the sweep file's `[sweep]` table expanded into trials, each checked as a
//! complete experiment, and named by a hash of its resolved config so that a trial is never
//! run twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::state::TrialEntry;
use crate::config::layering::{segs, Assignment, Step};
use serde::Deserialize;

use crate::config::{self, Origin, Overrides, Plan, Seg, SweepConfig};
use crate::{Error, Result};

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

/// Whether `config_path` declares a `[sweep]`, or cross-validation folds without choosing
/// one (read only as far as needed to know).
pub fn declared(config_path: &Path, overrides: &Overrides) -> Result<bool> {
    let config = config::load(config_path, overrides)?.0;
    Ok(config.sweep.is_some() || cross_validated(&config).is_some())
}

/// The number of folds when `config` is a cross-validation to run as trials: `data.folds`
/// without a chosen `data.fold`.
fn cross_validated(config: &config::Config) -> Option<usize> {
    config.data.folds.filter(|_| config.data.fold.is_none())
}

/// The sweep table of a file without `[sweep]` whose folds make it one: it varies nothing
/// but the fold, and ranks by validation accuracy.
fn folds_only() -> SweepConfig {
    let empty = toml::Table::new();
    SweepConfig::deserialize(toml::Value::Table(empty)).expect("every [sweep] key has a default")
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
    expanded: Vec<Vec<config::sweep::Swept>>,
}

impl Declared {
    fn read(config_path: &Path, overrides: &Overrides) -> Result<Declared> {
        let (config, sources) = config::load(config_path, overrides)?;
        let folds = cross_validated(&config);
        let spec = match (config.sweep.clone(), folds) {
            (Some(spec), _) => spec,
            (None, Some(_)) => folds_only(),
            (None, None) => {
                return Err(Error::Usage(format!(
                    "{} has no [sweep] table; run it with `runner {}`, or add [sweep.grid] with the keys to \
                     vary (or data.folds for cross-validation)",
                    config_path.display(),
                    config_path.display()
                )))
            }
        };
        let problems = if config.sweep.is_some() { spec.problems() } else { Vec::new() };
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
        let mut expanded = spec.expand(config.experiment.seed);
        if let Some(folds) = folds {
            if spec.keys().contains(&"data.fold") {
                return Err(Error::Usage(format!(
                    "{} runs every one of its data.folds = {folds} folds; sweeping or setting data.fold as well \
                     would repeat them (leave data.fold out, or drop data.folds to run one split)",
                    config_path.display()
                )));
            }
            // Each point of the sweep is cross-validated: its trials are the folds, fold last.
            let fold = |f: usize| config::sweep::Swept {
                key: "data.fold".into(),
                value: toml::Value::Integer(f as i64),
                declared_at: vec![Step::Key("data".into()), Step::Key("folds".into())],
            };
            expanded = expanded
                .into_iter()
                .flat_map(|point| (0..folds).map(move |f| point.iter().cloned().chain([fold(f)]).collect()))
                .collect();
        }
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
pub(super) fn plan_entry(config_path: &Path, overrides: &Overrides, entry: &TrialEntry) -> Result<Trial> {
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
    let mut classes: BTreeMap<String, std::result::Result<Vec<String>, String>> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for trial in &sweep.trials {
        let d = &trial.plan.config.data;
        let source = format!("{:?}", (&d.path, &d.train_path, &d.validation_path, &d.test_path, &d.labels));
        let found = classes.entry(source).or_insert_with(|| {
            crate::pipeline::prepare::list(&trial.plan).map(|(l, _)| l.classes).map_err(|e| e.to_string())
        });
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
    format!("trial-{:012x}", crate::hash::fnv1a(text.as_bytes()) >> 16)
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
