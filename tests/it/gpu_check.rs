//! `runner gpu-check`'s comparison, on two CPU devices: it passes when both compute the same,
//! and fails, naming the case and output, when one of them computes something else.

use std::cell::Cell;

use dfdx::prelude::*;
use rand_chacha::ChaCha8Rng;
use runner::ops::{self, Backend, PoolGeom};
use runner::train::gpu_check::{self, cases, compare, compare_case, measure, Case, Check, Output, Report};

use crate::util::{assert_exit, repo, runner};

/// `inner`, with the value at `index` of its output `output` changed by `by` times that
/// output's scale on every run after the first (the tested device's).
struct Perturbed {
    inner: Check,
    output: &'static str,
    index: usize,
    by: f64,
    runs: Cell<usize>,
}

impl Case for Perturbed {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn run<D: Backend>(&self, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
        let mut outputs = self.inner.run(dev, rng);
        self.runs.set(self.runs.get() + 1);
        if self.runs.get() > 1 {
            let o = outputs.iter_mut().find(|o| o.name == self.output).expect("the output exists");
            let scale = o.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            o.values[self.index] += (self.by * f64::from(scale)) as f32;
        }
        outputs
    }
}

fn perturbed(inner: Check, output: &'static str, index: usize, by: f64) -> Perturbed {
    Perturbed { inner, output, index, by, runs: Cell::new(0) }
}

/// The first case of `cases()` whose name starts with `prefix`.
fn case(prefix: &str) -> Check {
    cases().into_iter().find(|c| c.name().starts_with(prefix)).unwrap_or_else(|| panic!("no case {prefix}"))
}

#[test]
fn gpu_check_cpu_against_cpu_passes_with_no_difference_at_all() {
    let report: Report = compare(&Cpu::seed_from_u64(1), &Cpu::seed_from_u64(2), 1);
    assert!(report.passed(), "{}", report.table());
    // The CPU kernels are deterministic: not merely within tolerance, identical.
    for row in &report.rows {
        assert_eq!(row.max_abs, 0.0, "{row:?}");
        assert!(row.values > 0 && row.scale.is_finite(), "{row:?}");
    }
    // Every case gives outputs, and names them apart (the name keys its inputs, and the report).
    let names: Vec<String> = cases().iter().map(Case::name).collect();
    let unique: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:#?}");
    for name in &names {
        assert!(report.rows.iter().any(|r| &r.case == name), "{name} gave no output");
    }
    // Every kind of op the networks use is there.
    for kind in [
        "conv2d 3x3 valid",
        "conv2d 3x3 same",
        "stride 2x2",
        "dilation 2x2",
        "no bias",
        "+relu+maxpool 2x2/2",
        "+maxpool",
        "(first layer)",
        "max_pool2d",
        "avg_pool2d",
        "dense 800->64 +bias +relu",
        "dense 64->10 +bias",
        "batch_normalization 8x5x5 training",
        "batch_normalization 8x5x5 inference",
        "dropout 0.5 inference",
        "activation softmax",
        "global_average_pooling2d",
        "loss binary_crossentropy",
        "loss categorical_crossentropy",
        "loss sparse_categorical_crossentropy",
        "optimizer adam",
        "optimizer adamw",
        "optimizer sgd, momentum",
        "optimizer rmsprop",
    ] {
        assert!(names.iter().any(|n| n.contains(kind)), "no case for {kind}: {names:#?}");
    }
    let table = report.table();
    assert!(table.contains("cpu against itself"), "{table}");
    assert!(table.trim_end().ends_with("all within tolerance"), "{table}");
}

