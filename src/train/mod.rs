//! Training: epochs of shuffled batches, optimizer updates at the scheduled learning rate,
//! validation after every epoch, a checkpoint after every epoch.

pub mod bench;
pub mod checkpoint;
pub mod gpu_check;
pub mod history;
pub mod loss;
pub mod lr_find;
pub mod metrics;
pub mod monitor;
pub mod optimizer;
pub mod per_class;
pub mod progress;
pub mod schedule;

pub use history::{EpochRecord, History};

use dfdx::prelude::*;

use crate::config::Plan;
use crate::data::{augment, epoch_order, sampling, Images, Split};
use crate::model::Network;
use crate::ops::Backend;
use crate::seed::{self, Stream};
use crate::{Error, Result};
use checkpoint::{Checkpoint, State};
use optimizer::Optimizer;
use progress::Progress;

/// A trained network, its history, and its last validation pass.
pub struct Trained<D: Backend> {
    /// The network after the last epoch.
    pub net: Network<D>,
    /// Metrics per epoch.
    pub history: History,
    /// The validation pass after the last epoch, with each sample's prediction.
    pub validation: Evaluation,
    /// The best epoch by `train.checkpoint.monitor` (0-based).
    pub best_epoch: usize,
    /// The epoch (0-based) after which early stopping ended training, if it did.
    pub stopped_early: Option<usize>,
}

/// Why `fit` hands over a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// An epoch ended; `best` when it is the best so far.
    Epoch {
        /// Whether this epoch's weights are the best so far.
        best: bool,
    },
    /// Ctrl-C: the position is mid-epoch, after the last finished batch.
    Interrupted,
}

/// Where training starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// From weights drawn from the seed's `Init` stream.
    Seeded,
    /// From these weights (a warm start, `model.weights`), already matched to the model by
    /// name and shape. The seeded weights are drawn first all the same and then replaced, so
    /// that the model's construction does not depend on where its weights come from.
    Weights(Vec<crate::results::safetensors::Named>),
    /// Where a checkpoint left off: its weights, optimizer state and position.
    Checkpoint(Box<Checkpoint>),
}

