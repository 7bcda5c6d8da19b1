//! Training a run in its folder: the manifest first, then the epochs with a checkpoint and
//! the history after each one, then the final weights, the pictures of the validation
//! split, one look at the test split, and the report. A run that fails or is interrupted
//! still ends with its status in the manifest and a report.

use std::time::Instant;

use crate::config::Plan;
use crate::model::Network;
use crate::ops::Backend;
use crate::results::manifest::{self, DatasetFacts, Manifest, Status};
use crate::results::{files, safetensors, RunDir};
use crate::train::{self, checkpoint::Checkpoint, Evaluation, History};
use crate::{Error, Result};

use super::artifacts::{
    open_tensorboard, weights_file, write_confusion, write_history, write_per_class, write_picture, write_tensorboard,
};
use super::device::{self, OnDevice};
use super::prepare::Prepared;
use super::warm_start;
use super::Outcome;

/// How a run goes on: its last checkpoint (if any) and its manifest so far.
pub type Resumed = (Option<Checkpoint>, Manifest);

/// Trains `plan` on `data` into `dir` (which exists), from the start or from `resumed`, on
/// the device the config asks for.
pub fn fit(plan: Plan, data: &Prepared, dir: RunDir, resumed: Option<Resumed>, limits: Limits) -> Result<Outcome> {
    device::in_pool(|| device::run_on(&plan, Fit { plan: &plan, data, dir, resumed, limits }))
}

/// A judge of a run's history after each epoch: `Some(why)` stops it there.
pub type Judge<'a> = &'a (dyn Fn(&History) -> Option<String> + Sync);

/// How a caller may end a run before its last epoch. The default trains every epoch.
#[derive(Clone, Copy, Default)]
pub struct Limits<'a> {
    /// End after this epoch, every epoch exactly as in the full run (`runner verify --epochs`).
    pub until: Option<usize>,
    /// Asked after each epoch, once its files are written; stopping leaves the run
    /// `pruned`, its checkpoint kept (a sweep's pruning).
    pub judge: Option<Judge<'a>>,
}

/// A run's training, as a job for any device.
struct Fit<'a> {
    plan: &'a Plan,
    data: &'a Prepared,
    dir: RunDir,
    resumed: Option<Resumed>,
    limits: Limits<'a>,
}

impl OnDevice for Fit<'_> {
    type Output = Outcome;

    fn run<D: Backend>(self, dev: D) -> Result<Outcome> {
        let Fit { plan, data, dir, resumed, limits } = self;
        let (start, mut manifest) = match resumed {
            Some((Some(checkpoint), manifest)) => {
                let epochs = checkpoint.state.epoch;
                (train::Start::Checkpoint(Box::new(checkpoint)), reopened(manifest, epochs))
            }
            // Stopped before its first checkpoint: from the start again, from the same file.
            Some((None, manifest)) => (start(warm_start::load_same(plan, &manifest)?), reopened(manifest, 0)),
            None => {
                let initial = warm_start::load(plan)?;
                let mut manifest = new_manifest(plan, data, &device::choose(plan.config.experiment.device)?);
                manifest.initial_weights = initial.as_ref().map(|i| i.record.clone());
                (start(initial), manifest)
            }
        };
        write_manifest(&dir, &manifest)?;
        let checkpoints = dir.path.join("checkpoints");
        std::fs::create_dir_all(&checkpoints).map_err(|e| Error::io("creating folder", &checkpoints, e))?;

        // A device error inside a forward pass panics (dfdx's operators return tensors, not
        // results); caught here, it fails the run like any other error, recorded in the
        // manifest, with the checkpoints already written kept for `runner resume`.
        let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            epochs(&dev, plan, data, &dir, &mut manifest, start, limits)
        }))
        .unwrap_or_else(|panic| {
            let message = crate::error::panic_message(panic.as_ref());
            Err(Error::Train(format!("training stopped on the {} device: {message}", D::NAME)))
        });
        let trained = match trained {
            Ok(t) => t,
            Err(e) => {
                let status = match &e {
                    Error::Interrupted(at) => Status::Interrupted { at: at.clone() },
                    Error::Pruned(reason) => Status::Pruned { reason: reason.clone() },
                    other => Status::Failed { reason: other.to_string() },
                };
                finish(&dir, &mut manifest, status)?;
                return Err(e);
            }
        };
        let train::Trained { net, history, validation, best_epoch, stopped_early } = trained;
        write_history(&dir, &history, &plan.config.output.plot_formats)?;
        manifest.best_epoch = Some(best_epoch + 1);
        manifest.stopped_early_after = stopped_early.map(|e| e + 1);
        if let Some(e) = stopped_early {
            tracing::info!("early stopping after epoch {}: no improvement for {} epochs", e + 1, e - best_epoch);
        }

        let (best_net, validation) = final_weights(&dev, plan, data, &dir, net, validation, best_epoch)?;
        write_validation(plan, data, &dir, &validation)?;
        if !data.split.test.is_empty() {
            test_split(&dev, &best_net, plan, data, &dir, best_epoch)?;
        }

        finish(&dir, &mut manifest, Status::Completed)?;
        if let Some(last) = history.epochs.last() {
            tracing::info!(
                "done: val_accuracy {:.4}, val_loss {:.4} after {} epochs; results in {}",
                last.val_accuracy,
                last.val_loss,
                history.epochs.len(),
                dir.path.display()
            );
        }
        Ok(Outcome { dir, history })
    }
}

