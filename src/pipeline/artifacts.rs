//! What a run folder holds besides the training state: the resolved config, the data lists
//! and pictures, the history with its curves, the weights files and the pictures of what the
//! model gets right and wrong. Every file goes through `results::RunDir`, which writes
//! atomically, so a run stopped at any point leaves only whole files.

use std::collections::BTreeMap;

use crate::config::{Plan, PlotFormat};
use crate::data::Images;
use crate::results::{files, safetensors, tensorboard, RunDir};
use crate::train::per_class::Report;
use crate::train::{History, Prediction};
use crate::{plots, Error, Result};

use super::prepare::Prepared;

/// The resolved config, with a header saying where each value that is not a default came
/// from (a file, an environment variable or a `--set`).
pub fn resolved_config(plan: &Plan) -> String {
    let body = toml::to_string(&plan.config).unwrap_or_else(|e| format!("# could not serialise: {e}\n"));
    let files = &plan.sources.files;
    let mut out = format!(
        "# Resolved from {} by runner {}: every default filled in.\n# Where values came from (keys not listed are defaults):\n",
        files[0].path.display(),
        env!("CARGO_PKG_VERSION")
    );
    for (key, origin) in &plan.sources.origins {
        out += &format!("#   {key:<40} {}\n", plan.sources.describe(origin));
    }
    out + "\n" + &body
}

/// What `train.class_weight` and `data.sampling` make of the training split, for the log and
/// the end of `summary.txt`; empty when neither is set.
pub fn balance_note(plan: &Plan, data: &Prepared) -> String {
    let (cfg, images, train) = (&plan.config, &data.images, &data.split.train);
    let labels = images.labels_of(train);
    let mut out = String::new();
    if let Some(weights) = crate::train::loss::class_weights(cfg.train.class_weight.as_ref(), &images.classes, &labels)
    {
        let how = match &cfg.train.class_weight {
            Some(crate::config::ClassWeight::Balanced) => "balanced: n / (classes · n_c) over the training split",
            _ => "as given; classes not named weigh 1",
        };
        out += &format!("Class weights in the training loss ({how}):\n");
        for (class, w) in images.classes.iter().zip(weights) {
            let n = labels.iter().filter(|&&l| images.classes[l] == *class).count();
            out += &format!("  {class:<24} {w:>8.4}  ({n} training images)\n");
        }
    }
    if let Some(sampling) = cfg.data.sampling {
        let per_epoch = crate::data::sampling::epoch_len(train, &images.labels, Some(sampling));
        out += &format!(
            "Training split {}d every epoch: {per_epoch} images per epoch ({} per class) instead of {}\n",
            crate::config::serde_name(sampling),
            per_epoch / images.classes.len().max(1),
            train.len()
        );
    }
    out
}

/// Writes what a person wants to see of the data into `dir`: the quarantine list, the split
/// (file by file), sample images per class and the class counts per split.
pub fn write_data_files(dir: &RunDir, plan: &Plan, data: &Prepared) -> Result<()> {
    dir.write(files::QUARANTINE, crate::data::quarantine::to_csv(&data.images.quarantined))?;
    let images = &data.images;
    dir.write(files::SPLIT, crate::data::split::to_csv(&images.paths, |i| images.class_names(i), &data.split))?;
    let formats = &plan.config.output.plot_formats;
    write_picture(dir, files::SAMPLES, plots::samples::render(&data.images), formats)?;
    write_picture(dir, files::CLASS_COUNTS, plots::counts::render(&data.images, &data.split), formats)?;
    if let Some(augment) = &plan.config.augment {
        let preview = plots::augmentations::render(augment, &data.images, &data.split, plan.config.experiment.seed);
        write_picture(dir, files::AUGMENTATIONS, preview, formats)?;
    }
    Ok(())
}

/// A weights file: `<layer>/<weight>` tensors in the layout the README documents.
pub fn weights_file(weights: &[safetensors::Named]) -> Vec<u8> {
    let tensors: Vec<safetensors::TensorData> =
        weights.iter().map(|(name, dims, values)| safetensors::TensorData { name, dims, values }).collect();
    let metadata = BTreeMap::from([
        ("format".to_string(), "runner".to_string()),
        ("layout".to_string(), "conv kernels (filters, channels, kh, kw); dense kernels (inputs, units)".to_string()),
    ]);
    safetensors::to_bytes(&tensors, &metadata)
}

/// History files and plots, rewritten after every epoch so a stopped run keeps its curves.
pub fn write_history(dir: &RunDir, history: &History, formats: &[PlotFormat]) -> Result<()> {
    dir.write(files::HISTORY_CSV, history.to_csv())?;
    dir.write(files::HISTORY_JSON, history.to_json())?;
    for chart in plots::curves::charts(history) {
        write_picture(dir, chart.stem, plots::curves::render(&chart), formats)?;
    }
    Ok(())
}

