//! `runner export`: a run's network as ONNX. onnxruntime (the reference Python of `.ci/pyenv`)
//! runs the exported model on the run's validation images, decoded and scaled by runner's own
//! decoder, and must give the probabilities and classes `runner predict --json` gives: for the
//! baseline model, and for models using every layer kind and activation with a softmax and a
//! one-unit sigmoid head.

use std::path::{Path, PathBuf};
use std::process::Command;

use runner::data::ColorMode;

use crate::util::{assert_exit, fashion_subset, reference_python, runner, small_config, stderr, striped_jpegs};

/// Loads the model with onnxruntime, runs it on the float32 NCHW batch in a file and prints
/// its input, output, metadata and the probabilities as JSON.
const ONNXRUNTIME: &str = r#"
import json, sys
import numpy as np
import onnxruntime as ort
model, batch = sys.argv[1], sys.argv[2]
n, c, h, w = map(int, sys.argv[3:7])
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
x = np.fromfile(batch, dtype="<f4").reshape(n, c, h, w)
i, o = session.get_inputs()[0], session.get_outputs()[0]
p = session.run([o.name], {i.name: x})[0]
meta = session.get_modelmeta()
print(json.dumps({
    "input": [i.name, i.type, i.shape], "output": [o.name, o.type, o.shape],
    "metadata": meta.custom_metadata_map, "producer": meta.producer_name, "graph": meta.graph_name,
    "doc": meta.description, "probabilities": p.astype(float).tolist(),
}))
"#;

/// The validation files of a run, from its split.csv.
fn validation_files(run: &Path) -> Vec<String> {
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    split
        .lines()
        .skip(1)
        .filter_map(|l| {
            let parts: Vec<&str> = l.split(',').collect();
            (parts[2] == "validation").then(|| parts[0].to_string())
        })
        .collect()
}

/// Trains `config` (written to `root/<name>.toml`) and returns its run folder.
fn train(root: &Path, name: &str, config: &str) -> PathBuf {
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    assert_exit(&runner(root, &[path.to_str().unwrap()]), 0);
    root.join("results").join(name).join("run-001")
}

/// Exports `run` with `args`, runs the model with onnxruntime on the run's validation images
/// and checks it against `runner predict --json` on the same files: the model's contract
/// (names, shapes, metadata), every probability within 1e-5 and the same class. Returns the
/// largest difference.
fn export_and_compare(root: &Path, run: &Path, args: &[&str], size: [usize; 2], mode: ColorMode) -> f32 {
    let python = reference_python().expect("checked by the caller");
    let onnx = match args.iter().position(|a| *a == "-o") {
        Some(i) => root.join(args[i + 1]),
        None => run.join("model.onnx"),
    };
    let mut export = vec!["export", run.to_str().unwrap()];
    export.extend(args);
    let out = runner(root, &export);
    assert_exit(&out, 0);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let [h, w] = size;
    let c = mode.channels();
    assert!(line.starts_with(&format!("wrote {}", onnx.display())), "{line}");
    assert!(line.contains(&format!("input `image` float32 [N, {c}, {h}, {w}] NCHW")), "{line}");

    // The validation images as the network sees them, one float32 NCHW batch.
    let files = validation_files(run);
    assert!(files.len() >= 8, "{} validation images", files.len());
    let pixels: Vec<u8> = files
        .iter()
        .flat_map(|f| {
            runner::data::decode::decode(&root.join(f), size, mode, Default::default(), Default::default())
                .expect("a usable image")
        })
        .collect();
    let batch: Vec<u8> = pixels.iter().flat_map(|&p| (f32::from(p) / 255.0).to_le_bytes()).collect();
    let batch_path = root.join("batch.f32");
    std::fs::write(&batch_path, batch).unwrap();
    let ort = Command::new(&python)
        .args(["-c", ONNXRUNTIME, onnx.to_str().unwrap(), batch_path.to_str().unwrap()])
        .args([files.len(), c, h, w].map(|n| n.to_string()))
        .output()
        .unwrap();
    assert!(ort.status.success(), "onnxruntime failed:\n{}", stderr(&ort));
    let ort: serde_json::Value = serde_json::from_slice(&ort.stdout).unwrap();

    // The contract.
    let manifest = crate::util::manifest(&run);
    let classes: Vec<String> = serde_json::from_value(manifest["dataset"]["classes"].clone()).unwrap();
    assert_eq!(ort["input"], serde_json::json!(["image", "tensor(float)", ["N", c, h, w]]));
    assert_eq!(ort["output"], serde_json::json!(["probabilities", "tensor(float)", ["N", classes.len()]]));
    assert_eq!(ort["producer"], "runner");
    let meta = &ort["metadata"];
    let listed: Vec<String> = serde_json::from_str(meta["classes"].as_str().unwrap()).unwrap();
    assert_eq!(listed, classes);
    let config = std::fs::read(run.join("config.toml")).unwrap();
    assert_eq!(meta["config_fnv1a64"], format!("{:016x}", runner::hash::fnv1a(&config)));
    assert_eq!(meta["image_size"], format!("[{h}, {w}]"));
    assert_eq!(meta["color_mode"], runner::config::serde_name(mode));
    assert_eq!(meta["input_layout"], "NCHW");
    assert_eq!(meta["runner_version"], env!("CARGO_PKG_VERSION"));
    assert!(ort["doc"].as_str().unwrap().contains("divided by 255"), "{}", ort["doc"]);

    // The numbers, against `runner predict --json` on the same files.
    let mut predict = vec!["predict", run.to_str().unwrap(), "--json"];
    predict.extend(files.iter().map(String::as_str));
    let out = runner(root, &predict);
    assert_exit(&out, 0);
    let predictions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rows = ort["probabilities"].as_array().unwrap();
    assert_eq!((predictions.len(), rows.len()), (files.len(), files.len()));
    let mut max_diff = 0f32;
    for (i, (p, row)) in predictions.iter().zip(rows).enumerate() {
        let onnx: Vec<f32> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let runner: Vec<f32> =
            classes.iter().map(|c| p["probabilities"][c].as_f64().expect("every class") as f32).collect();
        for (a, b) in onnx.iter().zip(&runner) {
            max_diff = max_diff.max((a - b).abs());
        }
        let best = onnx.iter().enumerate().fold(0, |best, (k, &v)| if v > onnx[best] { k } else { best });
        assert_eq!(p["class"], classes[best].as_str(), "image {i} ({}): onnx {onnx:?}, runner {runner:?}", files[i]);
    }
    eprintln!("{}: {} images, largest difference from runner predict {max_diff:e}", onnx.display(), files.len());
    assert!(max_diff <= 1e-5, "onnxruntime and runner predict differ by {max_diff}");
    max_diff
}