/// A new start: from the initial weights of a warm start, or from the seed.
fn start(initial: Option<warm_start::Initial>) -> train::Start {
    initial.map_or(train::Start::Seeded, |i| train::Start::Weights(i.weights))
}

/// The manifest of a run about to start on `device` (its initial weights are the caller's to
/// record).
fn new_manifest(plan: &Plan, data: &Prepared, device: &device::Chosen) -> Manifest {
    let cfg = &plan.config;
    let (images, split) = (&data.images, &data.split);
    Manifest {
        runner_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        config_file: plan.sources.main().path.display().to_string(),
        working_dir: std::env::current_dir().ok().map(|d| d.display().to_string()),
        host: manifest::hostname(),
        device: device.name(),
        device_note: device.note(),
        git: manifest::GitState::of(&plan.sources.main().path),
        kernel: crate::ops::Kernel::best().describe().to_string(),
        cpu_features: crate::ops::cpu_features(),
        winograd_layers: match device {
            device::Chosen::Cpu { .. } => plan.model.winograd_layers(),
            _ => Vec::new(),
        },
        threads: rayon::current_num_threads(),
        seed: cfg.experiment.seed,
        initial_weights: None,
        peak_anonymous_mib: None,
        dataset: DatasetFacts {
            path: cfg.data.root().display().to_string(),
            classes: images.classes.clone(),
            train: split.train.len(),
            validation: split.val.len(),
            test: split.test.len(),
            quarantined: images.quarantined.len(),
            decoded: data.stats.decoded,
            from_cache: data.stats.from_cache,
            fingerprint: manifest::Fingerprint::of(
                &images.paths,
                images.pixels_crc(),
                &split.train,
                &split.val,
                &split.test,
            ),
        },
        started_at: manifest::now_utc(),
        finished_at: None,
        resumed_at: Vec::new(),
        epoch_seconds: Vec::new(),
        best_epoch: None,
        stopped_early_after: None,
        status: Status::Running,
    }
}

/// The manifest of a run going on after `epochs` checkpointed epochs: running again, the
/// epoch times it will redo dropped.
fn reopened(mut manifest: Manifest, epochs: usize) -> Manifest {
    manifest.status = Status::Running;
    manifest.finished_at = None;
    manifest.resumed_at.push(manifest::now_utc());
    manifest.epoch_seconds.truncate(epochs);
    manifest.threads = rayon::current_num_threads();
    manifest
}

fn write_manifest(dir: &RunDir, manifest: &Manifest) -> Result<()> {
    dir.write(files::MANIFEST, serde_json::to_string_pretty(manifest).expect("plain data") + "\n")
}

/// Every way a run ends: its status in the manifest, then the report.
fn finish(dir: &RunDir, manifest: &mut Manifest, status: Status) -> Result<()> {
    manifest.status = status;
    manifest.finished_at = Some(manifest::now_utc());
    manifest.peak_anonymous_mib = manifest::peak_anonymous_mib();
    write_manifest(dir, manifest)?;
    dir.write(files::REPORT, crate::report::run_page(&dir.path))
}

