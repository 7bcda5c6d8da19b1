//! One experiment end to end: check the config, scan and load the data, train, and write the
//! run folder as training goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;

use crate::config::{self, DeviceKind, Plan, PlotFormat};
use crate::data::{self, Images, Split};
use crate::ops::Backend;
use crate::results::manifest::{self, DatasetFacts, Manifest, Status};
use crate::results::{files, safetensors, RunDir};
use crate::seed::{self, Stream};
use crate::train::{self, History};
use crate::{plots, Error, Result};

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run folder.
    pub dir: RunDir,
    /// Metrics per epoch.
    pub history: History,
}

/// Checks `config_path` completely, then trains it and writes its run folder.
pub fn run(config_path: &Path) -> Result<Outcome> {
    let (config, source) = config::load(config_path)?;
    let plan = config::validate(config, source)?;
    let cfg = &plan.config;

    let listing = data::scan(&cfg.data.path).map_err(|e| match e {
        Error::Data(message) => Error::Data(format!(
            "{message}\n  (data.path is set at {})",
            plan.source
                .position(&[config::Seg::Key("data"), config::Seg::Key("path")])
        )),
        other => other,
    })?;
    config::check_classes(&plan, &listing.classes)?;
    let counts = listing.counts();
    tracing::info!(
        "found {} files in {} classes under {}: {}",
        listing.samples.len(),
        listing.classes.len(),
        cfg.data.path.display(),
        listing
            .classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let images = data::load(listing, cfg.data.image_size, cfg.data.color_mode)?;
    tracing::info!(
        "decoded {} images in {:.1}s",
        images.len(),
        started.elapsed().as_secs_f64()
    );
    let split = data::split(
        &images.labels,
        images.classes.len(),
        cfg.data.validation_split,
        cfg.data.stratify,
        cfg.experiment.seed,
    );
    if split.train.is_empty() || split.val.is_empty() {
        return Err(Error::Data(format!(
            "{} usable images are too few to split into training and validation",
            images.len()
        )));
    }
    tracing::info!(
        "training on {} images, validating on {}",
        split.train.len(),
        split.val.len()
    );

    let dir = RunDir::create(&cfg.output.dir, &cfg.experiment.name)?;
    tracing::info!("writing results to {}", dir.path.display());
    dir.write(files::CONFIG, resolved_config(&plan))?;
    dir.write(
        files::SUMMARY,
        crate::model::summary::render(&cfg.experiment.name, &plan.model),
    )?;

    // Training runs on a worker of the thread pool, so the thread driving the loop is one of
    // the pool's threads instead of an extra one competing with them for the cores.
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| Error::Train(format!("cannot start worker threads: {e}")))?;
    pool.install(|| train_with(plan, &images, &split, dir))
}

fn train_with(plan: Plan, images: &Images, split: &Split, dir: RunDir) -> Result<Outcome> {
    match plan.config.experiment.device {
        DeviceKind::Cpu => train_on(
            Cpu::seed_from_u64(device_seed(&plan)),
            &plan,
            images,
            split,
            dir,
        ),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            let dev = Cuda::try_seed_from_u64(device_seed(&plan))
                .map_err(|e| Error::Train(format!("cannot start CUDA device 0: {e:?}")))?;
            train_on(dev, &plan, images, split, dir)
        }
        // `config::validate` already rejects this in builds without CUDA.
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(Error::Config(
            "device = \"cuda\" needs a build with --features cuda".into(),
        )),
    }
}

/// The resolved config, with a header saying where it came from.
fn resolved_config(plan: &Plan) -> String {
    let body =
        toml::to_string(&plan.config).unwrap_or_else(|e| format!("# could not serialise: {e}\n"));
    format!(
        "# Resolved from {} by runner {}: every default filled in.\n\n{body}",
        plan.source.path.display(),
        env!("CARGO_PKG_VERSION")
    )
}