/// Builds the network (weights as `start` says) and trains it on
/// `split.train`, validating on `split.val` after every epoch. `save` gets a checkpoint after
/// every epoch and at a Ctrl-C, to write out; the history so far is inside it. Training ends
/// after epoch `until` (at most `train.epochs`), every epoch exactly as in the full run:
/// schedules still count the configured epochs.
pub fn fit<D: Backend>(
    dev: &D,
    plan: &Plan,
    images: &Images,
    split: &Split,
    start: Start,
    until: usize,
    mut save: impl FnMut(&Checkpoint, Saved) -> Result<()>,
) -> Result<Trained<D>> {
    let cfg = &plan.config;
    let optimizer_failed = |e| Error::Train(format!("optimizer step failed: {e:?}"));
    let backward_failed = |e| Error::Train(format!("the backward pass failed: {e:?}"));
    let mut net = Network::new(plan.model.clone(), dev, &mut seed::rng(cfg.experiment.seed, Stream::Init, &[]));
    let (mut optimizer, mut state) = match start {
        Start::Seeded => (Optimizer::<D>::new(&cfg.train), State::default()),
        Start::Weights(weights) => {
            net.load_weights(dev, &weights).map_err(|e| Error::Train(format!("the initial weights: {e}")))?;
            (Optimizer::<D>::new(&cfg.train), State::default())
        }
        Start::Checkpoint(c) => {
            net.load_weights(dev, &c.weights)
                .map_err(|e| Error::Train(format!("cannot resume: the checkpoint {e}")))?;
            let slots: Vec<Vec<Vec<f32>>> = c.slots.into_iter().map(|(_, buffers)| buffers).collect();
            let optimizer = Optimizer::restore(&cfg.train, c.state.optimizer_step, &net.params, &slots)
                .map_err(|e| Error::Train(format!("cannot resume: the checkpoint's {e}")))?;
            (optimizer, c.state)
        }
    };
    let checkpoint = |net: &Network<D>, optimizer: &Optimizer<D>, state: &State| {
        let (optimizer_step, buffers) = optimizer.state(&net.params);
        let slots = optimizer.slot_names().iter().map(|s| s.to_string()).zip(buffers).collect();
        Checkpoint { state: State { optimizer_step, ..state.clone() }, weights: net.weights(), slots }
    };
    let train = &cfg.train;
    let (batch_size, epochs) = (train.batch_size, train.epochs);
    let sampling = cfg.data.sampling;
    let steps = sampling::epoch_len(&split.train, &images.labels, sampling).div_ceil(batch_size);
    // What one image counts for accuracy: one class, or each of its labels.
    let slots = if images.multi_label() { images.classes.len() } else { 1 };
    let class_weights =
        loss::class_weights(train.class_weight.as_ref(), &images.classes, &images.labels_of(&split.train));
    let mut validation = None;
    let mut stopped_early = None;
    let until = until.min(epochs);
    for epoch in state.epoch..until {
        let mut progress = Progress::start(epoch, epochs, steps);
        // Resuming mid-epoch: skip the batches already done, carry their sums.
        let first = std::mem::take(&mut state.step);
        let (mut loss_sum, mut correct, mut seen) = std::mem::take(&mut state.partial);
        let mut counter = state.counter.take().unwrap_or_else(|| new_counter(images, train));
        let drawn = sampling::epoch_images(&split.train, &images.labels, sampling, cfg.experiment.seed, epoch);
        let order = epoch_order(&drawn, cfg.experiment.seed, epoch);
        // Repeats of an oversampled image are augmented differently.
        let keys = if sampling.is_some() { sampling::augment_keys(&order, images.len()) } else { order.clone() };
        // Batches are assembled on another thread, one or two steps ahead of the model.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Vec<f32>, &[usize])>>(2);
            let (order, keys) = (&order, &keys);
            scope.spawn(move || {
                for (indices, keys) in order.chunks(batch_size).zip(keys.chunks(batch_size)).skip(first) {
                    let x = inputs(cfg, images, indices, keys, epoch);
                    // The receiver is gone when training stopped early: stop too.
                    let failed = x.is_err();
                    if tx.send(x.map(|x| (x, indices))).is_err() || failed {
                        break;
                    }
                }
            });
            for (step, batch) in (first..).zip(rx) {
                let (x, indices) = batch?;
                let (truth, n) = (Truth::of(images, indices), indices.len());
                let input = dev.tensor_from_vec(x, (n, images.image_len()));
                let at = crate::model::layers::Training { seed: cfg.experiment.seed, epoch, step };
                let (logits, state_updates) = net.forward_train(input.traced(Gradients::leaky()), at);
                // What comes down from a GPU in a step: the logits, batch × classes values,
                // from which the host counts accuracy and the other metrics (confusion counts,
                // top-k, the probabilities that AUC keeps), and the loss, one value read to
                // catch a divergence at once. They are the step's only waits for the GPU (with
                // gradient clipping, one norm per weight too); counting the metrics on the GPU
                // would save a few KiB of copying and none of the waiting.
                let host_logits = logits.retaped::<NoneTape>().as_vec();
                let loss = truth.loss(train, logits, class_weights.as_deref());
                let value = f64::from(loss.as_vec()[0]);
                if !value.is_finite() {
                    return Err(Error::Train(format!(
                        "the training loss became {value} at epoch {}, batch {}; lower train.learning_rate \
                         (now {}) and check the input data. The last checkpoint (end of epoch {}) is kept",
                        epoch + 1,
                        step + 1,
                        cfg.train.learning_rate,
                        epoch
                    )));
                }
                let mut grads = loss.try_backward().map_err(backward_failed)?;
                let position = schedule::Position { epoch, step, steps, epochs };
                let lr =
                    schedule::learning_rate(train.learning_rate, train.lr_schedule.as_ref(), position, &state.plateau);
                optimizer.update(&mut net.params, &mut grads, lr).map_err(optimizer_failed)?;
                net.set_state(state_updates);
                loss_sum += value * n as f64;
                correct += truth.count(&host_logits, &mut counter);
                seen += n;
                progress.step(step + 1, loss_sum / seen as f64, correct as f64 / (seen * slots) as f64);
                if crate::interrupt::requested() && step + 1 < steps {
                    let at = State {
                        epoch,
                        step: step + 1,
                        partial: (loss_sum, correct, seen),
                        counter: Some(counter.clone()),
                        ..state.clone()
                    };
                    save(&checkpoint(&net, &optimizer, &at), Saved::Interrupted)?;
                    return Err(Error::Interrupted(format!("epoch {}, batch {}", epoch + 1, step + 1)));
                }
            }
            Ok(())
        })?;
        let val =
            evaluate_watched(dev, &net, plan, images, &split.val, |done, total| progress.validating(done, total))?;
        let last_step = schedule::Position { epoch, step: steps - 1, steps, epochs };
        let record = EpochRecord {
            epoch,
            accuracy: correct as f64 / (seen * slots) as f64,
            loss: loss_sum / seen as f64,
            val_accuracy: val.accuracy,
            val_loss: val.loss,
            learning_rate: schedule::learning_rate(
                train.learning_rate,
                train.lr_schedule.as_ref(),
                last_step,
                &state.plateau,
            ),
            metrics: counter
                .values(&train.metrics, "")
                .into_iter()
                .chain(val.counter.values(&train.metrics, "val_"))
                .collect(),
        };
        progress.finish(&record);
        let watched = &cfg.train.checkpoint;
        let current = monitor::value(&record, &watched.monitor).unwrap_or(f64::NAN);
        let best = state.best.update(epoch, current, monitor::maximize(&watched.monitor, watched.mode), 0.0);
        let stop = train.early_stopping.as_ref().is_some_and(|e| monitor::should_stop(e, &mut state.early, &record));
        if let Some(crate::config::LrSchedule::ReduceOnPlateau(p)) = &train.lr_schedule {
            if let Some(lr) = state.plateau.update(p, train.learning_rate, &record) {
                tracing::info!("{} stopped improving: learning rate reduced to {lr:.3e}", p.monitor);
            }
        }
        state.history.epochs.push(record);
        state.epoch = epoch + 1;
        save(&checkpoint(&net, &optimizer, &state), Saved::Epoch { best })?;
        validation = Some(val);
        if stop {
            stopped_early = Some(epoch);
            break;
        }
        // A Ctrl-C in the last batch of an epoch stops here, at the epoch boundary.
        if crate::interrupt::requested() && epoch + 1 < until {
            return Err(Error::Interrupted(format!("epoch {}, batch {steps} (its last)", epoch + 1)));
        }
    }
    let validation = match validation {
        Some(v) => v,
        // Resumed after the last epoch's checkpoint: the pass is recomputed, not stored.
        None => evaluate(dev, &net, plan, images, &split.val)?,
    };
    Ok(Trained { net, history: state.history, validation, best_epoch: state.best.best_epoch, stopped_early })
}

