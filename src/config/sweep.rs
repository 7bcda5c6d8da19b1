//! `[sweep]`: which config values vary between the trials of a sweep, and the expansion into
//! trials.
//!
//! Trials are numbered in this order: the grid's cartesian product with its first key varying
//! slowest (like nested loops written in file order), then the `zip` lists entry by entry, then
//! the random draws. So `grid = { a = [1, 2], b = [3, 4] }` gives (1,3), (1,4), (2,3), (2,4).
//! Random draw `r` of key `k` depends only on (seed, r, k): adding a grid value or another
//! random key never changes the values already drawn, and every grid point gets the same draws.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use rand::Rng;
use serde::{Deserialize, Serialize};
use toml::Value;

use super::layering::{parse_path, Step};
use crate::seed::{self, Stream};

/// At most this many trials: a guard against a typo that multiplies a grid into millions.
pub const MAX_TRIALS: usize = 10_000;

/// `[sweep]`: the values to vary and the metric that ranks the trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Dotted keys to lists of values; every combination is a trial
    /// (`"train.learning_rate" = [1e-3, 3e-4]`, `"model.layers[0].filters" = [16, 32]`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "BTreeMap<String, Vec<serde_json::Value>>")]
    pub grid: IndexMap<String, Vec<Value>>,
    /// Dotted keys to lists of equal length that vary together: entry i of every list makes
    /// one trial (combined with every grid point).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "BTreeMap<String, Vec<serde_json::Value>>")]
    pub zip: IndexMap<String, Vec<Value>>,
    /// Random search: `trials` draws from distributions, seeded by `experiment.seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomSearch>,
    /// History column that ranks the trials: `val_accuracy` (default), `val_loss`, or any
    /// other column the trials write (`val_f1_score` when `train.metrics` has `f1_score`);
    /// each trial counts with its best epoch.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// `"maximize"` or `"minimize"` the metric (default: minimize losses, maximize the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Stop trials early, at an epoch boundary, when their metric falls behind the other
    /// trials' at the same epoch: `{ rule = "median", after_epochs = 2 }` or
    /// `{ rule = "halving", after_epochs = 1, reduction_factor = 3 }` (default: no pruning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<Prune>,
}

/// `[sweep] prune`: when a trial stops early because the others do better. Both rules
/// compare each trial's best metric so far with the other trials' best at the same epoch,
/// read from the history files of the trials, so they work alike for local and Slurm trials.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Prune {
    /// Optuna's `MedianPruner`: from epoch `after_epochs` on, stop a trial whose best so far
    /// is worse than the median of the others' best at the same epoch, once `min_trials`
    /// others have reached it.
    Median {
        /// Epochs every trial trains before it can be stopped (default 1).
        #[serde(default = "one")]
        after_epochs: usize,
        /// Other trials that must have reached the epoch before a median counts (default 2).
        #[serde(default = "two")]
        min_trials: usize,
    },
    /// Asynchronous successive halving (ASHA): at rungs `after_epochs · reduction_factor^k`,
    /// a trial goes on only if its best so far is in the best `1 / reduction_factor` of the
    /// trials that have reached that rung (a trial alone at a rung goes on).
    Halving {
        /// The first rung (default 1).
        #[serde(default = "one")]
        after_epochs: usize,
        /// How much fewer trials each rung keeps (default 3).
        #[serde(default = "three")]
        reduction_factor: usize,
    },
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn three() -> usize {
    3
}

fn default_metric() -> String {
    "val_accuracy".into()
}

/// Whether a higher or a lower metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Higher is better.
    Maximize,
    /// Lower is better.
    Minimize,
}

/// `[sweep.random]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomSearch {
    /// How many draws (each combined with every grid point and zip entry).
    pub trials: usize,
    /// Dotted keys to distributions: `{ uniform = [0, 40] }`, `{ log_uniform = [1e-4, 1e-2] }`,
    /// `{ int = [64, 256] }` (both ends included) or `{ choice = [16, 32, 64] }`. Floats are
    /// rounded to 4 significant digits, so folders, legends and leaderboards stay readable.
    #[schemars(with = "BTreeMap<String, Distribution>")]
    pub params: IndexMap<String, Distribution>,
}

/// Where a random value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Evenly between two floats.
    Uniform([f64; 2]),
    /// Evenly in log space between two positive floats (for learning rates).
    LogUniform([f64; 2]),
    /// An integer between the two ends, both included.
    Int([i64; 2]),
    /// One of the listed values, each equally likely.
    #[schemars(with = "Vec<serde_json::Value>")]
    Choice(Vec<Value>),
}

