//! Warm starts (`[model] weights`) and frozen layers (`trainable = false`): training starts
//! from a file's weights, every mismatch is reported before the data is read, frozen weights
//! do not move, and a run with them resumes and verifies.

use std::path::{Path, PathBuf};

use runner::results::safetensors::{self, Named, TensorData};

use crate::util::{assert_exit, fashion_subset, runner, small_config, stderr};

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

fn tensors(dir: &Path, name: &str) -> Vec<Named> {
    safetensors::from_bytes(&file(dir, name)).unwrap()
}

fn tensor<'a>(all: &'a [Named], name: &str) -> &'a [f32] {
    &all.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("no tensor {name}")).2
}

/// The small two-class model of `util::small_config` on 200 images per class, with `edit`
/// applied to its text, written as `<name>.toml` in `root`.
fn config(root: &Path, name: &str, epochs: usize, edit: impl Fn(String) -> String) -> PathBuf {
    let data = root.join("data");
    if !data.exists() {
        fashion_subset(&data, &["bag", "trouser"], 200);
    }
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, edit(small_config(name, &data, &root.join("results"), 7, epochs, 2))).unwrap();
    path
}

fn train(root: &Path, config: &Path) -> PathBuf {
    let out = runner(root, &[config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let name = config.file_stem().unwrap().to_str().unwrap();
    root.join("results").join(name).join("run-001")
}

/// `[model] weights = "<path>"` added to a config's text.
fn warm(path: &Path) -> impl Fn(String) -> String + '_ {
    move |text| text.replacen("[[model.layers]]", &format!("[model]\nweights = {:?}\n\n[[model.layers]]", path), 1)
}

#[test]
fn a_warm_start_begins_at_the_source_runs_weights_and_records_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let source = train(root, &config(root, "source", 2, |t| t));
    // A learning rate far below f32's resolution of the weights: training leaves them where
    // they start, so the one epoch evaluates the weights it started from.
    let still = |t: String| t.replace("batch_size = 16", "batch_size = 16\nlearning_rate = 1e-30");
    let weights = source.join("weights.safetensors");
    let warm_run = train(root, &config(root, "warm", 1, |t| still(warm(&weights)(t))));
    let cold_run = train(root, &config(root, "cold", 1, still));
    let last_val = |run: &Path| crate::util::history_column(run, "val_loss").last().copied().unwrap();
    assert_eq!(last_val(&warm_run), last_val(&source), "the warm start evaluates as the source run ended");
    assert_ne!(last_val(&cold_run), last_val(&source), "a seeded start does not");

    let manifest: serde_json::Value = serde_json::from_slice(&file(&warm_run, "manifest.json")).unwrap();
    let hash = format!("{:016x}", runner::hash::fnv1a(&file(&source, "weights.safetensors")));
    assert_eq!(manifest["initial_weights"]["path"], weights.display().to_string());
    assert_eq!(manifest["initial_weights"]["fnv1a"], hash);
    let cold: serde_json::Value = serde_json::from_slice(&file(&cold_run, "manifest.json")).unwrap();
    assert!(cold.get("initial_weights").is_none(), "a seeded run records none: {cold}");

    // A checkpoint starts the same way (its optimizer state left out).
    let last = source.join("checkpoints/last.safetensors");
    let from_checkpoint = train(root, &config(root, "from_checkpoint", 1, |t| still(warm(&last)(t))));
    assert_eq!(last_val(&from_checkpoint), last_val(&source));

    // verify trains it again from the same file; a changed file is named.
    assert_exit(&runner(root, &["verify", warm_run.to_str().unwrap()]), 0);
    let mut changed = tensors(&source, "weights.safetensors");
    changed[0].2[0] += 1.0;
    let data: Vec<TensorData> = changed.iter().map(|(name, dims, values)| TensorData { name, dims, values }).collect();
    std::fs::write(&weights, safetensors::to_bytes(&data, &Default::default())).unwrap();
    let out = runner(root, &["verify", warm_run.to_str().unwrap()]);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("has changed since the run started from it"), "{}", stderr(&out));
}

