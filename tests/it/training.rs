//! Training that can be relied on: early stopping in a run (its decisions are tested in
//! `src/train/monitor.rs`), checkpoints, resuming after a kill or Ctrl-C to the same history,
//! the non-finite-loss guard, and using a saved run (evaluate, predict).

use std::path::{Path, PathBuf};

use runner::train::checkpoint::{Checkpoint, State};
use runner::train::monitor::Monitor;
use runner::train::{EpochRecord, History};

use crate::util::{assert_exit, fashion_subset, history_column, runner, small_config, stderr};

fn record(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        accuracy: 0.5,
        loss: 1.0,
        val_accuracy,
        val_loss,
        learning_rate: 1e-3,
        metrics: Default::default(),
    }
}

#[test]
fn a_checkpoint_reads_back_exactly() {
    let state = State {
        epoch: 3,
        step: 17,
        partial: (12.375, 40, 64),
        counter: None,
        optimizer_step: 205,
        history: History { epochs: vec![record(0, 0.1 + 0.2, 1.0 / 3.0), record(1, 1e-300, 0.7)] },
        best: Monitor { best: Some(0.1 + 0.2), best_epoch: 0, wait: 1 },
        early: Monitor::default(),
        plateau: runner::train::schedule::Plateau { lr: Some(0.1 / 3.0), best: Some(0.25), wait: 2, cooldown: 1 },
    };
    let weights = vec![
        ("conv2d/kernel".to_string(), vec![2, 1, 3, 3], (0..18).map(|i| i as f32 * 0.1 - 0.7).collect::<Vec<_>>()),
        ("conv2d/bias".to_string(), vec![2], vec![f32::MIN_POSITIVE, -0.0]),
        ("batch_normalization/moving_mean".to_string(), vec![2], vec![0.25, -1.5]),
    ];
    // Weights that are not trainable (moving averages, frozen layers) have no optimizer state.
    let slots = vec![
        ("m".to_string(), vec![vec![0.5; 18], vec![1.0, 2.0], vec![]]),
        ("v".to_string(), vec![vec![1e-8; 18], vec![3.0, 4.0], vec![]]),
    ];
    let c = Checkpoint { state, weights, slots };
    let bytes = c.to_bytes();
    assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), c);
    // A weights reader sees the documented names.
    let names: Vec<String> =
        runner::results::safetensors::from_bytes(&bytes).unwrap().into_iter().map(|t| t.0).collect();
    assert!(names.contains(&"conv2d/kernel".to_string()) && names.contains(&"optimizer/m/conv2d/kernel".to_string()));
    assert!(
        !names.iter().any(|n| n.starts_with("optimizer/") && n.ends_with("moving_mean")),
        "no optimizer tensors for a weight without state: {names:?}"
    );
    assert!(Checkpoint::from_bytes(&bytes[..bytes.len() - 4]).is_err(), "a cut file is refused");
}

/// A 4,000-image, four-class experiment in `root` with `epochs` epochs (about half a second
/// each, so a signal sent just after an epoch ends lands in the middle of the next).
fn experiment(root: &Path, epochs: usize, extra: &str) -> PathBuf {
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser", "sandal", "shirt"], 1000);
    let config = root.join("exp.toml");
    std::fs::write(&config, small_config("resume", &data, &root.join("results"), 5, epochs, 4) + extra).unwrap();
    config
}

/// Starts a run of `config` and signals it with `signal` once the first epoch is written.
fn run_and_signal(root: &Path, config: &Path, signal: &str) -> std::process::ExitStatus {
    run_and_signal_named(root, config.to_str().unwrap(), "resume", signal)
}

