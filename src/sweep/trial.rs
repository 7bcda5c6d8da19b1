//! One trial in its own process: `runner trial <sweep folder> --index i`, as local sweeps and
//! Slurm array tasks start it.

use std::path::Path;

use super::heartbeat::{self, Clock, Pulse, Verdict};
use super::plan::plan_entry;
use super::state::{Definition, TrialState};
use crate::pipeline::{Judge, Limits};
use crate::results::{files, RunDir};
use crate::{Error, Result};

/// `runner trial <sweep folder> --index i`: runs one trial of a sweep in its folder, the way
/// local sweeps and Slurm array tasks do. A completed trial is left alone; any other earlier
/// attempt is replaced. While it runs, the trial beats a heartbeat in its folder (see
/// [`heartbeat`]); Ctrl-C or SIGTERM, from its start on, stops it with a checkpoint.
pub fn run_trial(sweep_dir: &Path, index: usize) -> Result<()> {
    // From here on, not only in training: a scheduler's signal during data preparation still
    // ends the trial as interrupted, not killed.
    let _signals = crate::interrupt::Guard::install();
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
    // A pruned trial runs again only when asked (`--retry-pruned`): from its checkpoint, to
    // the end, unpruned.
    let retry_pruned = matches!(before, TrialState::Pruned { .. });
    let resume = matches!(before, TrialState::Interrupted { .. } | TrialState::Pruned { .. })
        || (matches!(before, TrialState::Running { .. }) && earlier_attempt_gone(&dir, &before, index)?);
    let resume = resume && dir.join(files::MANIFEST).is_file();
    if !resume && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("clearing the earlier attempt in", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating trial folder", &dir, e))?;
    // The first beat comes before the state names this process, so a reader never sees the
    // new attempt with only the old attempt's heartbeat.
    let _heartbeat = heartbeat::start(&dir);
    let running = TrialState::Running { host: crate::results::manifest::hostname(), pid: std::process::id() };
    running.write(&dir)?;
    tracing::info!("trial {index} of {}: {}", definition.trials.len(), trial.label());
    let judge = super::prune::judge(&sweep_dir, &definition, &trial.name).filter(|_| !retry_pruned);
    let limits = Limits { until: None, judge: judge.as_ref().map(|j| j as Judge) };
    let result = if resume {
        crate::pipeline::resume_with(&dir, limits)
    } else {
        // The initial weights file is checked before the data is read.
        crate::pipeline::warm_start::load(&trial.plan)
            .and_then(|_| crate::pipeline::prepare(&trial.plan))
            .and_then(|data| crate::pipeline::run_with(trial.plan, &data, RunDir { path: dir.clone() }, limits))
    };
    let state = match &result {
        Ok(_) => TrialState::Completed,
        Err(Error::Interrupted(at)) => {
            TrialState::Interrupted { reason: format!("interrupted by {} at {at}", crate::interrupt::describe()) }
        }
        Err(Error::Pruned(reason)) => TrialState::Pruned { reason: reason.clone() },
        Err(e) => TrialState::Failed { reason: e.to_string() },
    };
    state.write(&dir)?;
    match result {
        // Pruning is how a trial is meant to end when others do better: not a failure.
        Err(Error::Pruned(_)) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Whether the earlier attempt of a trial whose `trial.json` says running is gone, so that
/// this process takes it over from its checkpoint: its machine (this one) says its process is
/// gone, this process is the same Slurm job started again (a requeued array task, whose
/// earlier run Slurm ended first), or its heartbeat is older than the margin and its counter
/// stands still. An attempt that is alive is an error: a trial never runs twice at once.
fn earlier_attempt_gone(dir: &Path, before: &TrialState, index: usize) -> Result<bool> {
    let pulse = Pulse::read(dir, &Clock::of(dir));
    if heartbeat::same_job_again(&pulse) {
        tracing::info!("trial {index}: Slurm started this job again (requeued); going on from its checkpoint");
        return Ok(true);
    }
    let verdict = heartbeat::verdict(before, &pulse);
    if let Verdict::Dead { why, certain } = &verdict {
        if *certain || heartbeat::confirm(dir, &pulse) {
            tracing::info!("trial {index}: the earlier attempt is dead ({why}); going on from its checkpoint");
            return Ok(true);
        }
    }
    let (host, pid) = match before {
        TrialState::Running { host, pid } => (host.as_str(), *pid),
        _ => ("?", 0),
    };
    let age = pulse
        .age
        .or(pulse.state_age)
        .map_or("no heartbeat yet".into(), |a| format!("heartbeat {} ago", heartbeat::seconds(a)));
    Err(Error::Usage(format!(
        "trial {index} is running as process {pid} on {host} ({age}); a trial never runs twice at once. If that \
         process is gone, the trial counts as dead once its heartbeat is older than {} intervals, and running it \
         again then goes on from its checkpoint",
        heartbeat::DEAD_AFTER
    )))
}