#[test]
fn the_baseline_model_in_onnxruntime_gives_the_probabilities_of_runner_predict() {
    if reference_python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "sneaker", "trouser"], 40);
    let run = train(root, "baseline", &small_config("baseline", &data, &root.join("results"), 1, 1, 3));
    export_and_compare(root, &run, &[], [28, 28], ColorMode::Grayscale);
    // After one epoch the best epoch is the last, so its export predicts the same.
    export_and_compare(root, &run, &["-o", "best.onnx", "--weights", "best"], [28, 28], ColorMode::Grayscale);
}

/// Every layer kind and activation, with a softmax head: "same" convolutions with stride 2
/// and asymmetric padding, dilation, both poolings with "same" padding on odd sizes (the
/// average's last windows partly outside the image), batch normalisation of images and of
/// vectors with moved averages, dropout, flatten of an 8-channel image (channel order), and an
/// `activation` layer as the head.
#[test]
fn every_layer_kind_with_a_softmax_head_in_onnxruntime_gives_runner_predicts_probabilities() {
    if reference_python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "sneaker", "trouser"], 32);
    let layers = r#"
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
dilation_rate = 2
activation = "tanh"
[[model.layers]]
type = "batch_normalization"
momentum = 0.5
[[model.layers]]
type = "leaky_relu"
alpha = 0.1
[[model.layers]]
type = "average_pooling2d"
padding = "same"
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 3
strides = 2
padding = "same"
activation = "gelu"
[[model.layers]]
type = "dropout"
rate = 0.3
[[model.layers]]
type = "max_pooling2d"
pool_size = 3
strides = 1
padding = "same"
[[model.layers]]
type = "activation"
activation = "elu"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 16
activation = "leaky_relu"
[[model.layers]]
type = "batch_normalization"
momentum = 0.5
epsilon = 0.01
[[model.layers]]
type = "dense"
units = 12
activation = "relu"
[[model.layers]]
type = "dense"
units = 3
[[model.layers]]
type = "activation"
activation = "softmax"
"#;
    let config = format!(
        r#"[experiment]
name = "softmax"
seed = 5
[data]
path = "{}"
image_size = [19, 19]
color_mode = "grayscale"
validation_split = 0.25
{layers}
[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 8
[output]
dir = "{}"
"#,
        data.display(),
        root.join("results").display()
    );
    let run = train(root, "softmax", &config);
    export_and_compare(root, &run, &["-o", "softmax.onnx"], [19, 19], ColorMode::Grayscale);
}

