//! `runner gpu-check`: every op the networks use, run on two devices on the same random inputs
//! and compared output by output: forward values, the gradients of the inputs and weights, the
//! new state of a layer or an optimizer. The reference is the CPU; the device under test is a
//! GPU, or the CPU again (a self-check of the comparison itself).
//!
//! The ops are called through their public, device-generic functions (`ops::conv2d`,
//! `ops::max_pool2d`, `ops::avg_pool2d`, `ops::dense`, the layers' forward passes, the losses,
//! `Optimizer::update`), so the check exercises whatever kernels stand behind them on each
//! device.
//!
//! Each output is judged by its error relative to its own scale: `max |tested - reference|`
//! divided by `max |reference|` (a normwise relative error), against a tolerance set by how the
//! output is computed ([`EXACT`], [`SHORT`], [`REDUCTION`]; [`SAMPLED`] for the one statistic
//! of random draws, dropout's kept fraction, since a GPU draws its masks its own way). Where a
//! ReLU or a max pooling decides which values pass a gradient, the inputs are small integers
//! and dyadic fractions whose sums are exact in float32 in any order, and no two values a
//! pooling window compares are within 1/32 of each other, so both devices make the same
//! decisions and only the gradients' rounding differs (see [`ConvCase`]).

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Loss, TrainConfig};
use crate::model::layers::average_pooling2d::AveragePooling2dConfig;
use crate::model::layers::batch_normalization::BatchNormalizationConfig;
use crate::model::layers::conv2d::Conv2dConfig;
use crate::model::layers::dropout::DropoutConfig;
use crate::model::layers::global_average_pooling2d::GlobalAveragePooling2dConfig;
use crate::model::layers::max_pooling2d::MaxPooling2dConfig;
use crate::model::layers::{Activation, Batch, Ctx, Layer, Padding, Pair, Param, PoolWindow, Training};
use crate::model::network::NamedParam;
use crate::model::Shape;
use crate::ops::{self, host, Backend, Epilogue};
use crate::seed::{self, Stream};

use super::loss;
use super::optimizer::Optimizer;

/// Tolerance of outputs that involve no sum, or sums of a handful of values: selections (max
/// pooling), copies, masks, ReLU, and elementwise functions. float32 resolves 2^-23 ≈ 1.2e-7
/// relative; CUDA's `expf`, `tanhf` and `logf` are within 2 ulps instead of correctly rounded,
/// so a few ulps of the output's scale are allowed.
pub const EXACT: f64 = 1e-6;

/// Tolerance of outputs built from short sums (tens of terms) or from several transcendental
/// functions in a row: average pooling windows, softmax, global average pooling, losses and
/// their gradients, optimizer steps. Ten times [`EXACT`].
pub const SHORT: f64 = 1e-5;

/// Tolerance of long reductions: convolutions and dense layers (sums of `c·kh·kw` or `fan_in`
/// products forward; of `batch·oh·ow` or `batch` products for the weight gradients) and batch
/// normalisation (means over `batch·h·w` values). A GPU sums in another order (blocks, trees,
/// atomics; cuDNN's Winograd and FFT algorithms transform the operands first), and the rounding
/// of a float32 sum of n terms grows like √n·2^-24 relative to its partial sums: about 6e-6
/// for the 10^4 terms of the largest sums here. 1e-4 leaves a margin of ~16 for algorithms'
/// constants, while a wrong index, layout, padding, stride or a lost accumulation gives errors
/// of order 1. TF32 tensor-core arithmetic (10-bit mantissas, about 5e-4 per product) does not
/// fit it, by design: the check shows float32 results. `NVIDIA_TF32_OVERRIDE=0` turns TF32 off
/// in cuBLAS and cuDNN to tell the two apart.
pub const REDUCTION: f64 = 1e-4;

/// Tolerance of a statistic of random draws that the devices make each in their own way: the
/// fraction of values a training dropout keeps, over 200,000 values, is within 5 standard
/// deviations (0.005) of its expectation, under 1% of it.
pub const SAMPLED: f64 = 1e-2;

/// The tolerances, with what they are for, for the report's legend.
pub const TOLERANCES: [(&str, f64, &str); 4] = [
    ("exact", EXACT, "selections, copies, masks, elementwise functions: a few float32 ulps"),
    ("short", SHORT, "short sums and chains of transcendental functions (pools, softmax, losses, optimizer steps)"),
    ("reduction", REDUCTION, "long sums in another order (convolutions, dense layers, batch normalisation)"),
    ("sampled", SAMPLED, "statistics of random draws each device makes its own way (dropout's kept fraction)"),
];

/// One output of a case on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// What it is: `y`, `dx`, `dkernel`, `moving_mean`, ...
    pub name: String,
    /// Its values, on the host.
    pub values: Vec<f32>,
    /// The tolerance its comparison uses ([`EXACT`], [`SHORT`], [`REDUCTION`] or [`SAMPLED`]).
    pub tolerance: f64,
}

impl Output {
    fn new(name: impl Into<String>, values: Vec<f32>, tolerance: f64) -> Self {
        Output { name: name.into(), values, tolerance }
    }
}

