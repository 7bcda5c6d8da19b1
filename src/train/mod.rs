//! Training: epochs of shuffled batches, Adam updates, validation after every epoch.

pub mod adam;
pub mod history;
pub mod loss;
pub mod progress;

pub use history::{EpochRecord, History};

use dfdx::prelude::*;

use crate::config::Plan;
use crate::data::{augment, epoch_order, Images, Split};
use crate::model::Network;
use crate::ops::Backend;
use crate::seed::{self, Stream};
use crate::{Error, Result};
use adam::Adam;
use progress::Progress;

/// A trained network, its history, and its last validation pass.
pub struct Trained<D: Backend> {
    /// The network after the last epoch.
    pub net: Network<D>,
    /// Metrics per epoch.
    pub history: History,
    /// The validation pass after the last epoch, with each sample's prediction.
    pub validation: Evaluation,
}

/// Builds the network (weights from the `Init` stream) and trains it on `split.train`,
/// validating on `split.val` after every epoch. `on_epoch` sees the history after each epoch
/// (to write it out as it grows).
pub fn fit<D: Backend>(
    dev: &D,
    plan: &Plan,
    images: &Images,
    split: &Split,
    mut on_epoch: impl FnMut(&History) -> Result<()>,
) -> Result<Trained<D>> {
    let cfg = &plan.config;
    let mut net = Network::new(plan.model.clone(), dev, &mut seed::rng(cfg.experiment.seed, Stream::Init, &[]));
    let mut adam = Adam::<D>::new(cfg.train.learning_rate);
    let mut history = History::default();
    let (batch_size, epochs) = (cfg.train.batch_size, cfg.train.epochs);
    let steps = split.train.len().div_ceil(batch_size);
    let mut validation = None;
    for epoch in 0..epochs {
        let progress = Progress::start(epoch, epochs, steps);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        // Batches are assembled on another thread, one or two steps ahead of the model.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<usize>)>(2);
            let order = epoch_order(&split.train, cfg.experiment.seed, epoch);
            scope.spawn(move || {
                for indices in order.chunks(batch_size) {
                    let x = match &cfg.augment {
                        Some(aug) => {
                            augment::batch(aug, &images.pixels, images.shape, indices, cfg.experiment.seed, epoch)
                        }
                        None => images.batch(indices),
                    };
                    // The receiver is gone when training stopped early: stop too.
                    if tx.send((x, images.labels_of(indices))).is_err() {
                        break;
                    }
                }
            });
            for (step, (x, labels)) in rx.into_iter().enumerate() {
                let n = labels.len();
                let input = dev.tensor_from_vec(x, (n, images.image_len()));
                let logits = net.forward(input.traced(Gradients::leaky()), true);
                let host_logits = logits.retaped::<NoneTape>().as_vec();
                let loss = loss::loss(cfg.train.loss, logits, &labels);
                let value = f64::from(loss.as_vec()[0]);
                if !value.is_finite() {
                    return Err(Error::Train(format!(
                        "the training loss became {value} at epoch {}, batch {}; lower train.learning_rate \
                         (now {}) and check the input data",
                        epoch + 1,
                        step + 1,
                        cfg.train.learning_rate
                    )));
                }
                let mut grads = loss.backward();
                adam.update(&mut net.params, &mut grads)
                    .map_err(|e| Error::Train(format!("optimizer step failed: {e:?}")))?;
                loss_sum += value * n as f64;
                correct += loss::correct(&host_logits, host_logits.len() / n, &labels);
                seen += n;
                progress.step(step + 1, loss_sum / seen as f64, correct as f64 / seen as f64);
                if crate::interrupt::requested() {
                    return Err(Error::Interrupted(format!("epoch {}, batch {}", epoch + 1, step + 1)));
                }
            }
            Ok(())
        })?;
        let val = evaluate(dev, &net, plan, images, &split.val);
        let record = EpochRecord {
            epoch,
            accuracy: correct as f64 / seen as f64,
            loss: loss_sum / seen as f64,
            val_accuracy: val.accuracy,
            val_loss: val.loss,
        };
        progress.finish(&record);
        history.epochs.push(record);
        on_epoch(&history)?;
        validation = Some(val);
    }
    let validation = validation.expect("train.epochs >= 1 is checked by config::validate");
    Ok(Trained { net, history, validation })
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
}

/// Evaluates `net` on the samples `indices`.
pub fn evaluate<D: Backend>(dev: &D, net: &Network<D>, plan: &Plan, images: &Images, indices: &[usize]) -> Evaluation {
    let mut loss_sum = 0.0f64;
    let mut predictions = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(plan.config.train.batch_size) {
        let labels = images.labels_of(chunk);
        let input = dev.tensor_from_vec(images.batch(chunk), (chunk.len(), images.image_len()));
        let logits = net.forward(input, true);
        let host = logits.as_vec();
        predictions.extend(host.chunks(host.len() / chunk.len()).map(loss::prediction));
        loss_sum += f64::from(loss::loss(plan.config.train.loss, logits, &labels).as_vec()[0]) * chunk.len() as f64;
    }
    let correct = indices.iter().zip(&predictions).filter(|(&i, p)| images.labels[i] == p.class).count();
    let n = indices.len().max(1) as f64;
    Evaluation { loss: loss_sum / n, accuracy: correct as f64 / n, predictions }
}