#[test]
fn every_mismatch_is_reported_at_once_before_the_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let write = |name: &str, tensors: &[TensorData]| {
        let path = root.join(name);
        std::fs::write(&path, safetensors::to_bytes(tensors, &Default::default())).unwrap();
        path
    };
    let kernel = vec![0.0f32; 8 * 9];
    // conv2d/kernel in Keras' layout (wrong shape), an extra tensor, and everything else missing.
    let bad = write(
        "bad.safetensors",
        &[
            TensorData { name: "conv2d/kernel", dims: &[3, 3, 1, 8], values: &kernel },
            TensorData { name: "dense_9/bias", dims: &[2], values: &[0.0, 0.0] },
        ],
    );
    // The dataset does not exist: the weights are checked first.
    let cfg = config(root, "bad", 1, |t| warm(&bad)(t).replace(&root.join("data").display().to_string(), "nowhere"));
    for args in [vec!["check", cfg.to_str().unwrap()], vec![cfg.to_str().unwrap()]] {
        let out = runner(root, &args);
        assert_exit(&out, 78);
        let err = stderr(&out);
        assert!(err.contains("bad.toml:12:11"), "the error points at model.weights: {err}");
        assert!(err.contains("do not fit the model (7 problems)"), "{err}");
        assert!(err.contains("wrong shape `conv2d/kernel`: [3, 3, 1, 8] in the file, the model needs [8, 1, 3, 3]"));
        assert!(err.contains("missing `conv2d/bias` [8]") && err.contains("missing `dense_1/kernel` [32, 2]"), "{err}");
        assert!(err.contains("extra `dense_9/bias` [2]"), "{err}");
        assert!(!err.contains("nowhere"), "the data is not looked at: {err}");
    }
    assert!(!root.join("results").exists(), "no run folder is made");

    let missing = config(root, "missing", 1, warm(&root.join("no.safetensors")));
    let out = runner(root, &["check", missing.to_str().unwrap()]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("no.safetensors` does not exist"), "{}", stderr(&out));

    // Half precision is refused by name.
    let half = root.join("half.safetensors");
    let bytes = file(root, "bad.safetensors");
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let head = std::str::from_utf8(&bytes[8..8 + len]).unwrap().replacen("\"F32\"", "\"F16\"", 1);
    std::fs::write(&half, [&bytes[..8], head.as_bytes(), &bytes[8 + len..]].concat()).unwrap();
    let out = runner(root, &["check", config(root, "half", 1, warm(&half)).to_str().unwrap()]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("is F16") && stderr(&out).contains("float32"), "{}", stderr(&out));
}

/// The conv layer and a batch normalisation after it, frozen or not.
fn with_frozen_base(frozen: bool) -> impl Fn(String) -> String {
    move |text| {
        let flag = if frozen { "trainable = false\n" } else { "" };
        text.replacen("kernel_size = 3\n", &format!("kernel_size = 3\n{flag}"), 1).replacen(
            "[[model.layers]]\ntype = \"max_pooling2d\"",
            &format!(
                "[[model.layers]]\ntype = \"batch_normalization\"\n{flag}\n[[model.layers]]\ntype = \"max_pooling2d\""
            ),
            1,
        )
    }
}

#[test]
fn frozen_layers_keep_their_weights_and_statistics_while_the_others_train() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let base = train(root, &config(root, "base", 1, with_frozen_base(false)));
    let weights = base.join("weights.safetensors");
    let tuned = train(root, &config(root, "tuned", 2, |t| warm(&weights)(with_frozen_base(true)(t))));
    let (before, after) = (tensors(&base, "weights.safetensors"), tensors(&tuned, "weights.safetensors"));
    for name in [
        "conv2d/kernel",
        "conv2d/bias",
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
    ] {
        assert_eq!(tensor(&before, name), tensor(&after, name), "{name} is frozen");
    }
    for name in ["dense/kernel", "dense/bias", "dense_1/kernel"] {
        assert_ne!(tensor(&before, name), tensor(&after, name), "{name} trains");
    }
    // Keras' counts: the conv (8·9 + 8) and all of batch normalisation (4·8) are frozen.
    let summary = String::from_utf8(file(&tuned, "summary.txt")).unwrap();
    assert!(summary.contains("Non-trainable params: 112\n"), "{summary}");
    let unfrozen = String::from_utf8(file(&base, "summary.txt")).unwrap();
    assert!(unfrozen.contains("Non-trainable params: 16\n"), "only the moving averages: {unfrozen}");
    // Frozen weights have no optimizer state.
    let checkpoint = tensors(&tuned, "checkpoints/last.safetensors");
    let state: Vec<&str> = checkpoint.iter().map(|t| t.0.as_str()).filter(|n| n.starts_with("optimizer/")).collect();
    assert!(state.iter().all(|n| n.contains("/dense")), "{state:?}");
    assert!(state.contains(&"optimizer/m/dense/kernel"), "{state:?}");
}

#[test]
fn a_run_with_a_frozen_layer_killed_mid_epoch_resumes_to_the_uninterrupted_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser", "sandal", "shirt"], 1000);
    let cfg = root.join("frozen.toml");
    let text = small_config("frozen", &data, &root.join("results"), 5, 3, 4);
    std::fs::write(&cfg, with_frozen_base(true)(text)).unwrap();
    let run = root.join("results/frozen/run-001");
    let status = crate::util::signal_after_first_epoch(root, &[cfg.to_str().unwrap()], &run, "-KILL");
    assert_eq!(status.code(), None, "killed");
    assert_exit(&runner(root, &["resume", run.to_str().unwrap()]), 0);
    let fresh = train(root, &cfg).with_file_name("run-002");
    for name in ["history.csv", "weights.safetensors", "checkpoints/best.safetensors", "checkpoints/last.safetensors"] {
        assert!(file(&run, name) == file(&fresh, name), "{name} differs between the resumed and the uninterrupted run");
    }
}
