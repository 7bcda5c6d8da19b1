//! Per-class results: `src/train/per_class.rs` against scikit-learn's numbers
//! (`tests/reference/metrics.json`), the `auc` and `pr_auc` metrics through a checkpoint, and
//! what a run on the bundled Fashion-MNIST writes, reports and `runner evaluate` prints.

use std::path::Path;

use runner::train::per_class::{one_hot, Confidence, Curves, Report, Scores};
use serde_json::Value;

use crate::util::*;

/// Within `1e-12` of max(1, |want|): scikit-learn sums in another order (numpy's pairwise
/// sums), which moves the last bits only.
fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{what}: {got} against scikit-learn's {want}");
}

fn close_opt(got: Option<f64>, want: &Value, what: &str) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => close(g, w, what),
        (None, None) => {}
        _ => panic!("{what}: {got:?} against scikit-learn's {want}"),
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::INFINITY)).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|b| b.as_bool().unwrap())).collect()
}

/// Compares a curve point by point: `points` as (x, y, threshold) against the reference's
/// arrays `keys`.
fn same_curve(points: &[(f64, f64, f64)], want: &Value, keys: [&str; 3], what: &str) {
    let columns = keys.map(|k| floats(&want[k]));
    assert_eq!(
        points.len(),
        columns[0].len(),
        "{what}: {} points against scikit-learn's {}",
        points.len(),
        columns[0].len()
    );
    for (i, p) in points.iter().enumerate() {
        close(p.0, columns[0][i], &format!("{what} point {i} {}", keys[0]));
        close(p.1, columns[1][i], &format!("{what} point {i} {}", keys[1]));
        // +inf is the first threshold of both.
        assert!(p.2 == columns[2][i] || (p.2 - columns[2][i]).abs() <= 1e-12, "{what} point {i} threshold");
    }
}

