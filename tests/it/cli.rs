//! The real binary, end to end: training runs, run folders, reproducibility, and what a person
//! sees when a config or dataset is wrong.

use std::path::Path;

use crate::util::*;

const FILES: [&str; 20] = [
    "config.toml",
    "confusion_matrix.png",
    "confusion_matrix.svg",
    "predictions.png",
    "predictions.svg",
    "quarantine.csv",
    "split.csv",
    "samples.png",
    "samples.svg",
    "class_counts.svg",
    "history.csv",
    "history.json",
    "accuracy.png",
    "accuracy.svg",
    "loss.png",
    "loss.svg",
    "summary.txt",
    "weights.safetensors",
    "manifest.json",
    "summary.txt",
];

fn last_val_accuracy(run: &Path) -> f64 {
    *history_column(run, "val_accuracy").last().unwrap()
}

#[test]
fn trains_on_bundled_images_and_writes_every_result_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "sneaker", "trouser"], 80);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("e2e", &data, &results, 3, 3, 3)).unwrap();

    let out = runner(tmp.path(), &["exp.toml"]);
    assert_exit(&out, 0);
    let run = results.join("e2e/run-001");
    for f in FILES {
        assert!(run.join(f).is_file(), "{f} missing from {}", run.display());
    }
    let acc = last_val_accuracy(&run);
    assert!(acc > 0.8, "validation accuracy {acc} is not well above chance (0.33)");

    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"));
    assert_eq!(csv.lines().count(), 4, "header + 3 epochs:\n{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    assert_eq!(json["val_accuracy"].as_array().unwrap().len(), 3);

    for stem in ["accuracy", "loss"] {
        let png = image::open(run.join(format!("{stem}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (800, 500));
        let svg = std::fs::read_to_string(run.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{stem}.svg is not an SVG");
        assert!(svg.matches("<polyline").count() >= 2, "{stem}.svg lacks the two curves");
        let title = if stem == "accuracy" { "Validation accuracy" } else { "Validation loss" };
        assert!(svg.contains(title), "{stem}.svg lacks the legend entry {title}");
    }

    let predictions = std::fs::read_to_string(run.join("predictions.svg")).unwrap();
    assert_eq!(predictions.matches("<image ").count(), 24, "24 validation images with captions");
    assert!(
        predictions.contains("sneaker → sneaker") || predictions.contains("bag → bag"),
        "captions name true → predicted"
    );
    let confusion = std::fs::read_to_string(run.join("confusion_matrix.svg")).unwrap();
    assert!(confusion.contains("trouser") && confusion.contains("Predicted"), "confusion matrix lacks labels");

    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(summary.contains("conv2d (Conv2D)") && summary.contains("(None, 26, 26, 8)"), "{summary}");
    // conv 8·9+8 = 80, dense 1352·32+32 = 43,296, dense 32·3+3 = 99.
    assert!(summary.contains("Total params: 43,475"), "{summary}");

    let weights =
        runner::results::safetensors::from_bytes(&std::fs::read(run.join("weights.safetensors")).unwrap()).unwrap();
    let names: Vec<&str> = weights.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(names, ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]);
    assert_eq!(weights.iter().map(|w| w.2.len()).sum::<usize>(), 43_475);

    let manifest = manifest(&run);
    assert_eq!(manifest["status"]["state"], "completed");
    assert_eq!(
        manifest["dataset"]["train"].as_u64().unwrap() + manifest["dataset"]["validation"].as_u64().unwrap(),
        240
    );
    assert_eq!(manifest["epoch_seconds"].as_array().unwrap().len(), 3);
}

/// The same config on 1, 2 and 3 threads, and (where the CPU has AVX-512) forced onto the
/// AVX2 kernel with `RUNNER_KERNEL`: every history, weight and plot file is the same bytes.
#[test]
fn same_seed_gives_byte_identical_results_whatever_the_thread_count_and_kernel_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["coat", "dress", "sandal"], 40);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("a.toml"), small_config("repro", &data, &results, 11, 2, 3)).unwrap();
    std::fs::write(tmp.path().join("b.toml"), small_config("other", &data, &results, 12, 2, 3)).unwrap();

    let run = |config: &str, threads: usize, kernel: Option<&str>| {
        assert_exit(&runner_on_kernel(tmp.path(), &[config], threads, kernel), 0);
        let newest = newest_run(&results.join(if config == "a.toml" { "repro" } else { "other" }));
        let m = manifest(&newest);
        (newest, m["threads"].as_u64().unwrap(), m["kernel"].as_str().unwrap().to_string())
    };
    let avx512 = std::is_x86_feature_detected!("avx512f");
    let mut runs = vec![run("a.toml", 1, None), run("a.toml", 2, None), run("a.toml", 3, None)];
    assert_eq!(runs.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3], "the manifest records the threads");
    if avx512 && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let forced = run("a.toml", 2, Some("avx2"));
        assert!(forced.2.starts_with("AVX2") && runs[0].2.starts_with("AVX-512"), "{} against {}", forced.2, runs[0].2);
        runs.push(forced);
    } else {
        println!("note: this CPU has no AVX-512 kernel, so AVX2 against AVX-512 is not compared here");
    }
    let first = &runs[0].0;
    assert!(runs[1].0 != *first, "a second run must get its own folder, not overwrite the first");
    for (other, threads, kernel) in &runs[1..] {
        for f in [
            "history.csv",
            "history.json",
            "accuracy.svg",
            "loss.svg",
            "accuracy.png",
            "loss.png",
            "confusion_matrix.png",
            "summary.txt",
            "weights.safetensors",
            "checkpoints/best.safetensors",
        ] {
            assert_eq!(
                std::fs::read(first.join(f)).unwrap(),
                std::fs::read(other.join(f)).unwrap(),
                "{f} differs between 1 thread and {threads} threads on {kernel}"
            );
        }
    }
    let second = &runs[1].0;
    run("b.toml", 2, None);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["check", "a.toml"])
        .current_dir(tmp.path())
        .env("RUNNER_KERNEL", "avx9")
        .output()
        .unwrap();
    assert_exit(&bad, 64);
    assert!(stderr(&bad).contains("RUNNER_KERNEL=`avx9` names no kernel"), "{}", stderr(&bad));
    let fingerprint = |run: &Path| manifest(run)["dataset"]["fingerprint"].clone();
    assert_eq!(fingerprint(first), fingerprint(second), "same data, same fingerprint");
    assert_ne!(
        fingerprint(first)["train"],
        fingerprint(&results.join("other/run-001"))["train"],
        "another seed splits differently"
    );
    let a = std::fs::read_to_string(first.join("history.csv")).unwrap();
    let b = std::fs::read_to_string(results.join("other/run-001/history.csv")).unwrap();
    assert_ne!(a, b, "a different seed must give a different history");
}