/// [`run_and_signal`] for the first run of experiment `name`.
fn run_and_signal_named(root: &Path, config: &str, name: &str, signal: &str) -> std::process::ExitStatus {
    let runs = root.join("results").join(name);
    let next = (1..).map(|n| runs.join(format!("run-{n:03}"))).find(|d| !d.exists()).unwrap();
    crate::util::signal_after_first_epoch(root, &[config], &next, signal)
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_history_and_weights_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = experiment(root, 3, "");
    let status = run_and_signal(root, &config, "-KILL");
    assert_eq!(status.code(), None, "killed");
    let run = root.join("results/resume/run-001");
    let manifest = String::from_utf8(file(&run, "manifest.json")).unwrap();
    assert!(manifest.contains("\"running\""), "a killed run never got to say otherwise");

    let out = runner(root, &["resume", run.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let out = runner(root, &[config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let fresh = root.join("results/resume/run-002");
    for name in ["history.csv", "history.json", "weights.safetensors", "accuracy.svg", "checkpoints/best.safetensors"] {
        assert!(file(&run, name) == file(&fresh, name), "{name} differs between the resumed and the uninterrupted run");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&file(&run, "manifest.json")).unwrap();
    assert_eq!(manifest["status"]["state"], "completed");
    assert_eq!(manifest["resumed_at"].as_array().map(Vec::len), Some(1));
    // A completed run is not resumed again.
    assert_exit(&runner(root, &["resume", run.to_str().unwrap()]), 64);
}

#[test]
fn ctrl_c_saves_a_mid_epoch_checkpoint_and_resume_gives_the_uninterrupted_history() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = experiment(root, 3, "");
    let runs = root.join("results/resume");
    let next = || (1..).map(|n| runs.join(format!("run-{n:03}"))).find(|d| !d.exists()).unwrap();
    // The signal goes out as soon as the first epoch is saved; on a loaded machine the run can
    // be descheduled between that save and its epoch-boundary check, and then stops at the
    // boundary (step 0) as a Ctrl-C in the last batch does. Such a try is run again.
    let run = (0..4)
        .find_map(|_| {
            let run = next();
            let status = run_and_signal(root, &config, "-INT");
            assert_eq!(status.code(), Some(130));
            let manifest: serde_json::Value = serde_json::from_slice(&file(&run, "manifest.json")).unwrap();
            assert_eq!(manifest["status"]["state"], "interrupted", "{manifest}");
            let checkpoint = Checkpoint::from_bytes(&file(&run, "checkpoints/last.safetensors")).unwrap();
            assert_eq!(checkpoint.state.history.epochs.len(), checkpoint.state.epoch);
            (checkpoint.state.step > 0).then_some(run)
        })
        .expect("in four tries, a Ctrl-C early in the second epoch left a mid-epoch checkpoint");

    assert_exit(&runner(root, &["resume", run.to_str().unwrap()]), 0);
    let fresh = next();
    assert_exit(&runner(root, &[config.to_str().unwrap()]), 0);
    assert!(file(&run, "history.csv") == file(&fresh, "history.csv"), "histories differ");
    assert!(file(&run, "weights.safetensors") == file(&fresh, "weights.safetensors"), "weights differ");
}

#[test]
fn a_non_finite_loss_stops_naming_the_batch_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = experiment(root, 3, "");
    assert_exit(&runner(root, &[config.to_str().unwrap(), "--set", "train.epochs=1"]), 0);
    let good = file(&root.join("results/resume/run-001"), "checkpoints/last.safetensors");
    // Resume that run with a learning rate that blows the weights up: copy it, edit its config.
    let run = root.join("results/resume/run-002");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    for name in ["manifest.json", "checkpoints/last.safetensors", "checkpoints/best.safetensors"] {
        std::fs::copy(root.join("results/resume/run-001").join(name), run.join(name)).unwrap();
    }
    let manifest = String::from_utf8(file(&run, "manifest.json")).unwrap().replace("\"completed\"", "\"running\"");
    std::fs::write(run.join("manifest.json"), manifest).unwrap();
    let config_text = String::from_utf8(file(&root.join("results/resume/run-001"), "config.toml")).unwrap();
    let config_text =
        config_text.replace("epochs = 1", "epochs = 3").replace("learning_rate = 0.001", "learning_rate = 1e38");
    std::fs::write(run.join("config.toml"), config_text).unwrap();
    let out = runner(root, &["resume", run.to_str().unwrap()]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("the training loss became") && err.contains("at epoch 2, batch "), "{err}");
    assert!(file(&run, "checkpoints/last.safetensors") == good, "the last good checkpoint is kept");
    let manifest: serde_json::Value = serde_json::from_slice(&file(&run, "manifest.json")).unwrap();
    assert_eq!(manifest["status"]["state"], "failed");
}

#[test]
fn early_stopping_ends_training_and_restores_the_best_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Watching the validation loss with mode "max": the first epoch is the best, so the
    // second (whose loss is lower) does not improve and patience 0 stops there.
    let extra = "\n[train.early_stopping]\nmonitor = \"val_loss\"\nmode = \"max\"\nrestore_best_weights = true\n\
                 [train.checkpoint]\nmonitor = \"val_loss\"\nmode = \"max\"\n";
    let config = experiment(root, 6, extra);
    let out = runner(root, &[config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let run = root.join("results/resume/run-001");
    let history = String::from_utf8(file(&run, "history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "two epochs, then stopped:\n{history}");
    let manifest: serde_json::Value = serde_json::from_slice(&file(&run, "manifest.json")).unwrap();
    assert_eq!(manifest["stopped_early_after"], 2);
    assert_eq!(manifest["best_epoch"], 1);
    let weights = runner::results::safetensors::from_bytes(&file(&run, "weights.safetensors")).unwrap();
    let best = runner::results::safetensors::from_bytes(&file(&run, "checkpoints/best.safetensors")).unwrap();
    assert_eq!(weights, best, "the final weights are the best epoch's");
    let last = Checkpoint::from_bytes(&file(&run, "checkpoints/last.safetensors")).unwrap();
    assert_ne!(last.weights, best, "and not the last epoch's");
}

#[test]
fn predict_on_the_validation_images_agrees_with_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = experiment(root, 1, "");
    assert_exit(&runner(root, &[config.to_str().unwrap(), "--set", "data.test_split=0.1"]), 0);
    let run = root.join("results/resume/run-001");
    let out = runner(root, &["evaluate", run.to_str().unwrap(), "--json"]);
    assert_exit(&out, 0);
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(metrics[0]["split"], "validation");
    assert_eq!(metrics[1]["split"], "test");
    let val_accuracy = history_column(&run, "val_accuracy")[0];
    assert_eq!(metrics[0]["accuracy"].as_f64().unwrap(), val_accuracy, "evaluate repeats the last epoch's validation");
    let test: serde_json::Value = serde_json::from_slice(&file(&run, "test_metrics.json")).unwrap();
    assert_eq!(metrics[1]["accuracy"], test["accuracy"]);

    // The validation images, by class, from split.csv.
    let split = String::from_utf8(file(&run, "split.csv")).unwrap();
    let validation: Vec<(String, String)> = split
        .lines()
        .skip(1)
        .filter_map(|l| {
            let parts: Vec<&str> = l.split(',').collect();
            (parts[2] == "validation").then(|| (parts[0].to_string(), parts[1].to_string()))
        })
        .collect();
    let mut args = vec!["predict".to_string(), run.display().to_string(), "--json".to_string()];
    args.extend(validation.iter().map(|(p, _)| p.clone()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runner(root, &args);
    assert_exit(&out, 0);
    let predictions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(predictions.len(), validation.len());
    let right = predictions.iter().zip(&validation).filter(|(p, (_, class))| p["class"] == class.as_str()).count();
    assert_eq!(right as f64 / validation.len() as f64, val_accuracy, "predict agrees with evaluate");
    let sum: f64 = predictions[0]["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to 1: {sum}");

    // A file that is not an image gets an error entry; the others are still classified.
    let not_image = root.join("notes.txt");
    std::fs::write(&not_image, "hello").unwrap();
    let out = runner(root, &["predict", run.to_str().unwrap(), not_image.to_str().unwrap(), &validation[0].0]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("notes.txt\terror: not_an_image"), "{table}");
    assert_eq!(table.lines().count(), 2);
}

#[test]
fn a_model_using_every_layer_kind_and_many_training_settings_learns_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser"], 1000);
    let config = format!(
        r#"[experiment]
name = "every"
seed = 3
[data]
path = "{}"
image_size = [28, 28]
color_mode = "grayscale"
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 3
padding = "same"
use_bias = false
kernel_initializer = "he_normal"
[[model.layers]]
type = "batch_normalization"
[[model.layers]]
type = "activation"
activation = "gelu"
[[model.layers]]
type = "average_pooling2d"
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 3
dilation_rate = 2
activation = "elu"
[[model.layers]]
type = "max_pooling2d"
[[model.layers]]
type = "leaky_relu"
[[model.layers]]
type = "global_average_pooling2d"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 8
activation = "tanh"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"
[train]
loss = "binary_crossentropy"
metrics = ["accuracy", "precision", "recall", "f1_score"]
label_smoothing = 0.1
epochs = 3
batch_size = 16
optimizer = "sgd"
momentum = 0.9
nesterov = true
global_clipnorm = 5.0
learning_rate = 0.05
[train.lr_schedule]
type = "reduce_on_plateau"
monitor = "val_f1_score"
patience = 1
factor = 0.5
[output]
dir = "{}"
"#,
        data.display(),
        root.join("results").display()
    );
    std::fs::write(root.join("every.toml"), config).unwrap();
    let out = runner(root, &["every.toml"]);
    assert_exit(&out, 0);
    let run = root.join("results/every/run-001");
    let history = String::from_utf8(file(&run, "history.csv")).unwrap();
    assert_eq!(
        history.lines().next().unwrap(),
        "epoch,accuracy,f1_score,learning_rate,loss,precision,recall,val_accuracy,val_f1_score,val_loss,val_precision,val_recall",
        "Keras' CSVLogger columns, sorted"
    );
    let last: Vec<f64> = history.lines().last().unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    assert!(last[6] > 0.8 && last[7] > 0.8, "bags and trousers are told apart: {history}");
    let summary = String::from_utf8(file(&run, "summary.txt")).unwrap();
    assert!(summary.contains("Non-trainable params: 16"), "batch norm's moving averages:\n{summary}");
    let weights = runner::results::safetensors::from_bytes(&file(&run, "weights.safetensors")).unwrap();
    let moving = weights.iter().find(|t| t.0 == "batch_normalization/moving_variance").expect("saved with the weights");
    assert!(moving.2.iter().any(|&v| v != 1.0), "the moving variance moved");

    // Stopped after the first epoch and resumed: the same history and weights.
    let status = run_and_signal_named(root, "every.toml", "every", "-INT");
    assert_eq!(status.code(), Some(130));
    assert_exit(&runner(root, &["resume", root.join("results/every/run-002").to_str().unwrap()]), 0);
    for name in ["history.csv", "weights.safetensors"] {
        assert!(file(&run, name) == file(&root.join("results/every/run-002"), name), "{name} differs after resume");
    }
}

#[test]
fn devices_are_named_cpu_cuda_cuda_n_or_auto() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = experiment(root, 1, "");
    let config = config.to_str().unwrap();
    let out = runner(root, &["check", config, "--set", "experiment.device=\"gpu\""]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("expected `cpu`, `cuda`, `cuda:N` (such as `cuda:1`) or `auto`"), "{}", stderr(&out));
    if cfg!(not(feature = "cuda")) {
        let out = runner(root, &["check", config, "--set", "experiment.device=\"cuda:1\""]);
        assert_exit(&out, 78);
        assert!(stderr(&out).contains("built without CUDA"), "{}", stderr(&out));
    }
    let out = runner(root, &[config, "--set", "experiment.device=\"auto\"", "--set", "train.epochs=1"]);
    assert_exit(&out, 0);
    let run = root.join("results/resume/run-001");
    let manifest: serde_json::Value = serde_json::from_slice(&file(&run, "manifest.json")).unwrap();
    // The test machines have no GPU: `auto` computes on the CPU and the manifest says why.
    assert_eq!(manifest["device"], "cpu", "the device actually used");
    let note = manifest["device_note"].as_str().unwrap_or_default();
    assert!(note.starts_with("no usable GPU: "), "{note}");
    assert!(stderr(&out).contains("device auto: no usable GPU"), "{}", stderr(&out));
    let out = runner(root, &["check", config, "--set", "experiment.device=\"auto\""]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("Device: auto → cpu (no usable GPU: "), "{report}");
    assert!(String::from_utf8(file(&run, "config.toml")).unwrap().contains("device = \"auto\""));
}

#[test]
fn the_history_records_each_epochs_learning_rate_and_charts_it_when_a_schedule_changes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["trouser", "bag"], 16);
    let results = tmp.path().join("results");
    let config = small_config("lr", &data, &results, 1, 4, 2)
        .replace("batch_size = 16\n", "batch_size = 16\nlearning_rate = 0.01\n")
        + "\n[train.lr_schedule]\ntype = \"step_decay\"\nevery = 2\nfactor = 0.5\n";
    std::fs::write(tmp.path().join("lr.toml"), config).unwrap();
    assert_exit(&runner(tmp.path(), &["lr.toml", "-q"]), 0);
    let run = results.join("lr/run-001");
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == "learning_rate").expect("a learning_rate column");
    let rates: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap().parse().unwrap()).collect();
    assert_eq!(rates, [0.01, 0.01, 0.005, 0.005]);
    assert!(run.join("learning_rate.svg").is_file(), "a schedule's rates are charted");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    assert_eq!(json["learning_rate"], serde_json::json!([0.01, 0.01, 0.005, 0.005]));
}