#[test]
fn per_class_results_match_scikit_learn() {
    let text = std::fs::read_to_string(repo().join("tests/reference/metrics.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let names: Vec<String> = case["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
        let k = names.len();
        let probabilities: Vec<f64> = case["probabilities"].as_array().unwrap().iter().flat_map(floats).collect();
        let scores = Scores::new(k, probabilities, bools(&case["truth"])).unwrap();
        let report = scores.report(&names, &bools(&case["predicted"])).unwrap();
        let want = &case["expected"];
        for (c, (got, w)) in report.classes.iter().zip(want["classes"].as_array().unwrap()).enumerate() {
            let what = |key: &str| format!("{name}, class {c}, {key}");
            close(got.precision, w["precision"].as_f64().unwrap(), &what("precision"));
            close(got.recall, w["recall"].as_f64().unwrap(), &what("recall"));
            close(got.f1_score, w["f1_score"].as_f64().unwrap(), &what("f1_score"));
            assert_eq!(got.support, w["support"].as_u64().unwrap(), "{}", what("support"));
            close_opt(got.roc_auc, &w["roc_auc"], &what("roc_auc"));
            close_opt(got.average_precision, &w["average_precision"], &what("average_precision"));
            let curves = &report.curves[c];
            match (&curves.roc, w["roc"].is_null()) {
                (Some(roc), false) => {
                    let points: Vec<_> = roc.iter().map(|p| (p.fpr, p.tpr, p.threshold)).collect();
                    same_curve(&points, &w["roc"], ["fpr", "tpr", "threshold"], &what("roc"));
                }
                (None, true) => {}
                (got, _) => panic!("{}: {got:?} against {}", what("roc"), w["roc"]),
            }
            match (&curves.precision_recall, w["precision_recall"].is_null()) {
                (Some(pr), false) => {
                    let points: Vec<_> = pr.iter().map(|p| (p.recall, p.precision, p.threshold)).collect();
                    same_curve(&points, &w["precision_recall"], ["recall", "precision", "threshold"], &what("pr"));
                }
                (None, true) => {}
                (got, _) => panic!("{}: {got:?} against {}", what("precision_recall"), w["precision_recall"]),
            }
        }
        for (got, key) in [(&report.macro_avg, "macro_avg"), (&report.weighted_avg, "weighted_avg")] {
            let w = &want[key];
            close(got.precision, w["precision"].as_f64().unwrap(), &format!("{name} {key} precision"));
            close(got.recall, w["recall"].as_f64().unwrap(), &format!("{name} {key} recall"));
            close(got.f1_score, w["f1_score"].as_f64().unwrap(), &format!("{name} {key} f1_score"));
            close_opt(got.roc_auc, &w["roc_auc"], &format!("{name} {key} roc_auc"));
            close_opt(got.average_precision, &w["average_precision"], &format!("{name} {key} average_precision"));
        }
        close(report.accuracy, want["accuracy"].as_f64().unwrap(), &format!("{name} accuracy"));
        close_opt(report.auc, &want["auc"], &format!("{name} auc"));
        close_opt(report.pr_auc, &want["pr_auc"], &format!("{name} pr_auc"));

        let (calibration, w) = (&report.calibration, &want["calibration"]);
        let kind = if k == 2 { Confidence::PositiveClass } else { Confidence::TopLabel };
        assert_eq!(calibration.confidence, kind, "{name}");
        assert_eq!(w["confidence"], serde_json::to_value(kind).unwrap(), "{name}");
        let counts: Vec<u64> = calibration.bins.iter().map(|b| b.count).collect();
        let want_counts: Vec<u64> = w["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
        assert_eq!(counts, want_counts, "{name}: calibration bin counts");
        let filled: Vec<_> = calibration.bins.iter().filter(|b| b.count > 0).collect();
        for (i, (b, (f, m))) in
            filled.iter().zip(floats(&w["frequency"]).into_iter().zip(floats(&w["mean_confidence"]))).enumerate()
        {
            close(b.frequency.unwrap(), f, &format!("{name} calibration bin {i} frequency"));
            close(b.mean_confidence.unwrap(), m, &format!("{name} calibration bin {i} mean confidence"));
        }
        close(calibration.ece.unwrap(), w["ece"].as_f64().unwrap(), &format!("{name} ece"));
    }
    // The cases cover what they say they do.
    let report_of = |i: usize| &cases[i]["expected"];
    assert!(report_of(1)["classes"][9]["precision"] == 0.0 && report_of(1)["classes"][9]["support"].as_u64() > Some(0));
    assert!(report_of(2)["classes"][3]["roc_auc"].is_null(), "a class without positives has no curve");
    assert!(cases[3]["truth"].as_array().unwrap().iter().any(|r| r
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| **b == true)
        .count()
        > 1));
}

#[test]
fn auc_metrics_are_counted_over_the_epoch_and_read_back_from_a_checkpoint() {
    use runner::config::Metric;
    use runner::train::checkpoint::{Checkpoint, State};
    use runner::train::metrics::Counter;
    // Logits of three classes, in two batches; probabilities are their softmax.
    let rows: [[f32; 3]; 6] =
        [[3.0, 1.0, 0.0], [1.0, 2.0, 1.5], [0.0, 5.0, 1.0], [1.0, 3.0, 2.0], [4.0, 0.0, 3.0], [0.1, 1.0, 2.0]];
    let labels = [0, 0, 1, 1, 2, 2];
    let metrics = [Metric::Auc, Metric::PrAuc];
    let mut counter = Counter::for_metrics(3, 5, &metrics);
    counter.add(&rows[..2].concat(), &labels[..2]);
    // A Ctrl-C between the batches: the counter goes into the checkpoint and comes back.
    let state = State { counter: Some(counter.clone()), ..State::default() };
    let bytes = Checkpoint { state, weights: Vec::new(), slots: Vec::new() }.to_bytes();
    let mut resumed = Checkpoint::from_bytes(&bytes).unwrap().state.counter.unwrap();
    assert_eq!(resumed, counter, "kept probabilities read back exactly");
    resumed.add(&rows[2..].concat(), &labels[2..]);
    counter.add(&rows[2..].concat(), &labels[2..]);
    for metric in metrics {
        assert_eq!(resumed.value(metric), counter.value(metric), "{metric:?} after resuming");
    }

    // The same as the per-class module on the whole pass at once.
    let probabilities: Vec<f64> =
        rows.iter().flat_map(|r| runner::train::loss::probabilities(r)).map(f64::from).collect();
    let scores = Scores::new(3, probabilities, one_hot(3, &labels)).unwrap();
    assert_eq!(counter.value(Metric::Auc), scores.auc());
    assert_eq!(counter.value(Metric::PrAuc), scores.pr_auc());
    assert!(scores.auc().unwrap() > 0.5 && scores.auc().unwrap() < 1.0);
    // Without the metrics nothing is kept, and the checkpoint reads as before.
    let plain = Counter::for_metrics(3, 5, &[Metric::Precision]);
    assert_eq!(plain.value(Metric::Auc), None);
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("probabilities") && !json.contains("keeps_scores"), "{json}");
    // With two classes, the positive class's area; undefined (NaN) without a positive.
    let mut binary = Counter::for_metrics(2, 5, &metrics);
    // Positives at logits 2 and -1, negatives at 0.5 and -3: three of the four pairs ordered.
    binary.add(&[2.0, -1.0, 0.5, -3.0], &[1, 1, 0, 0]);
    assert_eq!(binary.value(Metric::Auc), Some(0.75));
    let mut none = Counter::for_metrics(2, 5, &metrics);
    none.add(&[2.0, -1.0], &[0, 0]);
    assert!(none.value(Metric::Auc).unwrap().is_nan());
}

