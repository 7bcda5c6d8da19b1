//! Per-class results of a pass, as scikit-learn computes them: precision, recall, F1 and
//! support per class with their macro and weighted averages (`classification_report`), ROC
//! and precision-recall curves one class against the rest with their areas (`roc_curve`,
//! `roc_auc_score`, `precision_recall_curve`, `average_precision_score`), and a reliability
//! diagram (`calibration_curve`, 10 equal-width bins) with its expected calibration error.
//!
//! Everything starts from two n × k matrices, row-major: each sample's probability of each
//! class, and whether the class is true for it. A single-label run's truth is one-hot; a
//! multi-label target (several classes true in a row) goes through unchanged. Which classes
//! count as predicted is the caller's: the arg-max class of a single-label run (as its
//! accuracy and confusion matrix count it), a threshold for multi-label ones.
//!
//! Conventions, where scikit-learn warns or refuses:
//! - a precision, recall or F1 whose denominator is 0 is 0 (`zero_division=0`);
//! - a class without positives (or, for ROC, without negatives) in the samples has no curve
//!   and no area (`None`, `null` in JSON); averages of areas are over the classes that have
//!   one, and `None` when none has;
//! - a class whose scores include a NaN (a model that diverged) has no curve either.
//!
//! Curves keep every distinct threshold (scikit-learn's `drop_intermediate=False`); tied
//! scores form one threshold, as in scikit-learn. The ROC area is the trapezoidal rule over
//! that curve. Average precision is scikit-learn's step-wise sum, Σ (Rₙ - Rₙ₋₁)·Pₙ over the
//! thresholds from the highest down, without interpolation: it is not the trapezoidal area
//! under the precision-recall curve, which over-states it.
//!
//! With two classes the headline numbers (`auc`, `pr_auc`, the reliability diagram) are the
//! positive class's (label 1, the second class), as Keras' binary metrics take it; with more
//! they are the unweighted means over classes, and the reliability diagram shows the
//! top-label confidence (each sample's highest probability) against how often that class is
//! true.

use serde::Serialize;

/// Bins of the reliability diagram, equal-width over [0, 1] (scikit-learn's default).
pub const CALIBRATION_BINS: usize = 10;

/// What a pass gave: each sample's class probabilities and true classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    classes: usize,
    /// n × `classes`, row-major.
    probabilities: Vec<f64>,
    /// n × `classes`, row-major: whether the class is true for the sample.
    truth: Vec<bool>,
    /// Each class is a yes/no question of its own (multi-label targets): the headline
    /// numbers are the mean over all of them, and the reliability diagram pools every one.
    multi_label: bool,
}

/// `labels` (class indices) as rows of `classes` booleans with one true each: the truth or
/// the predictions of a single-label pass.
pub fn one_hot(classes: usize, labels: &[usize]) -> Vec<bool> {
    let mut out = vec![false; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        if label < classes {
            out[row * classes + label] = true;
        }
    }
    out
}

impl Scores {
    /// Scores of `probabilities` against `truth`, both n × `classes` row-major; an error
    /// when the sizes disagree or there are fewer than two classes.
    pub fn new(classes: usize, probabilities: Vec<f64>, truth: Vec<bool>) -> Result<Scores, String> {
        if classes < 2 {
            return Err(format!("per-class results need at least 2 classes, not {classes}"));
        }
        if !probabilities.len().is_multiple_of(classes) || truth.len() != probabilities.len() {
            return Err(format!(
                "{} probabilities and {} truth values are not rows of {classes} classes each",
                probabilities.len(),
                truth.len()
            ));
        }
        Ok(Scores { classes, probabilities, truth, multi_label: false })
    }

    /// Scores of multi-label targets: `probabilities` are each label's own sigmoid, `truth`
    /// says which labels each sample has (any number, none included); one label is enough.
    pub fn multi_label(labels: usize, probabilities: Vec<f64>, truth: Vec<bool>) -> Result<Scores, String> {
        if labels == 0 || !probabilities.len().is_multiple_of(labels) || truth.len() != probabilities.len() {
            return Err(format!(
                "{} probabilities and {} truth values are not rows of {labels} labels each",
                probabilities.len(),
                truth.len()
            ));
        }
        Ok(Scores { classes: labels, probabilities, truth, multi_label: true })
    }

    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.probabilities.len() / self.classes
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class `class`'s score and truth in every row.
    fn column(&self, class: usize) -> (Vec<f64>, Vec<bool>) {
        let k = self.classes;
        let scores = self.probabilities.iter().skip(class).step_by(k).copied().collect();
        let truth = self.truth.iter().skip(class).step_by(k).copied().collect();
        (scores, truth)
    }