/// `train.conv_algorithm = "winograd"` on a model with a second convolution (whose input
/// gradient Winograd's algorithm computes too): the same bytes on 1 and 2 threads and, where
/// the CPU has AVX-512, on the AVX2 kernel; losses within 1e-3 of the direct product's; the
/// manifest names the layers it ran on (none with `auto` on these narrow layers).
#[test]
fn winograd_runs_are_byte_identical_across_threads_and_kernels_and_close_to_direct() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["coat", "dress", "sandal"], 40);
    let results = tmp.path().join("results");
    let flatten = "[[model.layers]]\ntype = \"flatten\"";
    let second_conv = format!(
        "[[model.layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel_size = 3\npadding = \"same\"\nactivation = \"relu\"\n\n{flatten}"
    );
    let config = small_config("wino", &data, &results, 5, 2, 3).replacen(flatten, &second_conv, 1);
    std::fs::write(tmp.path().join("a.toml"), config).unwrap();
    let run = |algorithm: &str, threads: usize, kernel: Option<&str>| {
        let set = format!("train.conv_algorithm=\"{algorithm}\"");
        assert_exit(&runner_on_kernel(tmp.path(), &["a.toml", "--set", &set], threads, kernel), 0);
        let newest = newest_run(&results.join("wino"));
        let layers = manifest(&newest)["winograd_layers"].clone();
        (newest, layers)
    };
    let (first, layers) = run("winograd", 1, None);
    assert_eq!(layers, serde_json::json!(["conv2d", "conv2d_1"]));
    let mut others = vec![run("winograd", 2, None).0];
    if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx2") {
        others.push(run("winograd", 2, Some("avx2")).0);
    }
    for other in &others {
        for f in ["history.csv", "weights.safetensors", "checkpoints/best.safetensors"] {
            assert_eq!(std::fs::read(first.join(f)).unwrap(), std::fs::read(other.join(f)).unwrap(), "{f} differs");
        }
    }
    let (direct, layers) = run("auto", 2, None);
    assert_eq!(layers, serde_json::json!([]));
    let (a, b) = (history_column(&first, "loss"), history_column(&direct, "loss"));
    assert_ne!(a, b, "Winograd's sums round differently from the direct product's");
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() <= 1e-3 * b.abs(), "loss {a} with Winograd, {b} direct");
    }
}

