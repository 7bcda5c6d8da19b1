//! Metrics beyond loss and accuracy (`train.metrics`), counted over a whole epoch (training)
//! or pass (validation), never averaged over batches:
//!
//! - `precision`, `recall`, `f1_score`: with two classes, of the second class (the positive
//!   one, as Keras' binary metrics take label 1); with more, the unweighted mean over classes
//!   ("macro"), a class that is never predicted (or never present) counting 0.
//! - `top_k_accuracy`: the true class is among the `train.top_k` highest outputs.
//! - `auc`, `pr_auc`: the exact area under the ROC curve and the average precision
//!   (`per_class`), of the second class with two, the mean over classes (each against the
//!   rest) with more. They need every sample's probabilities of the epoch, which the counter
//!   then keeps (and a mid-epoch checkpoint with it); Keras' `AUC` metric approximates the
//!   curve with 200 fixed thresholds instead, and averages classes as one flattened curve.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Metric;

/// Counts for the metrics of one epoch or pass (saved in mid-epoch checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    classes: usize,
    top_k: usize,
    /// Per class: true positives, false positives, false negatives.
    counts: Vec<[u64; 3]>,
    top_k_hits: u64,
    seen: u64,
    /// Labels counted one by one (multi-label targets): always averaged over the labels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    multi_label: bool,
    /// Whether every sample's probabilities are kept, for `auc` and `pr_auc`. The fields
    /// below are left out of checkpoints without them, which then read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    keeps_scores: bool,
    /// Each sample's class probabilities (each label's sigmoid, multi-label), `classes` per
    /// sample, in f64 so that a checkpoint's JSON gives back exactly the values written (a
    /// resumed epoch ends with the same areas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    probabilities: Vec<f64>,
    /// Each sample's label (one class per sample).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<usize>,
    /// Each sample's labels as `classes` 0/1 values (multi-label).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    targets: Vec<u8>,
}

impl Counter {
    /// A counter for `classes` classes and top-`top_k` accuracy.
    pub fn new(classes: usize, top_k: usize) -> Self {
        Counter { classes, top_k, counts: vec![[0; 3]; classes.max(2)], ..Counter::default() }
    }

    /// A counter for `metrics`: [`Counter::new`], keeping every sample's probabilities when
    /// `auc` or `pr_auc` is among them (only then, since they grow with the epoch).
    pub fn for_metrics(classes: usize, top_k: usize, metrics: &[Metric]) -> Self {
        let keeps_scores = metrics.iter().any(|m| matches!(m, Metric::Auc | Metric::PrAuc));
        Counter { keeps_scores, ..Counter::new(classes, top_k) }
    }

    /// This counter for multi-label targets: each label is a yes/no question (a sigmoid
    /// above 0.5), and precision, recall, F1 and the areas are the mean over labels.
    pub fn multi_label(self) -> Self {
        Counter { multi_label: true, ..self }
    }

    /// Adds a batch of multi-label predictions: host logits and 0/1 targets, one row of
    /// `labels` values per image.
    pub fn add_labels(&mut self, logits: &[f32], targets: &[f32]) {
        for (row, truth) in logits.chunks(self.classes).zip(targets.chunks(self.classes)) {
            for (label, (&l, &y)) in row.iter().zip(truth).enumerate() {
                match (l > 0.0, y > 0.5) {
                    (true, true) => self.counts[label][0] += 1,
                    (true, false) => self.counts[label][1] += 1,
                    (false, true) => self.counts[label][2] += 1,
                    (false, false) => {}
                }
            }
            self.seen += 1;
            if self.keeps_scores {
                self.probabilities.extend(row.iter().map(|&l| f64::from(super::loss::sigmoid(l))));
                self.targets.extend(truth.iter().map(|&y| u8::from(y > 0.5)));
            }
        }
    }

    /// Adds a batch: host logits `(batch, units)` and the labels.
    pub fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let units = logits.len() / labels.len().max(1);
        for (row, &label) in logits.chunks(units).zip(labels) {
            let predicted = super::loss::predicted(row);
            if predicted == label {
                self.counts[label][0] += 1;
            } else {
                self.counts[predicted][1] += 1;
                self.counts[label][2] += 1;
            }
            let higher = row.iter().filter(|&&v| v > row[label.min(row.len() - 1)]).count();
            self.top_k_hits += u64::from(units > 1 && higher < self.top_k || units == 1);
            self.seen += 1;
            if self.keeps_scores {
                self.probabilities.extend(super::loss::probabilities(row).into_iter().map(f64::from));
                self.labels.push(label);
            }
        }
    }

    /// The kept probabilities as per-class scores (none unless kept).
    fn scores(&self) -> Option<super::per_class::Scores> {
        if !self.keeps_scores {
            return None;
        }
        if self.multi_label {
            let truth = self.targets.iter().map(|&t| t == 1).collect();
            return super::per_class::Scores::multi_label(self.classes, self.probabilities.clone(), truth).ok();
        }
        let classes = self.classes.max(2);
        let truth = super::per_class::one_hot(classes, &self.labels);
        super::per_class::Scores::new(classes, self.probabilities.clone(), truth).ok()
    }

    /// The value of `metric` (accuracy is counted elsewhere; `None` for it, and for `auc` and
    /// `pr_auc` when the counter was not made to keep scores). An area that is undefined (no
    /// class with both positives and negatives; with two classes, none of the second) is
    /// NaN, which no monitor takes for an improvement.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class = |f: &dyn Fn(&[u64; 3]) -> f64| -> f64 {
            match self.classes {
                2 if !self.multi_label => f(&self.counts[1]),
                n => self.counts.iter().take(n).map(f).sum::<f64>() / n as f64,
            }
        };
        let precision = |c: &[u64; 3]| ratio(c[0], c[0] + c[1]);
        let recall = |c: &[u64; 3]| ratio(c[0], c[0] + c[2]);
        Some(match metric {
            Metric::Accuracy => return None,
            Metric::Precision => per_class(&precision),
            Metric::Recall => per_class(&recall),
            Metric::F1Score => per_class(&|c| {
                let (p, r) = (precision(c), recall(c));
                if p + r == 0.0 {
                    0.0
                } else {
                    2.0 * p * r / (p + r)
                }
            }),
            Metric::TopKAccuracy => ratio(self.top_k_hits, self.seen),
            Metric::Auc => self.scores()?.auc().unwrap_or(f64::NAN),
            Metric::PrAuc => self.scores()?.pr_auc().unwrap_or(f64::NAN),
        })
    }

    /// Every configured metric but accuracy, by its history name, prefixed with `prefix`
    /// (`""` for training, `"val_"` for validation).
    pub fn values(&self, metrics: &[Metric], prefix: &str) -> BTreeMap<String, f64> {
        metrics
            .iter()
            .filter_map(|&m| Some((format!("{prefix}{}", crate::config::serde_name(m)), self.value(m)?)))
            .collect()
    }
}
