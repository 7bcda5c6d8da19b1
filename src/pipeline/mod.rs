//! The commands that take one experiment end to end, a file per job: `check` (look before
//! training), `prepare` (the data), `device` (where the numbers are computed), `fit` (the
//! training of a run), `artifacts` (the run folder's files), `resume`, `predict`, `bench`,
//! `init` (a first experiment file for a folder of images), `export` (a run as ONNX),
//! `lr_find` (a learning rate to train with), `warm_start` (initial weights from a file,
//! checked before any data is read) and `gpu_check` (every op on a GPU against the CPU).
//!
//! ```text
//! plan (config::load + validate) ──► prepare (scan, decode, split) ──► run folder
//!    ──► fit on the chosen device (epochs, checkpoints, history) ──► artifacts, report
//! ```

pub mod artifacts;
pub mod bench;
pub mod check;
pub mod device;
pub mod export;
pub mod fit;
pub mod gpu_check;
pub mod init;
pub mod lr_find;
pub mod predict;
pub mod prepare;
pub mod resume;
pub mod verify;
pub mod warm_start;

use std::path::Path;

use crate::config::{self, Overrides, Plan};
use crate::results::{files, RunDir};
use crate::train::History;
use crate::Result;

pub use check::{check, data_report, Checked};
pub use fit::{Judge, Limits};
pub use prepare::{prepare, prepare_same, Prepared};
pub use resume::{open, resume, resume_with};

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run folder.
    pub dir: RunDir,
    /// Metrics per epoch.
    pub history: History,
}

/// Reads and checks a config file (with what it extends and `overrides`) completely;
/// nothing else is touched.
pub fn plan(config_path: &Path, overrides: &Overrides) -> Result<Plan> {
    let (config, sources) = config::load(config_path, overrides)?;
    let plan = config::validate(config, sources)?;
    for (key, origin) in &plan.sources.origins {
        tracing::debug!("config: {key} from {}", plan.sources.describe(origin));
    }
    Ok(plan)
}

/// Checks `config_path` completely (with its initial weights file), then trains it and
/// writes its run folder.
pub fn run(config_path: &Path, overrides: &Overrides) -> Result<Outcome> {
    let plan = plan(config_path, overrides)?;
    device::choose(plan.config.experiment.device)?;
    warm_start::load(&plan)?;
    let data = prepare(&plan)?;
    let dir = RunDir::create(&plan.config.output.dir, &plan.config.experiment.name)?;
    run_in(plan, &data, dir)
}

/// Trains `plan` on `data`, writing the run folder `dir` (which exists) as training goes.
pub fn run_in(plan: Plan, data: &Prepared, dir: RunDir) -> Result<Outcome> {
    run_with(plan, data, dir, Limits::default())
}

/// [`run_in`], with `limits` on how long it trains.
pub fn run_with(plan: Plan, data: &Prepared, dir: RunDir, limits: Limits) -> Result<Outcome> {
    let cfg = &plan.config;
    tracing::info!("writing results to {}", dir.path.display());
    dir.write(files::CONFIG, artifacts::resolved_config(&plan))?;
    let balance = artifacts::balance_note(&plan, data);
    for line in balance.lines() {
        tracing::info!("{}", line.trim_end());
    }
    let summary = crate::model::summary::render(&cfg.experiment.name, &plan.model);
    dir.write(files::SUMMARY, if balance.is_empty() { summary } else { format!("{summary}\n{balance}") })?;
    artifacts::write_data_files(&dir, &plan, data)?;

    fit::fit(plan, data, dir, None, limits)
}