/// Something to compute on two devices and compare.
pub trait Case {
    /// What is checked, as the report names it.
    fn name(&self) -> String;
    /// The outputs on `dev`, with every input drawn from `rng` (the same stream on both devices).
    fn run<D: Backend>(&self, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output>;
}

/// The comparison of one output.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    /// The case.
    pub case: String,
    /// The output (`-` when the case failed before giving any).
    pub output: String,
    /// Number of values compared.
    pub values: usize,
    /// `max |tested - reference|`.
    pub max_abs: f64,
    /// `max |reference|`, the output's scale.
    pub scale: f64,
    /// `max_abs / scale` (0 when both are 0): what the tolerance bounds.
    pub max_rel: f64,
    /// The bound on `max_rel`.
    pub tolerance: f64,
    /// `max_rel <= tolerance`, every value finite where the reference's is.
    pub pass: bool,
    /// For a failure: what went wrong, or where the largest difference is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Everything `runner gpu-check` compared.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The reference device (`cpu`).
    pub reference: &'static str,
    /// The device under test.
    pub tested: &'static str,
    /// The seed the inputs were drawn from.
    pub seed: u64,
    /// One row per output of every case.
    pub rows: Vec<Row>,
}

impl Report {
    /// Rows outside their tolerance.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.pass)
    }

    /// Whether every output is within its tolerance.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The report as a table for the terminal, with the tolerances' legend and a last line
    /// that counts the failures.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} against {} on random inputs (seed {}); error = max |{} - {}| / max |{}| per output\n",
            self.tested, self.reference, self.seed, self.tested, self.reference, self.reference
        );
        if self.tested == self.reference {
            out += &format!(
                "  ({} against itself: a check of the comparison, which says nothing about a GPU)\n",
                self.tested
            );
        }
        for (name, tol, what) in TOLERANCES {
            out += &format!("  tolerance {name:<9} {tol:.0e}: {what}\n");
        }
        let width = self.rows.iter().map(|r| r.case.chars().count()).max().unwrap_or(4).max(4);
        let named = self.rows.iter().map(|r| r.output.chars().count()).max().unwrap_or(6).max(6);
        out += &format!(
            "\n{:<width$}  {:<named$} {:>7}  {:>9}  {:>9}  {:>9}  {:>9}  result\n",
            "case", "output", "values", "max abs", "scale", "error", "tolerance"
        );
        for r in &self.rows {
            out += &format!(
                "{:<width$}  {:<named$} {:>7}  {:>9.2e}  {:>9.2e}  {:>9.2e}  {:>9.0e}  {}\n",
                r.case,
                r.output,
                r.values,
                r.max_abs,
                r.scale,
                r.max_rel,
                r.tolerance,
                if r.pass { "ok" } else { "FAIL" }
            );
            if let Some(problem) = &r.problem {
                out += &format!("{:<width$}  ^ {problem}\n", "");
            }
        }
        let failed = self.failures().count();
        let cases = {
            let mut names: Vec<&str> = self.rows.iter().map(|r| r.case.as_str()).collect();
            names.dedup();
            names.len()
        };
        out += &match failed {
            0 => format!("\n{} outputs of {cases} cases: all within tolerance\n", self.rows.len()),
            n => format!("\n{} outputs of {cases} cases: {n} FAILED\n", self.rows.len()),
        };
        out
    }
}

/// Compares `tested` against `reference` for an output whose comparison allows `tolerance`:
/// the row, less its case and output names.
pub fn measure(reference: &[f32], tested: &[f32], tolerance: f64) -> Row {
    let mut row = Row {
        case: String::new(),
        output: String::new(),
        values: reference.len(),
        max_abs: 0.0,
        scale: 0.0,
        max_rel: 0.0,
        tolerance,
        pass: true,
        problem: None,
    };
    if reference.len() != tested.len() {
        row.pass = false;
        row.max_abs = f64::INFINITY;
        row.max_rel = f64::INFINITY;
        row.problem = Some(format!("{} values where the reference has {}", tested.len(), reference.len()));
        return row;
    }
    let mut worst = None;
    for (i, (&r, &t)) in reference.iter().zip(tested).enumerate() {
        let (r64, t64) = (f64::from(r), f64::from(t));
        if r.is_finite() != t.is_finite() || (!r.is_finite() && r.to_bits() != t.to_bits()) {
            row.pass = false;
            row.max_abs = f64::INFINITY;
            row.problem.get_or_insert_with(|| format!("value [{i}] is {t} where the reference's is {r}"));
            continue;
        }
        if !r.is_finite() {
            continue;
        }
        row.scale = row.scale.max(r64.abs());
        let d = (t64 - r64).abs();
        if d > row.max_abs {
            row.max_abs = d;
            worst = Some((i, t, r));
        }
    }
    row.max_rel = match (row.max_abs, row.scale) {
        (0.0, _) => 0.0,
        (d, s) if s > 0.0 => d / s,
        _ => f64::INFINITY,
    };
    if row.max_rel > tolerance {
        row.pass = false;
    }
    if !row.pass && row.problem.is_none() {
        if let Some((i, t, r)) = worst {
            row.problem = Some(format!("largest difference at [{i}]: {t:e} where the reference has {r:e}"));
        }
    }
    row
}