    /// ROC and precision-recall curves of `class` against the rest.
    pub fn curves(&self, class: usize) -> Curves {
        let (scores, truth) = self.column(class);
        Curves::of(&scores, &truth)
    }

    /// The classes the headline numbers are of: the positive one of two, else all.
    fn headline_classes(&self) -> std::ops::Range<usize> {
        match self.classes {
            2 if !self.multi_label => 1..2,
            k => 0..k,
        }
    }

    /// The headline ROC area: the positive class's with two classes, else the mean of the
    /// classes' one-vs-rest areas (over the classes that have one).
    pub fn auc(&self) -> Option<f64> {
        mean(self.headline_classes().map(|c| self.curves(c).roc_auc()))
    }

    /// The headline average precision, taken as [`Scores::auc`] is.
    pub fn pr_auc(&self) -> Option<f64> {
        mean(self.headline_classes().map(|c| self.curves(c).average_precision()))
    }

    /// The reliability diagram: the positive class's probability against its truth with
    /// two classes, else each row's highest probability against the truth of its class.
    pub fn calibration(&self) -> Calibration {
        let k = self.classes;
        let rows = self.probabilities.chunks(k).zip(self.truth.chunks(k));
        let (kind, pairs): (_, Vec<(f64, bool)>) = match k {
            _ if self.multi_label => {
                let pairs = self.probabilities.iter().copied().zip(self.truth.iter().copied()).collect();
                (Confidence::EveryLabel, pairs)
            }
            2 => (Confidence::PositiveClass, rows.map(|(p, t)| (p[1], t[1])).collect()),
            _ => {
                let top = |p: &[f64]| (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best });
                (Confidence::TopLabel, rows.map(|(p, t)| (p[top(p)], t[top(p)])).collect())
            }
        };
        Calibration::of(kind, &pairs)
    }

    /// Everything per class, named by `names` (one per class), with `predicted` (n ×
    /// classes booleans, like the truth) saying which classes each sample was predicted as.
    pub fn report(&self, names: &[String], predicted: &[bool]) -> Result<Report, String> {
        let k = self.classes;
        if names.len() != k {
            return Err(format!("{} class names for {k} classes", names.len()));
        }
        if predicted.len() != self.truth.len() {
            return Err(format!("{} predictions for {} truth values", predicted.len(), self.truth.len()));
        }
        let mut counts = vec![[0u64; 3]; k];
        for (i, (&p, &t)) in predicted.iter().zip(&self.truth).enumerate() {
            let c = &mut counts[i % k];
            match (p, t) {
                (true, true) => c[0] += 1,
                (true, false) => c[1] += 1,
                (false, true) => c[2] += 1,
                (false, false) => {}
            }
        }
        let curves: Vec<Curves> = (0..k).map(|c| self.curves(c)).collect();
        let per_class: Vec<ClassScores> = names
            .iter()
            .zip(&counts)
            .zip(&curves)
            .map(|((name, &[tp, fp, fn_]), curves)| ClassScores {
                class: name.clone(),
                precision: ratio(tp, tp + fp),
                recall: ratio(tp, tp + fn_),
                // scikit-learn's form: equal to 2PR/(P+R), and 0 (not undefined) without
                // predictions or positives.
                f1_score: ratio(2 * tp, 2 * tp + fp + fn_),
                support: tp + fn_,
                roc_auc: curves.roc_auc(),
                average_precision: curves.average_precision(),
            })
            .collect();
        let exact = predicted.chunks(k).zip(self.truth.chunks(k)).filter(|(p, t)| p == t).count();
        let rows = self.rows();
        Ok(Report {
            samples: rows,
            macro_avg: Average::of(&per_class, false),
            weighted_avg: Average::of(&per_class, true),
            accuracy: ratio(exact as u64, rows as u64),
            multi_label: self.multi_label,
            positive_class: (k == 2 && !self.multi_label).then(|| names[1].clone()),
            auc: self.auc(),
            pr_auc: self.pr_auc(),
            calibration: self.calibration(),
            classes: per_class,
            curves,
        })
    }
}

