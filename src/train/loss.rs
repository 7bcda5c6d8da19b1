//! Losses on logits: the output activation (sigmoid or softmax) is folded into the loss, which
//! is the numerically stable form Keras also switches to internally.

use dfdx::prelude::*;

use crate::config::Loss;
use crate::model::layers::Batch;
use crate::ops::Backend;

/// Mean loss of a batch of logits against class indices, with the targets smoothed by
/// `smoothing` as Keras does: a one-hot target becomes `(1 - s)·onehot + s/classes`, a binary
/// one `(1 - s)·y + s/2`. With `class_weights` (one per class, `train.class_weight`) each
/// sample's loss is multiplied by its class's weight before the mean over the batch, as
/// Keras' `class_weight` does (the mean divides by the batch size, not by the weights' sum).
pub fn loss<D: Backend, T: Tape<f32, D>>(
    kind: Loss,
    logits: Batch<D, T>,
    labels: &[usize],
    smoothing: f64,
    class_weights: Option<&[f32]>,
) -> Tensor<Rank0, f32, D, T> {
    let (batch, units) = *logits.shape();
    let dev = logits.device().clone();
    let s = smoothing as f32;
    let weight = |label: usize| class_weights.map_or(1.0, |w| w[label]);
    match kind {
        Loss::BinaryCrossentropy => {
            let targets = labels.iter().map(|&l| l as f32 * (1.0 - s) + 0.5 * s).collect();
            let targets = dev.tensor_from_vec(targets, (batch, units));
            match class_weights {
                None => binary_cross_entropy_with_logits_loss(logits, targets),
                Some(_) => {
                    let weights = labels.iter().map(|&l| weight(l)).collect();
                    (logits.bce_with_logits(targets) * dev.tensor_from_vec(weights, (batch, units))).mean()
                }
            }
        }
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
            let off = s / units as f32;
            let mut targets = vec![off; batch * units];
            labels.iter().enumerate().for_each(|(i, &l)| targets[i * units + l] = 1.0 - s + off);
            // Cross-entropy is linear in its targets: scaling a sample's targets by its
            // weight scales its loss by it.
            if class_weights.is_some() {
                for (row, &l) in targets.chunks_mut(units).zip(labels) {
                    row.iter_mut().for_each(|t| *t *= weight(l));
                }
            }
            cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(targets, (batch, units)))
        }
    }
}

/// Mean binary cross-entropy of a batch of logits against multi-label `targets` (one 0/1 row
/// of `units` per image): Keras' `binary_crossentropy` on several sigmoid units, the mean over
/// the labels and then over the batch, with the targets smoothed to `(1 - s)·y + s/2`.
pub fn multi_label_loss<D: Backend, T: Tape<f32, D>>(
    logits: Batch<D, T>,
    targets: &[f32],
    smoothing: f64,
) -> Tensor<Rank0, f32, D, T> {
    let shape = *logits.shape();
    let s = smoothing as f32;
    let targets = targets.iter().map(|&y| y * (1.0 - s) + 0.5 * s).collect();
    let targets = logits.device().tensor_from_vec(targets, shape);
    binary_cross_entropy_with_logits_loss(logits, targets)
}

/// Number of labels of `logits` (host copy, one row per image) that a 0.5 threshold on the
/// sigmoid gets right against multi-label `targets` (Keras' `binary_accuracy` counts).
pub fn correct_labels(logits: &[f32], targets: &[f32]) -> usize {
    logits.iter().zip(targets).filter(|(&l, &y)| (l > 0.0) == (y > 0.5)).count()
}

/// The weight of each class under `class_weight`, for `labels` (the class of every image of
/// the training split) among `classes`: `None` when every class weighs 1.
pub fn class_weights(
    class_weight: Option<&crate::config::ClassWeight>,
    classes: &[String],
    labels: &[usize],
) -> Option<Vec<f32>> {
    use crate::config::ClassWeight;
    match class_weight? {
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; classes.len()];
            labels.iter().for_each(|&l| counts[l] += 1);
            let (n, k) = (labels.len() as f64, classes.len() as f64);
            // A class absent from training never weighs in; 1 keeps the number finite.
            Some(counts.iter().map(|&c| if c == 0 { 1.0 } else { (n / (k * c as f64)) as f32 }).collect())
        }
        ClassWeight::Table(table) => Some(classes.iter().map(|c| table.get(c).map_or(1.0, |&w| w as f32)).collect()),
    }
}

/// Number of rows of `logits` (host copy, `(batch, units)`) whose predicted class is the label.
pub fn correct(logits: &[f32], units: usize, labels: &[usize]) -> usize {
    logits.chunks(units).zip(labels).filter(|(row, &label)| predicted(row) == label).count()
}

/// The predicted class of one row of logits: sigmoid > 0.5 for one unit, else the arg-max.
pub fn predicted(row: &[f32]) -> usize {
    match row {
        [logit] => usize::from(*logit > 0.0),
        _ => row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best }),
    }
}

/// The prediction a row of logits makes: the class as [`predicted`], with the probability
/// the output activation (sigmoid for one unit, softmax otherwise) gives it.
pub fn prediction(row: &[f32]) -> super::Prediction {
    let class = predicted(row);
    super::Prediction { class, confidence: probabilities(row)[class] }
}

/// The logistic function: a sigmoid unit's probability from its logit.
pub fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// What one row of logits says: the prediction as [`prediction`] makes it and every class's
/// probability as [`probabilities`] gives it; for multi-label targets, the most probable
/// label (for pictures that show one class per image) and each label's own sigmoid.
pub fn read(row: &[f32], multi_label: bool) -> (super::Prediction, Vec<f32>) {
    if !multi_label {
        return (prediction(row), probabilities(row));
    }
    let class = row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best });
    (super::Prediction { class, confidence: sigmoid(row[class]) }, row.iter().map(|&l| sigmoid(l)).collect())
}

/// Every class's probability from one row of logits: softmax, or (1 - p, p) for one sigmoid
/// unit.
pub fn probabilities(row: &[f32]) -> Vec<f32> {
    match row {
        [logit] => {
            let p = 1.0 / (1.0 + (-logit).exp());
            vec![1.0 - p, p]
        }
        _ => {
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|&l| (l - top).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.into_iter().map(|e| e / sum).collect()
        }
    }
}