/// Runs `case` on `reference` and on `tested` with the same inputs (the `DeviceCheck` stream
/// of `seed`, keyed by the case's name) and compares each output. A case that panics on either
/// device is one failed row.
pub fn compare_case<A: Backend, B: Backend, C: Case>(reference: &A, tested: &B, case: &C, seed: u64) -> Vec<Row> {
    let name = case.name();
    let rng = || seed::rng(seed, Stream::DeviceCheck, &[crate::hash::fnv1a(name.as_bytes())]);
    let failed = |problem: String| {
        let mut row = measure(&[], &[], 0.0);
        row.case = name.clone();
        row.output = "-".into();
        row.pass = false;
        row.problem = Some(problem);
        vec![row]
    };
    let want = match catch_unwind(AssertUnwindSafe(|| case.run(reference, &mut rng()))) {
        Ok(outputs) => outputs,
        Err(panic) => {
            return failed(format!(
                "the reference ({}) panicked: {}",
                A::NAME,
                crate::error::panic_message(panic.as_ref())
            ))
        }
    };
    let got = match catch_unwind(AssertUnwindSafe(|| case.run(tested, &mut rng()))) {
        Ok(outputs) => outputs,
        Err(panic) => return failed(format!("{} panicked: {}", B::NAME, crate::error::panic_message(panic.as_ref()))),
    };
    let names = |outputs: &[Output]| outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    if names(&want) != names(&got) {
        return failed(format!("{} gave the outputs {:?}, the reference {:?}", B::NAME, names(&got), names(&want)));
    }
    want.iter()
        .zip(&got)
        .map(|(w, g)| Row { case: name.clone(), output: w.name.clone(), ..measure(&w.values, &g.values, w.tolerance) })
        .collect()
}

/// Every case of [`cases`] on `reference` and `tested`.
pub fn compare<A: Backend, B: Backend>(reference: &A, tested: &B, seed: u64) -> Report {
    let rows = cases().iter().flat_map(|case| compare_case(reference, tested, case, seed)).collect();
    Report { reference: A::NAME, tested: B::NAME, seed, rows }
}

/// Every case on `dev` against a fresh CPU device.
pub fn against_cpu<D: Backend>(dev: &D, seed: u64) -> Report {
    compare(&Cpu::seed_from_u64(seed), dev, seed)
}

// ---------------------------------------------------------------------------------------------
// The cases

