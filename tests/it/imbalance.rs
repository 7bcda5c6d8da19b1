//! Class imbalance: `train.class_weight` in the loss and the summary, `data.sampling` per
//! epoch, validation untouched. (The weighted loss itself is held to Keras' numbers in
//! `keras_parity.rs`.)

use std::path::Path;

use crate::util::{assert_exit, fashion_subset, history_column, runner, small_config, stderr};

/// 40 trousers and 10 bags: imbalanced four to one.
fn imbalanced(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    fashion_subset(&data, &["trouser"], 40);
    fashion_subset(&data, &["bag"], 10);
    data
}

fn history(run: &Path) -> String {
    std::fs::read_to_string(run.join("history.csv")).unwrap()
}

#[test]
fn balanced_class_weights_are_reported_weigh_the_training_loss_and_leave_validation_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = imbalanced(root);
    let plain = small_config("plain", &data, Path::new("results"), 3, 1, 2);
    std::fs::write(root.join("plain.toml"), &plain).unwrap();
    let weighted = plain
        .replace("name = \"plain\"", "name = \"weighted\"")
        .replace("[train]\n", "[train]\nclass_weight = \"balanced\"\n");
    std::fs::write(root.join("weighted.toml"), &weighted).unwrap();
    for config in ["plain.toml", "weighted.toml"] {
        assert_exit(&runner(root, &[config]), 0);
    }
    let run = root.join("results/weighted/run-001");
    // 30 trousers and 7 bags train (a quarter of each class, rounded, validates):
    // n / (2 · n_c).
    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(summary.contains("Class weights in the training loss (balanced"), "{summary}");
    let weight = |class: &str| -> f64 {
        let line = summary.lines().find(|l| l.trim_start().starts_with(class)).unwrap();
        assert!(line.contains(if class == "bag" { "(7 training images)" } else { "(30 training images)" }), "{line}");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!((weight("bag") - 37.0 / 14.0).abs() < 1e-4 && (weight("trouser") - 37.0 / 60.0).abs() < 1e-4, "{summary}");
    // The first batches are the same images from the same weights; only the loss weighs them.
    let (a, b) = (root.join("results/plain/run-001"), run);
    assert_ne!(history_column(&a, "loss"), history_column(&b, "loss"), "the training loss is weighted");
    assert_ne!(history(&a), history(&b));

    // A table names classes; one that is not a class is refused naming the classes.
    let table = weighted.replace("class_weight = \"balanced\"", "class_weight = { bag = 4, trousers = 1 }");
    std::fs::write(root.join("table.toml"), table).unwrap();
    let out = runner(root, &["check", "table.toml"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("class_weight names `trousers` but the classes are bag, trouser"),
        "{}",
        stderr(&out)
    );
    let bad = weighted.replace("class_weight = \"balanced\"", "class_weight = \"even\"");
    std::fs::write(root.join("bad.toml"), bad).unwrap();
    let out = runner(root, &["check", "bad.toml"]);
    assert_exit(&out, 78);
    assert!(
        stderr(&out).contains("class_weight must be \"balanced\" or a table of class = weight"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn oversampling_and_undersampling_redraw_the_training_split_each_epoch_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = imbalanced(root);
    for (mode, per_epoch) in [("oversample", 60), ("undersample", 14)] {
        let config = small_config(mode, &data, Path::new("results"), 3, 2, 2)
            .replace("color_mode", &format!("sampling = \"{mode}\"\ncolor_mode"));
        std::fs::write(root.join(format!("{mode}.toml")), config).unwrap();
        let out = runner(root, &[&format!("{mode}.toml")]);
        assert_exit(&out, 0);
        let line = format!(
            "Training split {mode}d every epoch: {per_epoch} images per epoch ({} per class) instead of 37",
            per_epoch / 2
        );
        assert!(stderr(&out).contains(&line), "{mode}: {}", stderr(&out));
        let summary = std::fs::read_to_string(root.join(format!("results/{mode}/run-001/summary.txt"))).unwrap();
        assert!(summary.contains(&line), "{summary}");
        // The same seed draws the same epochs again.
        assert_exit(&runner(root, &[&format!("{mode}.toml")]), 0);
        let (a, b) = (root.join(format!("results/{mode}/run-001")), root.join(format!("results/{mode}/run-002")));
        assert_eq!(history(&a), history(&b), "{mode} is seeded");
        assert_eq!(
            std::fs::read(a.join("weights.safetensors")).unwrap(),
            std::fs::read(b.join("weights.safetensors")).unwrap()
        );
        // Validation is the split's: the same 13 images for every mode.
        let manifest = crate::util::manifest(&a);
        assert_eq!(
            (manifest["dataset"]["train"].as_u64(), manifest["dataset"]["validation"].as_u64()),
            (Some(37), Some(13))
        );
    }
}