/// The metric counter for `images` (one class per image, or multi-label) and `train.metrics`.
fn new_counter(images: &Images, train: &crate::config::TrainConfig) -> metrics::Counter {
    let counter = metrics::Counter::for_metrics(images.classes.len(), train.top_k, &train.metrics);
    match images.multi_label() {
        true => counter.multi_label(),
        false => counter,
    }
}

/// What a batch of images is trained and measured against: each image's class, or for
/// multi-label targets each image's labels as a 0/1 row.
pub(crate) enum Truth {
    /// One class per image.
    Classes(Vec<usize>),
    /// One row of 0/1 values per image, a value per label.
    Labels(Vec<f32>),
}

impl Truth {
    /// The truth of images `indices`.
    pub(crate) fn of(images: &Images, indices: &[usize]) -> Truth {
        match images.multi_label() {
            true => Truth::Labels(images.targets_of(indices)),
            false => Truth::Classes(images.labels_of(indices)),
        }
    }

    /// The batch's loss from its `logits`: binary cross-entropy per label for multi-label
    /// targets, else the configured loss weighted by `class_weights` (one per class,
    /// `train.class_weight`; `None` for validation and test).
    pub(crate) fn loss<D: Backend, T: Tape<f32, D>>(
        &self,
        train: &crate::config::TrainConfig,
        logits: crate::model::layers::Batch<D, T>,
        class_weights: Option<&[f32]>,
    ) -> Tensor<Rank0, f32, D, T> {
        match self {
            Truth::Labels(targets) => loss::multi_label_loss(logits, targets, train.label_smoothing),
            Truth::Classes(labels) => loss::loss(train.loss, logits, labels, train.label_smoothing, class_weights),
        }
    }

    /// Adds the batch's host `logits` to `counter`; how many answers it got right (images,
    /// or labels for multi-label targets).
    fn count(&self, logits: &[f32], counter: &mut metrics::Counter) -> usize {
        match self {
            Truth::Labels(targets) => {
                counter.add_labels(logits, targets);
                loss::correct_labels(logits, targets)
            }
            Truth::Classes(labels) => {
                counter.add(logits, labels);
                loss::correct(logits, logits.len() / labels.len().max(1), labels)
            }
        }
    }
}