/// One case of the check.
#[derive(Clone, Debug)]
pub enum Check {
    /// `ops::conv2d`.
    Conv(ConvCase),
    /// `ops::max_pool2d` (`max` true) or `ops::avg_pool2d`, through the pooling layers.
    Pool {
        /// Max or average.
        max: bool,
        /// Images per batch.
        batch: usize,
        /// Channels, height, width.
        input: [usize; 3],
        /// The window.
        window: PoolWindow,
    },
    /// `ops::dense`.
    Dense {
        /// Images per batch.
        batch: usize,
        /// Inputs per image.
        fan_in: usize,
        /// Outputs per image.
        units: usize,
        /// With a bias.
        bias: bool,
        /// With the ReLU folded in.
        relu: bool,
        /// Whether the input's gradient is made (false for a first layer).
        input_grad: bool,
    },
    /// Batch normalisation, training (batch statistics, moving averages updated) or inference.
    BatchNorm {
        /// Images per batch.
        batch: usize,
        /// The input of one image.
        input: Shape,
        /// Training or inference.
        training: bool,
    },
    /// Dropout, in training (a seeded mask) or inference (the identity).
    Dropout {
        /// The rate.
        rate: f64,
        /// Training or inference.
        training: bool,
    },
    /// An activation function, as `activation = "..."` applies it.
    Activation(Activation),
    /// Global average pooling.
    GlobalAveragePooling,
    /// A loss of `train.loss` on logits, or (`None`) the multi-label loss.
    Loss {
        /// The loss; `None` for the multi-label binary cross-entropy.
        kind: Option<Loss>,
        /// Output units.
        units: usize,
        /// `train.label_smoothing`.
        smoothing: f64,
        /// `train.class_weight`, one per class.
        class_weights: Option<Vec<f32>>,
    },
    /// Three steps of an optimizer, described by `[train]` keys in TOML.
    Optimizer(&'static str),
}

/// A convolution: `ops::conv2d` on a batch, forward with and without a tape, and backward.
///
/// With a ReLU or a max pooling in the epilogue, which decide where gradients go, the inputs
/// are exact: channels of small integers, and a last channel holding at each pixel
/// `0.25 + (3·(y mod 3) + (x mod 3))/32`, which the kernel's centre tap copies (weight 1 there,
/// 0 at the other taps of that channel); the other weights and the biases are small integers.
/// Every output is then an integer plus a fraction in [0.25, 0.5], computed exactly in float32
/// in any summation order: never within 0.25 of the ReLU's 0, and the outputs a pooling window
/// (at most 3×3) compares differ in that fraction by at least 1/32.
#[derive(Clone, Debug)]
pub struct ConvCase {
    /// Images per batch.
    pub batch: usize,
    /// Channels, height, width.
    pub input: [usize; 3],
    /// The layer (filters, kernel, strides, padding, dilation, bias).
    pub layer: Conv2dConfig,
    /// A ReLU in the epilogue.
    pub relu: bool,
    /// A max pooling in the epilogue.
    pub pool: Option<PoolWindow>,
    /// Whether the input's gradient is made (false for a first layer).
    pub input_grad: bool,
}

impl ConvCase {
    fn exact(&self) -> bool {
        self.relu || self.pool.is_some()
    }
}

#[allow(clippy::too_many_arguments)]
fn conv(
    batch: usize,
    input: [usize; 3],
    filters: usize,
    kernel: [usize; 2],
    setup: impl FnOnce(&mut Conv2dConfig),
    relu: bool,
    pool: Option<PoolWindow>,
    input_grad: bool,
) -> Check {
    let mut layer = Conv2dConfig::new(filters, kernel);
    setup(&mut layer);
    Check::Conv(ConvCase { batch, input, layer, relu, pool, input_grad })
}

fn window(size: usize, stride: usize, padding: Padding) -> PoolWindow {
    PoolWindow { pool_size: Pair([size, size]), strides: Some(Pair([stride, stride])), padding, trainable: true }
}

/// Every case `runner gpu-check` runs: the geometries and epilogues of convolution the layer
/// kinds produce, both poolings, dense layers, batch normalisation, dropout, every activation,
/// global average pooling, every loss and every optimizer (with clipping and weight decay).
pub fn cases() -> Vec<Check> {
    let same = |l: &mut Conv2dConfig| l.padding = Padding::Same;
    let no_bias = |l: &mut Conv2dConfig| l.use_bias = false;
    let pool2 = Some(window(2, 2, Padding::Valid));
    let mut cases = vec![
        // The first layer of the baseline: no input gradient.
        conv(4, [1, 28, 28], 8, [3, 3], |_| {}, false, None, false),
        conv(4, [3, 16, 16], 8, [3, 3], |_| {}, false, None, true),
        conv(3, [8, 15, 13], 16, [3, 3], same, false, None, true),
        // "same" with stride 2 on an even size, and an even kernel, pad after the last row and
        // column only (TensorFlow's rule).
        conv(4, [8, 16, 16], 8, [3, 3], |l| (l.padding, l.strides) = (Padding::Same, Pair([2, 2])), false, None, true),
        conv(3, [4, 9, 9], 4, [2, 2], same, false, None, true),
        conv(2, [4, 20, 20], 8, [3, 3], |l| (l.dilation_rate, l.use_bias) = (Pair([2, 2]), false), false, None, true),
        conv(2, [16, 9, 9], 32, [1, 1], no_bias, false, None, true),
        // ReLU, and ReLU with the max pooling folded in (the baseline's second layer, odd size).
        conv(4, [8, 15, 13], 16, [3, 3], same, true, None, true),
        // (Two channels: an exact case needs one for its codes, see ConvCase.)
        conv(4, [2, 28, 28], 8, [3, 3], |_| {}, true, pool2.clone(), false),
        conv(4, [16, 13, 13], 32, [3, 3], |_| {}, true, pool2.clone(), true),
        conv(3, [6, 17, 17], 8, [3, 3], no_bias, false, pool2.clone(), true),
        conv(2, [4, 16, 16], 8, [3, 3], |l| l.strides = Pair([2, 2]), true, pool2, true),
        conv(2, [4, 14, 12], 6, [5, 3], same, true, Some(window(3, 2, Padding::Same)), true),
        conv(
            2,
            [3, 20, 20],
            4,
            [3, 3],
            |l| l.dilation_rate = Pair([2, 2]),
            true,
            Some(window(3, 1, Padding::Valid)),
            true,
        ),
    ];
    for (max, input, window) in [
        (true, [4, 12, 12], window(2, 2, Padding::Valid)),
        (true, [3, 13, 11], window(2, 2, Padding::Valid)),
        (true, [3, 11, 11], window(3, 2, Padding::Same)),
        // "same" on an odd size pads after the last row and column only (TensorFlow's rule).
        (true, [3, 13, 11], window(2, 2, Padding::Same)),
        (true, [2, 9, 9], window(3, 1, Padding::Valid)),
        (false, [4, 12, 12], window(2, 2, Padding::Valid)),
        (false, [3, 11, 11], window(3, 1, Padding::Same)),
        (false, [3, 13, 11], window(2, 2, Padding::Same)),
        (false, [2, 13, 13], window(3, 2, Padding::Valid)),
    ] {
        cases.push(Check::Pool { max, batch: 3, input, window });
    }
    for (batch, fan_in, units, bias, relu, input_grad) in [
        (8, 800, 64, true, true, true),
        (8, 64, 10, true, false, true),
        (5, 300, 33, false, true, false),
        (6, 70, 1, true, false, true),
    ] {
        cases.push(Check::Dense { batch, fan_in, units, bias, relu, input_grad });
    }
    for (input, training) in [
        (Shape::Image { c: 8, h: 5, w: 5 }, true),
        (Shape::Image { c: 8, h: 5, w: 5 }, false),
        (Shape::Flat(24), true),
        (Shape::Flat(24), false),
    ] {
        cases.push(Check::BatchNorm { batch: 6, input, training });
    }
    cases.push(Check::Dropout { rate: 0.5, training: false });
    cases.push(Check::Dropout { rate: 0.3, training: true });
    for a in [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Elu,
        Activation::Gelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softmax,
    ] {
        cases.push(Check::Activation(a));
    }
    cases.push(Check::GlobalAveragePooling);
    let loss = |kind, units, smoothing, class_weights| Check::Loss { kind, units, smoothing, class_weights };
    cases.extend([
        loss(Some(Loss::BinaryCrossentropy), 1, 0.0, None),
        loss(Some(Loss::BinaryCrossentropy), 1, 0.1, Some(vec![0.7, 1.6])),
        loss(Some(Loss::CategoricalCrossentropy), 10, 0.1, None),
        loss(Some(Loss::SparseCategoricalCrossentropy), 10, 0.0, Some((0..10).map(|i| 0.5 + 0.1 * i as f32).collect())),
        loss(None, 5, 0.05, None),
    ]);
    for optimizer in [
        r#"optimizer = "adam""#,
        r#"optimizer = "adam"
clipnorm = 0.5"#,
        r#"optimizer = "adam"
global_clipnorm = 1.0
weight_decay = 0.01"#,
        r#"optimizer = "adamw""#,
        r#"optimizer = "sgd""#,
        r#"optimizer = "sgd"
momentum = 0.9"#,
        r#"optimizer = "sgd"
momentum = 0.9
nesterov = true
weight_decay = 0.01"#,
        r#"optimizer = "rmsprop""#,
        r#"optimizer = "rmsprop"
momentum = 0.9
centered = true"#,
    ] {
        cases.push(Check::Optimizer(optimizer));
    }
    cases
}

impl Case for Check {
    fn name(&self) -> String {
        match self {
            Check::Conv(c) => {
                let l = &c.layer;
                let [ch, h, w] = c.input;
                let padding = match l.padding {
                    Padding::Valid => "valid",
                    Padding::Same => "same",
                };
                let mut name = format!("conv2d {} {padding}", l.kernel_size);
                if l.strides != Pair([1, 1]) {
                    name += &format!(" stride {}", l.strides);
                }
                if l.dilation_rate != Pair([1, 1]) {
                    name += &format!(" dilation {}", l.dilation_rate);
                }
                name += &format!(" {ch}x{h}x{w}->{}", l.filters);
                name += if l.use_bias { " +bias" } else { " no bias" };
                name += match (c.relu, &c.pool) {
                    (false, None) => "",
                    (true, None) => " +relu",
                    (true, Some(_)) => " +relu+maxpool",
                    (false, Some(_)) => " +maxpool",
                };
                if let Some(p) = &c.pool {
                    name += &format!(" {}/{}", p.pool_size, p.strides.unwrap_or(p.pool_size).0[0]);
                }
                if !c.input_grad {
                    name += " (first layer)";
                }
                name
            }
            Check::Pool { max, input: [c, h, w], window, .. } => {
                let kind = if *max { "max_pool2d" } else { "avg_pool2d" };
                let padding = if window.padding == Padding::Same { " same" } else { "" };
                let stride = window.strides.unwrap_or(window.pool_size).0[0];
                format!("{kind} {}/{stride}{padding} {c}x{h}x{w}", window.pool_size)
            }
            Check::Dense { fan_in, units, bias, relu, input_grad, .. } => {
                let mut name = format!("dense {fan_in}->{units}");
                name += if *bias { " +bias" } else { " no bias" };
                if *relu {
                    name += " +relu";
                }
                if !input_grad {
                    name += " (first layer)";
                }
                name
            }
            Check::BatchNorm { input, training, .. } => {
                let input = match input {
                    Shape::Image { c, h, w } => format!("{c}x{h}x{w}"),
                    Shape::Flat(n) => n.to_string(),
                };
                format!("batch_normalization {input} {}", if *training { "training" } else { "inference" })
            }
            Check::Dropout { rate, training } => {
                format!("dropout {rate} {}", if *training { "training (mask statistics)" } else { "inference" })
            }
            Check::Activation(a) => format!("activation {}", crate::config::serde_name(*a)),
            Check::GlobalAveragePooling => "global_average_pooling2d".into(),
            Check::Loss { kind, units, smoothing, class_weights } => {
                let mut name = match kind {
                    Some(k) => format!("loss {}", crate::config::serde_name(*k)),
                    None => "loss multi-label binary_crossentropy".into(),
                };
                name += &format!(" {units} units");
                if *smoothing > 0.0 {
                    name += &format!(" smoothing {smoothing}");
                }
                if class_weights.is_some() {
                    name += " class weights";
                }
                name
            }
            Check::Optimizer(keys) => {
                let keys = keys.replace('\n', ", ").replace('"', "");
                format!("optimizer {}", keys.trim_start_matches("optimizer = "))
            }
        }
    }

