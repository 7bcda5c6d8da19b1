//! `manifest.json`: what ran, where, when, how long, and how it ended. The one file of a run
//! folder that differs between two identical runs.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a run ended (so far).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Still training.
    Running,
    /// All epochs done.
    Completed,
    /// Stopped with Ctrl-C.
    Interrupted {
        /// Where (epoch and batch).
        at: String,
    },
    /// Stopped by an error.
    Failed {
        /// The error message.
        reason: String,
    },
    /// Stopped by a sweep's pruning, at an epoch boundary, because other trials did better.
    Pruned {
        /// Why.
        reason: String,
    },
}

/// Facts about one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// `runner` version.
    pub runner_version: String,
    /// The command line.
    pub command: Vec<String>,
    /// The config file as given.
    pub config_file: String,
    /// The working directory (relative paths in the config are taken from it).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Machine name.
    pub host: String,
    /// `cpu` or `cuda:N`: where the run computed.
    pub device: String,
    /// The GPU used (name, compute capability, driver), or why `device = "auto"` used the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_note: Option<String>,
    /// Commit and dirty flag of the git repository holding the config, when there is one.
    pub git: Option<GitState>,
    /// Worker threads used by the CPU kernels.
    pub threads: usize,
    /// The matrix-multiply kernel the products ran on (the numbers are the same bits on any
    /// CPU that runs the same kernel family).
    #[serde(default)]
    pub kernel: String,
    /// The CPU's instruction-set extensions that decide which kernel runs.
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// The convolutions computed with Winograd's algorithm (`train.conv_algorithm`; none on a
    /// GPU).
    #[serde(default)]
    pub winograd_layers: Vec<String>,
    /// `experiment.seed`.
    pub seed: u64,
    /// Dataset folder, classes and split sizes.
    pub dataset: DatasetFacts,
    /// Start, UTC, ISO 8601.
    pub started_at: String,
    /// End, UTC, ISO 8601 (when finished).
    pub finished_at: Option<String>,
    /// When `runner resume` went on with the run, UTC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_at: Vec<String>,
    /// Wall-clock seconds of each epoch.
    pub epoch_seconds: Vec<f64>,
    /// The best epoch (1-based) by `train.checkpoint.monitor`, once training has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The epoch (1-based) after which early stopping ended training, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early_after: Option<usize>,
    /// The most memory the process held that is not backed by a file (its heap, stacks and
    /// tensors), MiB, so far: images are read from the cache file as batches need them, so
    /// this depends on the model, the batch and the prefetch depth, not on the dataset's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_anonymous_mib: Option<f64>,
    /// The weights training started from (`model.weights`), when not random ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_weights: Option<InitialWeights>,
    /// How it ended.
    pub status: Status,
}

/// A warm start's weights file: where it was and what it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialWeights {
    /// `model.weights`, as given.
    pub path: String,
    /// FNV-1a of the file's bytes, hex.
    pub fnv1a: String,
}

/// What the run trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetFacts {
    /// `data.path`.
    pub path: String,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub validation: usize,
    /// Test images.
    pub test: usize,
    /// Files not used (listed with reasons in `quarantine.csv`).
    pub quarantined: usize,
    /// Images decoded in this run.
    pub decoded: usize,
    /// Images taken from the decoded-image cache.
    pub from_cache: usize,
    /// Identifies the exact data: CRC-32s of the used file list (paths and sizes) and of each
    /// split's file list, so two runs can be checked to have seen the same images.
    pub fingerprint: Fingerprint,
}

/// CRC-32s (hex) of the data a run used.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Used files, their paths and sizes.
    pub files: String,
    /// Total bytes of the used files.
    pub bytes: u64,
    /// The training file list.
    pub train: String,
    /// The validation file list.
    pub validation: String,
    /// The test file list.
    pub test: String,
    /// The decoded pixels of the used images, in order, as the network sees them before
    /// augmentation: a file changed in place with its size kept (two images swapped between
    /// classes, say) changes it. Absent from manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixels: Option<String>,
}

impl Fingerprint {
    /// The fingerprint of `paths` (in order), whose decoded pixels, one image after another,
    /// have the CRC-32 `pixels_crc`, split into the index lists `splits`.
    pub fn of(
        paths: &[std::path::PathBuf],
        pixels_crc: u32,
        train: &[usize],
        validation: &[usize],
        test: &[usize],
    ) -> Fingerprint {
        let mut files = crc32fast::Hasher::new();
        let mut bytes = 0;
        for p in paths {
            let size = std::fs::metadata(p).map_or(0, |m| m.len());
            bytes += size;
            files.update(format!("{}\t{size}\n", p.display()).as_bytes());
        }
        let list = |indices: &[usize]| {
            let mut h = crc32fast::Hasher::new();
            indices.iter().for_each(|&i| h.update(format!("{}\n", paths[i].display()).as_bytes()));
            format!("{:08x}", h.finalize())
        };
        Fingerprint {
            files: format!("{:08x}", files.finalize()),
            bytes,
            train: list(train),
            validation: list(validation),
            test: list(test),
            pixels: Some(format!("{pixels_crc:08x}")),
        }
    }
}

/// The commit checked out where the config lives, and whether tracked files have changes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GitState {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Tracked files differ from the commit.
    pub dirty: bool,
}

impl GitState {
    /// The state of the repository holding `config` (the current folder's, for a config read
    /// from a pipe), if git is installed and it is in one.
    pub fn of(config: &std::path::Path) -> Option<GitState> {
        let folder = config.parent().filter(|d| !d.as_os_str().is_empty() && config.is_file());
        let dir = folder.unwrap_or(std::path::Path::new("."));
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let commit = git(&["rev-parse", "HEAD"])?;
        let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
        Some(GitState { commit, dirty })
    }
}

/// The peak anonymous memory of this process so far, MiB, where Linux tells it: the peak
/// resident size (`VmHWM`) less what is resident now from files and shared memory (`RssFile`,
/// `RssShmem`: the program's own code, mostly). Linux keeps no peak of anonymous memory alone;
/// since runner maps no data file, this difference is that peak, give or take the code pages
/// touched since.
pub fn peak_anonymous_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    let peak = kib("VmHWM:")? - kib("RssFile:").unwrap_or(0.0) - kib("RssShmem:").unwrap_or(0.0);
    Some((peak / 1024.0 * 10.0).round() / 10.0)
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// This machine's name, best effort.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
