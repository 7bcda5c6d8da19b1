//! Going back to a saved run: `runner resume` goes on from its last checkpoint, and `open`
//! reads a run folder for the commands that use one (resume, evaluate, predict).

use std::path::{Path, PathBuf};

use crate::config::{Overrides, Plan};
use crate::results::bounded;
use crate::results::manifest::{Manifest, Status};
use crate::results::{files, RunDir};
use crate::train::checkpoint::Checkpoint;
use crate::{Error, Result};

use super::fit::{fit, Limits};
use super::prepare::prepare_same;
use super::{plan, Outcome};

/// `runner resume <run folder>`: goes on with an interrupted, failed or killed run from its
/// last checkpoint (or from the start when it has none), in the same folder. The data must be
/// the same as when it started (checked by the manifest's fingerprint).
pub fn resume(run_dir: &Path) -> Result<Outcome> {
    resume_with(run_dir, Limits::default())
}

/// [`resume`], with `limits` on how long it trains (a sweep trial's pruning).
pub fn resume_with(run_dir: &Path, limits: Limits) -> Result<Outcome> {
    let (run_dir, manifest, plan) = open(run_dir)?;
    if manifest.status == Status::Completed {
        return Err(Error::Usage(format!("the run in `{}` is already completed", run_dir.display())));
    }
    super::device::choose(plan.config.experiment.device)?;
    let data = prepare_same(&plan, &manifest)?;
    let last = run_dir.join(files::LAST_CHECKPOINT);
    let checkpoint = match bounded::read(&last, &bounded::WEIGHTS) {
        Ok(bytes) => Some(
            Checkpoint::from_bytes(&bytes)
                .map_err(|e| Error::Train(format!("cannot resume from {}: {e}", last.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("reading the checkpoint", &last, e)),
    };
    match &checkpoint {
        Some(c) => tracing::info!(
            "resuming {} after epoch {}{}",
            run_dir.display(),
            c.state.epoch,
            if c.state.step > 0 { format!(" and {} batches of the next", c.state.step) } else { String::new() }
        ),
        None => tracing::info!("{} has no checkpoint yet; training it from the start", run_dir.display()),
    }
    fit(plan, &data, RunDir { path: run_dir }, Some((checkpoint, manifest)), limits)
}

/// A saved run: its folder (absolute), manifest and checked config. Enters the working
/// directory the run started in, so relative paths in its config mean what they meant.
pub fn open(run_dir: &Path) -> Result<(PathBuf, Manifest, Plan)> {
    let manifest_path = run_dir.join(files::MANIFEST);
    let text = bounded::read(&manifest_path, &bounded::RUN_FILE).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Usage(format!("`{}` is not a run folder (it has no {})", run_dir.display(), files::MANIFEST))
        }
        _ => Error::io("reading", &manifest_path, e),
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::Usage(format!("`{}` is not a manifest runner can read: {e}", manifest_path.display())))?;
    let run_dir = std::fs::canonicalize(run_dir).map_err(|e| Error::io("opening run folder", run_dir, e))?;
    if let Some(cwd) = &manifest.working_dir {
        match std::env::set_current_dir(cwd) {
            Ok(()) => {}
            // A run folder copied to another machine: what needs only the folder (export,
            // predict) works, and relative paths of the config mean what they mean here.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => tracing::info!(
                "the run's working folder {cwd} does not exist here; relative paths in its {} are taken from the \
                 current folder",
                files::CONFIG
            ),
            Err(e) => return Err(Error::io("entering the run's working folder", Path::new(cwd), e)),
        }
    }
    let plan = plan(&run_dir.join(files::CONFIG), &Overrides::default())?;
    Ok((run_dir, manifest, plan))
}