/// One value of one trial, and where the sweep declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Swept {
    /// The dotted key as written: `train.learning_rate`.
    pub key: String,
    /// Its value in this trial.
    pub value: Value,
    /// Path of the declaration inside the config: `sweep.grid."train.learning_rate"[1]`.
    pub declared_at: Vec<Step>,
}

impl SweepConfig {
    /// Whether lower is better for the metric.
    pub fn maximize(&self) -> bool {
        match self.goal {
            Some(goal) => goal == Goal::Maximize,
            None => !self.metric.contains("loss"),
        }
    }

    /// The swept keys in expansion order: grid, zip, random.
    pub fn keys(&self) -> Vec<&str> {
        let random = self.random.iter().flat_map(|r| r.params.keys());
        self.grid.keys().chain(self.zip.keys()).chain(random).map(String::as_str).collect()
    }

    /// How many trials the sweep expands to.
    pub fn size(&self) -> usize {
        let grid = self.grid.values().map(Vec::len).fold(1usize, usize::saturating_mul);
        let zip = self.zip.values().map(Vec::len).max().unwrap_or(1);
        let random = self.random.as_ref().map_or(1, |r| r.trials);
        grid.saturating_mul(zip).saturating_mul(random)
    }

    /// Problems with the declaration itself, as (path below `[sweep]`, message). Whether each
    /// trial's values make a valid experiment is checked by building the trials.
    pub fn problems(&self) -> Vec<(Vec<Step>, String)> {
        let mut out = Vec::new();
        let at = |parts: &[&str]| parts.iter().map(|p| Step::Key(p.to_string())).collect::<Vec<_>>();
        if self.grid.is_empty() && self.zip.is_empty() && self.random.is_none() {
            out.push((
                vec![],
                "the sweep varies nothing; add `[sweep.grid]`, `[sweep.zip]` or `[sweep.random]` \
                 with keys such as \"train.learning_rate\""
                    .into(),
            ));
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        let mut check_key = |table: &'static str, key: &str, path: Vec<Step>, out: &mut Vec<_>| {
            if let Some(message) = key_problem(key) {
                out.push((path, message));
            } else if let Some(first) = seen.insert(key.to_string(), table) {
                out.push((path, format!("`{key}` is swept twice (also in sweep.{first}); keep one")));
            }
        };
        for (key, values) in &self.grid {
            check_key("grid", key, at(&["grid", key]), &mut out);
            if values.is_empty() {
                out.push((at(&["grid", key]), format!("grid `{key}` has no values; list at least one")));
            }
        }
        let zip_len = self.zip.values().next().map(Vec::len);
        for (key, values) in &self.zip {
            check_key("zip", key, at(&["zip", key]), &mut out);
            if Some(values.len()) != zip_len || values.is_empty() {
                let (first, n) = (self.zip.keys().next().map_or("", String::as_str), zip_len.unwrap_or(0));
                out.push((
                    at(&["zip", key]),
                    format!(
                        "zip lists vary together, so they need the same length (at least 1): `{key}` has {}, `{first}` has {n}",
                        values.len()
                    ),
                ));
            }
        }
        if let Some(random) = &self.random {
            if random.trials == 0 {
                out.push((at(&["random", "trials"]), "random trials must be at least 1".into()));
            }
            if random.params.is_empty() {
                out.push((
                    at(&["random"]),
                    "random search needs `params`, such as \"train.learning_rate\" = { log_uniform = [1e-4, 1e-2] }"
                        .into(),
                ));
            }
            for (key, dist) in &random.params {
                let path = at(&["random", "params", key]);
                check_key("random", key, path.clone(), &mut out);
                if let Some(message) = dist.problem() {
                    out.push((path, format!("`{key}`: {message}")));
                }
            }
        }
        use super::Metric::*;
        let columns = super::history_columns(&[Precision, Recall, F1Score, TopKAccuracy, Auc, PrAuc]);
        if !columns.contains(&self.metric) {
            out.push((
                at(&["metric"]),
                format!("metric `{}` is not a history column; use one of {}", self.metric, columns.join(", ")),
            ));
        }
        match self.prune {
            Some(Prune::Median { after_epochs: 0, .. } | Prune::Halving { after_epochs: 0, .. }) => {
                out.push((at(&["prune", "after_epochs"]), "`after_epochs` must be at least 1".into()))
            }
            Some(Prune::Median { min_trials: 0, .. }) => {
                out.push((at(&["prune", "min_trials"]), "`min_trials` must be at least 1".into()))
            }
            Some(Prune::Halving { reduction_factor, .. }) if reduction_factor < 2 => out.push((
                at(&["prune", "reduction_factor"]),
                "`reduction_factor` must be at least 2 (each rung keeps 1 / reduction_factor of the trials)".into(),
            )),
            _ => {}
        }
        let size = self.size();
        if size > MAX_TRIALS {
            out.push((vec![], format!("the sweep expands to {size} trials, more than {MAX_TRIALS}; shrink the grid")));
        }
        out
    }