#[test]
fn the_pictures_draw_a_curve_per_class_and_the_calibration_error() {
    let names: Vec<String> = ["coat", "dress", "sandal"].map(String::from).to_vec();
    let probabilities = vec![0.7, 0.2, 0.1, 0.2, 0.5, 0.3, 0.1, 0.3, 0.6, 0.5, 0.4, 0.1];
    let scores = Scores::new(3, probabilities, one_hot(3, &[0, 1, 2, 1])).unwrap();
    let report: Report = scores.report(&names, &one_hot(3, &[0, 1, 2, 0])).unwrap();
    let roc = runner::plots::per_class::roc(&report, "ROC curves (validation)").unwrap();
    for name in &names {
        assert!(roc.svg.contains(&format!("{name} (AUC ")), "{name} missing from the ROC legend");
    }
    assert_eq!(roc.svg, runner::plots::per_class::roc(&report, "ROC curves (validation)").unwrap().svg, "reproducible");
    let pr = runner::plots::per_class::precision_recall(&report, "PR").unwrap();
    assert!(pr.svg.contains("sandal (AP 1.000)"), "sandal ranks first in its column");
    let ece = report.calibration.ece.unwrap();
    let calibration = runner::plots::per_class::calibration(&report, "Reliability (validation)").unwrap();
    assert!(calibration.svg.contains(&format!("ECE {ece:.4}")), "the title names the ECE");
    assert!(image::load_from_memory(&calibration.png).unwrap().width() == 800);
    // A class without positives has no curve, and its absence is no error.
    let c = Curves::of(&[0.1, 0.2], &[false, false]);
    assert!(c.roc.is_none() && c.precision_recall.is_none());
}