    fn run<D: Backend>(&self, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
        match self {
            Check::Conv(c) => run_conv(c, dev, rng),
            Check::Pool { max, batch, input, window } => run_pool(*max, *batch, *input, window, dev, rng),
            &Check::Dense { batch, fan_in, units, bias, relu, input_grad } => {
                run_dense(batch, fan_in, units, bias, relu, input_grad, dev, rng)
            }
            &Check::BatchNorm { batch, input, training } => run_batch_norm(batch, input, training, dev, rng),
            &Check::Dropout { rate, training } => run_dropout(rate, training, dev, rng),
            &Check::Activation(a) => run_activation(a, dev, rng),
            Check::GlobalAveragePooling => run_global_average_pooling(dev, rng),
            Check::Loss { kind, units, smoothing, class_weights } => {
                run_loss(*kind, *units, *smoothing, class_weights.as_deref(), dev, rng)
            }
            Check::Optimizer(keys) => run_optimizer(keys, dev, rng),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the cases

fn uniform(n: usize, limit: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-limit..limit)).collect()
}

fn integers(n: usize, limit: i32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-limit..=limit) as f32).collect()
}

/// The gradient of `t` in `grads` on the host (zeros when none was made).
fn grad<S: dfdx::shapes::Shape, D: Backend>(grads: &mut Gradients<f32, D>, t: &Tensor<S, f32, D>) -> Vec<f32> {
    D::with_grad(grads, t, |g| g.to_vec()).expect("reading a gradient")
}

