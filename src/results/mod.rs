//! The run folder: `<output.dir>/<experiment>/run-NNN/`, never reused, every file written
//! atomically (temporary file + rename), so an interrupted run never leaves a torn file.
//!
//! Every file runner reads goes through `bounded`, with a size limit for what it is.
//!
//! Deterministic artifacts (resolved config, history, summary, SVG plots, weights) hold no
//! timestamps; everything that varies between identical runs goes into `manifest.json`.

pub mod bounded;
pub mod manifest;
pub mod protobuf;
pub mod safetensors;
pub mod tensorboard;

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File names inside a run folder.
pub mod files {
    /// The fully resolved config (every default filled in).
    pub const CONFIG: &str = "config.toml";
    /// Keras CSVLogger columns.
    pub const HISTORY_CSV: &str = "history.csv";
    /// Keras `History.history`.
    pub const HISTORY_JSON: &str = "history.json";
    /// Keras-style `model.summary()`.
    pub const SUMMARY: &str = "summary.txt";
    /// Trained weights, safetensors format.
    pub const WEIGHTS: &str = "weights.safetensors";
    /// Checkpoint after the last finished epoch (or at Ctrl-C): weights, optimizer state,
    /// position and history (see `train::checkpoint`).
    pub const LAST_CHECKPOINT: &str = "checkpoints/last.safetensors";
    /// Weights of the best epoch by `train.checkpoint.monitor`.
    pub const BEST_WEIGHTS: &str = "checkpoints/best.safetensors";
    /// Version, command, host, timings, status.
    pub const MANIFEST: &str = "manifest.json";
    /// Files not used, with the reason: `path,reason,detail`.
    pub const QUARANTINE: &str = "quarantine.csv";
    /// Every used file with its class and split: `path,class,split`.
    pub const SPLIT: &str = "split.csv";
    /// Loss and accuracy on the test split, when there is one.
    pub const TEST_METRICS: &str = "test_metrics.json";
    /// Stem of the sample-image grid (`.png`, `.svg`).
    pub const SAMPLES: &str = "samples";
    /// Stem of the augmentation preview (`.png`, `.svg`), when `[augment]` is set.
    pub const AUGMENTATIONS: &str = "augmentations";
    /// The self-contained HTML report.
    pub const REPORT: &str = "report.html";
    /// Stem of the validation confusion matrix (`.png`, `.svg`).
    pub const CONFUSION: &str = "confusion_matrix";
    /// Stem of the test confusion matrix (`.png`, `.svg`), when there is a test split.
    pub const TEST_CONFUSION: &str = "confusion_matrix_test";
    /// Stem of the grid of validation predictions (`.png`, `.svg`).
    pub const PREDICTIONS: &str = "predictions";
    /// Stem of the bar chart of images per class and split (`.png`, `.svg`).
    pub const CLASS_COUNTS: &str = "class_counts";
    /// TensorBoard's log folder, with `train/` and `validation/` event files (when
    /// `output.tensorboard` is set).
    pub const TENSORBOARD: &str = "tensorboard";

    /// The per-class files of one split (`train::per_class`).
    pub struct PerClass {
        /// Precision, recall, F1, support, ROC area and average precision per class, then
        /// the macro and weighted averages and the accuracy, as scikit-learn's
        /// `classification_report` lays them out.
        pub csv: &'static str,
        /// The same, with the headline `auc` and `pr_auc` and the reliability diagram's bins.
        pub json: &'static str,
        /// Stem of the ROC curves (`.png`, `.svg`).
        pub roc: &'static str,
        /// Stem of the precision-recall curves (`.png`, `.svg`).
        pub precision_recall: &'static str,
        /// Stem of the reliability diagram (`.png`, `.svg`).
        pub calibration: &'static str,
    }

    /// The validation split's per-class files, with the final weights.
    pub const PER_CLASS: PerClass = PerClass {
        csv: "per_class.csv",
        json: "per_class.json",
        roc: "roc",
        precision_recall: "precision_recall",
        calibration: "calibration",
    };

    /// The test split's per-class files, with the best epoch's weights (when there is a test
    /// split).
    pub const TEST_PER_CLASS: PerClass = PerClass {
        csv: "per_class_test.csv",
        json: "per_class_test.json",
        roc: "roc_test",
        precision_recall: "precision_recall_test",
        calibration: "calibration_test",
    };
}

/// A run's folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// `<output.dir>/<experiment>/run-NNN`.
    pub path: PathBuf,
}

