//! Preparing a run's data: the dataset's files listed (class folders, folders already split,
//! or a folder with a labels file) and checked against the model, every image decoded once
//! (or taken from the cache), and split: by folder, from the seed (`validation_split`, or a
//! fold of `data.folds`), or as a recorded `split.csv` says.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::config::{self, Plan};
use crate::data::{self, Images, LoadStats, Split};
use crate::results::manifest::{self, Manifest};
use crate::{Error, Result};

/// The data of a run: decoded images and their split.
pub struct Prepared {
    /// Decoded images.
    pub images: Images,
    /// Train / validation / test indices.
    pub split: Split,
    /// How many were decoded and how many came from the cache.
    pub stats: LoadStats,
}

/// The folder each file of already-split folders (`data.train_path`, ...) came from.
pub type Assigned = HashMap<PathBuf, Part>;

/// A split that files are assigned to by their folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// `data.train_path`.
    Train,
    /// `data.validation_path`.
    Validation,
    /// `data.test_path`.
    Test,
}

/// Lists the files of `plan`'s dataset and checks its classes against the model.
pub fn scan(plan: &Plan) -> Result<(data::Listing, Option<Assigned>)> {
    let (listing, assigned) = list(plan)?;
    config::check_classes(plan, &listing.classes)?;
    Ok((listing, assigned))
}

/// Lists the files of `plan`'s dataset: class folders, already-split folders (with the
/// folder of each file), or a folder with a labels file.
pub fn list(plan: &Plan) -> Result<(data::Listing, Option<Assigned>)> {
    let d = &plan.config.data;
    let at = |key: &'static str| plan.sources.position(&[config::Seg::Key("data"), config::Seg::Key(key)]);
    // The scan's messages name data.path, the usual key; another key's folder is named by it.
    let located = |key: &'static str| {
        move |e: Error| match e {
            Error::Data(message) => {
                let message = message.replace("data.path", &format!("data.{key}"));
                Error::Data(format!("{message}\n  (data.{key} is set at {})", at(key)))
            }
            other => other,
        }
    };
    let (listing, assigned) = match (&d.path, &d.train_path) {
        (Some(path), _) => match &d.labels {
            Some(labels) => {
                if !path.is_dir() {
                    return Err(located("path")(Error::Data(format!(
                        "image folder `{}` (data.path) is not a folder; point data.path at the folder the \
                         labels file's names are relative to",
                        path.display()
                    ))));
                }
                let csv = crate::results::bounded::read(&labels.file, &crate::results::bounded::SPLIT_FILE)
                    .map_err(|e| Error::io("reading data.labels", &labels.file, e))?;
                let y = match &labels.y_col {
                    config::YCol::One(column) => vec![column.clone()],
                    config::YCol::Each(columns) => columns.clone(),
                };
                let columns = data::labels::Columns { x: &labels.x_col, y: &y, separator: labels.separator.as_deref() };
                let listing = data::labels::listing(path, &csv, &labels.file, columns)
                    .map_err(|why| located("labels")(Error::Data(why)))?;
                (listing, None)
            }
            None => (data::scan(path).map_err(located("path"))?, None),
        },
        (None, Some(train)) => {
            let mut parts = vec![data::scan(train).map_err(located("train_path"))?];
            let (mut kinds, mut keys) = (vec![Part::Train], vec!["train_path"]);
            for (folder, key, part) in
                [(&d.validation_path, "validation_path", Part::Validation), (&d.test_path, "test_path", Part::Test)]
            {
                if let Some(folder) = folder {
                    let inside = |a: &PathBuf, b: &PathBuf| {
                        std::path::absolute(a)
                            .ok()
                            .zip(std::path::absolute(b).ok())
                            .is_some_and(|(a, b)| a.starts_with(b))
                    };
                    if inside(folder, train) || inside(train, folder) {
                        return Err(located(key)(Error::Data(format!(
                            "`{}` (data.{key}) and `{}` (data.train_path) are inside one another; \
                             give folders side by side, such as data/train and data/validation",
                            folder.display(),
                            train.display()
                        ))));
                    }
                    parts.push(data::scan(folder).map_err(located(key))?);
                    kinds.push(part);
                    keys.push(key);
                }
            }
            let (listing, origin) = data::image_folder::combine(&d.root(), parts)
                .map_err(|(part, why)| located(keys[part])(Error::Data(why)))?;
            let assigned = listing.samples.iter().zip(origin).map(|(s, o)| (s.path.clone(), kinds[o])).collect();
            (listing, Some(assigned))
        }
        (None, None) => unreachable!("validate requires data.path or data.train_path"),
    };
    Ok((listing, assigned))
}

/// The split drawn from the seed: validation by `data.validation_split`, or by `data.fold`
/// of `data.folds` (fold 0 where none is chosen, as `runner check` shows it).
fn draw(plan: &Plan, labels: &[usize], classes: usize, test_fraction: f64) -> Split {
    let (d, seed) = (&plan.config.data, plan.config.experiment.seed);
    match d.folds {
        Some(folds) => {
            data::split::fold_split(labels, classes, test_fraction, d.stratified(), seed, (d.fold.unwrap_or(0), folds))
        }
        None => data::split(labels, classes, d.validation_split, test_fraction, d.stratified(), seed),
    }
}

