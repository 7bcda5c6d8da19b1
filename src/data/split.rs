//! The seeded train/validation split and the per-epoch order of the training samples.

use rand::seq::SliceRandom;

use crate::seed::{self, Stream};

/// Indices of the samples in each split, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Samples used for training.
    pub train: Vec<usize>,
    /// Samples held out to measure generalisation each epoch.
    pub val: Vec<usize>,
}

/// Holds out `fraction` of the samples (of each class when `stratify`), chosen with the
/// `Split` stream of `seed`. Each class with at least two samples keeps one on each side.
pub fn split(
    labels: &[usize],
    n_classes: usize,
    fraction: f64,
    stratify: bool,
    seed: u64,
) -> Split {
    let groups: Vec<Vec<usize>> = if stratify {
        (0..n_classes)
            .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
            .collect()
    } else {
        vec![(0..labels.len()).collect()]
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (g, mut members) in groups.into_iter().enumerate() {
        members.shuffle(&mut seed::rng(seed, Stream::Split, &[g as u64]));
        let n = members.len();
        let n_val = ((n as f64 * fraction).round() as usize)
            .clamp(usize::from(n >= 2), n.saturating_sub(1));
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Split { train, val }
}

/// The order of `train` in `epoch` (0-based), from the `Shuffle` stream keyed by the epoch.
pub fn epoch_order(train: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = train.to_vec();
    order.shuffle(&mut seed::rng(seed, Stream::Shuffle, &[epoch as u64]));
    order
}