#[test]
fn gpu_check_fails_an_output_changed_beyond_its_tolerance_and_passes_one_within() {
    let (cpu_a, cpu_b) = (Cpu::default(), Cpu::default());
    for (prefix, output, tolerance) in [
        ("conv2d 3x3 same 8x15x13->16 +bias +relu", "dx", gpu_check::REDUCTION),
        ("conv2d 3x3 valid 16x13x13->32 +bias +relu+maxpool", "dkernel", gpu_check::REDUCTION),
        ("max_pool2d 2x2/2 4x12x12", "y", gpu_check::EXACT),
        ("dense 64->10", "dbias", gpu_check::REDUCTION),
        ("loss categorical_crossentropy", "loss", gpu_check::SHORT),
        ("optimizer adam", "slot v", gpu_check::SHORT),
    ] {
        let rows = compare_case(&cpu_a, &cpu_b, &perturbed(case(prefix), output, 0, 10.0 * tolerance), 1);
        let failed: Vec<_> = rows.iter().filter(|r| !r.pass).collect();
        assert_eq!(failed.len(), 1, "{prefix}: {rows:#?}");
        let row = failed[0];
        assert_eq!(row.output, output, "{row:?}");
        assert_eq!(row.tolerance, tolerance, "{row:?}");
        assert!(row.max_rel > 5.0 * tolerance && row.max_rel < 20.0 * tolerance, "{row:?}");
        assert!(row.problem.as_deref().unwrap().starts_with("largest difference at [0]"), "{row:?}");

        let rows = compare_case(&cpu_a, &cpu_b, &perturbed(case(prefix), output, 0, 0.1 * tolerance), 1);
        assert!(rows.iter().all(|r| r.pass), "{prefix}: a difference within tolerance failed: {rows:#?}");
        let row = rows.iter().find(|r| r.output == output).unwrap();
        assert!(row.max_abs > 0.0, "the perturbation was made: {row:?}");
    }
}

/// An op that is deliberately wrong on the tested device: average pooling where the reference
/// takes the maximum (same shapes), or a convolution that forgets its ReLU.
struct WrongOp {
    runs: Cell<usize>,
    conv: bool,
}

impl Case for WrongOp {
    fn name(&self) -> String {
        format!("wrong {}", if self.conv { "conv2d" } else { "pool" })
    }
    fn run<D: Backend>(&self, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
        use rand::Rng;
        self.runs.set(self.runs.get() + 1);
        let right = self.runs.get() == 1;
        let x: Vec<f32> = (0..2 * 3 * 8 * 8).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x = dev.tensor_from_vec(x, (2, 3 * 8 * 8));
        let y = if self.conv {
            let layer = runner::model::layers::conv2d::Conv2dConfig::new(4, [3, 3]);
            let g = layer.geometry(runner::model::Shape::Image { c: 3, h: 8, w: 8 }).unwrap();
            let kernel: Vec<f32> = (0..4 * 3 * 9).map(|_| rng.gen_range(-0.3..0.3)).collect();
            let kernel = dev.tensor_from_vec(kernel, (4 * 3 * 9,));
            let epilogue = ops::Epilogue { relu: right, max_pool: None };
            ops::conv2d(x, &kernel, None, g, epilogue, true)
        } else {
            let g = PoolGeom { c: 3, h: 8, w: 8, ph: 2, pw: 2, sh: 2, sw: 2, oh: 4, ow: 4, pad_top: 0, pad_left: 0 };
            match right {
                true => ops::max_pool2d(x, g),
                false => ops::avg_pool2d(x, g),
            }
        };
        vec![Output { name: "y".into(), values: ops::host(&y).into_owned(), tolerance: gpu_check::REDUCTION }]
    }
}

#[test]
fn gpu_check_fails_a_wrong_op() {
    for conv in [false, true] {
        let case = WrongOp { runs: Cell::new(0), conv };
        let rows = compare_case(&Cpu::default(), &Cpu::default(), &case, 3);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert!(!rows[0].pass && rows[0].max_rel > 0.01, "{rows:#?}");
        assert_eq!(rows[0].case, case.name());
    }
}

/// A case whose tested run panics, or gives other outputs than the reference's.
struct Broken {
    runs: Cell<usize>,
    panics: bool,
}

impl Case for Broken {
    fn name(&self) -> String {
        "broken".into()
    }
    fn run<D: Backend>(&self, _dev: &D, _rng: &mut ChaCha8Rng) -> Vec<Output> {
        self.runs.set(self.runs.get() + 1);
        let first = self.runs.get() == 1;
        if !first && self.panics {
            panic!("a kernel failed to launch");
        }
        let name = if first { "y" } else { "dx" };
        vec![Output { name: name.into(), values: vec![1.0], tolerance: gpu_check::EXACT }]
    }
}

