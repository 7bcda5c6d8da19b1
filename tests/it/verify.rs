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

/// Two images swapped between classes keep every file name and size, all the file list's
/// fingerprint sees; the decoded pixels' fingerprint tells, so verify stops with a data error
/// naming the folder instead of a "difference" in the history that the environment does not
/// explain. A manifest from before pixels were recorded still verifies by its file list.
#[test]
fn images_changed_in_place_are_a_data_error_not_a_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    for (class, base) in [("dark", 30u32), ("light", 190)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..12u32 {
            // BMP: the file's size depends only on the image's, whatever its pixels.
            let img = image::GrayImage::from_fn(16, 16, |x, y| image::Luma([(base + (x * 7 + y * 3 + i) % 40) as u8]));
            img.save(data.join(class).join(format!("{i}.bmp"))).unwrap();
        }
    }
    std::fs::write(root.join("exp.toml"), small_config("p", &data, &root.join("results"), 5, 1, 2)).unwrap();
    assert_exit(&runner(root, &["exp.toml", "-q"]), 0);
    let run = root.join("results/p/run-001");
    let run_arg = run.to_str().unwrap();
    let (a, b) = (data.join("dark/3.bmp"), data.join("light/3.bmp"));
    let (dark, light) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(dark.len(), light.len());
    std::fs::write(&a, &light).unwrap();
    std::fs::write(&b, &dark).unwrap();

    let out = runner(root, &["verify", run_arg, "-q"]);
    assert_exit(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("have the names and sizes the run recorded but not the same pixels"), "{err}");
    assert!(err.contains(&format!("`{}`", data.display())) && err.contains("put them back"), "{err}");

    let manifest_path = run.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let fingerprint = manifest["dataset"]["fingerprint"].as_object_mut().unwrap();
    assert!(fingerprint.remove("pixels").is_some(), "recorded: {fingerprint:?}");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    assert_exit(&runner(root, &["verify", run_arg, "-q"]), 1);
}

/// A run stopped early (here: early stopping after 2 of 20 epochs) is reported with the
/// epochs it trained. An interrupted run verified over every epoch it finished has its best
/// weights compared too; one that never finished an epoch has nothing to verify.
#[test]
fn early_stopped_and_interrupted_runs_report_what_was_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let run = finished_run(tmp.path());
    let run_arg = run.to_str().unwrap();
    let manifest_path = run.join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    edited["status"] = serde_json::json!({ "state": "interrupted", "at": "epoch 4, batch 1" });
    edited.as_object_mut().unwrap().remove("best_epoch");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let out = runner(tmp.path(), &["verify", run_arg, "--epochs", "3", "-q"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("checkpoints/best.safetensors"), "{}", stdout(&out));

    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    std::fs::write(run.join("history.csv"), history.lines().next().unwrap().to_string() + "\n").unwrap();
    let out = runner(tmp.path(), &["verify", run_arg, "-q"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("has not finished an epoch, so there is nothing to verify"), "{}", stderr(&out));
    std::fs::remove_file(run.join("history.csv")).unwrap();
    assert_exit(&runner(tmp.path(), &["verify", run_arg, "-q"]), 64);

    let early = tmp.path().join("early.toml");
    let config = std::fs::read_to_string(tmp.path().join("exp.toml")).unwrap().replace("epochs = 3", "epochs = 20")
        + "\n[train.early_stopping]\nmonitor = \"val_loss\"\npatience = 0\nmin_delta = 100.0\n";
    std::fs::write(&early, config.replace("name = \"v\"", "name = \"early\"")).unwrap();
    assert_exit(&runner(tmp.path(), &["early.toml", "-q"]), 0);
    let trained =
        std::fs::read_to_string(tmp.path().join("results/early/run-001/history.csv")).unwrap().lines().count() - 1;
    assert!(trained < 20, "stopped early: {trained} epochs");
    let out = runner(tmp.path(), &["verify", "results/early/run-001", "-q"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(&format!("retrained for {trained} epochs")), "{}", stdout(&out));
}
