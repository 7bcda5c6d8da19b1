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

/// The split recorded in a run's `split.csv` (`path,class,split`), applied to `paths`. Every
/// path must be listed; the file must name only `train`, `validation` and `test`.
pub fn from_csv(csv: &str, paths: &[std::path::PathBuf]) -> Result<Split, String> {
    let mut recorded = std::collections::HashMap::new();
    for (n, line) in csv.lines().enumerate().skip(1) {
        // The path may be quoted (it can hold commas); class and split never are.
        let mut fields = line.rsplitn(3, ',');
        let (Some(split), Some(_class), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {}: expected path,class,split", n + 1));
        };
        let path = match path.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => path.to_string(),
        };
        if !["train", "validation", "test"].contains(&split) {
            return Err(format!("line {}: unknown split `{split}` (train, validation or test)", n + 1));
        }
        recorded.insert(path, split.to_string());
    }
    let mut s = Split { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    let mut missing = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match recorded.get(&path.display().to_string()).map(String::as_str) {
            Some("train") => s.train.push(i),
            Some("validation") => s.val.push(i),
            Some(_) => s.test.push(i),
            None => missing.push(path.display().to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} used file(s) are not in it, such as `{}`; the folder changed since that run",
            missing.len(),
            missing[0]
        ));
    }
    Ok(s)
}