    /// Every trial's values, in trial order (see the module doc). Call only without `problems`.
    pub fn expand(&self, seed: u64) -> Vec<Vec<Swept>> {
        let declared = |table: &str, key: &str, index: Option<usize>| {
            let mut path = vec![Step::Key("sweep".into()), Step::Key(table.into())];
            if table == "random" {
                path.push(Step::Key("params".into()));
            }
            path.push(Step::Key(key.into()));
            path.extend(index.map(Step::Index));
            path
        };
        // The grid's product, first key slowest.
        let mut points: Vec<Vec<Swept>> = vec![Vec::new()];
        for (key, values) in &self.grid {
            points = points
                .into_iter()
                .flat_map(|point| {
                    values.iter().enumerate().map(move |(i, v)| {
                        let mut point = point.clone();
                        point.push(Swept {
                            key: key.clone(),
                            value: v.clone(),
                            declared_at: declared("grid", key, Some(i)),
                        });
                        point
                    })
                })
                .collect();
        }
        let zip_len = self.zip.values().map(Vec::len).max().unwrap_or(0);
        if zip_len > 0 {
            points = points
                .into_iter()
                .flat_map(|point| {
                    (0..zip_len).map(move |i| {
                        let mut point = point.clone();
                        for (key, values) in &self.zip {
                            let value = values[i].clone();
                            point.push(Swept { key: key.clone(), value, declared_at: declared("zip", key, Some(i)) });
                        }
                        point
                    })
                })
                .collect();
        }
        if let Some(random) = &self.random {
            let draws: Vec<Vec<Swept>> = (0..random.trials)
                .map(|r| {
                    random
                        .params
                        .iter()
                        .map(|(key, dist)| {
                            let mut rng = seed::rng(seed, Stream::Sweep, &[r as u64, key_hash(key)]);
                            Swept {
                                key: key.clone(),
                                value: dist.draw(&mut rng),
                                declared_at: declared("random", key, None),
                            }
                        })
                        .collect()
                })
                .collect();
            points = points
                .into_iter()
                .flat_map(|point| draws.iter().map(move |draw| point.iter().chain(draw).cloned().collect::<Vec<_>>()))
                .collect();
        }
        points
    }
}

/// Why `key` cannot be swept, if it cannot.
fn key_problem(key: &str) -> Option<String> {
    let steps = match parse_path(key) {
        Ok(steps) => steps,
        Err(message) => return Some(message),
    };
    let sections = ["experiment", "data", "augment", "model", "train"];
    match steps.as_slice() {
        [Step::Key(s), ..] if s == "output" || s == "sweep" => Some(format!(
            "`{key}` cannot be swept: every trial of a sweep writes into the sweep's folder under output.dir"
        )),
        [Step::Key(e), Step::Key(n)] if e == "experiment" && n == "name" => {
            Some(format!("`{key}` cannot be swept: the experiment name names the sweep's folder"))
        }
        [Step::Key(s), _, ..] if sections.contains(&s.as_str()) => None,
        _ => Some(format!(
            "`{key}` is not a key inside a section; sweep keys look like train.learning_rate or model.layers[0].filters"
        )),
    }
}

/// FNV-1a: a stable hash of a key, so a key's draws do not depend on the other keys.
fn key_hash(key: &str) -> u64 {
    crate::hash::fnv1a(key.as_bytes())
}

impl Distribution {
    fn problem(&self) -> Option<String> {
        match self {
            Distribution::Uniform([a, b]) if !(a.is_finite() && b.is_finite() && a < b) => {
                Some(format!("uniform needs finite [low, high] with low < high, not [{a}, {b}]"))
            }
            Distribution::LogUniform([a, b]) if !(a.is_finite() && b.is_finite() && *a > 0.0 && a < b) => {
                Some(format!("log_uniform needs [low, high] with 0 < low < high, not [{a}, {b}]"))
            }
            Distribution::Int([a, b]) if a > b => {
                Some(format!("int needs [low, high] with low <= high, not [{a}, {b}]"))
            }
            Distribution::Choice(values) if values.is_empty() => Some("choice needs at least one value".into()),
            _ => None,
        }
    }