/// The network's input for the training images `indices` in `epoch`: their pixels scaled to
/// [0, 1], augmented when the config has `[augment]` (keyed by seed, epoch and `keys`, one per
/// image: its index, or for an oversampled repeat a key of its own).
pub(crate) fn inputs(
    cfg: &crate::config::Config,
    images: &Images,
    indices: &[usize],
    keys: &[usize],
    epoch: usize,
) -> Result<Vec<f32>> {
    let pixels = images.bytes(indices)?;
    Ok(match &cfg.augment {
        Some(aug) => augment::batch(aug, &pixels, images.shape, keys, cfg.experiment.seed, epoch),
        None => pixels.into_iter().map(|p| f32::from(p) / 255.0).collect(),
    })
}

/// One sample's predicted class and the probability the model gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Predicted class index.
    pub class: usize,
    /// Probability of that class.
    pub confidence: f32,
}

/// A pass over some samples without a tape: mean loss, accuracy, and every prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// One per sample, in the order given.
    pub predictions: Vec<Prediction>,
    /// Every class's probability, one row of classes per sample in the same order (two for
    /// one sigmoid unit: 1 - p and p), for the per-class results.
    pub probabilities: Vec<f32>,
    /// Counts for the other metrics.
    pub counter: metrics::Counter,
}

impl Evaluation {
    /// The per-class results of this pass over `indices` of `images` (the samples it was
    /// made of, in order): predicted classes as the confusion matrix counts them.
    /// With multi-label targets every label is its own yes/no question, predicted when its
    /// sigmoid is above 0.5.
    pub fn per_class(&self, images: &Images, indices: &[usize]) -> Result<per_class::Report> {
        let classes = images.classes.len();
        let probabilities: Vec<f64> = self.probabilities.iter().copied().map(f64::from).collect();
        let report = if images.multi_label() {
            let truth = images.targets_of(indices).into_iter().map(|t| t > 0.5).collect();
            let predicted: Vec<bool> = probabilities.iter().map(|&p| p > 0.5).collect();
            per_class::Scores::multi_label(classes, probabilities, truth)
                .and_then(|scores| scores.report(&images.classes, &predicted))
        } else {
            let labels = images.labels_of(indices);
            let predicted: Vec<usize> = self.predictions.iter().map(|p| p.class).collect();
            per_class::Scores::new(classes, probabilities, per_class::one_hot(classes, &labels))
                .and_then(|scores| scores.report(&images.classes, &per_class::one_hot(classes, &predicted)))
        };
        report.map_err(|e| Error::Train(format!("per-class results: {e}")))
    }
}

/// Evaluates `net` on the samples `indices`, showing its progress on its own (a bar on a
/// terminal, paced lines in a log).
pub fn evaluate<D: Backend>(
    dev: &D,
    net: &Network<D>,
    plan: &Plan,
    images: &Images,
    indices: &[usize],
) -> Result<Evaluation> {
    let progress = crate::progress::Progress::new("evaluating", indices.len() as u64);
    let mut counted = 0;
    let evaluation = evaluate_watched(dev, net, plan, images, indices, |done, _| {
        progress.inc((done - counted) as u64);
        counted = done;
    });
    progress.finish();
    evaluation
}

/// [`evaluate`], telling `watch` (images done, images in all) after every batch.
pub fn evaluate_watched<D: Backend>(
    dev: &D,
    net: &Network<D>,
    plan: &Plan,
    images: &Images,
    indices: &[usize],
    mut watch: impl FnMut(usize, usize),
) -> Result<Evaluation> {
    let mut loss_sum = 0.0f64;
    let mut predictions = Vec::with_capacity(indices.len());
    let mut probabilities = Vec::with_capacity(indices.len() * images.classes.len());
    let train = &plan.config.train;
    let mut counter = new_counter(images, train);
    let mut correct = 0;
    for chunk in indices.chunks(plan.config.train.batch_size) {
        let truth = Truth::of(images, chunk);
        let input = dev.tensor_from_vec(images.batch(chunk)?, (chunk.len(), images.image_len()));
        let logits = net.forward(input, true);
        let host = logits.as_vec();
        for row in host.chunks(host.len() / chunk.len()) {
            let (prediction, p) = loss::read(row, images.multi_label());
            predictions.push(prediction);
            probabilities.extend(p);
        }
        correct += truth.count(&host, &mut counter);
        loss_sum += f64::from(truth.loss(train, logits, None).as_vec()[0]) * chunk.len() as f64;
        watch(predictions.len(), indices.len());
    }
    let slots = if images.multi_label() { images.classes.len() } else { 1 };
    let n = indices.len().max(1) as f64;
    Ok(Evaluation {
        loss: loss_sum / n,
        accuracy: correct as f64 / (n * slots as f64),
        predictions,
        probabilities,
        counter,
    })
}
