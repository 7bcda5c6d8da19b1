//! Losses on logits: the output activation (sigmoid or softmax) is folded into the loss, which
//! is the numerically stable form Keras also switches to internally.

use dfdx::prelude::*;

use crate::config::Loss;
use crate::model::layers::Batch;
use crate::ops::Backend;

/// Mean loss of a batch of logits against class indices, with the targets smoothed by
/// `smoothing` as Keras does: a one-hot target becomes `(1 - s)·onehot + s/classes`, a binary
/// one `(1 - s)·y + s/2`.
pub fn loss<D: Backend, T: Tape<f32, D>>(
    kind: Loss,
    logits: Batch<D, T>,
    labels: &[usize],
    smoothing: f64,
) -> Tensor<Rank0, f32, D, T> {
    let (batch, units) = *logits.shape();
    let dev = logits.device().clone();
    let s = smoothing as f32;
    match kind {
        Loss::BinaryCrossentropy => {
            let targets = labels.iter().map(|&l| l as f32 * (1.0 - s) + 0.5 * s).collect();
            binary_cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(targets, (batch, units)))
        }
        Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
            let off = s / units as f32;
            let mut targets = vec![off; batch * units];
            labels.iter().enumerate().for_each(|(i, &l)| targets[i * units + l] = 1.0 - s + off);
            cross_entropy_with_logits_loss(logits, dev.tensor_from_vec(targets, (batch, units)))
        }
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