#[test]
fn the_tutorial_config_runs_on_a_folder_of_jpegs_skipping_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("PetImages");
    striped_jpegs(&data, 20, (150, 120));
    let tutorial = std::fs::read_to_string(repo().join("experiments/cats_vs_dogs.toml")).unwrap();
    let config = tutorial
        .replace("path = \"data/PetImages\"", &format!("path = \"{}\"", data.display()))
        .replace("epochs = 15", "epochs = 2")
        .replace("batch_size = 32", "batch_size = 32\n\n[output]\ndir = \"results\"");
    assert_ne!(config, tutorial);
    std::fs::write(tmp.path().join("cvd.toml"), config).unwrap();
    // The config lives in a git repository: the manifest records its commit.
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.email=test@example.com", "-c", "user.name=test"])
            .args(args)
            .current_dir(tmp.path())
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "git {args:?} failed");
    };
    git(&["init", "-q"]);
    git(&["add", "cvd.toml"]);
    git(&["commit", "-q", "-m", "config"]);

    let out = runner(tmp.path(), &["cvd.toml"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("666.jpg") && err.contains("11702.jpg"), "bad files are not reported:\n{err}");
    let run = tmp.path().join("results/cats_vs_dogs/run-001");
    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(summary.contains("Total params: 1,277,601"), "{summary}");
    // The tutorial augments its training images; the run shows what that looks like.
    image::open(run.join("augmentations.png")).unwrap();
    assert!(std::fs::read_to_string(run.join("config.toml")).unwrap().contains("rotation_range = 40.0"));
    let manifest = manifest(&run);
    assert_eq!(manifest["dataset"]["classes"], serde_json::json!(["Cat", "Dog"]));
    let quarantine = std::fs::read_to_string(run.join("quarantine.csv")).unwrap();
    assert!(quarantine.contains("666.jpg,empty_file"), "{quarantine}");
    assert!(quarantine.contains("11702.jpg,not_an_image"), "{quarantine}");
    assert!(!quarantine.contains("Thumbs.db"), "OS litter is skipped silently: {quarantine}");
    assert_eq!(manifest["dataset"]["quarantined"], 2);
    assert_eq!(manifest["git"]["commit"].as_str().map(str::len), Some(40), "{manifest}");
    assert_eq!(manifest["git"]["dirty"], false);
    // 40 usable images, 70/30 per class: 14 + 14 train, 6 + 6 validation.
    assert_eq!(manifest["dataset"]["train"], 28);
    assert_eq!(manifest["dataset"]["validation"], 12);
    assert_eq!(std::fs::read_to_string(run.join("history.csv")).unwrap().lines().count(), 3);
}

/// `text` with the line starting with `key` replaced by `line`.
fn set_line(text: &str, key: &str, line: &str) -> String {
    text.lines().map(|l| if l.starts_with(key) { line } else { l }).collect::<Vec<_>>().join("\n") + "\n"
}

/// Writes the baseline config with `edit` applied into a temp folder and runs it.
fn run_edited(edit: impl Fn(String) -> String) -> (std::process::Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("experiments/baseline.toml")).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the config");
    std::fs::write(tmp.path().join("bad.toml"), edited).unwrap();
    let out = runner(&repo(), &[tmp.path().join("bad.toml").to_str().unwrap()]);
    (out, tmp)
}

/// `bad.toml:<line>:<col>:` where `<line>` is the first line of `text` that is `needle`.
fn position(text: &str, needle: &str, col: usize) -> String {
    let line = text.lines().position(|l| l.trim() == needle).expect("needle in config") + 1;
    format!("bad.toml:{line}:{col}:")
}