/// The rest, on RGB images with a one-unit sigmoid head (exported as both classes'
/// probabilities, as `runner predict` reports them): a strided valid convolution with a ReLU
/// and the max pooling runner folds into it, a non-square dilated "same" kernel without bias
/// and a sigmoid, a stride-1 average pooling, global average pooling, ELU and dropout.
#[test]
fn every_layer_kind_with_a_sigmoid_head_in_onnxruntime_gives_runner_predicts_probabilities() {
    if reference_python().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    striped_jpegs(&data, 24, (24, 24));
    let layers = r#"
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
strides = 2
activation = "relu"
[[model.layers]]
type = "max_pooling2d"
padding = "same"
[[model.layers]]
type = "conv2d"
filters = 6
kernel_size = [3, 2]
dilation_rate = 2
padding = "same"
use_bias = false
activation = "sigmoid"
[[model.layers]]
type = "average_pooling2d"
pool_size = 2
strides = 1
[[model.layers]]
type = "batch_normalization"
momentum = 0.5
[[model.layers]]
type = "global_average_pooling2d"
[[model.layers]]
type = "dense"
units = 8
activation = "elu"
[[model.layers]]
type = "dropout"
rate = 0.5
[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"
"#;
    let config = format!(
        r#"[experiment]
name = "sigmoid"
seed = 9
[data]
path = "{}"
image_size = [20, 20]
color_mode = "rgb"
validation_split = 0.25
{layers}
[train]
loss = "binary_crossentropy"
epochs = 1
batch_size = 8
[output]
dir = "{}"
"#,
        data.display(),
        root.join("results").display()
    );
    let run = train(root, "sigmoid", &config);
    export_and_compare(root, &run, &[], [20, 20], ColorMode::Rgb);
}

#[test]
fn export_errors_name_the_missing_weights_and_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser"], 8);
    let run = train(root, "errors", &small_config("errors", &data, &root.join("results"), 1, 1, 2));
    let run_arg = run.to_str().unwrap();

    let out = runner(root, &["export", run_arg, "--weights", "worst"]);
    assert_exit(&out, 64);
    let err = stderr(&out);
    assert!(err.contains("invalid value 'worst'") && err.contains("[possible values: last, best]"), "{err}");

    // -o into folders that do not exist yet makes them, as `runner init -o` does; -o naming a
    // folder asks for a file name.
    assert_exit(&runner(root, &["export", run_arg, "-o", "new/deeper/m.onnx", "-q"]), 0);
    assert!(root.join("new/deeper/m.onnx").is_file());
    let out = runner(root, &["export", run_arg, "-o", "new"]);
    assert_exit(&out, 64);
    let err = stderr(&out);
    assert!(
        err.contains("new` is a folder; give -o the file to write, such as") && err.contains("model.onnx"),
        "{err}"
    );

    // A run folder copied to a machine without the folder it was started in exports as well.
    let copy = root.join("copied");
    std::fs::create_dir_all(copy.join("checkpoints")).unwrap();
    for file in ["manifest.json", "config.toml", "weights.safetensors"] {
        std::fs::copy(run.join(file), copy.join(file)).unwrap();
    }
    let manifest = std::fs::read_to_string(copy.join("manifest.json")).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    edited["working_dir"] = serde_json::json!("/nowhere/the/run/was/started");
    std::fs::write(copy.join("manifest.json"), edited.to_string()).unwrap();
    assert_exit(&runner(root, &["export", copy.to_str().unwrap(), "-q"]), 0);
    assert!(copy.join("model.onnx").is_file());

    std::fs::remove_file(run.join("checkpoints/best.safetensors")).unwrap();
    let out = runner(root, &["export", run_arg, "--weights", "best"]);
    assert_exit(&out, 64);
    let err = stderr(&out);
    assert!(err.contains("has no checkpoints/best.safetensors: no epoch has finished yet"), "{err}");
    assert!(err.contains(&format!("runner resume {}", run.canonicalize().unwrap().display())), "{err}");

    std::fs::remove_file(run.join("weights.safetensors")).unwrap();
    let out = runner(root, &["export", run_arg]);
    assert_exit(&out, 64);
    let err = stderr(&out);
    assert!(err.contains("has no weights.safetensors: the run did not finish (resume it with `runner resume"), "{err}");
    assert!(!run.join("model.onnx").exists(), "nothing written");

    let out = runner(root, &["export", data.to_str().unwrap()]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("is not a run folder"), "{}", stderr(&out));
}