/// The run's TensorBoard event files under `tensorboard/`, when `output.tensorboard` asks,
/// holding the model summary and `history` (the checkpoint's a resumed run goes on from, so
/// its curves go on without a repeated step).
pub fn open_tensorboard(dir: &RunDir, plan: &Plan, history: Option<&History>) -> Result<Option<tensorboard::Writer>> {
    if !plan.config.output.tensorboard {
        return Ok(None);
    }
    let summary = crate::model::summary::render(&plan.config.experiment.name, &plan.model);
    let markdown = format!("```\n{}\n```", summary.trim_end());
    let epochs = history.map(tensorboard_epochs).unwrap_or_default();
    let log_dir = dir.path.join(files::TENSORBOARD);
    tensorboard::Writer::open(&log_dir, &[("model_summary", &markdown)], &epochs).map(Some)
}

/// Appends the epochs of `history` that the TensorBoard event files lack, if there are any.
pub fn write_tensorboard(board: &mut Option<tensorboard::Writer>, history: &History) -> Result<()> {
    match board {
        Some(board) => board.write(&tensorboard_epochs(history)),
        None => Ok(()),
    }
}

fn tensorboard_epochs(history: &History) -> Vec<tensorboard::Epoch<'_>> {
    history.epochs.iter().map(|r| tensorboard::Epoch { step: r.epoch, columns: r.columns() }).collect()
}

/// Writes `<stem>.png` and `<stem>.svg`, as `formats` asks.
pub fn write_picture(
    dir: &RunDir,
    stem: &str,
    picture: Result<plots::Picture, String>,
    formats: &[PlotFormat],
) -> Result<()> {
    let picture = picture.map_err(|e| Error::Train(format!("drawing {stem}: {e}")))?;
    if formats.contains(&PlotFormat::Png) {
        dir.write(&format!("{stem}.png"), &picture.png)?;
    }
    if formats.contains(&PlotFormat::Svg) {
        dir.write(&format!("{stem}.svg"), &picture.svg)?;
    }
    Ok(())
}

/// The confusion matrix of `predictions` (one per image of `indices`, in order), titled for
/// its split, as `<stem>.png/svg`.
pub fn write_confusion(
    dir: &RunDir,
    plan: &Plan,
    images: &Images,
    indices: &[usize],
    predictions: &[Prediction],
    (stem, title): (&str, &str),
) -> Result<()> {
    let predicted: Vec<usize> = predictions.iter().map(|p| p.class).collect();
    let truth: Vec<usize> = indices.iter().map(|&i| images.labels[i]).collect();
    let matrix = plots::confusion::matrix(images.classes.len(), &truth, &predicted);
    let picture = plots::confusion::render(&images.classes, &matrix, title);
    write_picture(dir, stem, picture, &plan.config.output.plot_formats)
}

/// The per-class results of the `split` split (`validation` or `test`) into the files
/// `names` gives: the table as CSV and, with the headline areas and the reliability bins, as
/// JSON; and the ROC, precision-recall and reliability pictures.
pub fn write_per_class(dir: &RunDir, plan: &Plan, report: &Report, split: &str, names: &files::PerClass) -> Result<()> {
    dir.write(names.csv, per_class_csv(report))?;
    /// The JSON file: the split's name, then the report's fields.
    #[derive(serde::Serialize)]
    struct Named<'a> {
        split: &'a str,
        #[serde(flatten)]
        report: &'a Report,
    }
    let json = serde_json::to_string_pretty(&Named { split, report }).expect("plain data");
    dir.write(names.json, json + "\n")?;
    let formats = &plan.config.output.plot_formats;
    write_picture(dir, names.roc, plots::per_class::roc(report, &format!("ROC curves ({split})")), formats)?;
    let title = format!("Precision-recall curves ({split})");
    write_picture(dir, names.precision_recall, plots::per_class::precision_recall(report, &title), formats)?;
    let title = format!("Reliability ({split})");
    write_picture(dir, names.calibration, plots::per_class::calibration(report, &title), formats)
}

/// `classification_report` as CSV: a row per class, `macro avg` and `weighted avg`, and an
/// `accuracy` row with the accuracy under `f1_score` and the samples under `support` (as
/// scikit-learn prints it). Numbers are written in full; an undefined area is left empty.
fn per_class_csv(report: &Report) -> Vec<u8> {
    let area = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let header = ["class", "precision", "recall", "f1_score", "support", "roc_auc", "average_precision"];
    let mut rows: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
    for c in &report.classes {
        rows.push(vec![
            c.class.clone(),
            c.precision.to_string(),
            c.recall.to_string(),
            c.f1_score.to_string(),
            c.support.to_string(),
            area(c.roc_auc),
            area(c.average_precision),
        ]);
    }
    for (name, a) in [("macro avg", &report.macro_avg), ("weighted avg", &report.weighted_avg)] {
        rows.push(vec![
            name.to_string(),
            a.precision.to_string(),
            a.recall.to_string(),
            a.f1_score.to_string(),
            a.support.to_string(),
            area(a.roc_auc),
            area(a.average_precision),
        ]);
    }
    let samples = report.samples.to_string();
    let accuracy = report.accuracy.to_string();
    rows.push([report.accuracy_name(), "", "", &accuracy, &samples, "", ""].map(String::from).to_vec());
    crate::results::csv_table(rows)
}
