//! Golden tests: what a person sees for each class of config error (stderr and exit code of
//! `runner check`), the check summary of the tutorial model, the config reference, and one
//! chart (so a change in how plots are drawn shows up in review).
//! Regenerate with `UPDATE_GOLDEN=1 cargo test golden` and review the diff.

use std::path::Path;
use std::process::Command;

use crate::util::{assert_exit, repo};

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the file at `path` (or writes it when updating).
fn golden(path: &Path, actual: &str) {
    if update() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the output; if the change is intended, rerun with UPDATE_GOLDEN=1 and review.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Each `tests/golden/errors/<case>.toml` (files starting with `_` are helpers) is checked
/// with `runner check`; header comments give `# args:`, `# env:` and `# exit:`.
#[test]
fn config_errors_read_as_recorded() {
    let dir = repo().join("tests/golden/errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "expected at least 15 error classes, found {}", cases.len());
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let header = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect()
        };
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.current_dir(&dir).arg("check").arg(&name).args(header("args"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
            cmd.env_remove(k);
        }
        for pair in header("env") {
            let (k, v) = pair.split_once('=').unwrap();
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let code: i32 = header("exit").first().expect("# exit: header").parse().unwrap();
        assert_exit(&out, code);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if code == 65 {
            // A data problem: what needs no data (the model, or the sweep's trials) is shown first.
            assert!(
                stdout.contains("Total params:") || stdout.contains("the sweep is valid"),
                "{name}: a check that fails on the data still shows what it could check:\n{stdout}"
            );
        } else {
            assert!(stdout.is_empty(), "{name}: a check that fails on the config prints nothing on stdout:\n{stdout}");
        }
        golden(&case.with_extension("stderr"), &String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_check_summary_of_the_tutorial_model_reads_as_recorded() {
    let (config, sources) =
        runner::config::load(&repo().join("experiments/cats_vs_dogs.toml"), &Default::default()).unwrap();
    let plan = runner::config::validate(config, sources).unwrap();
    let summary = runner::model::summary::render_with_costs("cats_vs_dogs", &plan.model, 32);
    assert!(summary.contains("Total params: 1,277,601"));
    golden(&repo().join("tests/golden/tutorial_check_summary.txt"), &summary);
}

/// The accuracy curves of a fixed four-epoch history, as `plots/accuracy.svg` of a run.
#[test]
fn the_accuracy_chart_draws_as_recorded() {
    use runner::plots::curves;
    use runner::train::{EpochRecord, History};
    let record = |epoch, accuracy, val_accuracy, loss, val_loss| EpochRecord {
        epoch,
        accuracy,
        loss,
        val_accuracy,
        val_loss,
        learning_rate: 1e-3,
        metrics: Default::default(),
    };
    let history = History {
        epochs: vec![
            record(0, 0.55, 0.61, 0.69, 0.66),
            record(1, 0.68, 0.70, 0.59, 0.57),
            record(2, 0.77, 0.74, 0.48, 0.53),
            record(3, 0.84, 0.75, 0.37, 0.55),
        ],
    };
    let charts = curves::charts(&history);
    let chart = charts.iter().find(|c| c.stem == "accuracy").expect("an accuracy chart");
    let svg = curves::render(chart).unwrap().svg;
    assert_eq!(svg, curves::render(chart).unwrap().svg, "the same history draws the same SVG");
    golden(&repo().join("tests/golden/plots/accuracy.svg"), &svg);
}

#[test]
fn the_config_reference_is_current() {
    golden(&repo().join("docs/config.md"), &runner::config::reference::markdown());
}

#[test]
fn the_schema_describes_every_section_and_layer_kind() {
    let schema = runner::config::reference::schema();
    for key in ["experiment", "data", "augment", "model", "train", "output", "extends"] {
        assert!(schema["properties"].get(key).is_some(), "schema lacks `{key}`");
    }
    assert_eq!(schema["additionalProperties"], false, "unknown top-level keys must be flagged by editors");
    let kinds: Vec<&str> = schema["$defs"]["LayerConfig"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["properties"]["type"]["const"].as_str())
        .collect();
    assert_eq!(kinds, runner::model::LayerConfig::KINDS);
    let epochs = &schema["$defs"]["TrainConfig"]["properties"]["epochs"];
    assert_eq!(epochs["description"], "Passes over the training split.");
}