/// A run of `classes` (their first `per_class` images) with `extra_train` added to `[train]`,
/// a test split, and `units` output units; returns its folder.
fn run(
    root: &Path,
    classes: &[&str],
    per_class: usize,
    units: usize,
    edit: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let data = root.join("data");
    fashion_subset(&data, classes, per_class);
    let config = small_config("per_class", &data, &root.join("results"), 7, 2, units)
        .replace("validation_split = 0.25", "validation_split = 0.25\ntest_split = 0.2");
    std::fs::write(root.join("exp.toml"), edit(config)).unwrap();
    let out = runner(root, &["exp.toml"]);
    assert_exit(&out, 0);
    root.join("results/per_class/run-001")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Every file name in `dir` and below, with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_ten_class_run_writes_per_class_results_reports_them_and_evaluate_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let classes =
        ["ankle_boot", "bag", "coat", "dress", "pullover", "sandal", "shirt", "sneaker", "trouser", "tshirt_top"];
    let run = run(tmp.path(), &classes, 20, 10, |c| {
        c.replace("[train]\n", "[train]\nmetrics = [\"auc\", \"pr_auc\"]\n")
            + "\n[train.early_stopping]\nmonitor = \"val_auc\"\npatience = 1\n"
    });
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(
        history.lines().next(),
        Some("epoch,accuracy,auc,learning_rate,loss,pr_auc,val_accuracy,val_auc,val_loss,val_pr_auc")
    );
    for (split, suffix) in [("validation", ""), ("test", "_test")] {
        for stem in ["roc", "precision_recall", "calibration"] {
            for ext in ["png", "svg"] {
                assert!(run.join(format!("{stem}{suffix}.{ext}")).is_file(), "{stem}{suffix}.{ext} missing");
            }
        }
        let report = json(&run.join(format!("per_class{suffix}.json")));
        assert_eq!(report["split"], split);
        assert_eq!(report["classes"].as_array().unwrap().len(), 10);
        assert_eq!(report["calibration"]["bins"].as_array().unwrap().len(), 10);
        assert_eq!(report["calibration"]["confidence"], "top_label");
        let roc = std::fs::read_to_string(run.join(format!("roc{suffix}.svg"))).unwrap();
        for class in classes {
            assert!(roc.contains(&format!("{class} (AUC ")), "{class} missing from roc{suffix}.svg");
        }
        let csv = std::fs::read_to_string(run.join(format!("per_class{suffix}.csv"))).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, ["class", "precision", "recall", "f1_score", "support", "roc_auc", "average_precision"]);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let names: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
        assert_eq!(names[..10], classes);
        assert_eq!(names[10..], ["macro avg", "weighted avg", "accuracy"]);
        let support: u64 = rows[..10].iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
        assert_eq!(support, report["samples"].as_u64().unwrap());
        assert_eq!(rows[12][3].parse::<f64>().unwrap(), report["accuracy"].as_f64().unwrap());
    }
    // The validation file is the last epoch's pass: its numbers are the history's.
    let report = json(&run.join("per_class.json"));
    let last = |column: &str| *history_column(&run, column).last().unwrap();
    assert_eq!(report["accuracy"].as_f64().unwrap(), last("val_accuracy"));
    assert_eq!(report["auc"].as_f64().unwrap(), last("val_auc"));
    assert_eq!(report["pr_auc"].as_f64().unwrap(), last("val_pr_auc"));
    assert!(last("val_auc") > 0.6, "two epochs learn something: {}", last("val_auc"));

    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for part in
        ["Per class (validation)", "Per class (test)", "ROC curves (validation)", "Reliability (test)", "weighted avg"]
    {
        assert!(html.contains(part), "report.html lacks {part:?}");
    }

    // `runner evaluate` prints the same numbers for the validation split and writes nothing.
    let before = snapshot(&run);
    let out = runner(tmp.path(), &["evaluate", run.to_str().unwrap(), "--json"]);
    assert_exit(&out, 0);
    let evaluated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evaluated[0]["split"], "validation");
    assert_eq!(evaluated[0]["per_class"]["classes"], report["classes"]);
    assert_eq!(evaluated[0]["auc"], report["auc"]);
    assert_eq!(evaluated[0]["pr_auc"], report["pr_auc"]);
    assert_eq!(evaluated[1]["per_class"]["classes"].as_array().unwrap().len(), 10);
    let out = runner(tmp.path(), &["evaluate", run.to_str().unwrap()]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    for part in ["pr_auc", "macro avg", "weighted avg", "tshirt_top", "avg_prec"] {
        assert!(table.contains(part), "{part} missing from:\n{table}");
    }
    assert!(snapshot(&run) == before, "evaluate changed the run folder");
}

