//! `manifest.json`: what ran, where, when, how long, and how it ended. The one file of a run
//! folder that differs between two identical runs.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How a run ended (so far).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Still training.
    Running,
    /// All epochs done.
    Completed,
    /// Stopped by an error.
    Failed {
        /// The error message.
        reason: String,
    },
}

/// Facts about one run.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    /// `runner` version.
    pub runner_version: String,
    /// The command line.
    pub command: Vec<String>,
    /// The config file as given.
    pub config_file: String,
    /// Machine name.
    pub host: String,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Worker threads used by the CPU kernels.
    pub threads: usize,
    /// `experiment.seed`.
    pub seed: u64,
    /// Dataset folder, classes and split sizes.
    pub dataset: DatasetFacts,
    /// Start, UTC, ISO 8601.
    pub started_at: String,
    /// End, UTC, ISO 8601 (when finished).
    pub finished_at: Option<String>,
    /// Wall-clock seconds of each epoch.
    pub epoch_seconds: Vec<f64>,
    /// How it ended.
    pub status: Status,
}

/// What the run trained on.
#[derive(Clone, Debug, Serialize)]
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