    fn draw(&self, rng: &mut impl Rng) -> Value {
        match self {
            Distribution::Uniform([a, b]) => Value::Float(round_significant(rng.gen_range(*a..*b), 4)),
            Distribution::LogUniform([a, b]) => Value::Float(round_significant(rng.gen_range(a.ln()..b.ln()).exp(), 4)),
            Distribution::Int([a, b]) => Value::Integer(rng.gen_range(*a..=*b)),
            Distribution::Choice(values) => values[rng.gen_range(0..values.len())].clone(),
        }
    }
}

/// `x` rounded to `digits` significant digits.
fn round_significant(x: f64, digits: usize) -> f64 {
    format!("{x:.*e}", digits - 1).parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[sweep]` table from its TOML body.
    fn spec(text: &str) -> SweepConfig {
        toml::from_str(text).unwrap()
    }

    /// Each trial's values as `key=value` strings.
    fn shown(spec: &SweepConfig, seed: u64) -> Vec<Vec<String>> {
        spec.expand(seed).iter().map(|t| t.iter().map(|s| format!("{}={}", s.key, s.value)).collect()).collect()
    }

    #[test]
    fn the_grid_expands_first_key_slowest_in_file_order() {
        let s = spec("[grid]\na = [1, 2]\nb = [3, 4]");
        assert_eq!(s.size(), 4);
        assert_eq!(shown(&s, 1), [["a=1", "b=3"], ["a=1", "b=4"], ["a=2", "b=3"], ["a=2", "b=4"]]);
        // Written the other way round, `b` varies slowest.
        let s = spec("[grid]\nb = [3, 4]\na = [1, 2]");
        assert_eq!(shown(&s, 1), [["b=3", "a=1"], ["b=3", "a=2"], ["b=4", "a=1"], ["b=4", "a=2"]]);
        // Each value points at its place in the file.
        let last = &s.expand(1)[3][1];
        let at = |k: &str| Step::Key(k.into());
        assert_eq!(last.declared_at, [at("sweep"), at("grid"), at("a"), Step::Index(1)]);
    }

    #[test]
    fn zip_lists_vary_together_inside_each_grid_point() {
        let s = spec("[grid]\na = [1, 2]\n[zip]\nc = [5, 6, 7]\nd = [\"x\", \"y\", \"z\"]");
        assert_eq!(s.size(), 6);
        let trials = shown(&s, 1);
        let expected: Vec<Vec<String>> = [1, 2]
            .iter()
            .flat_map(|a| {
                [(5, "x"), (6, "y"), (7, "z")]
                    .map(|(c, d)| vec![format!("a={a}"), format!("c={c}"), format!("d=\"{d}\"")])
            })
            .collect();
        assert_eq!(trials, expected);
        assert_eq!(s.keys(), ["a", "c", "d"]);
    }

    const RANDOM: &str = r#"
[random]
trials = 50
[random.params]
"train.learning_rate" = { log_uniform = [1e-4, 1e-2] }
"model.layers[3].units" = { int = [16, 20] }
"augment.rotation_range" = { uniform = [0, 40] }
"train.batch_size" = { choice = [8, 16, 32] }
"#;

    #[test]
    fn random_draws_follow_the_seed_and_stay_in_their_ranges() {
        let s = spec(RANDOM);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let a = s.expand(7);
        assert_eq!(a.len(), 50);
        assert_eq!(a, s.expand(7), "the same seed draws the same values");
        assert_ne!(a, s.expand(8), "another seed draws others");
        let mut units = std::collections::BTreeSet::new();
        for trial in &a {
            let lr = trial[0].value.as_float().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            assert_eq!(format!("{lr:.3e}").parse::<f64>().unwrap(), lr, "{lr} is rounded to 4 significant digits");
            units.insert(trial[1].value.as_integer().unwrap());
            let rotation = trial[2].value.as_float().unwrap();
            assert!((0.0..=40.0).contains(&rotation));
            assert!([8, 16, 32].contains(&trial[3].value.as_integer().unwrap()));
        }
        assert_eq!(units.into_iter().collect::<Vec<_>>(), [16, 17, 18, 19, 20], "int includes both ends");
        // Log-uniform: about as many draws below 1e-3 (the geometric middle) as above.
        let below = a.iter().filter(|t| t[0].value.as_float().unwrap() < 1e-3).count();
        assert!((15..=35).contains(&below), "{below} of 50 below the geometric middle");
    }

    #[test]
    fn a_keys_draws_depend_only_on_seed_draw_and_key() {
        let values = |s: &SweepConfig, key: &str| -> Vec<Value> {
            s.expand(7).into_iter().flatten().filter(|v| v.key == key).map(|v| v.value).collect()
        };
        let base = spec(RANDOM);
        let lr = values(&base, "train.learning_rate");
        // Another key before it, and a grid in front: every grid point gets the same draws.
        let more = RANDOM.replace("[random.params]\n", "[random.params]\n\"train.momentum\" = { uniform = [0, 1] }\n");
        let with_grid = spec(&format!("[grid]\n\"train.epochs\" = [1, 2]\n{more}"));
        assert_eq!(with_grid.size(), 100);
        assert_eq!(values(&with_grid, "train.learning_rate"), [lr.clone(), lr].concat());
        // Two keys with the same distribution draw different values.
        let twins = spec("[random]\ntrials = 5\n[random.params]\n\"train.a\" = { uniform = [0, 1] }\n\"train.b\" = { uniform = [0, 1] }");
        assert_ne!(values(&twins, "train.a"), values(&twins, "train.b"));
    }

    #[test]
    fn floats_are_drawn_to_four_significant_digits() {
        assert_eq!(round_significant(0.000123456, 4), 0.0001235);
        assert_eq!(round_significant(12345.6, 4), 12350.0);
        assert_eq!(round_significant(-2.0 / 3.0, 4), -0.6667);
    }

    /// A grid of `sizes[i]` values for key `train.k<i>`.
    fn grid_of(sizes: &[i64]) -> SweepConfig {
        let mut s = spec("");
        for (i, &n) in sizes.iter().enumerate() {
            s.grid.insert(format!("train.k{i}"), (0..n).map(Value::Integer).collect());
        }
        s
    }

    fn messages(s: &SweepConfig) -> Vec<String> {
        s.problems().into_iter().map(|(_, m)| m).collect()
    }

    #[test]
    fn problems_catch_a_grid_over_max_trials_but_not_one_at_it() {
        assert_eq!(MAX_TRIALS, 10_000);
        assert_eq!(messages(&grid_of(&[100, 100])), Vec::<String>::new());
        assert_eq!(
            messages(&grid_of(&[101, 100])),
            ["the sweep expands to 10100 trials, more than 10000; shrink the grid"]
        );
        // The size saturates instead of overflowing.
        let huge = grid_of(&[1 << 16, 1 << 16, 1 << 16, 1 << 16]);
        assert_eq!(huge.size(), usize::MAX);
        assert_eq!(messages(&huge).len(), 1);
    }

    #[test]
    fn problems_catch_a_metric_that_is_not_a_history_column() {
        let mut s = grid_of(&[2]);
        for metric in ["val_accuracy", "loss", "val_f1_score", "top_k_accuracy", "val_auc", "pr_auc"] {
            s.metric = metric.into();
            assert_eq!(messages(&s), Vec::<String>::new(), "{metric}");
        }
        s.metric = "val_acc".into();
        let problems = s.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, [Step::Key("metric".into())]);
        assert!(
            problems[0].1.starts_with("metric `val_acc` is not a history column; use one of val_loss, "),
            "{}",
            problems[0].1
        );
    }

    #[test]
    fn problems_catch_keys_that_cannot_be_swept_or_are_swept_twice() {
        let s = spec("[grid]\n\"output.dir\" = [\"a\"]\n\"experiment.name\" = [\"b\"]\nepochs = [1]\n\"train.epochs\" = [1]\n[zip]\n\"train.epochs\" = [2]");
        let m = messages(&s);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("`output.dir` cannot be swept"), "{}", m[0]);
        assert!(m[1].starts_with("`experiment.name` cannot be swept"), "{}", m[1]);
        assert!(m[2].starts_with("`epochs` is not a key inside a section"), "{}", m[2]);
        assert_eq!(m[3], "`train.epochs` is swept twice (also in sweep.grid); keep one");
        assert_eq!(messages(&spec("")), ["the sweep varies nothing; add `[sweep.grid]`, `[sweep.zip]` or `[sweep.random]` with keys such as \"train.learning_rate\""]);
    }

    #[test]
    fn losses_are_minimised_and_the_rest_maximised_unless_a_goal_is_given() {
        let mut s = spec("");
        assert!(s.maximize(), "val_accuracy by default");
        s.metric = "val_loss".into();
        assert!(!s.maximize());
        s.goal = Some(Goal::Maximize);
        assert!(s.maximize());
        s.metric = "val_f1_score".into();
        s.goal = Some(Goal::Minimize);
        assert!(!s.maximize());
    }
}