/// The values of `y`, and the gradients of `Σ y·r` for a random `r` drawn from `rng` (so that
/// every output's gradient is a different random vector).
fn backward<D: Backend>(y: Batch<D, OwnedTape<f32, D>>, rng: &mut impl Rng) -> (Vec<f32>, Gradients<f32, D>) {
    let (values, grads, _) = backward_weighted(y, rng);
    (values, grads)
}

/// [`backward`], also giving `r`, the gradient of `y`.
fn backward_weighted<D: Backend>(
    y: Batch<D, OwnedTape<f32, D>>,
    rng: &mut impl Rng,
) -> (Vec<f32>, Gradients<f32, D>, Vec<f32>) {
    let (y, tape) = y.split_tape();
    let values = host(&y).into_owned();
    let shape = *y.shape();
    let weights = uniform(values.len(), 1.0, rng);
    let r = y.device().tensor_from_vec(weights.clone(), shape);
    let loss = (y.put_tape(tape) * r).sum::<Rank0, _>();
    (values, loss.backward(), weights)
}

/// A `Ctx` for a layer on `input` with `params`, in training (`Some`) or not; the layer's new
/// state (batch normalisation's moving averages) goes to `updates`, a `RefCell` of whatever
/// `Ctx::updates` holds.
macro_rules! ctx {
    ($input:expr, $params:expr, $training:expr, $updates:expr) => {
        Ctx {
            input: $input,
            params: $params,
            skip_activation: false,
            input_grad: true,
            training: $training,
            layer: 3,
            next_max_pool: None,
            fused_next: Cell::new(false),
            conv_algorithm: Default::default(),
            updates: $updates,
        }
    };
}

fn run_conv<D: Backend>(c: &ConvCase, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
    let [ch, h, w] = c.input;
    let g = c.layer.geometry(Shape::Image { c: ch, h, w }).expect("a convolution that fits its input");
    let conv_out = Shape::Image { c: g.f, h: g.oh, w: g.ow };
    let max_pool = c.pool.as_ref().map(|p| p.geometry(conv_out, "max_pooling2d").expect("a pooling that fits"));
    let epilogue = Epilogue { relu: c.relu, max_pool };
    let (k_len, taps) = (g.f * ch * g.kh * g.kw, g.kh * g.kw);
    let (x, kernel, bias) = if c.exact() {
        assert!(ch >= 2 && g.kh % 2 == 1 && g.kw % 2 == 1, "an exact case needs 2 channels and an odd kernel");
        // Every output's centre tap must read a pixel of the image, not the padding.
        let inside = |out: usize, stride: usize, tap: usize, pad: usize, size: usize| {
            (0..out).all(|o| (o * stride + tap).checked_sub(pad).is_some_and(|i| i < size))
        };
        assert!(
            inside(g.oh, g.sh, (g.kh / 2) * g.dh, g.pad_top, h) && inside(g.ow, g.sw, (g.kw / 2) * g.dw, g.pad_left, w),
            "an exact case needs every centre tap inside the image"
        );
        // The last channel holds each pixel's code; the centre tap copies it (see ConvCase).
        let mut x = integers(c.batch * ch * h * w, 3, rng);
        for image in x.chunks_mut(ch * h * w) {
            for (i, v) in image[(ch - 1) * h * w..].iter_mut().enumerate() {
                *v = 0.25 + (3 * ((i / w) % 3) + (i % w) % 3) as f32 / 32.0;
            }
        }
        let mut kernel = integers(k_len, 2, rng);
        for filter in kernel.chunks_mut(ch * taps) {
            let code = &mut filter[(ch - 1) * taps..];
            code.fill(0.0);
            code[(g.kh / 2) * g.kw + g.kw / 2] = 1.0;
        }
        (x, kernel, integers(g.f, 3, rng))
    } else {
        let x = uniform(c.batch * ch * h * w, 1.0, rng);
        let kernel = uniform(k_len, 1.0 / ((ch * taps) as f32).sqrt(), rng);
        (x, kernel, uniform(g.f, 0.1, rng))
    };
    let x = dev.tensor_from_vec(x, (c.batch, ch * h * w));
    let kernel = dev.tensor_from_vec(kernel, (k_len,));
    let bias = c.layer.use_bias.then(|| dev.tensor_from_vec(bias, (g.f,)));
    let inference = host(&ops::conv2d(x.clone(), &kernel, bias.as_ref(), g, epilogue, c.input_grad)).into_owned();
    let y = ops::conv2d(x.clone().traced(Gradients::leaky()), &kernel, bias.as_ref(), g, epilogue, c.input_grad);
    let (y, mut grads) = backward(y, rng);
    let mut out = vec![Output::new("y", y, REDUCTION), Output::new("y (no tape)", inference, REDUCTION)];
    if c.input_grad {
        out.push(Output::new("dx", grad(&mut grads, &x), REDUCTION));
    }
    out.push(Output::new("dkernel", grad(&mut grads, &kernel), REDUCTION));
    if let Some(bias) = &bias {
        out.push(Output::new("dbias", grad(&mut grads, bias), REDUCTION));
    }
    out
}

