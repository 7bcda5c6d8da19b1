//! The commands that look before training: `runner check` (everything knowable without
//! decoding a pixel) and `runner data` / `runner augment` (the data decoded and pictured,
//! nothing trained).

use std::path::Path;

use crate::config::{Overrides, Plan};
use crate::data;
use crate::results::RunDir;
use crate::{Error, Result};

use super::artifacts::write_data_files;
use super::plan;
use super::prepare::{prepare, scan, split_of};

/// What `runner check` found: a report for the terminal, and the problem with the data that
/// kept part of it from being known.
pub struct Checked {
    /// The config, the dataset (when it could be read) and the model's shapes and costs.
    pub report: String,
    /// Why the dataset could not be looked at (or does not fit the model); the report then
    /// holds everything that needs no data.
    pub data_problem: Option<Error>,
}

/// `runner check`: everything that can be known without decoding a pixel (the config, the
/// initial weights file of a warm start, the dataset's classes, files and split sizes, files
/// known to be unusable, and the model's shapes, parameters and costs). A config that does
/// not parse or validate, or whose weights file does not fit the model, is an error; a
/// dataset that cannot be read still leaves the model's part of the report, which needs only
/// the config.
pub fn check(config_path: &Path, overrides: &Overrides) -> Result<Checked> {
    let plan = plan(config_path, overrides)?;
    super::warm_start::load(&plan)?;
    let cfg = &plan.config;
    let mut report = format!("{}: the config is valid\n\n", plan.sources.main().path.display());
    let data_problem = match data_section(&plan) {
        Ok(section) => {
            report += &section;
            report += "\n";
            None
        }
        Err(e) => Some(e),
    };
    report += &crate::model::summary::render_with_costs(&cfg.experiment.name, &plan.model, cfg.train.batch_size);
    report += &device_line(cfg.experiment.device);
    report += &match plan.model.winograd_layers() {
        layers if layers.is_empty() => "Convolutions on the CPU: direct\n".to_string(),
        layers => format!(
            "Convolutions on the CPU: Winograd F(2x2, 3x3) for {}, direct for the others (train.conv_algorithm = \"{}\")\n",
            layers.join(", "),
            crate::config::serde_name(cfg.train.conv_algorithm)
        ),
    };
    if data_problem.is_some() {
        report += &format!("\nData: {} could not be checked; the problem follows.\n", cfg.data.root().display());
    }
    Ok(Checked { report, data_problem })
}

/// Where a run of this config would compute on this machine. A GPU this machine lacks is
/// not an error here: configs are often checked on a machine other than the one that trains.
fn device_line(kind: crate::config::DeviceKind) -> String {
    let asked = crate::config::serde_name(kind);
    match super::device::choose(kind) {
        Ok(chosen) => match chosen.note() {
            Some(note) => format!("\nDevice: {asked} → {} ({note})\n", chosen.name()),
            None => format!("\nDevice: {}\n", chosen.name()),
        },
        Err(e) => format!("\nDevice: {asked} is not usable on this machine, so a run here would stop: {e}\n"),
    }
}

/// The dataset's part of the check: classes and counts, the split's sizes and the files
/// already known to be unusable.
fn data_section(plan: &Plan) -> Result<String> {
    let cfg = &plan.config;
    let (listing, assigned) = scan(plan)?;
    let d = &cfg.data;
    let labels: Vec<usize> = listing.samples.iter().map(|s| s.label).collect();
    let paths: Vec<std::path::PathBuf> = listing.samples.iter().map(|s| s.path.clone()).collect();
    let split = match (&d.split_file, &assigned) {
        // The check reads no split file: the split it shows is the drawn one, as before.
        (Some(_), None) => data::split(
            &labels,
            listing.classes.len(),
            d.validation_split,
            d.test_split,
            d.stratified(),
            cfg.experiment.seed,
        ),
        _ => split_of(plan, &labels, listing.classes.len(), &paths, assigned.as_ref())?,
    };
    if split.val.is_empty() && d.split_file.is_none() {
        // Training would stop on this after decoding everything; the check stops before.
        return Err(Error::Data(format!(
            "{} files in {} classes are too few to split into training and validation: no class has two; add \
             images, at least two in some class",
            listing.samples.len(),
            listing.classes.len(),
        )));
    }
    let cache_dir = d.cache.then(data::cache::default_dir);
    let known =
        data::known_quarantine(&listing, d.image_size, d.color_mode, d.interpolation, d.resize, cache_dir.as_deref());
    let thousands = crate::model::summary::thousands;
    let mut out = format!(
        "Data: {} ({} classes, {} files)\n",
        d.root().display(),
        listing.classes.len(),
        thousands(listing.samples.len())
    );
    for (class, n) in listing.classes.iter().zip(listing.counts()) {
        out += &format!("  {class:<24}{:>10}\n", thousands(n));
    }
    let how = match (&assigned, &d.validation_path) {
        (Some(_), Some(_)) => "by folder, no split drawn".to_string(),
        (Some(_), None) => format!("validation drawn from data.train_path with seed {}", cfg.experiment.seed),
        (None, _) => {
            format!("seed {}, {}", cfg.experiment.seed, if d.stratified() { "stratified" } else { "not stratified" })
        }
    };
    out += &format!(
        "Split ({how}): train {}, validation {}, test {} (before decoding; unusable files drop out)\n",
        thousands(split.train.len()),
        thousands(split.val.len()),
        thousands(split.test.len())
    );
    out += &match data::quarantine::summary(&known) {
        Some(summary) => format!("Known so far: {summary}; `runner data` decodes every file and lists them all\n"),
        None => "No unusable file known so far; `runner data` decodes every file to make sure\n".into(),
    };
    for q in known.iter().take(10) {
        out += &format!("  {}: {} ({})\n", q.path.display(), q.reason.name(), q.detail);
    }
    if known.len() > 10 {
        out += &format!("  ... and {} more\n", known.len() - 10);
    }
    Ok(out)
}

/// `runner data` (and `runner augment`, which insists on an `[augment]` section): checks the
/// config, prepares the data and writes its pictures and lists into
/// `<output.dir>/<experiment>/data/`, without training.
pub fn data_report(config_path: &Path, overrides: &Overrides, need_augment: bool) -> Result<RunDir> {
    let plan = plan(config_path, overrides)?;
    if need_augment && plan.config.augment.is_none() {
        return Err(Error::Usage(format!(
            "{} has no [augment] section to preview; add one (for example rotation_range = 40)",
            config_path.display()
        )));
    }
    let data = prepare(&plan)?;
    let path = plan.config.output.dir.join(&plan.config.experiment.name).join("data");
    std::fs::create_dir_all(&path).map_err(|e| Error::io("creating folder", &path, e))?;
    let dir = RunDir { path };
    write_data_files(&dir, &plan, &data)?;
    tracing::info!("wrote the data report to {}", dir.path.display());
    Ok(dir)
}
