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
        let columns = super::history_columns(&[Precision, Recall, F1Score, TopKAccuracy]);
        if !columns.contains(&self.metric) {
            out.push((
                at(&["metric"]),
                format!("metric `{}` is not a history column; use one of {}", self.metric, columns.join(", ")),
            ));
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