/// The epochs, saving after each (and at a Ctrl-C) the checkpoint first, then what people
/// read: a kill in between loses nothing, since resuming rewrites the history from the
/// checkpoint.
fn epochs<D: Backend>(
    dev: &D,
    plan: &Plan,
    data: &Prepared,
    dir: &RunDir,
    manifest: &mut Manifest,
    start: train::Start,
    limits: Limits,
) -> Result<train::Trained<D>> {
    let until = limits.until.unwrap_or(plan.config.train.epochs);
    let formats = &plan.config.output.plot_formats;
    let mut epoch_start = Instant::now();
    // Ctrl-C stops training at the next batch boundary (until the guard is dropped).
    let _ctrl_c = crate::interrupt::Guard::install();
    let resumed_history = match &start {
        train::Start::Checkpoint(c) => Some(&c.state.history),
        _ => None,
    };
    let mut board = open_tensorboard(dir, plan, resumed_history)?;
    train::fit(dev, plan, &data.images, &data.split, start, until, |checkpoint, saved| {
        let bytes = checkpoint.to_bytes();
        tracing::debug!(
            "checkpoint at epoch {}, batch {}: {} bytes in {}",
            checkpoint.state.epoch,
            checkpoint.state.step,
            bytes.len(),
            dir.path.join(files::LAST_CHECKPOINT).display()
        );
        dir.write(files::LAST_CHECKPOINT, bytes)?;
        if saved == (train::Saved::Epoch { best: true }) {
            dir.write(files::BEST_WEIGHTS, weights_file(&checkpoint.weights))?;
        }
        if let train::Saved::Epoch { .. } = saved {
            manifest.epoch_seconds.push(epoch_start.elapsed().as_secs_f64());
            manifest.peak_anonymous_mib = manifest::peak_anonymous_mib();
            epoch_start = Instant::now();
        }
        write_history(dir, &checkpoint.state.history, formats)?;
        write_tensorboard(&mut board, &checkpoint.state.history)?;
        write_manifest(dir, manifest)?;
        match (saved, limits.judge) {
            (train::Saved::Epoch { .. }, Some(judge)) => judge(&checkpoint.state.history).map_or(Ok(()), |why| {
                tracing::info!("pruned after epoch {}: {why}", checkpoint.state.epoch);
                Err(Error::Pruned(why))
            }),
            _ => Ok(()),
        }
    })
}

/// The best epoch's network (for the test split) and the validation results of the final
/// weights, which are written as `weights.safetensors`: the last epoch's, or the best
/// epoch's when `restore_best_weights` asks. When no epoch was the best (the monitored value
/// was never finite) the last epoch's weights stand in for the best.
fn final_weights<D: Backend>(
    dev: &D,
    plan: &Plan,
    data: &Prepared,
    dir: &RunDir,
    mut net: Network<D>,
    mut validation: Evaluation,
    best_epoch: usize,
) -> Result<(Network<D>, Evaluation)> {
    let mut best_net = net.clone();
    let best_path = dir.path.join(files::BEST_WEIGHTS);
    if best_path.is_file() {
        let bytes = crate::results::bounded::read(&best_path, &crate::results::bounded::WEIGHTS)
            .map_err(|e| Error::io("reading", &best_path, e))?;
        let best_weights = safetensors::from_bytes(&bytes).map_err(Error::Train)?;
        best_net.load_weights(dev, &best_weights).map_err(|e| Error::Train(format!("best weights: {e}")))?;
    }
    if plan.config.train.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights) {
        tracing::info!("restoring the weights of epoch {} (restore_best_weights)", best_epoch + 1);
        net = best_net.clone();
        validation = train::evaluate(dev, &net, plan, &data.images, &data.split.val)?;
    }
    dir.write(files::WEIGHTS, weights_file(&net.weights()))?;
    Ok((best_net, validation))
}

/// What the final weights get right and wrong on the validation split.
fn write_validation(plan: &Plan, data: &Prepared, dir: &RunDir, validation: &Evaluation) -> Result<()> {
    let (images, val) = (&data.images, &data.split.val);
    // One true class per image is what a confusion matrix and the mistakes picture show;
    // multi-label targets have the per-label results only.
    if !images.multi_label() {
        let predictions = &validation.predictions;
        write_confusion(dir, plan, images, val, predictions, (files::CONFUSION, "Confusion matrix (validation)"))?;
        let picture = crate::plots::predictions::render(images, val, predictions);
        write_picture(dir, files::PREDICTIONS, picture, &plan.config.output.plot_formats)?;
    }
    let report = validation.per_class(images, val)?;
    write_per_class(dir, plan, &report, "validation", &files::PER_CLASS)
}

/// The test split, looked at once, after training and model selection are over, with the
/// best epoch's weights.
fn test_split<D: Backend>(
    dev: &D,
    best_net: &Network<D>,
    plan: &Plan,
    data: &Prepared,
    dir: &RunDir,
    best_epoch: usize,
) -> Result<()> {
    let test_indices = &data.split.test;
    let test = train::evaluate(dev, best_net, plan, &data.images, test_indices)?;
    tracing::info!(
        "test (weights of epoch {}): loss {:.4}, accuracy {:.4} on {} images",
        best_epoch + 1,
        test.loss,
        test.accuracy,
        test_indices.len()
    );
    let json = serde_json::json!({
        "loss": test.loss,
        "accuracy": test.accuracy,
        "samples": test_indices.len(),
        "epoch": best_epoch + 1,
    });
    dir.write(files::TEST_METRICS, serde_json::to_string_pretty(&json).expect("numbers") + "\n")?;
    if !data.images.multi_label() {
        let stem = (files::TEST_CONFUSION, "Confusion matrix (test)");
        write_confusion(dir, plan, &data.images, test_indices, &test.predictions, stem)?;
    }
    let report = test.per_class(&data.images, test_indices)?;
    write_per_class(dir, plan, &report, "test", &files::TEST_PER_CLASS)
}
