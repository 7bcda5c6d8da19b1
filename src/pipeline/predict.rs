//! Using a saved run: `runner evaluate` measures its final weights again on the validation and
//! test splits, `runner predict` classifies new images. Both read only the run folder
//! (config.toml, manifest.json, weights.safetensors) and the images.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Plan;
use crate::model::Network;
use crate::ops::Backend;
use crate::results::{files, safetensors};
use crate::train::loss;
use crate::train::per_class::Report;
use crate::{Error, Result};

use super::device::{run_on, OnDevice};
use super::prepare::Prepared;
use super::{open, prepare_same};

/// The run's network with its final weights, on `dev`.
fn load_network<D: Backend>(dev: &D, run_dir: &Path, plan: &Plan) -> Result<Network<D>> {
    let path = run_dir.join(files::WEIGHTS);
    let bytes =
        crate::results::bounded::read(&path, &crate::results::bounded::WEIGHTS).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "`{}` has no {}: the run did not finish (resume it with `runner resume {}`)",
                run_dir.display(),
                files::WEIGHTS,
                run_dir.display()
            )),
            _ => Error::io("reading", &path, e),
        })?;
    let weights = safetensors::from_bytes(&bytes).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let mut rng = crate::seed::rng(0, crate::seed::Stream::Init, &[]);
    let mut net = Network::new(plan.model.clone(), dev, &mut rng);
    net.load_weights(dev, &weights).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    Ok(net)
}

/// Loss, accuracy and the per-class results of one split.
#[derive(Clone, Debug, Serialize)]
pub struct SplitMetrics {
    /// `validation` or `test`.
    pub split: String,
    /// Images in it.
    pub samples: usize,
    /// Mean loss.
    pub loss: f64,
    /// Fraction right.
    pub accuracy: f64,
    /// Area under the ROC curve: the positive class's with two classes, else the mean over
    /// classes (as the `auc` metric).
    pub auc: Option<f64>,
    /// Average precision, taken as `auc` is (as the `pr_auc` metric).
    pub pr_auc: Option<f64>,
    /// Precision, recall, F1, support and areas per class, their averages, and the
    /// reliability bins (what the run's `per_class.json` holds for the split).
    pub per_class: Report,
}

/// `runner evaluate <run>`: the final weights on the run's validation and test splits (the
/// data must be the images it was trained on). Only prints: the run folder already has the
/// pictures of both splits, and a finished run is not written to.
pub fn evaluate(run_dir: &Path) -> Result<Vec<SplitMetrics>> {
    let (run_dir, manifest, plan) = open(run_dir)?;
    let data = prepare_same(&plan, &manifest)?;
    run_on(&plan, Evaluate { run_dir: &run_dir, plan: &plan, data: &data })
}

/// `runner evaluate`, as a job for any device.
struct Evaluate<'a> {
    run_dir: &'a Path,
    plan: &'a Plan,
    data: &'a Prepared,
}

impl OnDevice for Evaluate<'_> {
    type Output = Vec<SplitMetrics>;

    fn run<D: Backend>(self, dev: D) -> Result<Vec<SplitMetrics>> {
        let Evaluate { run_dir, plan, data } = self;
        let net = load_network(&dev, run_dir, plan)?;
        let mut out = Vec::new();
        for (name, indices) in [("validation", &data.split.val), ("test", &data.split.test)] {
            if indices.is_empty() {
                continue;
            }
            let e = crate::train::evaluate(&dev, &net, plan, &data.images, indices)?;
            let per_class = e.per_class(&data.images, indices)?;
            out.push(SplitMetrics {
                split: name.into(),
                samples: indices.len(),
                loss: e.loss,
                accuracy: e.accuracy,
                auc: per_class.auc,
                pr_auc: per_class.pr_auc,
                per_class,
            });
        }
        Ok(out)
    }
}

/// Tables of split metrics for the terminal: loss, accuracy and the headline areas per
/// split, then each split's per-class rows as scikit-learn's `classification_report` prints
/// them (with each class's ROC area and average precision).
pub fn metrics_table(metrics: &[SplitMetrics]) -> String {
    let area = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut out =
        format!("{:<12} {:>8} {:>10} {:>10} {:>10} {:>10}\n", "split", "images", "loss", "accuracy", "auc", "pr_auc");
    for m in metrics {
        out += &format!(
            "{:<12} {:>8} {:>10.4} {:>10.4} {:>10} {:>10}\n",
            m.split,
            m.samples,
            m.loss,
            m.accuracy,
            area(m.auc),
            area(m.pr_auc)
        );
    }
    for m in metrics {
        let report = &m.per_class;
        let width = report.classes.iter().map(|c| c.class.chars().count()).max().unwrap_or(0).max(12);
        out += &format!(
            "\n{:<width$} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}\n",
            m.split, "precision", "recall", "f1_score", "support", "roc_auc", "avg_prec"
        );
        let rows = report
            .classes
            .iter()
            .map(|c| (c.class.as_str(), c.precision, c.recall, c.f1_score, c.support, c.roc_auc, c.average_precision));
        let averages = [("macro avg", &report.macro_avg), ("weighted avg", &report.weighted_avg)]
            .map(|(name, a)| (name, a.precision, a.recall, a.f1_score, a.support, a.roc_auc, a.average_precision));
        for (name, precision, recall, f1, support, roc_auc, ap) in rows.chain(averages) {
            out += &format!(
                "{name:<width$} {precision:>10.4} {recall:>10.4} {f1:>10.4} {support:>8} {:>10} {:>10}\n",
                area(roc_auc),
                area(ap)
            );
        }
        out += &format!(
            "{:<width$} {:>10} {:>10} {:>10.4} {:>8}\n",
            report.accuracy_name(),
            "",
            "",
            report.accuracy,
            report.samples
        );
        if let Some(positive) = &report.positive_class {
            out += &format!("auc and pr_auc are of the positive class, {positive}\n");
        }
    }
    out
}

