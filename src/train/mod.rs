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

/// Builds the network (weights from the `Init` stream) and trains it on `split.train`,
/// validating on `split.val` after every epoch. `on_epoch` sees the history after each epoch
/// (to write it out as it grows).
pub fn fit<D: Backend>(
    dev: &D,
    plan: &Plan,
    images: &Images,
    split: &Split,
    mut on_epoch: impl FnMut(&History) -> Result<()>,
) -> Result<(Network<D>, History)> {
    let cfg = &plan.config;
    let mut net = Network::new(plan.model.clone(), dev, &mut seed::rng(cfg.experiment.seed, Stream::Init, &[]));
    let mut adam = Adam::<D>::new(cfg.train.learning_rate);
    let mut history = History::default();
    let (batch_size, epochs) = (cfg.train.batch_size, cfg.train.epochs);
    let steps = split.train.len().div_ceil(batch_size);
    for epoch in 0..epochs {
        let progress = Progress::start(epoch, epochs, steps);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        // Batches are assembled on another thread, one or two steps ahead of the model.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<usize>)>(2);
            let order = epoch_order(&split.train, cfg.experiment.seed, epoch);
            scope.spawn(move || {
                for indices in order.chunks(batch_size) {
                    // The receiver is gone when training stopped early: stop too.
                    let x = match &cfg.augment {
                        Some(aug) => {
                            augment::batch(aug, &images.pixels, images.shape, indices, cfg.experiment.seed, epoch)
                        }
                        None => images.batch(indices),
                    };
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
        let (val_loss, val_accuracy) = evaluate(dev, &net, plan, images, &split.val);
        let record = EpochRecord {
            epoch,
            accuracy: correct as f64 / seen as f64,
            loss: loss_sum / seen as f64,
            val_accuracy,
            val_loss,
        };
        progress.finish(&record);
        history.epochs.push(record);
        on_epoch(&history)?;
    }
    Ok((net, history))
}

/// Mean loss and accuracy of `net` on the samples `indices`, without a tape.
pub fn evaluate<D: Backend>(dev: &D, net: &Network<D>, plan: &Plan, images: &Images, indices: &[usize]) -> (f64, f64) {
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for chunk in indices.chunks(plan.config.train.batch_size) {
        let labels = images.labels_of(chunk);
        let input = dev.tensor_from_vec(images.batch(chunk), (chunk.len(), images.image_len()));
        let logits = net.forward(input, true);
        let host = logits.as_vec();
        correct += loss::correct(&host, host.len() / chunk.len(), &labels);
        loss_sum += f64::from(loss::loss(plan.config.train.loss, logits, &labels).as_vec()[0]) * chunk.len() as f64;
    }
    let n = indices.len().max(1) as f64;
    (loss_sum / n, correct as f64 / n)
}

/// The class each of images `indices` is predicted to be, with its probability.
pub fn predict<D: Backend>(
    dev: &D,
    net: &Network<D>,
    images: &Images,
    indices: &[usize],
    batch_size: usize,
) -> Vec<crate::plots::predictions::Prediction> {
    use crate::plots::predictions::Prediction;
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch_size) {
        let input = dev.tensor_from_vec(images.batch(chunk), (chunk.len(), images.image_len()));
        let probs = net.forward(input, false).as_vec();
        for row in probs.chunks(probs.len() / chunk.len()) {
            out.push(match row {
                [p] => Prediction { class: usize::from(*p > 0.5), confidence: p.max(1.0 - p) },
                _ => {
                    let class = loss::predicted(row);
                    Prediction { class, confidence: row[class] }
                }
            });
        }
    }
    out
}