/// The split of the files `paths` (with their `labels`): by folder for already-split
/// folders (drawing validation, and test, from the training folder where no folder is
/// given for them), else from the seed, or from `data.split_file`.
pub fn split_of(
    plan: &Plan,
    labels: &[usize],
    classes: usize,
    paths: &[PathBuf],
    assigned: Option<&Assigned>,
) -> Result<Split> {
    let (cfg, d) = (&plan.config, &plan.config.data);
    let Some(assigned) = assigned else {
        return match &d.split_file {
            Some(file) => {
                let csv = crate::results::bounded::read(file, &crate::results::bounded::SPLIT_FILE)
                    .map_err(|e| Error::io("reading data.split_file", file, e))?;
                data::split::from_csv(&csv, &d.root(), paths)
                    .map_err(|why| Error::Data(format!("data.split_file `{}`: {why}", file.display())))
            }
            None => Ok(draw(plan, labels, classes, d.test_split)),
        };
    };
    let of =
        |part: Part| -> Vec<usize> { (0..paths.len()).filter(|&i| assigned.get(&paths[i]) == Some(&part)).collect() };
    let (train, mut val, mut test) = (of(Part::Train), of(Part::Validation), of(Part::Test));
    let val_fraction = if d.validation_path.is_some() { 0.0 } else { d.validation_split };
    let test_fraction = if d.test_path.is_some() { 0.0 } else { d.test_split };
    let train_labels: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
    let drawn = match d.folds {
        Some(_) => draw(plan, &train_labels, classes, test_fraction),
        None => data::split(&train_labels, classes, val_fraction, test_fraction, d.stratified(), cfg.experiment.seed),
    };
    let back = |idx: Vec<usize>| idx.into_iter().map(|i| train[i]).collect::<Vec<_>>();
    val.extend(back(drawn.val));
    test.extend(back(drawn.test));
    val.sort_unstable();
    test.sort_unstable();
    Ok(Split { train: back(drawn.train), val, test })
}

/// Scans, checks, decodes (or takes from the cache) and splits the dataset of `plan`.
pub fn prepare(plan: &Plan) -> Result<Prepared> {
    let cfg = &plan.config;
    let (listing, assigned) = scan(plan)?;
    let counts: Vec<String> = listing.classes.iter().zip(listing.counts()).map(|(c, n)| format!("{c} {n}")).collect();
    tracing::info!(
        "found {} files in {} classes under {}: {}",
        listing.samples.len(),
        listing.classes.len(),
        cfg.data.root().display(),
        counts.join(", ")
    );
    let started = Instant::now();
    let cache_dir = cfg.data.cache.then(data::cache::default_dir);
    match &cache_dir {
        Some(dir) => tracing::debug!("image cache folder {} (RUNNER_CACHE_DIR moves it)", dir.display()),
        None => tracing::debug!("data.cache = false: every image is decoded"),
    }
    let d = &cfg.data;
    let (images, stats) =
        data::load(listing, d.image_size, d.color_mode, d.interpolation, d.resize, cache_dir.as_deref())?;
    tracing::info!(
        "{} images ready in {:.1}s: {} decoded, {} from the cache{}",
        images.len(),
        started.elapsed().as_secs_f64(),
        stats.decoded,
        stats.from_cache,
        cache_dir.map(|d| format!(" in {}", d.display())).unwrap_or_default()
    );
    if let Some(summary) = data::quarantine::summary(&images.quarantined) {
        tracing::warn!("{summary} (listed in quarantine.csv of the run folder)");
    }
    let split = split_of(plan, &images.labels, images.classes.len(), &images.paths, assigned.as_ref())?;
    match (&assigned, &cfg.data.validation_path) {
        (Some(_), Some(_)) => {
            tracing::info!("data.train_path and data.validation_path are the split: no split is drawn")
        }
        (Some(_), None) => tracing::info!(
            "validation images are drawn from data.train_path ({}, seed {})",
            match cfg.data.folds {
                Some(k) => format!("fold {} of {k}", cfg.data.fold.unwrap_or(0)),
                None => format!("validation_split {}", cfg.data.validation_split),
            },
            cfg.experiment.seed
        ),
        (None, _) => {}
    }
    if let (Some(folds), true) = (cfg.data.folds, plan.sources.origins.contains_key("data.validation_split")) {
        tracing::info!(
            "fold {} of {folds} validates: validation_split ({}) does not apply with data.folds",
            cfg.data.fold.unwrap_or(0),
            cfg.data.validation_split
        );
    }
    if split.train.is_empty() || split.val.is_empty() {
        return Err(Error::Data(format!(
            "{} usable images are too few to split into training and validation",
            images.len()
        )));
    }
    tracing::info!(
        "training on {} images, validating on {}, testing on {}",
        split.train.len(),
        split.val.len(),
        split.test.len()
    );
    Ok(Prepared { images, split, stats })
}

/// The run's data, checked to be the very images (and split) it was trained on.
pub fn prepare_same(plan: &Plan, manifest: &Manifest) -> Result<Prepared> {
    let data = prepare(plan)?;
    let split = &data.split;
    let recorded = &manifest.dataset.fingerprint;
    let mut now =
        manifest::Fingerprint::of(&data.images.paths, data.images.pixels_crc(), &split.train, &split.val, &split.test);
    let pixels = std::mem::replace(&mut now.pixels, recorded.pixels.clone());
    let path = plan.config.data.root();
    let path = path.display();
    let what = "resume and verify need the very images the run used: put them back, or start a new run";
    if serde_json::to_value(&now).ok() != serde_json::to_value(recorded).ok() {
        return Err(Error::Data(format!(
            "the images under `{path}` are not the ones the run was trained on (the files, their sizes or the \
             split differ from the manifest's fingerprint); {what}"
        )));
    }
    // Manifests from before the pixels were recorded have only the files to compare.
    if recorded.pixels.is_some() && pixels != recorded.pixels {
        return Err(Error::Data(format!(
            "the images under `{path}` have the names and sizes the run recorded but not the same pixels (a file \
             was changed in place, or this runner decodes differently from runner {} that trained it); {what}",
            manifest.runner_version
        )));
    }
    Ok(data)
}