fn device_seed(plan: &Plan) -> u64 {
    use rand::RngCore;
    seed::rng(plan.config.experiment.seed, Stream::Init, &[u64::MAX]).next_u64()
}

fn train_on<D: Backend>(
    dev: D,
    plan: &Plan,
    images: &Images,
    split: &Split,
    dir: RunDir,
) -> Result<Outcome> {
    let cfg = &plan.config;
    let mut manifest = Manifest {
        runner_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        config_file: plan.source.path.display().to_string(),
        host: manifest::hostname(),
        device: config::serde_name(cfg.experiment.device),
        threads: rayon::current_num_threads(),
        seed: cfg.experiment.seed,
        dataset: DatasetFacts {
            path: cfg.data.path.display().to_string(),
            classes: images.classes.clone(),
            train: split.train.len(),
            validation: split.val.len(),
            skipped: images
                .skipped
                .iter()
                .map(|(p, r)| (p.display().to_string(), r.clone()))
                .collect(),
        },
        started_at: manifest::now_utc(),
        finished_at: None,
        epoch_seconds: Vec::new(),
        status: Status::Running,
    };
    let write_manifest = |m: &Manifest| {
        dir.write(
            files::MANIFEST,
            serde_json::to_string_pretty(m).expect("plain data") + "\n",
        )
    };
    write_manifest(&manifest)?;

    let mut epoch_start = Instant::now();
    let trained = train::fit(&dev, plan, images, split, |history| {
        manifest
            .epoch_seconds
            .push(epoch_start.elapsed().as_secs_f64());
        write_history(&dir, history, &cfg.output.plot_formats)?;
        write_manifest(&manifest)?;
        epoch_start = Instant::now();
        Ok(())
    });
    let (net, history) = match trained {
        Ok(t) => t,
        Err(e) => {
            manifest.status = Status::Failed {
                reason: e.to_string(),
            };
            manifest.finished_at = Some(manifest::now_utc());
            write_manifest(&manifest)?;
            return Err(e);
        }
    };

    let values: Vec<Vec<f32>> = net.params.iter().map(|p| p.tensor.as_vec()).collect();
    let tensors: Vec<safetensors::TensorData> = net
        .params
        .iter()
        .zip(&values)
        .map(|(p, v)| safetensors::TensorData {
            name: &p.name,
            dims: &p.dims,
            values: v,
        })
        .collect();
    let metadata = BTreeMap::from([
        ("format".to_string(), "runner".to_string()),
        (
            "layout".to_string(),
            "conv kernels (filters, channels, kh, kw); dense kernels (inputs, units)".to_string(),
        ),
    ]);
    dir.write(files::WEIGHTS, safetensors::to_bytes(&tensors, &metadata))?;

    manifest.status = Status::Completed;
    manifest.finished_at = Some(manifest::now_utc());
    write_manifest(&manifest)?;
    if let Some(last) = history.epochs.last() {
        tracing::info!(
            "done: val_accuracy {:.4}, val_loss {:.4} after {} epochs; results in {}",
            last.val_accuracy,
            last.val_loss,
            history.epochs.len(),
            dir.path.display()
        );
    }
    Ok(Outcome { dir, history })
}

/// History files and plots, rewritten after every epoch so a stopped run keeps its curves.
fn write_history(dir: &RunDir, history: &History, formats: &[PlotFormat]) -> Result<()> {
    dir.write(files::HISTORY_CSV, history.to_csv())?;
    dir.write(files::HISTORY_JSON, history.to_json())?;
    for chart in plots::charts(history) {
        for format in formats {
            let (name, bytes) = match format {
                PlotFormat::Svg => (
                    format!("{}.svg", chart.stem),
                    plots::svg(&chart).map(String::into_bytes),
                ),
                PlotFormat::Png => (format!("{}.png", chart.stem), plots::png(&chart)),
            };
            dir.write(&name, bytes.map_err(Error::Train)?)?;
        }
    }
    Ok(())
}
