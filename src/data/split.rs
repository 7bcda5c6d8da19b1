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
    /// Samples held out until training is over; never used for training or model selection.
    pub test: Vec<usize>,
}

impl Split {
    /// The split a sample belongs to, by index.
    pub fn name_of(&self, index: usize) -> &'static str {
        if self.val.binary_search(&index).is_ok() {
            "validation"
        } else if self.test.binary_search(&index).is_ok() {
            "test"
        } else {
            "train"
        }
    }
}

/// Holds out `val_fraction` and `test_fraction` of the samples (of each class when
/// `stratify`), chosen with the `Split` stream of `seed`. A group of at least two samples keeps
/// at least one for training and, when `val_fraction > 0`, one for validation.
pub fn split(
    labels: &[usize],
    n_classes: usize,
    val_fraction: f64,
    test_fraction: f64,
    stratify: bool,
    seed: u64,
) -> Split {
    let groups: Vec<Vec<usize>> = if stratify {
        (0..n_classes).map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect()).collect()
    } else {
        vec![(0..labels.len()).collect()]
    };
    let mut s = Split { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    for (g, mut members) in groups.into_iter().enumerate() {
        members.shuffle(&mut seed::rng(seed, Stream::Split, &[g as u64]));
        let n = members.len();
        let spare = n.saturating_sub(1);
        let mut n_val = (n as f64 * val_fraction).round() as usize;
        if val_fraction > 0.0 && n >= 2 {
            n_val = n_val.max(1);
        }
        let n_val = n_val.min(spare);
        let n_test = ((n as f64 * test_fraction).round() as usize).min(spare - n_val);
        s.val.extend_from_slice(&members[..n_val]);
        s.test.extend_from_slice(&members[n_val..n_val + n_test]);
        s.train.extend_from_slice(&members[n_val + n_test..]);
    }
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
}

/// The order of `train` in `epoch` (0-based), from the `Shuffle` stream keyed by the epoch.
pub fn epoch_order(train: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = train.to_vec();
    order.shuffle(&mut seed::rng(seed, Stream::Shuffle, &[epoch as u64]));
    order
}
