//! TensorBoard event files (`output.tensorboard`), read back with TensorBoard's own reader
//! (the Python of `.ci/pyenv`): every history column at every epoch under Keras' tags, the
//! model summary as text, and a resumed run's curves without a repeated step.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_exit, fashion_subset, reference_python, runner, small_config};

/// Reads a run's event files with TensorBoard 2.21's `EventAccumulator` and prints, per folder,
/// the event file names, the number of events, the scalars (tag → [step, value]) and the text
/// summaries (tag → [step, text]).
const READ_BACK: &str = r#"
import json, os, sys
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import event_file_loader

out = {}
for folder in ("train", "validation"):
    d = os.path.join(sys.argv[1], "tensorboard", folder)
    files = sorted(f for f in os.listdir(d) if "tfevents" in f)
    events = sum(1 for f in files for _ in event_file_loader.EventFileLoader(os.path.join(d, f)).Load())
    acc = ea.EventAccumulator(d, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    try:
        text_plugin = sorted(acc.PluginTagToContent("text"))
    except KeyError:
        text_plugin = []
    out[folder] = {
        "files": files,
        "events": events,
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "texts": {t: [[e.step, e.tensor_proto.string_val[0].decode()] for e in acc.Tensors(t)] for t in tags["tensors"]},
        "text_plugin": text_plugin,
    }
print(json.dumps(out))
"#;

fn read_back(python: &Path, run: &Path) -> serde_json::Value {
    let out = Command::new(python).arg("-c").arg(READ_BACK).arg(run).output().expect("python starts");
    assert!(out.status.success(), "reading the event files failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

/// Keras' TensorBoard callback: `val_x` → `validation`, `epoch_x`; any other `x` → `train`,
/// `epoch_x`.
fn keras_tag(column: &str) -> (&'static str, String) {
    match column.strip_prefix("val_") {
        Some(name) => ("validation", format!("epoch_{name}")),
        None => ("train", format!("epoch_{column}")),
    }
}

/// Asserts that the event files of `run` hold exactly its `history.csv` (as float32), one
/// point per column and epoch, and its model summary as text.
fn assert_event_files_hold_the_history(board: &serde_json::Value, run: &Path) {
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut lines = csv.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|f| f.parse().unwrap()).collect()).collect();
    assert!(!rows.is_empty());
    assert_eq!(names[0], "epoch");
    let mut tags_per_folder = [("train", 0), ("validation", 0)];
    for (i, &name) in names.iter().enumerate().skip(1) {
        let (folder, tag) = keras_tag(name);
        tags_per_folder.iter_mut().filter(|(f, _)| *f == folder).for_each(|(_, n)| *n += 1);
        let points = board[folder]["scalars"][&tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {folder}/{tag} for column {name}: {}", board[folder]["scalars"]));
        let steps: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
        let epochs: Vec<u64> = rows.iter().map(|r| r[0] as u64).collect();
        assert_eq!(steps, epochs, "{folder}/{tag}: one point per epoch, each once");
        for (point, row) in points.iter().zip(&rows) {
            let want = f64::from(row[i] as f32);
            assert_eq!(point[1].as_f64(), Some(want), "{folder}/{tag} at epoch {}: history.csv has {}", row[0], row[i]);
        }
    }
    for (folder, n) in tags_per_folder {
        assert_eq!(board[folder]["scalars"].as_object().unwrap().len(), n, "{folder}: {}", board[folder]["scalars"]);
        let files = board[folder]["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "one event file in {folder}: {files:?}");
        assert!(files[0].as_str().unwrap().starts_with("events.out.tfevents."), "{files:?}");
    }
    // Every record read: the file version, the text (in train) and one event per epoch; a
    // record with a bad checksum would have been dropped.
    assert_eq!(board["train"]["events"], 2 + rows.len());
    assert_eq!(board["validation"]["events"], 1 + rows.len());
    for tag in ["epoch_loss", "epoch_accuracy"] {
        assert!(board["train"]["scalars"][tag].is_array() && board["validation"]["scalars"][tag].is_array(), "{tag}");
    }
    if names.contains(&"learning_rate") {
        assert!(board["train"]["scalars"]["epoch_learning_rate"].is_array());
    }

    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    let text = format!("```\n{}\n```", summary.trim_end());
    assert_eq!(board["train"]["texts"]["model_summary"], serde_json::json!([[0, text]]));
    assert_eq!(board["train"]["text_plugin"], serde_json::json!(["model_summary"]));
}

#[test]
fn a_run_writes_every_history_column_and_the_model_summary_for_tensorboard() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser", "sandal"], 40);
    std::fs::write(root.join("exp.toml"), small_config("board", &data, &root.join("results"), 3, 3, 3)).unwrap();
    let metrics = r#"train.metrics=["accuracy", "precision", "f1_score"]"#;
    let out = runner(root, &["exp.toml", "--set", "output.tensorboard=true", "--set", metrics]);
    assert_exit(&out, 0);
    let run = root.join("results/board/run-001");
    for folder in ["train", "validation"] {
        let names: Vec<String> = std::fs::read_dir(run.join("tensorboard").join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.len() == 1 && names[0].contains("tfevents"), "{folder}: {names:?}");
    }
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert!(csv.starts_with("epoch,") && csv.contains(",val_f1_score"), "{csv}");

    // Without the key there are none.
    assert_exit(&runner(root, &["exp.toml", "--set", "train.epochs=1"]), 0);
    assert!(!root.join("results/board/run-002/tensorboard").exists());

    let Some(python) = reference_python() else { return };
    let board = read_back(&python, &run);
    assert_event_files_hold_the_history(&board, &run);
}

/// Starts a run of `config` in `root` and sends it SIGINT once its first epoch is saved (the
/// manifest's epoch time is the last thing written), so that it stops in the second epoch.
fn run_and_interrupt(root: &Path, config: &Path, run: &Path) {
    let args = [config.to_str().unwrap(), "--set", "output.tensorboard=true"];
    let status = crate::util::signal_after_first_epoch(root, &args, run, "-INT");
    assert_eq!(status.code(), Some(130));
}

/// The only event file in `dir`.
fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Where each whole record of an event file starts (u64 length, 4-byte checksum, data,
/// 4-byte checksum).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        starts.push(at);
        at += 12 + len + 4;
    }
    assert_eq!(at, bytes.len());
    starts
}

#[test]
fn a_resumed_run_continues_its_tensorboard_curves_without_repeating_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    // 4,000 images: epochs long enough for the signal to land in the middle of the second.
    fashion_subset(&data, &["bag", "trouser", "sandal", "shirt"], 1000);
    let config = root.join("exp.toml");
    std::fs::write(&config, small_config("resume", &data, &root.join("results"), 5, 3, 4)).unwrap();
    let run = root.join("results/resume/run-001");
    run_and_interrupt(root, &config, &run);
    let checkpoint = std::fs::read(run.join("checkpoints/last.safetensors")).unwrap();
    let checkpoint = runner::train::checkpoint::Checkpoint::from_bytes(&checkpoint).unwrap();
    assert!(checkpoint.state.step > 0, "the checkpoint is mid-epoch: {:?}", checkpoint.state);

    // As a kill would leave them: a record torn in the middle in train/, and the last epoch
    // missing from validation/ (killed between the checkpoint and the event files).
    let (train, validation) =
        (event_file(&run.join("tensorboard/train")), event_file(&run.join("tensorboard/validation")));
    let mut bytes = std::fs::read(&train).unwrap();
    let last = bytes[*record_starts(&bytes).last().unwrap()..].to_vec();
    bytes.extend_from_slice(&last[..last.len() / 2]);
    std::fs::write(&train, bytes).unwrap();
    let bytes = std::fs::read(&validation).unwrap();
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 1 + checkpoint.state.history.epochs.len(), "the version, then one event per epoch");
    std::fs::write(&validation, &bytes[..*starts.last().unwrap()]).unwrap();

    assert_exit(&runner(root, &["resume", run.to_str().unwrap()]), 0);
    assert_eq!(event_file(&run.join("tensorboard/train")), train, "the same file goes on");
    assert_eq!(event_file(&run.join("tensorboard/validation")), validation);
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 3, "{history}");

    let Some(python) = reference_python() else { return };
    let board = read_back(&python, &run);
    assert_event_files_hold_the_history(&board, &run);
}