fn run_pool<D: Backend>(
    max: bool,
    batch: usize,
    [c, h, w]: [usize; 3],
    window: &PoolWindow,
    dev: &D,
    rng: &mut ChaCha8Rng,
) -> Vec<Output> {
    let input = Shape::Image { c, h, w };
    // Continuous random values: no ties for a max pooling to break.
    let x = dev.tensor_from_vec(uniform(batch * c * h * w, 1.0, rng), (batch, c * h * w));
    let updates = RefCell::new(Vec::new());
    let ctx = ctx!(input, &[], None, &updates);
    let (y, tolerance) = match max {
        true => (MaxPooling2dConfig(window.clone()).forward(x.clone().traced(Gradients::leaky()), &ctx), EXACT),
        false => (AveragePooling2dConfig(window.clone()).forward(x.clone().traced(Gradients::leaky()), &ctx), SHORT),
    };
    let (y, mut grads) = backward(y, rng);
    vec![Output::new("y", y, tolerance), Output::new("dx", grad(&mut grads, &x), tolerance)]
}

#[allow(clippy::too_many_arguments)]
fn run_dense<D: Backend>(
    batch: usize,
    fan_in: usize,
    units: usize,
    bias: bool,
    relu: bool,
    input_grad: bool,
    dev: &D,
    rng: &mut ChaCha8Rng,
) -> Vec<Output> {
    // With a ReLU, integers and a bias of an integer and a half: every output is exact and at
    // least 0.5 from the ReLU's 0, so both devices pass the same gradients.
    let (x, kernel, b) = match relu {
        true => {
            let b = integers(units, 3, rng).into_iter().map(|v| v + 0.5).collect();
            (integers(batch * fan_in, 3, rng), integers(fan_in * units, 2, rng), b)
        }
        false => {
            let limit = 1.0 / (fan_in as f32).sqrt();
            (uniform(batch * fan_in, 1.0, rng), uniform(fan_in * units, limit, rng), uniform(units, 0.1, rng))
        }
    };
    let x = dev.tensor_from_vec(x, (batch, fan_in));
    let kernel = dev.tensor_from_vec(kernel, (fan_in * units,));
    let b = bias.then(|| dev.tensor_from_vec(b, (units,)));
    let inference = host(&ops::dense(x.clone(), &kernel, b.as_ref(), units, relu, input_grad)).into_owned();
    let y = ops::dense(x.clone().traced(Gradients::leaky()), &kernel, b.as_ref(), units, relu, input_grad);
    let (y, mut grads) = backward(y, rng);
    let mut out = vec![Output::new("y", y, REDUCTION), Output::new("y (no tape)", inference, REDUCTION)];
    if input_grad {
        out.push(Output::new("dx", grad(&mut grads, &x), REDUCTION));
    }
    out.push(Output::new("dkernel", grad(&mut grads, &kernel), REDUCTION));
    if let Some(b) = &b {
        out.push(Output::new("dbias", grad(&mut grads, b), REDUCTION));
    }
    out
}

fn run_batch_norm<D: Backend>(
    batch: usize,
    input: Shape,
    training: bool,
    dev: &D,
    rng: &mut ChaCha8Rng,
) -> Vec<Output> {
    let (c, per_channel) = match input {
        Shape::Image { c, h, w } => (c, h * w),
        Shape::Flat(n) => (n, 1),
    };
    let layer = BatchNormalizationConfig { momentum: 0.99, epsilon: 1e-3, trainable: true };
    // Channels with their own offsets and spreads, as activations have.
    let (offsets, spreads) = (uniform(c, 2.0, rng), uniform(c, 1.0, rng));
    let x: Vec<f32> = (0..batch * c * per_channel)
        .map(|i| {
            let ch = (i / per_channel) % c;
            offsets[ch] + (1.5 + spreads[ch]) * rng.gen_range(-1.0f32..1.0)
        })
        .collect();
    let gamma = uniform(c, 0.5, rng).into_iter().map(|v| v + 1.0).collect();
    let moving_var = uniform(c, 0.5, rng).into_iter().map(|v| v + 1.0).collect();
    let params: Vec<Param<D>> = [gamma, uniform(c, 0.5, rng), uniform(c, 0.5, rng), moving_var]
        .into_iter()
        .map(|v| dev.tensor_from_vec(v, (c,)))
        .collect();
    let x = dev.tensor_from_vec(x, (batch, c * per_channel));
    let updates = RefCell::new(Vec::new());
    let at = training.then_some(Training { seed: 1, epoch: 0, step: 0 });
    let y = layer.forward(x.clone().traced(Gradients::leaky()), &ctx!(input, &params, at, &updates));
    let (y, mut grads) = backward(y, rng);
    let mut out = vec![
        Output::new("y", y, REDUCTION),
        Output::new("dx", grad(&mut grads, &x), REDUCTION),
        Output::new("dgamma", grad(&mut grads, &params[0]), REDUCTION),
        Output::new("dbeta", grad(&mut grads, &params[1]), REDUCTION),
    ];
    for (i, values) in updates.into_inner() {
        let name = if i == 2 { "moving_mean" } else { "moving_variance" };
        out.push(Output::new(name, host(&values).into_owned(), REDUCTION));
    }
    out
}