/// `a / b`, or 0 when `b` is 0 (scikit-learn's `zero_division=0`).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The mean of the values that are there; `None` when none is.
fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// One class's row of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class name.
    pub class: String,
    /// Of the samples predicted as the class, the fraction that are.
    pub precision: f64,
    /// Of the samples of the class, the fraction predicted as it.
    pub recall: f64,
    /// 2·TP / (2·TP + FP + FN): the harmonic mean of precision and recall.
    pub f1_score: f64,
    /// Samples of the class.
    pub support: u64,
    /// Area under its ROC curve against the rest (none without positives or negatives).
    pub roc_auc: Option<f64>,
    /// Its average precision against the rest (none without positives).
    pub average_precision: Option<f64>,
}

/// An average over the classes, as `classification_report`'s `macro avg` and `weighted avg`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Average {
    /// Mean precision.
    pub precision: f64,
    /// Mean recall.
    pub recall: f64,
    /// Mean F1.
    pub f1_score: f64,
    /// All classes' support together.
    pub support: u64,
    /// Mean ROC area over the classes that have one.
    pub roc_auc: Option<f64>,
    /// Mean average precision over the classes that have one.
    pub average_precision: Option<f64>,
}

impl Average {
    /// The unweighted mean over `classes`, or weighted by support when `weighted`.
    fn of(classes: &[ClassScores], weighted: bool) -> Average {
        let weight = |c: &ClassScores| if weighted { c.support as f64 } else { 1.0 };
        let mean = |f: &dyn Fn(&ClassScores) -> Option<f64>| {
            let present: Vec<(f64, f64)> = classes.iter().filter_map(|c| Some((f(c)?, weight(c)))).collect();
            let total: f64 = present.iter().map(|p| p.1).sum();
            (!present.is_empty()).then(|| {
                if total == 0.0 {
                    0.0
                } else {
                    present.iter().map(|(v, w)| v * w).sum::<f64>() / total
                }
            })
        };
        Average {
            precision: mean(&|c| Some(c.precision)).unwrap_or(0.0),
            recall: mean(&|c| Some(c.recall)).unwrap_or(0.0),
            f1_score: mean(&|c| Some(c.f1_score)).unwrap_or(0.0),
            support: classes.iter().map(|c| c.support).sum(),
            roc_auc: mean(&|c| c.roc_auc),
            average_precision: mean(&|c| c.average_precision),
        }
    }
}

impl Report {
    /// The name of the `accuracy` row: `exact match` for multi-label targets.
    pub fn accuracy_name(&self) -> &'static str {
        if self.multi_label {
            "exact match"
        } else {
            "accuracy"
        }
    }
}

/// Everything per class for one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Samples in the split.
    pub samples: usize,
    /// One row per class, in class order.
    pub classes: Vec<ClassScores>,
    /// Unweighted means over classes.
    pub macro_avg: Average,
    /// Means weighted by support.
    pub weighted_avg: Average,
    /// Fraction of samples whose predicted classes are exactly the true ones (for
    /// multi-label targets, every label right: scikit-learn's subset accuracy, stricter than
    /// the history's `accuracy`, which counts each label).
    pub accuracy: f64,
    /// Whether the classes are labels of multi-label targets.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub multi_label: bool,
    /// With two classes, the class the headline numbers are of (the second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// The headline ROC area (the `auc` metric): the positive class's, or the macro mean.
    pub auc: Option<f64>,
    /// The headline average precision (the `pr_auc` metric), taken as `auc`.
    pub pr_auc: Option<f64>,
    /// The reliability diagram.
    pub calibration: Calibration,
    /// Each class's curves, for the pictures (not in the JSON: a point per threshold).
    #[serde(skip)]
    pub curves: Vec<Curves>,
}

