//! Data as users already have it: folders that are already split (`data.train_path`, ...), a
//! flat folder labelled by a CSV file (`data.labels`), and multi-label targets.

use std::path::Path;

use crate::util::{assert_exit, fashion_subset, gray_png, runner, small_config, stderr};

/// `small_config`'s experiment with its `[data]` source lines replaced by `source`.
fn config_with(name: &str, source: &str, results: &Path, classes: usize) -> String {
    let base = small_config(name, Path::new("PLACEHOLDER"), results, 5, 2, classes);
    base.replace("validation_split = 0.25\n", "").replace("path = \"PLACEHOLDER\"\n", source)
}

fn split_rows(run: &Path) -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(run.join("split.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| (l.split(',').next().unwrap().to_string(), l.rsplit(',').next().unwrap().into()))
        .collect()
}

#[test]
fn already_split_folders_are_the_split_and_no_split_is_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let all = root.join("all");
    fashion_subset(&all, &["trouser", "bag"], 30);
    // train/ gets the first 18 of each class, validation/ 8, test/ 4.
    for class in ["trouser", "bag"] {
        let mut files: Vec<_> = std::fs::read_dir(all.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let part = if i < 18 {
                "train"
            } else if i < 26 {
                "validation"
            } else {
                "test"
            };
            let dir = root.join("split").join(part).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let source = "train_path = \"split/train\"\nvalidation_path = \"split/validation\"\ntest_path = \"split/test\"\n";
    std::fs::write(root.join("exp.toml"), config_with("presplit", source, Path::new("results"), 2)).unwrap();

    let check = runner(root, &["check", "exp.toml"]);
    assert_exit(&check, 0);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(report.contains("Split (by folder, no split drawn): train 36, validation 16, test 8"), "{report}");

    let out = runner(root, &["exp.toml"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("no split is drawn"), "{}", stderr(&out));
    let rows = split_rows(&root.join("results/presplit/run-001"));
    assert_eq!(rows.len(), 60);
    for (path, split) in &rows {
        assert!(path.starts_with(&format!("split/{split}/")), "{path} is in the {split} split");
    }
    let manifest = crate::util::manifest(&root.join("results/presplit/run-001"));
    assert!(manifest["dataset"]["path"].as_str().unwrap().ends_with("/split"), "the folders' common parent");

    // Without validation_path, validation is drawn from the training folder.
    let source = "train_path = \"split/train\"\ntest_path = \"split/test\"\nvalidation_split = 0.25\n";
    std::fs::write(root.join("drawn.toml"), config_with("drawn", source, Path::new("results"), 2)).unwrap();
    let out = runner(root, &["drawn.toml"]);
    assert_exit(&out, 0);
    let rows = split_rows(&root.join("results/drawn/run-001"));
    let count = |s: &str| rows.iter().filter(|(p, split)| split == s && p.starts_with("split/train/")).count();
    assert_eq!((count("train"), count("validation")), (26, 10), "validation from the training folder");

    // A validation class the training folder lacks is an error naming both folders.
    std::fs::create_dir_all(root.join("split/validation/coat")).unwrap();
    std::fs::copy(
        all.join("bag").read_dir().unwrap().next().unwrap().unwrap().path(),
        root.join("split/validation/coat/x.png"),
    )
    .unwrap();
    let out = runner(root, &["exp.toml"]);
    assert_exit(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("has a class `coat` that the training folder `split/train` has not"), "{err}");
    assert!(err.contains("data.validation_path is set at"), "{err}");
}

#[test]
fn split_folders_and_split_fractions_that_contradict_each_other_are_refused_before_any_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cases = [
        (
            "path = \"a\"\ntrain_path = \"b\"\n",
            "set `path` (split with the seed) or `train_path` (already split), not both",
        ),
        ("train_path = \"t\"\nvalidation_path = \"v\"\nvalidation_split = 0.3\n", "validation_split does not apply"),
        ("path = \"a\"\nvalidation_path = \"v\"\n", "validation_path needs `train_path`"),
        ("", "[data] needs `path`"),
        ("train_path = \"t\"\nlabels = \"l.csv\"\n", "labels names the images of one folder"),
    ];
    for (source, message) in cases {
        std::fs::write(root.join("bad.toml"), config_with("bad", source, Path::new("results"), 2)).unwrap();
        let out = runner(root, &["check", "bad.toml"]);
        assert_exit(&out, 78);
        assert!(stderr(&out).contains(message), "{source}: {}", stderr(&out));
    }
}

#[test]
fn a_flat_folder_labelled_by_a_csv_file_trains_and_quarantines_listed_files_that_are_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let classes = ["trouser", "bag", "sneaker"];
    fashion_subset(&root.join("by_class"), &classes, 16);
    std::fs::create_dir_all(root.join("flat")).unwrap();
    let mut csv = String::from("image,label,source\n");
    for class in classes {
        for (i, f) in std::fs::read_dir(root.join("by_class").join(class)).unwrap().enumerate() {
            let name = format!("{class}_{i}, copy.png");
            std::fs::copy(f.unwrap().path(), root.join("flat").join(&name)).unwrap();
            csv += &format!("\"{name}\",{class},fashion\n");
        }
    }
    csv += "gone.png,bag,fashion\n";
    std::fs::write(root.join("labels.csv"), &csv).unwrap();
    let source = "path = \"flat\"\nlabels = { file = \"labels.csv\", x_col = \"image\", y_col = \"label\" }\nvalidation_split = 0.25\n";
    std::fs::write(root.join("exp.toml"), config_with("csv", source, Path::new("results"), 3)).unwrap();
    let out = runner(root, &["exp.toml"]);
    assert_exit(&out, 0);
    let run = root.join("results/csv/run-001");
    let manifest = crate::util::manifest(&run);
    assert_eq!(manifest["dataset"]["classes"], serde_json::json!(["bag", "sneaker", "trouser"]), "sorted as Keras");
    assert_eq!(
        manifest["dataset"]["train"].as_u64().unwrap() + manifest["dataset"]["validation"].as_u64().unwrap(),
        48
    );
    let quarantine = std::fs::read_to_string(run.join("quarantine.csv")).unwrap();
    assert!(quarantine.contains("gone.png") && quarantine.contains("listed in labels.csv"), "{quarantine}");
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    assert!(split.contains(",sneaker,"), "{split}");

    // A label column that is not there names the file, the key and the columns.
    let source = "path = \"flat\"\nlabels = { file = \"labels.csv\", x_col = \"image\", y_col = \"class\" }\n";
    std::fs::write(root.join("bad.toml"), config_with("bad", source, Path::new("results"), 3)).unwrap();
    let out = runner(root, &["check", "bad.toml"]);
    assert_exit(&out, 65);
    assert!(
        stderr(&out).contains(
            "labels.csv line 1: no column `class` (data.labels y_col); the header has `image`, `label`, `source`"
        ),
        "{}",
        stderr(&out)
    );
}

/// Squares that tell their labels: `bright_top` when the top half is light, `bright_left` when
/// the left half is; an image may have both, one, or neither.
fn tagged_images(dir: &Path, n: usize) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut csv = String::from("filename,tags\n");
    for i in 0..n {
        let (top, left) = (i % 2 == 0, i % 3 == 0);
        gray_png(&dir.join(format!("{i}.png")), 28, |x, y| {
            let mut v = 20 + (i * 7 % 20) as u8;
            if top && y < 14 {
                v += 120;
            }
            if left && x < 14 {
                v += 80;
            }
            v
        });
        let tags: Vec<&str> =
            [(top, "bright_top"), (left, "bright_left")].iter().filter(|t| t.0).map(|t| t.1).collect();
        csv += &format!("{i}.png,{}\n", tags.join("|"));
    }
    csv
}