/// Dropout. In inference, the identity. In training a device may draw its own mask (a GPU
/// draws it on the device, from its own stream), so what is compared is what does not depend
/// on which values are dropped: the fraction kept, the scale of the kept values and of their
/// gradients, and that the gradient is dropped exactly where the value is.
fn run_dropout<D: Backend>(rate: f64, training: bool, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
    // In training, enough values that the fraction kept is within 0.5% of 1 - rate (5 standard
    // deviations of 200,000 draws).
    let (batch, n) = if training { (8, 25_000) } else { (8, 50) };
    let xs = uniform(batch * n, 1.0, rng);
    let x = dev.tensor_from_vec(xs.clone(), (batch, n));
    let updates = RefCell::new(Vec::new());
    let at = training.then_some(Training { seed: 7, epoch: 1, step: 2 });
    let layer = DropoutConfig { rate, trainable: true };
    let y = layer.forward(x.clone().traced(Gradients::leaky()), &ctx!(Shape::Flat(n), &[], at, &updates));
    let (y, mut grads, r) = backward_weighted(y, rng);
    let dx = grad(&mut grads, &x);
    if !training {
        return vec![Output::new("y", y, EXACT), Output::new("dx", dx, EXACT)];
    }
    let kept: Vec<usize> = (0..y.len()).filter(|&i| y[i] != 0.0).collect();
    let range = |ratios: Vec<f32>| {
        let (lo, hi) = ratios.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        vec![lo, hi]
    };
    let mismatched = (0..y.len()).filter(|&i| (y[i] == 0.0) != (dx[i] == 0.0)).count();
    vec![
        Output::new("kept fraction", vec![kept.len() as f32 / y.len() as f32], SAMPLED),
        Output::new("kept y/x min,max", range(kept.iter().map(|&i| y[i] / xs[i]).collect()), SHORT),
        Output::new("kept dx/dy min,max", range(kept.iter().map(|&i| dx[i] / r[i]).collect()), SHORT),
        Output::new("dx, y zero apart", vec![mismatched as f32], EXACT),
    ]
}

fn run_activation<D: Backend>(a: Activation, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
    let (batch, n) = (8, 50);
    let x = dev.tensor_from_vec(uniform(batch * n, 3.0, rng), (batch, n));
    let y = a.apply(x.clone().traced(Gradients::leaky()));
    let (y, mut grads) = backward(y, rng);
    let tolerance = match a {
        Activation::Linear | Activation::Relu | Activation::LeakyRelu => EXACT,
        _ => SHORT,
    };
    vec![Output::new("y", y, tolerance), Output::new("dx", grad(&mut grads, &x), tolerance)]
}

fn run_global_average_pooling<D: Backend>(dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
    let (batch, input) = (4, Shape::Image { c: 8, h: 7, w: 7 });
    let x = dev.tensor_from_vec(uniform(batch * input.len(), 1.0, rng), (batch, input.len()));
    let updates = RefCell::new(Vec::new());
    let layer = GlobalAveragePooling2dConfig { trainable: true };
    let y = layer.forward(x.clone().traced(Gradients::leaky()), &ctx!(input, &[], None, &updates));
    let (y, mut grads) = backward(y, rng);
    vec![Output::new("y", y, SHORT), Output::new("dx", grad(&mut grads, &x), SHORT)]
}

fn run_loss<D: Backend>(
    kind: Option<Loss>,
    units: usize,
    smoothing: f64,
    class_weights: Option<&[f32]>,
    dev: &D,
    rng: &mut ChaCha8Rng,
) -> Vec<Output> {
    let batch = 16;
    let logits = dev.tensor_from_vec(uniform(batch * units, 4.0, rng), (batch, units));
    let traced = logits.clone().traced(Gradients::leaky());
    let value = match kind {
        Some(kind) => {
            let classes = if units == 1 { 2 } else { units };
            let labels: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
            loss::loss(kind, traced, &labels, smoothing, class_weights)
        }
        None => {
            let targets: Vec<f32> = (0..batch * units).map(|_| f32::from(u8::from(rng.gen_bool(0.4)))).collect();
            loss::multi_label_loss(traced, &targets, smoothing)
        }
    };
    let (value, tape) = value.split_tape();
    let loss_value = value.as_vec();
    let mut grads = value.put_tape(tape).backward();
    vec![Output::new("loss", loss_value, SHORT), Output::new("dlogits", grad(&mut grads, &logits), SHORT)]
}

fn run_optimizer<D: Backend>(keys: &str, dev: &D, rng: &mut ChaCha8Rng) -> Vec<Output> {
    let text = format!("loss = \"binary_crossentropy\"\nepochs = 1\nlearning_rate = 0.05\n{keys}\n");
    let train: TrainConfig = toml::from_str(&text).expect("the optimizer's keys are a valid [train] table");
    let mut params: Vec<NamedParam<D>> = [300, 17]
        .into_iter()
        .enumerate()
        .map(|(i, n)| NamedParam {
            name: format!("layer/w{i}"),
            dims: vec![n],
            tensor: dev.tensor_from_vec(uniform(n, 1.0, rng), (n,)),
            trainable: true,
        })
        .collect();
    let mut optimizer = Optimizer::new(&train);
    let mut out = Vec::new();
    for step in 1..=3 {
        let mut grads = Gradients::leaky();
        for p in &params {
            D::add_grad(&mut grads, &p.tensor, &uniform(p.dims[0], 1.0, rng)).expect("a gradient on the device");
        }
        optimizer.update(&mut params, &mut grads, train.learning_rate).expect("an optimizer step");
        let values = params.iter().flat_map(|p| p.tensor.as_vec()).collect();
        out.push(Output::new(format!("weights step {step}"), values, SHORT));
    }
    let (_, slots) = optimizer.state(&params);
    for (name, slot) in optimizer.slot_names().iter().zip(slots) {
        out.push(Output::new(format!("slot {name}"), slot.concat(), SHORT));
    }
    out
}