/// A point of a ROC curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocPoint {
    /// False-positive rate.
    pub fpr: f64,
    /// True-positive rate.
    pub tpr: f64,
    /// Scores at or above this are positive (+∞ for the first point, (0, 0)).
    pub threshold: f64,
}

/// A point of a precision-recall curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrPoint {
    /// Recall.
    pub recall: f64,
    /// Precision.
    pub precision: f64,
    /// Scores at or above this are positive (+∞ for the first point, recall 0 and precision 1).
    pub threshold: f64,
}

/// One class's curves against the rest; a curve is `None` where it is undefined.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// From (0, 0) to (1, 1), threshold descending.
    pub roc: Option<Vec<RocPoint>>,
    /// From recall 0 (precision 1) to recall 1, threshold descending.
    pub precision_recall: Option<Vec<PrPoint>>,
}

impl Curves {
    /// The curves of `scores` against `truth` (one each per sample).
    pub fn of(scores: &[f64], truth: &[bool]) -> Curves {
        let none = Curves { roc: None, precision_recall: None };
        if scores.iter().any(|s| s.is_nan()) {
            return none;
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        // Per distinct score, from the highest down: (score, positives, negatives) at or above it.
        let mut steps: Vec<(f64, u64, u64)> = Vec::new();
        let (mut tp, mut fp) = (0u64, 0u64);
        for (i, &at) in order.iter().enumerate() {
            if truth[at] {
                tp += 1;
            } else {
                fp += 1;
            }
            if order.get(i + 1).is_none_or(|&next| scores[next] != scores[at]) {
                steps.push((scores[at], tp, fp));
            }
        }
        let (positives, negatives) = (tp, fp);
        let roc = (positives > 0 && negatives > 0).then(|| {
            let start = RocPoint { fpr: 0.0, tpr: 0.0, threshold: f64::INFINITY };
            let rest = steps.iter().map(|&(threshold, tp, fp)| RocPoint {
                fpr: fp as f64 / negatives as f64,
                tpr: tp as f64 / positives as f64,
                threshold,
            });
            std::iter::once(start).chain(rest).collect()
        });
        let precision_recall = (positives > 0).then(|| {
            let start = PrPoint { recall: 0.0, precision: 1.0, threshold: f64::INFINITY };
            let rest = steps.iter().map(|&(threshold, tp, fp)| PrPoint {
                recall: tp as f64 / positives as f64,
                precision: tp as f64 / (tp + fp) as f64,
                threshold,
            });
            std::iter::once(start).chain(rest).collect()
        });
        Curves { roc, precision_recall }
    }

    /// Area under the ROC curve, by the trapezoidal rule.
    pub fn roc_auc(&self) -> Option<f64> {
        let roc = self.roc.as_ref()?;
        Some(roc.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum())
    }

    /// Average precision: Σ (Rₙ - Rₙ₋₁)·Pₙ, step-wise, not interpolated.
    pub fn average_precision(&self) -> Option<f64> {
        let pr = self.precision_recall.as_ref()?;
        Some(pr.windows(2).map(|w| (w[1].recall - w[0].recall) * w[1].precision).sum())
    }
}

/// What the reliability diagram puts on its x axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Two classes: the positive class's probability, against how often it is true.
    PositiveClass,
    /// More: each sample's highest probability, against how often that class is true.
    TopLabel,
    /// Multi-label targets: every label's probability of every sample, against how often
    /// the label is there.
    EveryLabel,
}

/// One bin of the reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge (exclusive, except for the first bin's 0).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Samples whose confidence falls in the bin.
    pub count: u64,
    /// Their mean confidence (none for an empty bin).
    pub mean_confidence: Option<f64>,
    /// The fraction of them whose class is true (none for an empty bin).
    pub frequency: Option<f64>,
}

/// The reliability diagram: confidence binned, against how often it was right.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// What the confidence is.
    pub confidence: Confidence,
    /// The bins, empty ones included, lowest first.
    pub bins: Vec<Bin>,
    /// Expected calibration error: Σ (count / samples)·|frequency - mean confidence| over
    /// the bins (none without samples).
    pub ece: Option<f64>,
}