#[test]
fn config_errors_exit_78_with_file_line_and_column() {
    // (what, edit, line to point at, column, message)
    type Case = (&'static str, fn(String) -> String, &'static str, usize, &'static str);
    let cases: [Case; 5] = [
        (
            "unknown key",
            |t| t.replace("batch_size = 32", "batch_sise = 32"),
            "batch_sise = 32",
            1,
            "unknown field `batch_sise`",
        ),
        (
            "wrong type",
            |t| set_line(&t, "epochs = ", "epochs = \"ten\""),
            "epochs = \"ten\"",
            10,
            "invalid type: string \"ten\"",
        ),
        (
            "unknown layer type",
            |t| t.replacen("type = \"flatten\"", "type = \"flaten\"", 1),
            "type = \"flaten\"",
            8,
            "unknown variant `flaten`",
        ),
        (
            "unknown layer key",
            |t| t.replacen("units = 64", "units = 64\nfilters = 3", 1),
            "filters = 3",
            1,
            "layer 6 (`dense`): unknown field `filters`",
        ),
        (
            "shape",
            |t| t.replace("image_size = [28, 28]", "image_size = [8, 8]"),
            "pool_size = [2, 2]",
            1,
            "layer 4 (`max_pooling2d`): pool 2x2 does not fit the input 1x1",
        ),
    ];
    for (what, edit, needle, col, message) in cases {
        let (out, tmp) = run_edited(edit);
        assert_exit(&out, 78);
        let text = std::fs::read_to_string(tmp.path().join("bad.toml")).unwrap();
        // The shape error points at the `[[model.layers]]` header of the 4th layer.
        let position = if what == "shape" {
            let line = text.lines().enumerate().filter(|(_, l)| *l == "[[model.layers]]").nth(3).unwrap().0 + 1;
            format!("bad.toml:{line}:{col}:")
        } else {
            position(&text, needle, col)
        };
        let err = stderr(&out);
        assert!(err.contains(&position), "{what}: no position {position} in:\n{err}");
        assert!(err.contains(message), "{what}: no message {message:?} in:\n{err}");
        assert!(err.contains('^'), "{what}: no caret under the offending text:\n{err}");
    }
}

#[test]
fn all_problems_of_a_config_are_reported_at_once() {
    let (out, _tmp) = run_edited(|t| {
        set_line(&t.replace("validation_split = 0.2", "validation_split = 1.5"), "epochs = ", "epochs = 0")
    });
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(err.contains("validation_split 1.5") && err.contains("epochs must be at least 1"), "{err}");
    assert!(err.contains("2 problems"), "{err}");
}

#[test]
fn last_layer_must_match_the_classes_found() {
    let (out, _tmp) = run_edited(|t| t.replace("units = 10", "units = 7"));
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(err.contains("has 10 classes") && err.contains("set units = 10"), "{err}");
    let (out, _tmp) =
        run_edited(|t| t.replace("loss = \"sparse_categorical_crossentropy\"", "loss = \"binary_crossentropy\""));
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("binary_crossentropy needs a last layer with 1 unit"), "{}", stderr(&out));
}

#[test]
fn missing_dataset_exits_65_naming_the_path() {
    let (out, _tmp) = run_edited(|t| t.replace("data/fashion_mnist", "data/no_such_folder"));
    assert_exit(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("`data/no_such_folder`") && err.contains("does not exist"), "{err}");
    let text = std::fs::read_to_string(_tmp.path().join("bad.toml")).unwrap();
    let want = position(&text, "path = \"data/no_such_folder\"", 8);
    assert!(err.contains(want.trim_end_matches(':')), "the message should point at data.path ({want}): {err}");
}

#[test]
fn empty_dataset_and_empty_class_folders_are_data_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("empty", &data, &results, 1, 1, 2)).unwrap();
    let out = runner(tmp.path(), &["exp.toml"]);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("has no class subfolders"), "{}", stderr(&out));

    std::fs::create_dir_all(data.join("a")).unwrap();
    std::fs::create_dir_all(data.join("b")).unwrap();
    gray_png(&data.join("a/1.png"), 28, |x, _| x as u8);
    let out = runner(tmp.path(), &["exp.toml"]);
    assert_exit(&out, 65);
    assert!(stderr(&out).contains("class folder") && stderr(&out).contains("is empty"), "{}", stderr(&out));
    assert!(!results.exists(), "no run folder is made before the data checks pass");
}

