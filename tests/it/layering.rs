//! Layered configs: `extends`, environment variables and `--set`, with provenance, and
//! errors that name where a bad value came from.

use std::path::Path;

use runner::config::{self, Origin, Overrides};

use crate::util::*;

const BASE: &str = r#"[experiment]
name = "base"
seed = 1

[data]
path = "data/fashion_mnist"
image_size = [28, 28]
color_mode = "grayscale"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
loss = "categorical_crossentropy"
epochs = 3
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn overrides(sets: &[&str], env: &[(&str, &str)]) -> Overrides {
    Overrides {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        trial: None,
    }
}

#[test]
fn extends_env_and_set_layer_in_order_and_record_where_values_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("bases")).unwrap();
    write(&tmp.path().join("bases"), "base.toml", BASE);
    write(tmp.path(), "mid.toml", "extends = \"bases/base.toml\"\n[train]\nepochs = 5\nbatch_size = 8\n");
    write(tmp.path(), "exp.toml", "extends = \"mid.toml\"\n[experiment]\nname = \"child\"\n[train]\nepochs = 7\n");

    let (c, sources) = config::load(&tmp.path().join("exp.toml"), &Overrides::default()).unwrap();
    assert_eq!((c.experiment.name.as_str(), c.experiment.seed, c.train.epochs, c.train.batch_size), ("child", 1, 7, 8));
    let file = |key: &str| match &sources.origins[key] {
        Origin::File(i) => sources.files[*i].path.file_name().unwrap().to_string_lossy().into_owned(),
        other => panic!("{key} came from {other:?}"),
    };
    assert_eq!(
        (file("train.epochs"), file("train.batch_size"), file("data.path")),
        ("exp.toml".into(), "mid.toml".into(), "base.toml".into())
    );

    let o = overrides(
        &["train.epochs=11", "model.layers[1].units=12", "data.image_size=[14, 14]", "experiment.name=via_set"],
        &[("RUNNER_TRAIN__EPOCHS", "9"), ("RUNNER_TRAIN__LEARNING_RATE", "0.01")],
    );
    let (c, sources) = config::load(&tmp.path().join("exp.toml"), &o).unwrap();
    assert_eq!(c.train.epochs, 11, "--set wins over the environment");
    assert_eq!(c.train.learning_rate, 0.01);
    assert_eq!(c.data.image_size, [14, 14]);
    assert_eq!(c.experiment.name, "via_set", "bare words are strings");
    let runner::model::LayerConfig::Dense(dense) = &c.model.layers[1] else { panic!() };
    assert_eq!(dense.units, 12);
    assert_eq!(sources.origins["train.epochs"], Origin::Set("train.epochs=11".into()));
    assert_eq!(sources.origins["train.learning_rate"], Origin::Env("RUNNER_TRAIN__LEARNING_RATE=0.01".into()));
    assert_eq!(sources.origins["model.layers[1].units"], Origin::Set("model.layers[1].units=12".into()));
}

/// Runs `runner check` on `exp.toml` in `dir` with extra arguments; returns stderr after
/// asserting exit code 78.
fn config_error(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.arg("check").arg("exp.toml").args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_exit(&out, 78);
    stderr(&out)
}

#[test]
fn override_errors_name_the_override() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "exp.toml", BASE);
    let err = config_error(tmp.path(), &["--set", "train.epochs=ten"], &[]);
    assert!(err.contains("error: --set train.epochs=ten: invalid type: string \"ten\", expected usize"), "{err}");
    let err = config_error(tmp.path(), &["--set", "train.epoch=5"], &[]);
    assert!(
        err.contains("error: --set train.epoch=5: unknown field `epoch`") && err.contains("did you mean `epochs`?"),
        "{err}"
    );
    let err = config_error(tmp.path(), &["--set", "model.layers[9].units=3"], &[]);
    assert!(err.contains("--set model.layers[9].units=3: `model.layers[9]`: the list has 2 entries (0 to 1), so index 9 is out of range"), "{err}");
    let err = config_error(tmp.path(), &["--set", "train..epochs=3", "--set", "epochs"], &[]);
    assert!(
        err.contains("--set train..epochs=3: `train..epochs` is not a key path")
            && err.contains("--set epochs: expected key=value"),
        "{err}"
    );
    assert!(err.contains("2 problems"), "{err}");
    let err = config_error(tmp.path(), &[], &[("RUNNER_TRAIN__BATCH_SIZE", "-4")]);
    assert!(
        err.contains(
            "error: environment variable RUNNER_TRAIN__BATCH_SIZE=-4: invalid value: integer `-4`, expected usize"
        ),
        "{err}"
    );
    let err = config_error(tmp.path(), &["--set", "train.epochs=0"], &[]);
    assert!(err.contains("error: --set train.epochs=0: epochs must be at least 1"), "{err}");
}