/// What the model says about one image.
#[derive(Clone, Debug, Serialize)]
pub struct ImagePrediction {
    /// The image file.
    pub path: PathBuf,
    /// The predicted class (none when the file could not be read); with multi-label targets,
    /// the most probable label.
    pub class: Option<String>,
    /// With multi-label targets: every label whose probability is above 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Probability of every class, in class order.
    pub probabilities: indexmap::IndexMap<String, f32>,
    /// Why the file could not be classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `runner predict <run> <image or folder>...`: each image (folders are searched for files,
/// in name order) resized and scaled as in training, with its class and probabilities.
/// Files that are not usable images get an error entry instead of stopping the others.
pub fn predict(run_dir: &Path, inputs: &[PathBuf]) -> Result<Vec<ImagePrediction>> {
    // Inputs are named relative to where the command runs, before `open` changes directory.
    let inputs: Vec<PathBuf> = inputs
        .iter()
        .map(|p| std::fs::canonicalize(p).map_err(|e| Error::io("opening", p, e)))
        .collect::<Result<_>>()?;
    let (run_dir, manifest, plan) = open(run_dir)?;
    let mut paths = Vec::new();
    for input in &inputs {
        collect(input, &mut paths);
    }
    run_on(&plan, Classify { run_dir: &run_dir, plan: &plan, classes: &manifest.dataset.classes, paths })
}

/// `runner predict`, as a job for any device.
struct Classify<'a> {
    run_dir: &'a Path,
    plan: &'a Plan,
    classes: &'a [String],
    paths: Vec<PathBuf>,
}

impl OnDevice for Classify<'_> {
    type Output = Vec<ImagePrediction>;

    fn run<D: Backend>(self, dev: D) -> Result<Vec<ImagePrediction>> {
        let Classify { run_dir, plan, classes, paths } = self;
        let net = load_network(&dev, run_dir, plan)?;
        let d = &plan.config.data;
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(plan.config.train.batch_size) {
            let decoded: Vec<_> = chunk
                .iter()
                .map(|p| crate::data::decode::decode(p, d.image_size, d.color_mode, d.interpolation, d.resize))
                .collect();
            let good: Vec<&Vec<u8>> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
            let mut rows = Vec::new();
            if !good.is_empty() {
                let x: Vec<f32> = good.iter().flat_map(|px| px.iter().map(|&p| f32::from(p) / 255.0)).collect();
                let logits = net.logits(&dev, x, good.len());
                // The class as training and evaluation pick it, and every class's probability
                // (each label's own sigmoid with multi-label targets).
                rows = logits
                    .chunks(logits.len() / good.len())
                    .map(|r| loss::read(r, d.multi_label()))
                    .map(|(prediction, probabilities)| (prediction.class, probabilities))
                    .collect();
            }
            let mut rows = rows.into_iter();
            for (path, result) in chunk.iter().zip(decoded) {
                out.push(match result {
                    Ok(_) => {
                        let (best, p): (usize, Vec<f32>) = rows.next().unwrap_or_default();
                        let labels = d.multi_label().then(|| {
                            classes.iter().zip(&p).filter(|(_, &p)| p > 0.5).map(|(c, _)| c.clone()).collect()
                        });
                        ImagePrediction {
                            path: path.clone(),
                            class: classes.get(best).cloned(),
                            labels,
                            probabilities: classes.iter().cloned().zip(p).collect(),
                            error: None,
                        }
                    }
                    Err((reason, detail)) => ImagePrediction {
                        path: path.clone(),
                        class: None,
                        labels: None,
                        probabilities: Default::default(),
                        error: Some(format!("{}: {detail}", reason.name())),
                    },
                });
            }
        }
        Ok(out)
    }
}

/// `path` itself, or every file under it (sorted, recursively).
fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for entry in entries {
        let hidden = entry.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            collect(&entry, out);
        }
    }
}

/// A table for the terminal: path, class, its probability, and the runners-up.
pub fn predictions_table(predictions: &[ImagePrediction]) -> String {
    let mut out = String::new();
    for p in predictions {
        let line = match (&p.class, &p.error) {
            (_, Some(error)) => format!("{}\terror: {error}", p.path.display()),
            (Some(_), None) if p.labels.is_some() => {
                let labels = p.labels.as_deref().unwrap_or_default();
                let shown: Vec<String> = labels.iter().map(|l| format!("{l} {:.3}", p.probabilities[l])).collect();
                format!(
                    "{}\t{}",
                    p.path.display(),
                    if shown.is_empty() { "(no label)".into() } else { shown.join(", ") }
                )
            }
            (Some(class), None) => {
                let mut ranked: Vec<(String, f32)> = p.probabilities.clone().into_iter().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                let others: Vec<String> = ranked.iter().skip(1).take(2).map(|(c, v)| format!("{c} {v:.3}")).collect();
                let top = ranked.first().map_or(0.0, |r| r.1);
                format!("{}\t{class}\t{top:.3}\t({})", p.path.display(), others.join(", "))
            }
            (None, None) => format!("{}\t-", p.path.display()),
        };
        out += &line;
        out.push('\n');
    }
    out
}
