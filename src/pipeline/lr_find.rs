//! `runner lr-find <config>`: the learning-rate finder (`train::lr_find`) on the config's
//! data and model, written to `<output.dir>/<experiment>/lr-find-NNN/`: `lr_find.csv` (every
//! step), `lr_find.json` (the range, how it ended, the suggestion and the command to use it)
//! and the curve as `lr_find.png`/`.svg` (as `output.plot_formats` asks). The same config and
//! seed write the same bytes. A run's folders and weights are not touched.

use std::path::Path;

use serde::Serialize;

use crate::config::{Overrides, Plan};
use crate::ops::Backend;
use crate::results::{csv_table, RunDir};
use crate::train::lr_find::{self, Curve, Ending, Range};
use crate::{Error, Result};

use super::device::{in_pool, run_on, OnDevice};
use super::prepare::Prepared;

/// The folder prefix: `lr-find-001`, `lr-find-002`, ...
pub const PREFIX: &str = "lr-find";
/// The stem of the files written.
pub const STEM: &str = "lr_find";

/// What the search found, as `lr_find.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    /// The rate of the first step.
    pub start_lr: f64,
    /// The rate the steps grow towards.
    pub end_lr: f64,
    /// Steps asked for.
    pub steps: usize,
    /// Steps run (fewer when the loss diverged).
    pub steps_run: usize,
    /// Why the search ended.
    pub ending: Ending,
    /// The suggested point, when the curve has one.
    pub suggestion: Option<Suggestion>,
    /// The command that trains with the suggestion.
    pub command: Option<String>,
    /// The folder written.
    #[serde(skip)]
    pub dir: std::path::PathBuf,
}

/// fastai's `valley` point of the curve.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Suggestion {
    /// Its step (0-based).
    pub step: usize,
    /// Its learning rate, exactly.
    pub learning_rate: f64,
    /// The rate rounded to 3 significant digits, as the command gives it.
    pub rounded: f64,
    /// The smoothed loss there.
    pub smoothed_loss: f64,
}

/// Runs the finder on the experiment at `config_path` (with `overrides`) over `range`.
pub fn lr_find(config_path: &Path, overrides: &Overrides, range: Range) -> Result<Found> {
    range.check().map_err(Error::Usage)?;
    let plan = super::plan(config_path, overrides)?;
    if plan.config.sweep.is_some() {
        return Err(Error::Usage(format!(
            "`{}` is a sweep (it has a [sweep] table), and lr-find tries one experiment: run it on a copy of the \
             file without the [sweep] table, with the values you want to find a rate for",
            config_path.display()
        )));
    }
    super::device::choose(plan.config.experiment.device)?;
    let initial = super::warm_start::load(&plan)?;
    let data = super::prepare(&plan)?;
    let cfg = &plan.config;
    let dir = RunDir::create_numbered(&cfg.output.dir, &cfg.experiment.name, PREFIX)?;
    tracing::info!(
        "trying learning rates from {:e} to {:e} over at most {} steps; writing to {}",
        range.start_lr,
        range.end_lr,
        range.steps,
        dir.path.display()
    );
    let weights = initial.map(|i| i.weights);
    let job = Search { plan: &plan, data: &data, initial: weights.as_deref(), range };
    let curve = in_pool(|| run_on(&plan, job))?;
    let found = found(&curve, range, config_path, overrides, &dir);
    write(&dir, &plan, &curve, &found)?;
    Ok(found)
}

/// The search, as a job for any device.
struct Search<'a> {
    plan: &'a Plan,
    data: &'a Prepared,
    initial: Option<&'a [crate::results::safetensors::Named]>,
    range: Range,
}

impl OnDevice for Search<'_> {
    type Output = Curve;

    fn run<D: Backend>(self, dev: D) -> Result<Curve> {
        let Search { plan, data, initial, range } = self;
        lr_find::search(&dev, plan, &data.images, &data.split.train, initial, range)
    }
}

/// `x` to 3 significant digits, so the command reads `2.51e-3`, not 17 digits of noise
/// (the suggestion is a point on a noisy curve).
fn rounded(x: f64) -> f64 {
    format!("{x:.2e}").parse().expect("a formatted float")
}

/// The summary of `curve`, with the command line to train at its suggestion: the config and
/// the `--set` overrides given here (but a learning rate), then the suggested rate.
fn found(curve: &Curve, range: Range, config_path: &Path, overrides: &Overrides, dir: &RunDir) -> Found {
    let suggestion = curve.suggestion().map(|i| {
        let p = curve.points[i];
        Suggestion {
            step: p.step,
            learning_rate: p.learning_rate,
            rounded: rounded(p.learning_rate),
            smoothed_loss: p.smoothed_loss,
        }
    });
    let command = suggestion.map(|s| {
        let word = |s: &str| super::init::shell_word(s);
        let mut words = vec!["runner".to_string(), word(&config_path.display().to_string())];
        for set in overrides.sets.iter().filter(|s| !s.trim_start().starts_with("train.learning_rate")) {
            words.push("--set".into());
            words.push(word(set));
        }
        words.push("--set".into());
        words.push(format!("train.learning_rate={:e}", s.rounded));
        words.join(" ")
    });
    Found {
        start_lr: range.start_lr,
        end_lr: range.end_lr,
        steps: range.steps,
        steps_run: curve.points.len(),
        ending: curve.ending,
        suggestion,
        command,
        dir: dir.path.clone(),
    }
}

/// Writes the folder's files.
fn write(dir: &RunDir, plan: &Plan, curve: &Curve, found: &Found) -> Result<()> {
    let header = ["step", "learning_rate", "loss", "smoothed_loss"].map(String::from);
    let rows = curve
        .points
        .iter()
        .map(|p| [p.step.to_string(), p.learning_rate.to_string(), p.loss.to_string(), p.smoothed_loss.to_string()]);
    dir.write(&format!("{STEM}.csv"), csv_table(std::iter::once(header).chain(rows)))?;
    let json = serde_json::to_string_pretty(found).expect("plain data") + "\n";
    dir.write(&format!("{STEM}.json"), json)?;
    let marked = found.suggestion.map(|s| (s.learning_rate, s.smoothed_loss));
    let picture = crate::plots::lr_find::render(&curve.points, marked, &plan.config.experiment.name);
    super::artifacts::write_picture(dir, STEM, picture, &plan.config.output.plot_formats)
}

/// What `runner lr-find` prints: the suggestion and the command to use it, or why there is
/// none.
pub fn report(found: &Found) -> String {
    let ended = match found.ending {
        Ending::Completed => format!("{} steps", found.steps_run),
        Ending::Diverged => format!("{} of {} steps (the loss diverged)", found.steps_run, found.steps),
        Ending::NotFinite => format!("{} of {} steps (the loss stopped being a number)", found.steps_run, found.steps),
    };
    let dir = found.dir.display();
    match (&found.suggestion, &found.command) {
        (Some(s), Some(command)) => format!(
            "lr-find: {ended} from {:e} to {:e}; suggested learning rate {:e} (valley, smoothed loss {:.4}); \
             curve in {dir}\ntrain with:\n{command}\n",
            found.start_lr, found.end_lr, s.rounded, s.smoothed_loss
        ),
        _ => format!(
            "lr-find: {ended} from {:e} to {:e}: too few steps left to suggest a rate (the first tenth and the last \
             5 are left out); curve in {dir}. Give more --steps, or a lower --end-lr if the loss diverged early\n",
            found.start_lr, found.end_lr
        ),
    }
}