#[test]
fn usage_errors_exit_64() {
    let tmp = tempfile::tempdir().unwrap();
    let out = runner(tmp.path(), &["no_such.toml"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("no_such.toml"), "{}", stderr(&out));
    assert_exit(&runner(tmp.path(), &["--no-such-flag"]), 64);
    assert_exit(&runner(tmp.path(), &[]), 64);
    // What belongs to `runner <CONFIG>` alone does not go with a command.
    assert_exit(&runner(tmp.path(), &["--jobs", "2", "check", "x.toml"]), 64);
    assert_exit(&runner(tmp.path(), &["sweep", "--jobs", "2", "status", "results"]), 64);
}

#[test]
fn global_flags_go_before_or_after_a_command() {
    let tmp = tempfile::tempdir().unwrap();
    let config = repo().join("experiments/baseline.toml");
    let config = config.to_str().unwrap();
    for args in [
        vec!["-q", "check", config],
        vec!["check", "-q", config],
        vec!["--set", "train.epochs=2", "check", config],
        vec!["check", config, "--set", "train.epochs=2", "-v"],
    ] {
        let out = runner(&repo(), &args);
        assert_exit(&out, 0);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Total params"), "{args:?}");
    }
    let out = runner(tmp.path(), &["-q", "sweep", "status", tmp.path().to_str().unwrap()]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("is not a sweep folder"), "{}", stderr(&out));
}

#[test]
fn check_reports_data_split_and_model_costs_without_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("PetImages");
    striped_jpegs(&data, 20, (150, 120));
    let tutorial = std::fs::read_to_string(repo().join("experiments/cats_vs_dogs.toml")).unwrap();
    let config = tutorial.replace("path = \"data/PetImages\"", &format!("path = \"{}\"", data.display()));
    std::fs::write(tmp.path().join("cvd.toml"), config).unwrap();
    let cache = tmp.path().join("cache");

    let out = runner_with(tmp.path(), &["check", "cvd.toml"], 2, &cache);
    assert_exit(&out, 0);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "cvd.toml: the config is valid",
        "  Cat                             21",
        "Split (seed 42, stratified): train 30, validation 12, test 0",
        "Known so far: 1 file quarantined: 1 empty_file",
        " conv2d (Conv2D)                   (None, 126, 126, 16)                 448       6,858,432",
        "Total params: 1,277,601",
        "Multiply-accumulates per image: 50,252,224 forward, about 150,756,672 per training image (forward + backward)",
    ] {
        assert!(report.lines().any(|l| l.starts_with(line)), "missing {line:?} in:\n{report}");
    }
    assert!(!tmp.path().join("results").exists(), "check writes nothing");
    assert!(!cache.exists(), "check decodes nothing");

    // Once the files have been decoded, check knows every unusable one.
    assert_exit(&runner_with(tmp.path(), &["data", "cvd.toml"], 2, &cache), 0);
    let out = runner_with(tmp.path(), &["check", "cvd.toml"], 2, &cache);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("Known so far: 2 files quarantined: 1 empty_file, 1 not_an_image"), "{report}");

    // A config that cannot run fails the check the way it would fail the run.
    let text = std::fs::read_to_string(tmp.path().join("cvd.toml")).unwrap();
    std::fs::write(tmp.path().join("bad.toml"), text.replace("units = 256", "units = 0")).unwrap();
    let out = runner_with(tmp.path(), &["check", "bad.toml"], 2, &cache);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("`units` must be at least 1"), "{}", stderr(&out));
}

