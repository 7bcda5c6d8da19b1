//! `runner verify`: a run trained again in a scratch folder is byte-identical, and when the
//! run's files say otherwise the first difference is named.

use std::path::Path;

use crate::util::{assert_exit, fashion_subset, runner, small_config, stderr};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished three-epoch run on a small two-class subset; returns its folder.
fn finished_run(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    fashion_subset(&data, &["trouser", "bag"], 24);
    std::fs::write(root.join("exp.toml"), small_config("v", &data, &root.join("results"), 5, 3, 2)).unwrap();
    assert_exit(&runner(root, &["exp.toml", "-q"]), 0);
    root.join("results/v/run-001")
}

#[test]
fn a_rerun_is_identical_and_a_changed_history_or_weight_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = finished_run(tmp.path());
    let run_arg = run.to_str().unwrap();

    let out = runner(tmp.path(), &["verify", run_arg, "-q"]);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(said.starts_with("identical: ") && said.contains("retrained for 3 epochs"), "{said}");
    for file in ["history.csv", "weights.safetensors", "checkpoints/best.safetensors", "pictures"] {
        assert!(said.contains(file), "{file} is compared: {said}");
    }
    let out = runner(tmp.path(), &["verify", run_arg, "--epochs", "2", "-q"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("the first 2 rows of history.csv"), "{}", stdout(&out));
    assert_exit(&runner(tmp.path(), &["verify", run_arg, "--epochs", "4", "-q"]), 64);

    // A history value changed in the second epoch: that epoch and column are named, with the
    // environment (here the same) and exit 1.
    let csv_path = run.join("history.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|c| *c == "val_loss").unwrap();
    let mut fields: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    let recorded = fields[col].clone();
    fields[col] = "0.123".into();
    lines[2] = fields.join(",");
    std::fs::write(&csv_path, lines.join("\n") + "\n").unwrap();
    let out = runner(tmp.path(), &["verify", run_arg, "--epochs", "2", "-q"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("epoch 2: val_loss is 0.123 in the run and {recorded} in the rerun")), "{err}");
    assert!(err.contains("The environment is the same"), "{err}");
    std::fs::write(&csv_path, csv).unwrap();

    // One weight changed: the tensor and element are named; a different recorded kernel is
    // shown as the likely cause.
    let weights_path = run.join("weights.safetensors");
    let mut weights = std::fs::read(&weights_path).unwrap();
    let last = weights.len() - 4;
    let value = f32::from_le_bytes(weights[last..].try_into().unwrap());
    weights[last..].copy_from_slice(&(value + 0.5).to_le_bytes());
    std::fs::write(&weights_path, &weights).unwrap();
    let manifest_path = run.join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    edited["kernel"] = serde_json::json!("a kernel of another CPU");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let out = runner(tmp.path(), &["verify", run_arg, "-q"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("`weights.safetensors`: tensor `dense_1/bias` differs, first at element 1"), "{err}");
    assert!(err.contains("matrix kernel: a kernel of another CPU in the run"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn a_sweep_trial_is_verified_like_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["trouser", "bag"], 16);
    let sweep = small_config("s", &data, &root.join("results"), 3, 1, 2)
        + "\n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n";
    std::fs::write(root.join("sweep.toml"), sweep).unwrap();
    assert_exit(&runner(root, &["sweep", "sweep.toml", "-q"]), 0);
    let sweep_dir = root.join("results/sweeps/s");
    let trial = std::fs::read_dir(&sweep_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("trial-"))
        .unwrap();
    let out = runner(root, &["verify", trial.to_str().unwrap(), "-q"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("identical: "), "{}", stdout(&out));
}