#[test]
fn extends_problems_point_at_the_extends_line() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "exp.toml", &format!("extends = \"a.toml\"\n{}", BASE.replace("[experiment]", "[experiment]\n")));
    write(tmp.path(), "a.toml", "extends = \"exp.toml\"\n");
    let err = config_error(tmp.path(), &[], &[]);
    assert!(err.contains("a.toml:1:11: `extends` makes a cycle:") && err.contains("exp.toml → "), "{err}");
    write(tmp.path(), "a.toml", "extends = \"missing.toml\"\n");
    let err = config_error(tmp.path(), &[], &[]);
    assert!(err.contains("a.toml:1:11: cannot read the base config") && err.contains("missing.toml"), "{err}");
    // A value from the base that is wrong is reported in the base.
    write(tmp.path(), "a.toml", "[train]\nbatch_size = 0\n");
    let err = config_error(tmp.path(), &[], &[]);
    assert!(err.contains("a.toml:2:14: batch_size must be at least 1"), "{err}");
}

#[test]
fn every_problem_of_every_section_is_reported_at_once_with_suggestions() {
    let tmp = tempfile::tempdir().unwrap();
    let text = BASE
        .replace("seed = 1", "seed = \"one\"")
        .replace("color_mode = \"grayscale\"", "color_mode = \"greyscale\"")
        .replace("epochs = 3", "epochs = 3\nlearning_rat = 0.1")
        .replace("units = 10", "units = 10\nactivaton = \"relu\"")
        + "\n[outptu]\ndir = \"x\"\n";
    write(tmp.path(), "exp.toml", &text);
    let err = config_error(tmp.path(), &[], &[]);
    for want in [
        "exp.toml:3:8: invalid type: string \"one\", expected u64",
        "unknown variant `greyscale`, expected `grayscale` or `rgb`; did you mean `grayscale`?",
        "unknown field `learning_rat`",
        "did you mean `learning_rate`?",
        "layer 2 (`dense`): unknown field `activaton`, expected one of `units`, `activation`, `use_bias`, `kernel_initializer`, `trainable`; did you mean `activation`?",
        "unknown field `outptu`",
        "did you mean `output`?",
        "5 problems in exp.toml",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn the_run_folder_records_where_values_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    fashion_subset(&data, &["bag", "trouser"], 12);
    write(tmp.path(), "base.toml", &small_config("prov", &data, &tmp.path().join("results"), 1, 1, 2));
    write(tmp.path(), "exp.toml", "extends = \"base.toml\"\n[train]\nbatch_size = 4\n");
    let out = runner(tmp.path(), &["exp.toml", "--set", "train.epochs=2"]);
    assert_exit(&out, 0);
    let resolved = std::fs::read_to_string(tmp.path().join("results/prov/run-001/config.toml")).unwrap();
    for line in ["train.batch_size", "train.epochs", "data.path"] {
        assert!(resolved.lines().any(|l| l.starts_with(&format!("#   {line} "))), "{line} not recorded:\n{resolved}");
    }
    assert!(resolved.contains("--set train.epochs=2") && resolved.contains("base.toml"), "{resolved}");
    assert!(resolved.contains("epochs = 2"), "{resolved}");
}