#[test]
fn compare_ranks_runs_by_what_differs_and_ls_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "trouser", "shirt"], 30);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("cmp", &data, &results, 1, 3, 3)).unwrap();
    for lr in ["0.001", "0.00001", "0.0003"] {
        assert_exit(&runner(tmp.path(), &["exp.toml", "--set", &format!("train.learning_rate={lr}")]), 0);
    }
    // A folder that looks like a run but is broken: noted, not fatal.
    std::fs::create_dir_all(results.join("cmp/run-009")).unwrap();
    std::fs::write(results.join("cmp/run-009/history.csv"), "epoch,accuracy\n0,zero\n").unwrap();

    let out = runner(tmp.path(), &["compare", "results", "-o", "cmp_out"]);
    assert_exit(&out, 0);
    let md = std::fs::read_to_string(tmp.path().join("cmp_out/leaderboard.md")).unwrap();
    let rows: Vec<Vec<String>> = md
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    // Exactly the changed key is a column, between the run and the metrics.
    assert_eq!(rows[0][..4], ["rank", "run", "train.learning_rate", "best val_accuracy"], "{md}");
    // The order matches the histories: best validation accuracy, highest first.
    let best = |run: &str| history_column(&results.join(run), "val_accuracy").into_iter().fold(f64::MIN, f64::max);
    let ranked: Vec<f64> = rows[1..].iter().map(|r| best(&r[1])).collect();
    assert_eq!(ranked.len(), 3, "{md}");
    assert!(
        ranked.windows(2).all(|w| w[0] >= w[1]),
        "leaderboard order {ranked:?} does not follow the histories:\n{md}"
    );
    for row in &rows[1..] {
        assert_eq!(row[3], format!("{:.4}", best(&row[1])), "{md}");
    }
    assert!(md.contains("cmp/run-009") && md.contains("skipped"), "broken runs are noted:\n{md}");
    let csv = std::fs::read_to_string(tmp.path().join("cmp_out/leaderboard.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    for stem in ["compare_accuracy", "compare_loss"] {
        image::open(tmp.path().join(format!("cmp_out/{stem}.png"))).unwrap();
        let svg = std::fs::read_to_string(tmp.path().join(format!("cmp_out/{stem}.svg"))).unwrap();
        for lr in ["0.001", "0.00001", "0.0003"] {
            assert_eq!(
                svg.lines().filter(|l| l.ends_with(&format!("train.learning_rate={lr}"))).count(),
                1,
                "{stem}.svg: one legend entry per run ({lr})"
            );
        }
    }

    let out = runner(tmp.path(), &["ls", "results"]);
    assert_exit(&out, 0);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(listing.lines().filter(|l| l.contains("completed")).count(), 3, "{listing}");
    assert!(listing.contains("run-009") && listing.contains("unreadable"), "{listing}");

    assert_exit(&runner(tmp.path(), &["compare", "no_such_dir"]), 64);
}

