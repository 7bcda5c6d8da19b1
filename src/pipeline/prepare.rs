//! Preparing a run's data: the dataset folder scanned and checked against the model, every
//! image decoded once (or taken from the cache), and split with the seed.

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

/// Scans the dataset folder of `plan` and checks its classes against the model.
pub(super) fn scan(plan: &Plan) -> Result<data::Listing> {
    let listing = data::scan(&plan.config.data.path).map_err(|e| match e {
        Error::Data(message) => Error::Data(format!(
            "{message}\n  (data.path is set at {})",
            plan.sources.position(&[config::Seg::Key("data"), config::Seg::Key("path")])
        )),
        other => other,
    })?;
    config::check_classes(plan, &listing.classes)?;
    Ok(listing)
}

/// Scans, checks, decodes (or takes from the cache) and splits the dataset of `plan`.
pub fn prepare(plan: &Plan) -> Result<Prepared> {
    let cfg = &plan.config;
    let listing = scan(plan)?;
    let counts: Vec<String> = listing.classes.iter().zip(listing.counts()).map(|(c, n)| format!("{c} {n}")).collect();
    tracing::info!(
        "found {} files in {} classes under {}: {}",
        listing.samples.len(),
        listing.classes.len(),
        cfg.data.path.display(),
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
    let split = match &d.split_file {
        Some(file) => {
            let csv = crate::results::bounded::read(file, &crate::results::bounded::SPLIT_FILE)
                .map_err(|e| Error::io("reading data.split_file", file, e))?;
            data::split::from_csv(&csv, &d.path, &images.paths)
                .map_err(|why| Error::Data(format!("data.split_file `{}`: {why}", file.display())))?
        }
        None => data::split(
            &images.labels,
            images.classes.len(),
            d.validation_split,
            d.test_split,
            d.stratify,
            cfg.experiment.seed,
        ),
    };
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
    let path = plan.config.data.path.display();
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