#[test]
fn multi_label_targets_train_sigmoid_units_with_binary_cross_entropy_and_predict_every_label() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let csv = tagged_images(&root.join("images"), 96);
    std::fs::write(root.join("tags.csv"), csv).unwrap();
    let source = "path = \"images\"\nlabels = { file = \"tags.csv\", y_col = \"tags\", separator = \"|\" }\nvalidation_split = 0.25\n";
    let config = config_with("tags", source, Path::new("results"), 2)
        .replace("activation = \"softmax\"", "activation = \"sigmoid\"")
        .replace(
            "loss = \"sparse_categorical_crossentropy\"",
            "loss = \"binary_crossentropy\"\nmetrics = [\"precision\", \"recall\"]",
        )
        .replace("epochs = 2", "epochs = 6");
    std::fs::write(root.join("exp.toml"), &config).unwrap();
    let out = runner(root, &["exp.toml"]);
    assert_exit(&out, 0);
    let run = root.join("results/tags/run-001");
    let accuracy = crate::util::history_column(&run, "val_accuracy");
    // Binary accuracy over both labels of every image: guessing gives about 0.5.
    assert!(*accuracy.last().unwrap() > 0.85, "the labels are learnable: {accuracy:?}");
    assert!(crate::util::history_column(&run, "val_recall").last().unwrap() > &0.7);
    let manifest = std::fs::read_to_string(run.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"bright_left\"") && manifest.contains("\"bright_top\""), "{manifest}");
    assert!(!run.join("confusion_matrix.png").exists(), "no one true class per image to confuse");
    // Per-label results: each label a yes/no question of its own, the diagram pooling them.
    let per_class: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("per_class.json")).unwrap()).unwrap();
    let labels: Vec<&str> =
        per_class["classes"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(labels, ["bright_left", "bright_top"], "{per_class}");
    assert!(per_class["positive_class"].is_null(), "no positive class among labels: {per_class}");
    assert_eq!(per_class["calibration"]["confidence"], "every_label");
    let csv = std::fs::read_to_string(run.join("per_class.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("exact match,")), "{csv}");
    assert!(per_class["auc"].as_f64().unwrap() > 0.9, "{}", per_class["auc"]);
    for stem in ["roc", "precision_recall", "calibration"] {
        assert!(run.join(format!("{stem}.svg")).is_file(), "{stem}");
    }
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    assert!(split.contains(",bright_left bright_top,"), "both labels of image 0:\n{split}");

    // predict names every label above one half, each with its own sigmoid.
    let predicted = runner(root, &["predict", run.to_str().unwrap(), "images/0.png", "images/1.png", "--json"]);
    assert_exit(&predicted, 0);
    let json: serde_json::Value = serde_json::from_slice(&predicted.stdout).unwrap();
    assert_eq!(json[0]["labels"], serde_json::json!(["bright_left", "bright_top"]), "{json}");
    assert_eq!(json[1]["labels"], serde_json::json!([]), "{json}");
    let p = &json[0]["probabilities"];
    assert!(p["bright_left"].as_f64().unwrap() > 0.5 && p["bright_top"].as_f64().unwrap() > 0.5, "not a softmax: {p}");

    // A softmax head does not fit labels that come several to an image.
    std::fs::write(root.join("bad.toml"), config.replace("activation = \"sigmoid\"", "activation = \"softmax\""))
        .unwrap();
    let out = runner(root, &["check", "bad.toml"]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("images with several labels (data.labels) need loss = \"binary_crossentropy\""));
}