#[test]
fn the_manifest_records_completed_interrupted_and_failed_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "trouser"], 100);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("states", &data, &results, 1, 1000, 2)).unwrap();
    let manifest = |run: &str| manifest(&results.join("states").join(run));

    // Completed.
    assert_exit(&runner(tmp.path(), &["exp.toml", "--set", "train.epochs=1"]), 0);
    let m = manifest("run-001");
    assert_eq!(m["status"]["state"], "completed");
    for key in
        ["runner_version", "command", "host", "device", "threads", "seed", "started_at", "finished_at", "epoch_seconds"]
    {
        assert!(!m[key].is_null(), "manifest lacks {key}: {m}");
    }
    assert_eq!(m["epoch_seconds"].as_array().unwrap().len(), 1);
    assert_eq!(m["seed"], 1);
    assert_eq!(m["command"][2], "--set");

    // Interrupted: Ctrl-C after the first epoch stops at a batch boundary and keeps the history.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("exp.toml")
        .current_dir(tmp.path())
        .env("RUNNER_CACHE_DIR", tmp.path().join("cache"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let history = results.join("states/run-002/history.csv");
    let started = std::time::Instant::now();
    while !history.exists() {
        assert!(started.elapsed().as_secs() < 60, "no epoch finished within a minute");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exits with 130");
    let m = manifest("run-002");
    assert_eq!(m["status"]["state"], "interrupted", "{m}");
    assert!(m["status"]["at"].as_str().unwrap().starts_with("epoch "), "{m}");
    assert!(std::fs::read_to_string(&history).unwrap().lines().count() >= 2, "finished epochs are kept");
    assert!(results.join("states/run-002/report.html").is_file());

    // Failed: a learning rate that blows the weights up gives a non-finite loss.
    let out = runner(tmp.path(), &["exp.toml", "--set", "train.learning_rate=1e38"]);
    assert_exit(&out, 1);
    let m = manifest("run-003");
    assert_eq!(m["status"]["state"], "failed", "{m}");
    assert!(m["status"]["reason"].as_str().unwrap().contains("loss became"), "{m}");
}

#[test]
fn bench_reports_training_and_inference_speed_on_random_data() {
    let tmp = tempfile::tempdir().unwrap();
    // The dataset folder is never read: the bench uses random data of the config's shapes.
    let config = tmp.path().join("exp.toml");
    std::fs::write(&config, small_config("b", &tmp.path().join("absent"), &tmp.path().join("r"), 1, 1, 3)).unwrap();
    let out = runner(tmp.path(), &["bench", config.to_str().unwrap(), "--steps", "2", "--batch", "8", "--json"]);
    assert_exit(&out, 0);
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["batch"], 8);
    assert_eq!(t["threads"], 2);
    for key in ["train_images_per_second", "inference_images_per_second"] {
        assert!(t[key].as_f64().unwrap() > 0.0, "{key}: {t}");
    }
    assert!(!tmp.path().join("r").exists(), "a bench writes no run folder");
}

#[test]
fn check_without_the_dataset_still_shows_the_model_then_fails_as_a_data_error() {
    // The tutorial's PetImages folder is not shipped with the repository.
    let out = runner(&repo(), &["check", "experiments/cats_vs_dogs.toml"]);
    assert_exit(&out, 65);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "experiments/cats_vs_dogs.toml: the config is valid",
        "Total params: 1,277,601",
        "Multiply-accumulates per image: 50,252,224 forward",
        "Activation memory for one training batch of 32",
        "Data: data/PetImages could not be checked; the problem follows.",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    let err = stderr(&out);
    assert!(err.contains("`data/PetImages` (data.path) does not exist"), "{err}");
}

/// Runs `runner args` in `cwd` inside a pseudo-terminal (util-linux `script`), as a person at
/// a terminal would, and returns everything it wrote.
fn at_a_terminal(cwd: &Path, args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command: Vec<String> =
        std::iter::once(env!("CARGO_BIN_EXE_runner")).chain(args.iter().copied()).map(quote).collect();
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command.join(" "), "/dev/null"])
        .current_dir(cwd)
        .env("RAYON_NUM_THREADS", "2")
        .env("RUNNER_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn quiet_silences_progress_bars_and_information_and_verbose_adds_debug_detail() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "sandal"], 16);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("q", &data, &results, 1, 2, 2)).unwrap();

    let shown = at_a_terminal(tmp.path(), &["exp.toml"]);
    assert!(shown.contains("Epoch 1/2") && shown.contains("[=") && shown.contains("INFO"), "{shown}");

    let quiet = at_a_terminal(tmp.path(), &["exp.toml", "--quiet"]);
    for noise in ["Epoch", "[=", "/step", "INFO"] {
        assert!(!quiet.contains(noise), "--quiet printed {noise:?}:\n{quiet}");
    }
    assert!(results.join("q/run-002/history.csv").is_file(), "the quiet run trained");

    let out = runner(tmp.path(), &["exp.toml", "--verbose"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("DEBUG") && err.contains("checkpoint at epoch 1") && err.contains("matrix products on"),
        "{err}"
    );
    assert!(!stderr(&runner(tmp.path(), &["exp.toml"])).contains("DEBUG"), "debug detail only with --verbose");
    assert_exit(&runner(tmp.path(), &["exp.toml", "-q", "-v"]), 64);
}

/// Long data work is never silent: in a log (a pipe here) scanning, decoding, each epoch's
/// batches and its validation pass write progress lines as often as RUNNER_PROGRESS_SECONDS
/// says (0: at every update), with counts, rates and time left; at a terminal the epoch's bar
/// goes on through validation; `--quiet` silences both.
#[test]
fn progress_is_shown_for_scanning_decoding_batches_and_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "sandal"], 40);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("p", &data, &results, 1, 1, 2)).unwrap();
    let logged = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .current_dir(tmp.path())
            .env("RUNNER_PROGRESS_SECONDS", "0")
            .env("RUNNER_CACHE_DIR", tmp.path().join("cache"))
            .output()
            .unwrap();
        assert_exit(&out, 0);
        stderr(&out)
    };
    let log = logged(&["exp.toml"]);
    for line in [
        "scanning: 80 so far",
        // Rayon's workers count as they go, and a worker that finds another writing a line
        // leaves it to the next update: any count may be the last one written.
        "/80 (",
        "img/s, ETA",
        "decoding images: 80 in",
        "epoch 1/1: batches: 4/4 (100%)",
        "batch/s, ETA 0 s - loss:",
        "epoch 1/1: validation: 20/20 (100%)",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    assert!(!logged(&["exp.toml", "--quiet"]).contains("decoding"), "--quiet writes no progress");

    let shown = at_a_terminal(tmp.path(), &["exp.toml"]);
    assert!(shown.contains("4/4 [") && shown.contains("validating 20/20"), "{shown}");
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let tmp = tempfile::tempdir().unwrap();
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef runner"), ("fish", "complete -c runner")] {
        let out = runner(tmp.path(), &["completions", shell]);
        assert_exit(&out, 0);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker) && script.contains("init") && script.contains("sweep"), "{shell}:\n{script}");
    }
    assert_exit(&runner(tmp.path(), &["completions", "cmd.exe"]), 64);
}