#[test]
fn a_two_class_run_reports_the_positive_class() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run(tmp.path(), &["bag", "trouser"], 30, 1, |c| {
        c.replace("activation = \"softmax\"", "activation = \"sigmoid\"")
            .replace("sparse_categorical_crossentropy", "binary_crossentropy")
            .replace("[train]\n", "[train]\nmetrics = [\"auc\"]\n")
            .replace("[output]\n", "[output]\nplot_formats = [\"svg\"]\n")
    });
    let report = json(&run.join("per_class.json"));
    assert_eq!(report["positive_class"], "trouser");
    assert_eq!(report["auc"], report["classes"][1]["roc_auc"]);
    assert_eq!(report["pr_auc"], report["classes"][1]["average_precision"]);
    assert_eq!(report["calibration"]["confidence"], "positive_class");
    assert_eq!(report["auc"].as_f64().unwrap(), *history_column(&run, "val_auc").last().unwrap());
    let roc = std::fs::read_to_string(run.join("roc.svg")).unwrap();
    assert!(roc.contains("trouser (AUC ") && !roc.contains("bag (AUC "), "the positive class's curve only");
    assert!(!run.join("roc.png").exists(), "output.plot_formats is honoured");
    let calibration = std::fs::read_to_string(run.join("calibration.svg")).unwrap();
    assert!(calibration.contains("Predicted probability of trouser"), "the axis names the positive class");
}

#[test]
fn ctrl_c_mid_epoch_with_auc_metrics_resumes_to_the_uninterrupted_history() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    fashion_subset(&data, &["bag", "trouser", "sandal", "shirt"], 1000);
    let config = small_config("resume", &data, &root.join("results"), 5, 3, 4)
        .replace("[train]\n", "[train]\nmetrics = [\"auc\", \"pr_auc\"]\n");
    std::fs::write(root.join("exp.toml"), config).unwrap();
    let runs = root.join("results/resume");
    let next = || (1..).map(|n| runs.join(format!("run-{n:03}"))).find(|d| !d.exists()).unwrap();
    // As in training.rs: a signal that lands at the epoch boundary (step 0) is tried again.
    let run = (0..4)
        .find_map(|_| {
            let run = next();
            let status = signal_after_first_epoch(root, &["exp.toml"], &run, "-INT");
            assert_eq!(status.code(), Some(130));
            let bytes = std::fs::read(run.join("checkpoints/last.safetensors")).unwrap();
            let checkpoint = runner::train::checkpoint::Checkpoint::from_bytes(&bytes).unwrap();
            let mid_epoch = checkpoint.state.step > 0;
            let kept = serde_json::to_string(&checkpoint.state.counter).unwrap().contains("\"probabilities\":[");
            assert_eq!(kept, mid_epoch, "a mid-epoch checkpoint carries the epoch's probabilities, and only it");
            mid_epoch.then_some(run)
        })
        .expect("in four tries, a Ctrl-C early in the second epoch left a mid-epoch checkpoint");
    assert_exit(&runner(root, &["resume", run.to_str().unwrap()]), 0);
    let fresh = next();
    assert_exit(&runner(root, &["exp.toml"]), 0);
    for name in ["history.csv", "weights.safetensors", "per_class.json", "roc.svg"] {
        let (a, b) = (std::fs::read(run.join(name)).unwrap(), std::fs::read(fresh.join(name)).unwrap());
        assert!(a == b, "{name} differs between the resumed and the uninterrupted run");
    }
    assert!(history_column(&fresh, "auc").iter().all(|v| (0.5..=1.0).contains(v)));
}