#[test]
fn gpu_check_reports_a_panic_or_missing_outputs_as_a_failure() {
    let rows = compare_case(&Cpu::default(), &Cpu::default(), &Broken { runs: Cell::new(0), panics: true }, 1);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(!rows[0].pass);
    assert_eq!(rows[0].problem.as_deref(), Some("cpu panicked: a kernel failed to launch"));

    let rows = compare_case(&Cpu::default(), &Cpu::default(), &Broken { runs: Cell::new(0), panics: false }, 1);
    assert!(!rows[0].pass);
    assert!(
        rows[0].problem.as_deref().unwrap().contains(r#"gave the outputs ["dx"], the reference ["y"]"#),
        "{rows:?}"
    );
}

#[test]
fn gpu_check_measures_errors_relative_to_the_output_scale() {
    // 2e-5 off a scale of 4: 5e-6.
    let row = measure(&[1.0, -4.0, 2.0], &[1.0, -4.0, 2.00002], 1e-5);
    assert!(row.pass && (row.max_rel - 5e-6).abs() < 1e-7 && row.scale == 4.0, "{row:?}");
    assert!(!measure(&[1.0, -4.0, 2.0], &[1.0, -4.0, 2.0002], 1e-5).pass);
    // All zeros on both: no error; zeros against something: an infinite one.
    assert!(measure(&[0.0, 0.0], &[0.0, 0.0], 1e-6).pass);
    let row = measure(&[0.0, 0.0], &[0.0, 1e-30], 1e-6);
    assert!(!row.pass && row.max_rel.is_infinite(), "{row:?}");
    // A NaN or an infinity where the reference is finite, or a missing value, fails.
    let row = measure(&[1.0, 2.0], &[1.0, f32::NAN], 1e-4);
    assert!(!row.pass && row.problem.as_deref() == Some("value [1] is NaN where the reference's is 2"), "{row:?}");
    assert!(!measure(&[1.0, 2.0], &[f32::INFINITY, 2.0], 1e-4).pass);
    let row = measure(&[1.0, 2.0], &[1.0], 1e-4);
    assert!(!row.pass && row.problem.as_deref() == Some("1 values where the reference has 2"), "{row:?}");
}

#[test]
fn gpu_check_command_compares_the_cpu_with_itself_and_says_so() {
    let out = runner(&repo(), &["gpu-check", "--device", "cpu", "--json"]);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["reference"].as_str(), report["tested"].as_str()), (Some("cpu"), Some("cpu")));
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.len() > 100, "{} rows", rows.len());
    assert!(rows.iter().all(|r| r["pass"] == true && r["max_abs"] == 0.0), "{report}");

    let out = runner(&repo(), &["gpu-check", "--device", "cpu"]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("cpu against itself: a check of the comparison"), "{table}");
    assert!(table.contains("tolerance reduction 1e-4"), "{table}");

    // `auto` names no device; a config override means nothing here.
    assert_exit(&runner(&repo(), &["gpu-check", "--device", "auto"]), 64);
    assert_exit(&runner(&repo(), &["gpu-check", "--device", "cpu", "--set", "train.epochs=1"]), 64);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn gpu_check_in_a_build_without_cuda_says_so_and_fails() {
    for args in [&["gpu-check"][..], &["gpu-check", "--device", "cuda:1", "--json"]] {
        let out = runner(&repo(), args);
        assert_exit(&out, 69);
        let err = crate::util::stderr(&out);
        assert!(err.contains("this runner was built without CUDA"), "{err}");
        assert!(out.stdout.is_empty(), "nothing compared, nothing printed");
    }
}

#[test]
fn gpu_check_script_parses_and_reports_each_part_with_a_summary() {
    use std::process::Command;
    let script = repo().join("scripts/gpu-check.sh");
    assert!(Command::new("bash").arg("-n").arg(&script).status().unwrap().success(), "bash -n");
    match Command::new("shellcheck").arg(&script).output() {
        Ok(out) => assert!(out.status.success(), "shellcheck:\n{}", String::from_utf8_lossy(&out.stdout)),
        Err(_) => eprintln!("shellcheck is not installed; only `bash -n` checked the script"),
    }
    let help = Command::new("bash").arg(&script).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--runner PATH"));
    let wrong = Command::new("bash").arg(&script).args(["--device", "tpu"]).output().unwrap();
    assert_eq!(wrong.status.code(), Some(2), "{}", String::from_utf8_lossy(&wrong.stderr));

    // Without a binary, each part fails on its own, the summary says so, and all of it is logged.
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--device", "cpu", "--runner"])
        .arg(tmp.path().join("no-runner"))
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for part in 1..=3 {
        let line = text.lines().rev().find(|l| l.starts_with(&format!("part {part} "))).unwrap();
        assert!(line.contains("FAIL: no runner binary at"), "{line}");
    }
    assert!(text.trim_end().ends_with("3 of 3 parts FAILED"), "{text}");
    let log = std::fs::read_to_string(results.join("gpu-check.log")).unwrap();
    assert!(log.contains("3 of 3 parts FAILED"), "{log}");
}
