//! The commands that take an experiment file, end to end: `check` (everything knowable
//! without decoding), `data` and `augment` (load the data and picture it), and `run` (train,
//! writing the run folder as training goes).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;

use crate::config::{self, DeviceKind, Origin, Overrides, Plan, PlotFormat};
use crate::data::{self, Images, LoadStats, Split};
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

/// The data of a run: decoded images and their split.
pub struct Prepared {
    /// Decoded images.
    pub images: Images,
    /// Train / validation / test indices.
    pub split: Split,
    /// How many were decoded and how many came from the cache.
    pub stats: LoadStats,
}

/// Reads and checks a config file (with what it extends and `overrides`) completely;
/// nothing else is touched.
pub fn plan(config_path: &Path, overrides: &Overrides) -> Result<Plan> {
    let (config, sources) = config::load(config_path, overrides)?;
    config::validate(config, sources)
}

/// Scans the dataset folder of `plan` and checks its classes against the model.
fn scan(plan: &Plan) -> Result<data::Listing> {
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

/// `runner check`: everything that can be known without decoding a pixel (the config, the
/// dataset's classes, files and split sizes, files known to be unusable, and the model's
/// shapes, parameters and costs), as a report for the terminal.
pub fn check(config_path: &Path, overrides: &Overrides) -> Result<String> {
    let plan = plan(config_path, overrides)?;
    let cfg = &plan.config;
    let listing = scan(&plan)?;
    let d = &cfg.data;
    let labels: Vec<usize> = listing.samples.iter().map(|s| s.label).collect();
    let split =
        data::split(&labels, listing.classes.len(), d.validation_split, d.test_split, d.stratify, cfg.experiment.seed);
    let cache_dir = d.cache.then(data::cache::default_dir);
    let known = data::known_quarantine(&listing, d.image_size, d.color_mode, cache_dir.as_deref());
    let thousands = crate::model::summary::thousands;
    let mut out = format!("{}: the config is valid\n\n", plan.sources.main().path.display());
    out += &format!(
        "Data: {} ({} classes, {} files)\n",
        d.path.display(),
        listing.classes.len(),
        thousands(listing.samples.len())
    );
    for (class, n) in listing.classes.iter().zip(listing.counts()) {
        out += &format!("  {class:<24}{:>10}\n", thousands(n));
    }
    out += &format!(
        "Split (seed {}, {}): train {}, validation {}, test {} (before decoding; unusable files drop out)\n",
        cfg.experiment.seed,
        if d.stratify { "stratified" } else { "not stratified" },
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
    out += "\n";
    out += &crate::model::summary::render_with_costs(&cfg.experiment.name, &plan.model, cfg.train.batch_size);
    Ok(out)
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
    let (images, stats) = data::load(listing, cfg.data.image_size, cfg.data.color_mode, cache_dir.as_deref())?;
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
    let d = &cfg.data;
    let split = match &d.split_file {
        Some(file) => {
            let csv = std::fs::read_to_string(file).map_err(|e| Error::io("reading data.split_file", file, e))?;
            data::split::from_csv(&csv, &images.paths)
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

/// Writes what a person wants to see of the data into `dir`: the quarantine list, the split
/// (file by file), sample images per class and the class counts per split.
pub fn write_data_files(dir: &RunDir, plan: &Plan, data: &Prepared) -> Result<()> {
    dir.write(files::QUARANTINE, data::quarantine::to_csv(&data.images.quarantined))?;
    dir.write(files::SPLIT, split_csv(&data.images, &data.split))?;
    let formats = &plan.config.output.plot_formats;
    write_picture(dir, files::SAMPLES, plots::samples::render(&data.images), formats)?;
    write_picture(dir, files::CLASS_COUNTS, plots::counts::render(&data.images, &data.split), formats)?;
    if let Some(augment) = &plan.config.augment {
        let preview = plots::augmentations::render(augment, &data.images, &data.split, plan.config.experiment.seed);
        write_picture(dir, files::AUGMENTATIONS, preview, formats)?;
    }
    Ok(())
}

/// `split.csv`: every used file with its class and split, in file order.
fn split_csv(images: &Images, split: &Split) -> String {
    let mut out = String::from("path,class,split\n");
    for (i, path) in images.paths.iter().enumerate() {
        let path = crate::results::csv_field(&path.display().to_string());
        out += &format!("{path},{},{}\n", images.classes[images.labels[i]], split.name_of(i));
    }
    out
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

/// Checks `config_path` completely, then trains it and writes its run folder.
pub fn run(config_path: &Path, overrides: &Overrides) -> Result<Outcome> {
    let plan = plan(config_path, overrides)?;
    let data = prepare(&plan)?;
    let dir = RunDir::create(&plan.config.output.dir, &plan.config.experiment.name)?;
    run_in(plan, &data, dir)
}

/// Trains `plan` on `data`, writing the run folder `dir` (which exists) as training goes.
pub fn run_in(plan: Plan, data: &Prepared, dir: RunDir) -> Result<Outcome> {
    let cfg = &plan.config;
    tracing::info!("writing results to {}", dir.path.display());
    dir.write(files::CONFIG, resolved_config(&plan))?;
    dir.write(files::SUMMARY, crate::model::summary::render(&cfg.experiment.name, &plan.model))?;
    write_data_files(&dir, &plan, data)?;

    train_in_pool(plan, data, dir, None)
}

/// `runner resume <run folder>`: goes on with an interrupted, failed or killed run from its
/// last checkpoint (or from the start when it has none), in the same folder. The data must be
/// the same as when it started (checked by the manifest's fingerprint).
pub fn resume(run_dir: &Path) -> Result<Outcome> {
    let (run_dir, manifest, plan) = open(run_dir)?;
    if manifest.status == Status::Completed {
        return Err(Error::Usage(format!("the run in `{}` is already completed", run_dir.display())));
    }
    let data = prepare_same(&plan, &manifest)?;
    let checkpoint = match std::fs::read(run_dir.join(files::LAST_CHECKPOINT)) {
        Ok(bytes) => Some(train::checkpoint::Checkpoint::from_bytes(&bytes).map_err(|e| {
            Error::Train(format!("cannot resume from {}: {e}", run_dir.join(files::LAST_CHECKPOINT).display()))
        })?),
        Err(_) => None,
    };
    match &checkpoint {
        Some(c) => tracing::info!(
            "resuming {} after epoch {}{}",
            run_dir.display(),
            c.state.epoch,
            if c.state.step > 0 { format!(" and {} batches of the next", c.state.step) } else { String::new() }
        ),
        None => tracing::info!("{} has no checkpoint yet; training it from the start", run_dir.display()),
    }
    train_in_pool(plan, &data, RunDir { path: run_dir }, Some((checkpoint, manifest)))
}

/// A saved run: its folder (absolute), manifest and checked config. Enters the working
/// directory the run started in, so relative paths in its config mean what they meant.
pub fn open(run_dir: &Path) -> Result<(std::path::PathBuf, Manifest, Plan)> {
    let manifest_path = run_dir.join(files::MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Usage(format!("`{}` is not a run folder (it has no {})", run_dir.display(), files::MANIFEST))
        }
        _ => Error::io("reading", &manifest_path, e),
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("`{}` is not a manifest runner can read: {e}", manifest_path.display())))?;
    let run_dir = std::fs::canonicalize(run_dir).map_err(|e| Error::io("opening run folder", run_dir, e))?;
    if let Some(cwd) = &manifest.working_dir {
        std::env::set_current_dir(cwd)
            .map_err(|e| Error::io("entering the run's working folder", Path::new(cwd), e))?;
    }
    let plan = plan(&run_dir.join(files::CONFIG), &Overrides::default())?;
    Ok((run_dir, manifest, plan))
}

/// The run's data, checked to be the very images (and split) it was trained on.
pub fn prepare_same(plan: &Plan, manifest: &Manifest) -> Result<Prepared> {
    let data = prepare(plan)?;
    let split = &data.split;
    let now = manifest::Fingerprint::of(&data.images.paths, &split.train, &split.val, &split.test);
    if serde_json::to_value(&now).ok() != serde_json::to_value(&manifest.dataset.fingerprint).ok() {
        return Err(Error::Data(format!(
            "the images under `{}` are not the ones the run was trained on (their fingerprint differs); \
             start a new run instead",
            plan.config.data.path.display()
        )));
    }
    Ok(data)
}

/// How a run goes on: its last checkpoint (if any) and its manifest so far.
type Resumed = (Option<train::checkpoint::Checkpoint>, Manifest);

fn train_in_pool(plan: Plan, data: &Prepared, dir: RunDir, resumed: Option<Resumed>) -> Result<Outcome> {
    // Training runs on a worker of the thread pool, so the thread driving the loop is one of
    // the pool's threads instead of an extra one competing with them for the cores.
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| Error::Train(format!("cannot start worker threads: {e}")))?;
    pool.install(|| train_with(plan, data, dir, resumed))
}

fn train_with(plan: Plan, data: &Prepared, dir: RunDir, resumed: Option<Resumed>) -> Result<Outcome> {
    match plan.config.experiment.device {
        DeviceKind::Cpu => train_on(Cpu::seed_from_u64(device_seed(&plan)), &plan, data, dir, resumed),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda(n) => {
            let dev = Cuda::try_build(n, device_seed(&plan)).map_err(|e| {
                Error::Train(format!("cannot start CUDA device {n}: {e:?}; check nvidia-smi, or set device = \"cpu\""))
            })?;
            train_on(dev, &plan, data, dir, resumed)
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Auto => match Cuda::try_build(0, device_seed(&plan)) {
            Ok(dev) => {
                tracing::info!("device auto: training on CUDA device 0");
                train_on(dev, &plan, data, dir, resumed)
            }
            Err(e) => {
                tracing::info!("device auto: no usable GPU ({e:?}); training on the CPU");
                train_on(Cpu::seed_from_u64(device_seed(&plan)), &plan, data, dir, resumed)
            }
        },
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Auto => {
            tracing::info!("device auto: this build has no CUDA; training on the CPU");
            train_on(Cpu::seed_from_u64(device_seed(&plan)), &plan, data, dir, resumed)
        }
        // `config::validate` already rejects this in builds without CUDA.
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda(_) => Err(Error::Config("device = \"cuda\" needs a build with --features cuda".into())),
    }
}

/// The resolved config, with a header saying where it came from.
/// The resolved config, with a header saying where each value that is not a default came
/// from (a file, an environment variable or a `--set`).
fn resolved_config(plan: &Plan) -> String {
    let body = toml::to_string(&plan.config).unwrap_or_else(|e| format!("# could not serialise: {e}\n"));
    let files = &plan.sources.files;
    let mut out = format!(
        "# Resolved from {} by runner {}: every default filled in.\n# Where values came from (keys not listed are defaults):\n",
        files[0].path.display(),
        env!("CARGO_PKG_VERSION")
    );
    for (key, origin) in &plan.sources.origins {
        let from = match origin {
            Origin::File(i) => files[*i].path.display().to_string(),
            other => other.to_string(),
        };
        out += &format!("#   {key:<40} {from}\n");
    }
    out + "\n" + &body
}

fn device_seed(plan: &Plan) -> u64 {
    use rand::RngCore;
    seed::rng(plan.config.experiment.seed, Stream::Init, &[u64::MAX]).next_u64()
}

fn train_on<D: Backend>(
    dev: D,
    plan: &Plan,
    data: &Prepared,
    dir: RunDir,
    resumed: Option<Resumed>,
) -> Result<Outcome> {
    let cfg = &plan.config;
    let (images, split) = (&data.images, &data.split);
    let (checkpoint, mut manifest) = match resumed {
        Some((checkpoint, mut manifest)) => {
            manifest.status = Status::Running;
            manifest.finished_at = None;
            manifest.resumed_at.push(manifest::now_utc());
            manifest.epoch_seconds.truncate(checkpoint.as_ref().map_or(0, |c| c.state.epoch));
            manifest.threads = rayon::current_num_threads();
            (checkpoint, manifest)
        }
        None => (
            None,
            Manifest {
                runner_version: env!("CARGO_PKG_VERSION").into(),
                command: std::env::args().collect(),
                config_file: plan.sources.main().path.display().to_string(),
                working_dir: std::env::current_dir().ok().map(|d| d.display().to_string()),
                host: manifest::hostname(),
                device: match cfg.experiment.device {
                    DeviceKind::Auto => D::NAME.to_string(),
                    chosen => config::serde_name(chosen),
                },
                git: manifest::GitState::of(&plan.sources.main().path),
                threads: rayon::current_num_threads(),
                seed: cfg.experiment.seed,
                dataset: DatasetFacts {
                    path: cfg.data.path.display().to_string(),
                    classes: images.classes.clone(),
                    train: split.train.len(),
                    validation: split.val.len(),
                    test: split.test.len(),
                    quarantined: images.quarantined.len(),
                    decoded: data.stats.decoded,
                    from_cache: data.stats.from_cache,
                    fingerprint: manifest::Fingerprint::of(&images.paths, &split.train, &split.val, &split.test),
                },
                started_at: manifest::now_utc(),
                finished_at: None,
                resumed_at: Vec::new(),
                epoch_seconds: Vec::new(),
                best_epoch: None,
                stopped_early_after: None,
                status: Status::Running,
            },
        ),
    };
    let write_manifest =
        |m: &Manifest| dir.write(files::MANIFEST, serde_json::to_string_pretty(m).expect("plain data") + "\n");
    write_manifest(&manifest)?;
    let checkpoints = dir.path.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).map_err(|e| Error::io("creating folder", &checkpoints, e))?;

    let mut epoch_start = Instant::now();
    // Ctrl-C stops training at the next batch boundary (until the guard is dropped).
    let ctrl_c = crate::interrupt::Guard::install();
    // Checkpoint first, then what people read: a kill in between loses nothing, since
    // resuming rewrites the history from the checkpoint.
    let trained = train::fit(&dev, plan, images, split, checkpoint, |checkpoint, saved| {
        dir.write(files::LAST_CHECKPOINT, checkpoint.to_bytes())?;
        if saved == (train::Saved::Epoch { best: true }) {
            dir.write(files::BEST_WEIGHTS, weights_file(&checkpoint.weights))?;
        }
        if let train::Saved::Epoch { .. } = saved {
            manifest.epoch_seconds.push(epoch_start.elapsed().as_secs_f64());
            epoch_start = Instant::now();
        }
        write_history(&dir, &checkpoint.state.history, &cfg.output.plot_formats)?;
        write_manifest(&manifest)
    });
    drop(ctrl_c);
    // Every way a run ends: its status in the manifest, then the report.
    let finish = |manifest: &mut Manifest, status| {
        manifest.status = status;
        manifest.finished_at = Some(manifest::now_utc());
        write_manifest(manifest)?;
        dir.write(files::REPORT, crate::report::run_page(&dir.path))
    };
    let train::Trained { mut net, history, mut validation, best_epoch, stopped_early } = match trained {
        Ok(t) => t,
        Err(e) => {
            let status = match &e {
                Error::Interrupted(at) => Status::Interrupted { at: at.clone() },
                other => Status::Failed { reason: other.to_string() },
            };
            finish(&mut manifest, status)?;
            return Err(e);
        }
    };
    write_history(&dir, &history, &cfg.output.plot_formats)?;
    manifest.best_epoch = Some(best_epoch + 1);
    manifest.stopped_early_after = stopped_early.map(|e| e + 1);
    if let Some(e) = stopped_early {
        tracing::info!("early stopping after epoch {}: no improvement for {} epochs", e + 1, e - best_epoch);
    }

    // The best epoch's weights: for the test split, and as the final weights when asked.
    // (No epoch is the best when the monitored value was never finite: then the last is.)
    let mut best_net = net.clone();
    let best_path = dir.path.join(files::BEST_WEIGHTS);
    if best_path.is_file() {
        let bytes = std::fs::read(&best_path).map_err(|e| Error::io("reading", &best_path, e))?;
        let best_weights = safetensors::from_bytes(&bytes).map_err(Error::Train)?;
        best_net.load_weights(&dev, &best_weights).map_err(|e| Error::Train(format!("best weights: {e}")))?;
    }
    if cfg.train.early_stopping.as_ref().is_some_and(|e| e.restore_best_weights) {
        tracing::info!("restoring the weights of epoch {} (restore_best_weights)", best_epoch + 1);
        net = best_net.clone();
        validation = train::evaluate(&dev, &net, plan, images, &split.val);
    }
    dir.write(files::WEIGHTS, weights_file(&net.weights()))?;

    // What the model gets right and wrong on the validation split.
    let predictions = &validation.predictions;
    let predicted: Vec<usize> = predictions.iter().map(|p| p.class).collect();
    let truth: Vec<usize> = split.val.iter().map(|&i| images.labels[i]).collect();
    let matrix = plots::confusion::matrix(images.classes.len(), &truth, &predicted);
    let formats = &cfg.output.plot_formats;
    let title = "Confusion matrix (validation)";
    write_picture(&dir, files::CONFUSION, plots::confusion::render(&images.classes, &matrix, title), formats)?;
    write_picture(&dir, files::PREDICTIONS, plots::predictions::render(images, &split.val, predictions), formats)?;

    // The test split is looked at once, after training and model selection are over, with
    // the best epoch's weights.
    if !split.test.is_empty() {
        let test = train::evaluate(&dev, &best_net, plan, images, &split.test);
        tracing::info!(
            "test (weights of epoch {}): loss {:.4}, accuracy {:.4} on {} images",
            best_epoch + 1,
            test.loss,
            test.accuracy,
            split.test.len()
        );
        let json = serde_json::json!({
            "loss": test.loss,
            "accuracy": test.accuracy,
            "samples": split.test.len(),
            "epoch": best_epoch + 1,
        });
        dir.write(files::TEST_METRICS, serde_json::to_string_pretty(&json).expect("numbers") + "\n")?;
        let predicted: Vec<usize> = test.predictions.iter().map(|p| p.class).collect();
        let truth: Vec<usize> = split.test.iter().map(|&i| images.labels[i]).collect();
        let matrix = plots::confusion::matrix(images.classes.len(), &truth, &predicted);
        let picture = plots::confusion::render(&images.classes, &matrix, "Confusion matrix (test)");
        write_picture(&dir, files::TEST_CONFUSION, picture, formats)?;
    }

    finish(&mut manifest, Status::Completed)?;
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
fn write_history(dir: &RunDir, history: &History, formats: &[PlotFormat]) -> Result<()> {
    dir.write(files::HISTORY_CSV, history.to_csv())?;
    dir.write(files::HISTORY_JSON, history.to_json())?;
    for chart in plots::curves::charts(history) {
        write_picture(dir, chart.stem, plots::curves::render(&chart), formats)?;
    }
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg`, as `formats` asks.
fn write_picture(
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