impl RunDir {
    /// Creates the next free `run-NNN` under `root/experiment`. Creation is atomic, so two
    /// runs started at once never share a folder.
    pub fn create(root: &Path, experiment: &str) -> Result<Self> {
        Self::create_numbered(root, experiment, "run")
    }

    /// Creates the next free `<prefix>-NNN` under `root/group`.
    pub fn create_numbered(root: &Path, group: &str, prefix: &str) -> Result<Self> {
        let parent = root.join(group);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating results folder", &parent, e))?;
        let mut n = next_free(&parent, prefix);
        loop {
            let path = parent.join(format!("{prefix}-{n:03}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(Error::io("creating run folder", &path, e)),
            }
        }
    }

    /// Writes `name` inside the run folder atomically.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> Result<()> {
        write_atomic(&self.path.join(name), bytes.as_ref())
    }
}

/// A CSV table as RFC 4180 has it, written by the `csv` crate: a field is quoted only when it
/// holds a comma, a quote or a line break (so plain names and numbers are written as they are),
/// and every row ends in `\n`. Fields are bytes, so a path that is not UTF-8 is kept exactly.
pub fn csv_table<R, F>(rows: impl IntoIterator<Item = R>) -> Vec<u8>
where
    R: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    for row in rows {
        writer.write_record(row).expect("a CSV row written to memory");
    }
    writer.into_inner().expect("a CSV table written to memory")
}

/// `<experiment>/<run id>`: the last two components of a run folder's path, how runs are
/// named in logs, leaderboards and reports.
pub fn run_name(dir: &Path) -> String {
    let parts: Vec<_> = dir.iter().rev().take(2).map(|c| c.to_string_lossy()).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// One past the highest existing `<prefix>-NNN`.
fn next_free(parent: &Path, prefix: &str) -> usize {
    std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.strip_prefix('-')?.parse::<usize>().ok())
        .max()
        .map_or(1, |n| n + 1)
}

/// A temporary name beside `path` (so a rename onto `path` stays on one filesystem), unique
/// to this process and call: two writers of the same file, in one process or in several
/// trials sharing a folder, never write into each other's temporary file.
pub fn temporary_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through(&temporary_path(path), path, bytes)
}

/// Writes `bytes` to `tmp` (a name of the caller's choosing in `path`'s folder), syncs it,
/// and renames it over `path`; the temporary file is removed when that fails.
pub fn write_through(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let result = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        Error::io("writing", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_rfc_4180_needs_it() {
        let field = |s: &str| String::from_utf8(csv_table([[s, "x"]])).unwrap();
        assert_eq!(field("cats/a b.png"), "cats/a b.png,x\n");
        assert_eq!(field("0.30000000000000004"), "0.30000000000000004,x\n");
        assert_eq!(field("épée/ü.png"), "épée/ü.png,x\n");
        assert_eq!(field(""), ",x\n");
        assert_eq!(field("a,b"), "\"a,b\",x\n");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\",x\n");
        assert_eq!(field("two\nlines"), "\"two\nlines\",x\n");
        assert_eq!(field("carriage\rreturn"), "\"carriage\rreturn\",x\n");
        assert_eq!(field("\""), "\"\"\"\",x\n");
        assert_eq!(csv_table([[&b"not utf-8 \xff"[..]]]), b"not utf-8 \xff\n");
    }

    #[test]
    fn run_name_is_the_experiment_and_run_folder() {
        assert_eq!(run_name(Path::new("/tmp/results/cats/run-003")), "cats/run-003");
        assert_eq!(run_name(Path::new("results/sweep/trial-7f3a/")), "sweep/trial-7f3a");
    }

    #[test]
    fn run_folders_are_numbered_one_past_the_highest_and_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = RunDir::create(tmp.path(), "exp").unwrap();
        assert!(a.path.ends_with("exp/run-001"), "{}", a.path.display());
        for name in ["run-007", "run-x", "trial-042", "run-"] {
            std::fs::create_dir(tmp.path().join("exp").join(name)).unwrap();
        }
        assert!(RunDir::create(tmp.path(), "exp").unwrap().path.ends_with("exp/run-008"));
        assert!(RunDir::create_numbered(tmp.path(), "exp", "trial").unwrap().path.ends_with("exp/trial-043"));
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("history.csv");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["history.csv"]);
        assert!(write_atomic(&tmp.path().join("missing/x"), b"x").is_err());
    }
}
