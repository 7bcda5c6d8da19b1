//! `runner lr-find`: fastai's rule on its own numbers, and the command on the bundled data.

use runner::train::lr_find::{Ending, Range, Recorder};

use crate::util::*;

/// The losses of tests/reference/lr_find.json (written by make_lr_find_reference.py from
/// fastai's own `Learner.lr_find`) fed to runner's recorder: the same steps recorded (the
/// stop at 4 times the best smoothed loss on the same step), each rate within 1e-6 relative
/// (fastai holds them in float32 once it has them in a tensor), each smoothed loss within 1e-5
/// relative (fastai smooths in float32), NaN where fastai has NaN, and the suggestion at
/// the same index.
#[test]
fn the_recorder_and_valley_agree_with_fastai() {
    let path = repo().join("tests/reference/lr_find.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
    };
    let close = |a: f64, b: f64, tol: f64| (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * b.abs().max(1e-12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let range = Range {
            start_lr: case["start_lr"].as_f64().unwrap(),
            end_lr: case["end_lr"].as_f64().unwrap(),
            steps: case["steps"].as_u64().unwrap() as usize,
        };
        let mut recorder = Recorder::new(range);
        let mut ending = Ending::Completed;
        for loss in numbers(&case["losses"]) {
            if let Some(end) = recorder.record(loss) {
                ending = end;
                break;
            }
        }
        let curve = recorder.finish(ending);
        let (rates, smoothed) = (numbers(&case["learning_rates"]), numbers(&case["smoothed_losses"]));
        // fastai goes on after a NaN; runner stops at the first.
        let recorded = match ending {
            Ending::NotFinite => curve.points.len(),
            _ => rates.len(),
        };
        assert_eq!(curve.points.len(), recorded, "{name}: steps recorded ({ending:?})");
        for (p, (&rate, &loss)) in curve.points.iter().zip(rates.iter().zip(&smoothed)) {
            assert!(
                close(p.learning_rate, rate, 1e-6),
                "{name} step {}: rate {} vs fastai {rate}",
                p.step,
                p.learning_rate
            );
            assert!(close(p.smoothed_loss, loss, 1e-5), "{name} step {}: {} vs fastai {loss}", p.step, p.smoothed_loss);
        }
        let index = case["suggested_index"].as_u64().unwrap() as usize;
        assert_eq!(curve.suggestion(), Some(index), "{name}: the suggested step");
        let fastai = case["suggested_learning_rate"].as_f64().unwrap();
        assert!(close(curve.points[index].learning_rate, fastai, 1e-6), "{name}: suggested rate");
    }
}

/// A small Fashion-MNIST experiment for the finder: two classes, a few images, 16x16.
fn setup(tmp: &std::path::Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    fashion_subset(&data, &["bag", "sneaker"], 40);
    let config = tmp.join("exp.toml");
    std::fs::write(&config, small_config("finder", &data, &tmp.join("results"), 3, 1, 2)).unwrap();
    config
}

/// The command on the bundled data: the folder and its files, the suggestion printed with the
/// command line that uses it, and the same bytes from a second search (the seed decides
/// everything). The config's own `--set` overrides are carried into the printed command.
#[test]
fn lr_find_writes_the_curve_and_prints_the_command_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = setup(tmp.path());
    let args = ["lr-find", config.to_str().unwrap(), "--steps", "30", "--start-lr", "1e-5", "--end-lr", "10"];
    let sets = ["--set", "data.image_size=[16,16]"];
    let args: Vec<&str> = args.iter().chain(&sets).copied().collect();
    let out = runner(tmp.path(), &args);
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = tmp.path().join("results/finder/lr-find-001");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("lr_find.json")).unwrap()).unwrap();
    let rate = json["suggestion"]["rounded"].as_f64().expect("a suggestion");
    assert!((1e-5..10.0).contains(&rate), "{json}");
    let command =
        format!("runner {} --set 'data.image_size=[16,16]' --set train.learning_rate={rate:e}", config.display());
    assert_eq!(json["command"], command.as_str());
    assert!(stdout.contains(&command), "{stdout}");
    let csv = std::fs::read_to_string(first.join("lr_find.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("step,learning_rate,loss,smoothed_loss"));
    assert_eq!(csv.lines().count() - 1, json["steps_run"].as_u64().unwrap() as usize);
    assert!(std::fs::read(first.join("lr_find.png")).unwrap().starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(first.join("lr_find.svg")).unwrap().contains("Learning rate"));

    let out = runner(tmp.path(), &args);
    assert_exit(&out, 0);
    let second = tmp.path().join("results/finder/lr-find-002");
    for file in ["lr_find.csv", "lr_find.json", "lr_find.png", "lr_find.svg"] {
        assert!(
            std::fs::read(first.join(file)).unwrap() == std::fs::read(second.join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert!(!tmp.path().join("results/finder/run-001").exists(), "no run is made");
}

/// Bad options are usage errors (exit 64) naming the option, before any data is read; a
/// sweep file is refused, saying what to do.
#[test]
fn lr_find_refuses_bad_ranges_and_sweeps() {
    let tmp = tempfile::tempdir().unwrap();
    let config = setup(tmp.path());
    let config = config.to_str().unwrap();
    for (args, says) in [
        (vec!["--start-lr", "1", "--end-lr", "0.1"], "--end-lr"),
        (vec!["--start-lr", "0.1", "--end-lr", "0.1"], "--end-lr"),
        (vec!["--steps", "5"], "--steps"),
        (vec!["--start-lr", "0"], "--start-lr"),
    ] {
        let out = runner(tmp.path(), &[&["lr-find", config][..], &args].concat());
        assert_exit(&out, 64);
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let sweep = std::fs::read_to_string(config).unwrap() + "\n[sweep.grid]\n\"train.batch_size\" = [8, 16]\n";
    std::fs::write(tmp.path().join("sweep.toml"), sweep).unwrap();
    let out = runner(tmp.path(), &["lr-find", "sweep.toml"]);
    assert_exit(&out, 64);
    assert!(stderr(&out).contains("is a sweep") && stderr(&out).contains("[sweep] table"), "{}", stderr(&out));
    assert!(!tmp.path().join("results/finder").exists(), "nothing is written");
}