impl Calibration {
    /// Bins `(confidence, true)` pairs as scikit-learn's `calibration_curve` does: edges
    /// `i · 0.1` as `numpy.linspace` computes them, each bin holding the confidences up to
    /// and including its upper edge (`searchsorted` on the inner edges). Pairs whose
    /// confidence is NaN are left out.
    pub fn of(confidence: Confidence, pairs: &[(f64, bool)]) -> Calibration {
        let n = CALIBRATION_BINS;
        let edge = |i: usize| if i == n { 1.0 } else { i as f64 * (1.0 / n as f64) };
        let mut sums = vec![(0u64, 0.0f64, 0u64); n];
        for &(p, hit) in pairs.iter().filter(|(p, _)| !p.is_nan()) {
            let bin = (1..n).filter(|&i| edge(i) < p).count();
            let s = &mut sums[bin];
            s.0 += 1;
            s.1 += p;
            s.2 += u64::from(hit);
        }
        let total: u64 = sums.iter().map(|s| s.0).sum();
        let bins: Vec<Bin> = sums
            .iter()
            .enumerate()
            .map(|(i, &(count, sum, hits))| Bin {
                lower: edge(i),
                upper: edge(i + 1),
                count,
                mean_confidence: (count > 0).then(|| sum / count as f64),
                frequency: (count > 0).then(|| hits as f64 / count as f64),
            })
            .collect();
        let ece = (total > 0).then(|| {
            bins.iter()
                .filter_map(|b| Some(b.count as f64 / total as f64 * (b.frequency? - b.mean_confidence?).abs()))
                .sum()
        });
        Calibration { confidence, bins, ece }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn a_perfect_ranking_has_area_one_and_a_reversed_one_zero() {
        let truth = [true, true, false, false];
        let c = Curves::of(&[0.9, 0.8, 0.3, 0.1], &truth);
        assert_eq!(c.roc_auc(), Some(1.0));
        assert_eq!(c.average_precision(), Some(1.0));
        let c = Curves::of(&[0.1, 0.2, 0.8, 0.9], &truth);
        assert_eq!(c.roc_auc(), Some(0.0));
        // Positives found last: precision 1/3 at recall 1/2, 2/4 at recall 1.
        close(c.average_precision().unwrap(), 0.5 * (1.0 / 3.0) + 0.5 * 0.5);
    }

    #[test]
    fn tied_scores_are_one_threshold_and_count_half() {
        // All four tied: one threshold, the diagonal, area 1/2; AP is the prevalence.
        let c = Curves::of(&[0.5; 4], &[true, false, false, false]);
        assert_eq!(c.roc.as_ref().unwrap().len(), 2);
        assert_eq!(c.roc_auc(), Some(0.5));
        assert_eq!(c.average_precision(), Some(0.25));
        // A positive tied with a negative above the rest: the diagonal step through the tie
        // counts the pair as 1/2, as the pairwise (Mann-Whitney) count of the area does.
        let c = Curves::of(&[0.7, 0.7, 0.2, 0.1], &[true, false, true, false]);
        // Pairs (positive, negative): (0.7, 0.7) tie ½, (0.7, 0.1) 1, (0.2, 0.7) 0, (0.2, 0.1) 1.
        close(c.roc_auc().unwrap(), 2.5 / 4.0);
    }

    #[test]
    fn classes_without_positives_or_negatives_or_with_nan_scores_have_no_curve() {
        let c = Curves::of(&[0.2, 0.4], &[false, false]);
        assert_eq!((c.roc_auc(), c.average_precision()), (None, None));
        let c = Curves::of(&[0.2, 0.4], &[true, true]);
        assert_eq!((c.roc_auc(), c.average_precision()), (None, Some(1.0)));
        let c = Curves::of(&[0.2, f64::NAN], &[true, false]);
        assert_eq!((c.roc_auc(), c.average_precision()), (None, None));
    }

    #[test]
    fn the_report_counts_per_class_and_averages_like_classification_report() {
        // Three classes; truth → prediction: 0→0, 0→1, 1→1, 2→1. Class 2 is never predicted.
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let probabilities = vec![0.8, 0.1, 0.1, 0.3, 0.6, 0.1, 0.2, 0.7, 0.1, 0.1, 0.5, 0.4];
        let scores = Scores::new(3, probabilities, one_hot(3, &[0, 0, 1, 2])).unwrap();
        let report = scores.report(&names, &one_hot(3, &[0, 1, 1, 1])).unwrap();
        let row = |i: usize| {
            let c = &report.classes[i];
            (c.precision, c.recall, c.f1_score, c.support)
        };
        assert_eq!(row(0), (1.0, 0.5, 2.0 / 3.0, 2));
        assert_eq!(row(1), (1.0 / 3.0, 1.0, 0.5, 1));
        assert_eq!(row(2), (0.0, 0.0, 0.0, 1), "never predicted: 0, not undefined");
        close(report.macro_avg.precision, (1.0 + 1.0 / 3.0) / 3.0);
        close(report.weighted_avg.recall, (2.0 * 0.5 + 1.0) / 4.0);
        assert_eq!(report.macro_avg.support, 4);
        assert_eq!(report.accuracy, 0.5);
        assert_eq!(report.positive_class, None);
        assert!(Scores::new(3, vec![0.5; 5], vec![true; 5]).is_err());
        assert!(Scores::new(1, vec![1.0], vec![true]).is_err());
        assert!(scores.report(&names[..2], &one_hot(3, &[0, 1, 1, 1])).is_err());
        assert!(scores.report(&names, &one_hot(3, &[0, 1, 1])).is_err());
    }

    #[test]
    fn two_classes_report_the_positive_class_and_more_the_macro_mean() {
        // The positive class ranks perfectly; class 0's scores are its complement.
        let scores = Scores::new(2, vec![0.9, 0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.2], one_hot(2, &[0, 1, 1, 0])).unwrap();
        assert_eq!(scores.auc(), Some(1.0));
        let report = scores.report(&["no".into(), "yes".into()], &one_hot(2, &[0, 1, 1, 0])).unwrap();
        assert_eq!(report.positive_class.as_deref(), Some("yes"));
        assert_eq!(report.calibration.confidence, Confidence::PositiveClass);
        // Three classes, one absent from the truth: the mean is over the other two.
        let scores = Scores::new(3, vec![0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.5, 0.4, 0.1], one_hot(3, &[0, 1, 1])).unwrap();
        let (a, b) = (scores.curves(0).roc_auc().unwrap(), scores.curves(1).roc_auc().unwrap());
        assert_eq!(scores.curves(2).roc_auc(), None);
        assert_eq!(scores.auc(), Some((a + b) / 2.0));
    }

    #[test]
    fn multi_label_rows_count_each_true_class() {
        // Row 0 has classes 0 and 1, row 1 only class 2; predictions above 0.5.
        let probabilities = vec![0.9, 0.6, 0.2, 0.1, 0.7, 0.8];
        let truth = vec![true, true, false, false, false, true];
        let predicted: Vec<bool> = probabilities.iter().map(|&p| p > 0.5).collect();
        let report =
            Scores::new(3, probabilities, truth).unwrap().report(&["a", "b", "c"].map(String::from), &predicted);
        let report = report.unwrap();
        assert_eq!(report.classes.iter().map(|c| c.support).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(report.classes[1].precision, 0.5, "predicted in both rows, true in one");
        assert_eq!(report.accuracy, 0.5, "row 0 exactly right, row 1 has an extra class");
    }

    #[test]
    fn calibration_bins_hold_their_upper_edge_and_weigh_the_error_by_count() {
        // 0.1 falls in the first bin, 0.3 (below 0.1·3 = 0.30000000000000004) in the third.
        let pairs = [(0.1, false), (0.3, true), (0.95, true), (0.95, false), (f64::NAN, true)];
        let c = Calibration::of(Confidence::TopLabel, &pairs);
        let counts: Vec<u64> = c.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1, 0, 1, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(c.bins[1].frequency, None);
        assert_eq!(c.bins[9].mean_confidence, Some(0.95));
        close(c.ece.unwrap(), 0.25 * 0.1 + 0.25 * 0.7 + 0.5 * 0.45);
        assert_eq!(Calibration::of(Confidence::TopLabel, &[]).ece, None);
    }
}