/// Runs `runner <args>` in `cwd` where `{fifo}` in `args` stands for a FIFO that is fed `text`
/// (as the shell's `<(…)` feeds `/dev/fd/N`); the writer is released however the run ends.
fn runner_on_fifo(cwd: &Path, args: &[&str], text: String) -> std::process::Output {
    use std::os::unix::fs::OpenOptionsExt;
    // In a folder of its own: what the config names is taken from `cwd`, not from there.
    std::fs::create_dir_all(cwd.join("pipes")).unwrap();
    let fifo = cwd.join("pipes/config.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let feed = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let _ = std::fs::write(&fifo, text);
        })
    };
    let shown = fifo.display().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("{fifo}", &shown)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runner(cwd, &args);
    // A run that never opened the FIFO leaves the writer waiting for a reader: be that reader.
    let _ = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
    feed.join().unwrap();
    std::fs::remove_file(&fifo).unwrap();
    out
}

#[test]
fn a_config_read_through_a_pipe_trains_and_its_relative_extends_is_taken_from_the_current_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "coat"], 12);
    let results = tmp.path().join("results");
    // The base holds everything; the piped text, as `sed` would make it, only changes the name.
    std::fs::write(tmp.path().join("base.toml"), small_config("base", &data, &results, 1, 1, 2)).unwrap();
    let piped = "extends = \"base.toml\"\n[experiment]\nname = \"piped\"\n".to_string();
    let out = runner_on_fifo(tmp.path(), &["{fifo}"], piped.clone());
    assert_exit(&out, 0);
    let run = results.join("piped/run-001");
    for name in ["history.csv", "split.csv", "weights.safetensors", "config.toml"] {
        assert!(run.join(name).is_file(), "{name} missing; stderr:\n{}", stderr(&out));
    }
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("name = \"piped\"") && resolved.contains("epochs = 1"), "{resolved}");

    // `runner check` reads the pipe once for the sweep question and once for the plan.
    assert_exit(&runner_on_fifo(tmp.path(), &["check", "{fifo}"], piped.clone()), 0);
    // A sweep's trials would read the config again in their own processes: refused, saying so.
    let sweep = format!("{piped}[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n");
    let out = runner_on_fifo(tmp.path(), &["sweep", "{fifo}"], sweep);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("is not a regular file (a pipe?)"), "{}", stderr(&out));
}

#[test]
fn an_oversized_config_is_refused_naming_the_file_and_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = "# padding\n".repeat(1 << 17);
    text.push_str("[experiment]\n");
    assert!(text.len() as u64 > runner::results::bounded::CONFIG.bytes);
    std::fs::write(tmp.path().join("big.toml"), text).unwrap();
    let out = runner(tmp.path(), &["check", "big.toml"]);
    assert_exit(&out, 74);
    let err = stderr(&out);
    assert!(
        err.contains(
            "reading config file `big.toml`: it is larger than 1 MiB, the limit for a config; an experiment file"
        ),
        "{err}"
    );
    // The same through a pipe, whose length reads as 0.
    let out = runner_on_fifo(tmp.path(), &["check", "{fifo}"], "#\n".repeat(1 << 19) + "[experiment]\n");
    assert_exit(&out, 74);
    assert!(stderr(&out).contains("it is larger than 1 MiB, the limit for a config"), "{}", stderr(&out));
}
