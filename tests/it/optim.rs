//! Optimizers, gradient clipping, losses and metrics against their formulas, computed here in
//! float64 on tiny examples (learning-rate schedules: in `src/train/schedule.rs`).

// The formulas are written element by element and step by step, as the papers write them.
#![allow(clippy::needless_range_loop)]

use dfdx::prelude::*;
use runner::config::{self, Loss, Source, TrainConfig};
use runner::model::network::NamedParam;
use runner::train::loss;
use runner::train::optimizer::Optimizer;

/// A small config with `extra` in `[train]`: its keys go into the table, any sub-tables after it.
fn config_text(extra: &str) -> String {
    let text = crate::util::small_config("o", std::path::Path::new("d"), std::path::Path::new("r"), 1, 3, 2);
    let (keys, tables) = extra.split_at(extra.find('[').unwrap_or(extra.len()));
    format!("{}\n{tables}\n", text.replace("[train]\n", &format!("[train]\n{keys}\n")))
}

/// `[train]` of a small config with `extra` keys.
fn train(extra: &str) -> TrainConfig {
    let source = Source { path: "o.toml".into(), text: config_text(extra) };
    let config = config::parse(&source).unwrap();
    config::validate(config, source).unwrap_or_else(|e| panic!("{e}")).config.train
}

/// Runs `steps` updates of the optimizer `train` describes on parameters `init`, with the
/// gradients `grads(step)`; returns the parameters after each step.
fn run(
    train: &TrainConfig,
    init: &[Vec<f32>],
    grads: impl Fn(usize) -> Vec<Vec<f32>>,
    steps: usize,
) -> Vec<Vec<Vec<f32>>> {
    let dev = Cpu::default();
    let mut params: Vec<NamedParam<Cpu>> = init
        .iter()
        .enumerate()
        .map(|(i, v)| NamedParam {
            name: format!("p{i}"),
            dims: vec![v.len()],
            tensor: dev.tensor_from_vec(v.clone(), (v.len(),)),
            trainable: true,
        })
        .collect();
    let mut optimizer = Optimizer::new(train);
    let mut out = Vec::new();
    for step in 0..steps {
        // Loss Σ p·g has gradient g with respect to p.
        let g = grads(step);
        let mut total: Option<Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>> = None;
        for (p, g) in params.iter().zip(&g) {
            let term = (p.tensor.clone().traced(Gradients::leaky()) * dev.tensor_from_vec(g.clone(), (g.len(),))).sum();
            total = Some(match total {
                None => term,
                Some(t) => t + term,
            });
        }
        let mut grads = total.unwrap().backward();
        optimizer.update(&mut params, &mut grads, train.learning_rate).unwrap();
        out.push(params.iter().map(|p| p.tensor.as_vec()).collect());
    }
    out
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{what}[{i}]: got {g}, want {w}");
    }
}

const P0: [f32; 3] = [0.5, -1.0, 2.0];

fn grad(step: usize) -> Vec<Vec<f32>> {
    vec![vec![0.1 * (step + 1) as f32, -0.4, 2.0]]
}

#[test]
fn adam_and_adamw_follow_keras_formula() {
    for (extra, wd) in
        [("optimizer = \"adam\"\nlearning_rate = 0.01", 0.0), ("optimizer = \"adamw\"\nlearning_rate = 0.01", 0.004)]
    {
        let t = train(extra);
        let got = run(&t, &[P0.to_vec()], grad, 3);
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-7, 0.01);
        let mut p: Vec<f64> = P0.iter().map(|&v| f64::from(v)).collect();
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for step in 0..3 {
            let t = (step + 1) as i32;
            for i in 0..3 {
                let g = f64::from(grad(step)[0][i]);
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let decayed = p[i] - lr * wd * p[i];
                p[i] = decayed - lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t)) * m[i] / (v[i].sqrt() + eps);
            }
            assert_close(&format!("{extra} step {step}"), &got[step][0], &p);
        }
    }
}

#[test]
fn sgd_with_momentum_and_nesterov_and_rmsprop_follow_their_formulas() {
    for nesterov in [false, true] {
        let t = train(&format!("optimizer = \"sgd\"\nlearning_rate = 0.1\nmomentum = 0.9\nnesterov = {nesterov}"));
        let got = run(&t, &[P0.to_vec()], grad, 3);
        let mut p: Vec<f64> = P0.iter().map(|&v| f64::from(v)).collect();
        let mut vel = [0.0; 3];
        for step in 0..3 {
            for i in 0..3 {
                let g = f64::from(grad(step)[0][i]);
                vel[i] = 0.9 * vel[i] + g;
                p[i] -= 0.1 * if nesterov { g + 0.9 * vel[i] } else { vel[i] };
            }
            assert_close(&format!("sgd nesterov={nesterov} step {step}"), &got[step][0], &p);
        }
    }
    let t = train("optimizer = \"sgd\"\nlearning_rate = 0.1");
    let got = run(&t, &[P0.to_vec()], grad, 1);
    let want: Vec<f64> = P0.iter().zip(&grad(0)[0]).map(|(&p, &g)| f64::from(p) - 0.1 * f64::from(g)).collect();
    assert_close("plain sgd", &got[0][0], &want);

    for momentum in [0.0, 0.5] {
        let t = train(&format!("optimizer = \"rmsprop\"\nlearning_rate = 0.01\nmomentum = {momentum}"));
        let got = run(&t, &[P0.to_vec()], grad, 3);
        let mut p: Vec<f64> = P0.iter().map(|&v| f64::from(v)).collect();
        let (mut s, mut mom) = (vec![0.0; 3], vec![0.0; 3]);
        for step in 0..3 {
            for i in 0..3 {
                let g = f64::from(grad(step)[0][i]);
                s[i] = 0.9 * s[i] + 0.1 * g * g;
                let increment = g / (s[i] + 1e-7).sqrt();
                mom[i] = momentum * mom[i] + increment;
                p[i] -= 0.01 * if momentum > 0.0 { mom[i] } else { increment };
            }
            assert_close(&format!("rmsprop momentum={momentum} step {step}"), &got[step][0], &p);
        }
    }
}

#[test]
fn gradients_are_clipped_per_weight_or_globally() {
    let init = vec![vec![0.0f32, 0.0], vec![0.0f32]];
    let g = |_| vec![vec![3.0f32, 4.0], vec![12.0f32]];
    // Per weight: [3, 4] (norm 5) becomes [0.6, 0.8]; [12] becomes [1].
    let got = run(&train("optimizer = \"sgd\"\nlearning_rate = 1.0\nclipnorm = 1.0"), &init, g, 1);
    assert_close("clipnorm p0", &got[0][0], &[-0.6, -0.8]);
    assert_close("clipnorm p1", &got[0][1], &[-1.0]);
    // Globally: the total norm 13 becomes 1.3, every gradient scaled by 0.1.
    let got = run(&train("optimizer = \"sgd\"\nlearning_rate = 1.0\nglobal_clipnorm = 1.3"), &init, g, 1);
    assert_close("global p0", &got[0][0], &[-0.3, -0.4]);
    assert_close("global p1", &got[0][1], &[-1.2]);
    // Short gradients are left alone.
    let got = run(&train("optimizer = \"sgd\"\nlearning_rate = 1.0\nglobal_clipnorm = 100"), &init, g, 1);
    assert_close("unclipped", &got[0][0], &[-3.0, -4.0]);
}

#[test]
fn optimizer_keys_that_do_not_apply_are_config_errors() {
    let bad = |extra: &str| {
        let source = Source { path: "o.toml".into(), text: config_text(extra) };
        let config = config::parse(&source).unwrap();
        config::validate(config, source).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(
        bad("optimizer = \"adam\"\nmomentum = 0.9").contains("momentum applies to optimizer \"sgd\" or \"rmsprop\"")
    );
    assert!(bad("optimizer = \"rmsprop\"\nnesterov = true").contains("nesterov applies to optimizer \"sgd\""));
    assert!(bad("clipnorm = 1.0\nglobal_clipnorm = 1.0").contains("not both"));
    assert!(bad("label_smoothing = 1.0").contains("label_smoothing 1 must be"));
    assert!(bad("[train.lr_schedule]\ntype = \"cosine\"\nwarmup_epochs = 3").contains("fewer than the 3 epochs"));
}

fn loss_of(kind: Loss, logits: Vec<f32>, units: usize, labels: &[usize], smoothing: f64) -> f64 {
    let dev = Cpu::default();
    let n = logits.len() / units;
    f64::from(loss::loss(kind, dev.tensor_from_vec(logits, (n, units)), labels, smoothing, None).as_vec()[0])
}

#[test]
fn losses_match_hand_computed_values_even_for_extreme_logits() {
    let cce = Loss::SparseCategoricalCrossentropy;
    // log-softmax of [1000, 0, -1000] is [0, -1000, -2000].
    assert!(loss_of(cce, vec![1000.0, 0.0, -1000.0], 3, &[0], 0.0).abs() < 1e-6);
    assert!((loss_of(cce, vec![1000.0, 0.0, -1000.0], 3, &[1], 0.0) - 1000.0).abs() < 1e-3);
    // Label smoothing 0.3 over 3 classes: targets [0.8, 0.1, 0.1]: 0.1·1000 + 0.1·2000.
    assert!((loss_of(cce, vec![1000.0, 0.0, -1000.0], 3, &[0], 0.3) - 300.0).abs() < 1e-2);
    // Uniform logits: ln 3 whatever the smoothing; the mean over a batch.
    let ln3 = 3f64.ln();
    assert!((loss_of(cce, vec![0.0; 6], 3, &[0, 2], 0.2) - ln3).abs() < 1e-6);
    assert!(
        (loss_of(Loss::CategoricalCrossentropy, vec![1.0, 2.0], 2, &[1], 0.0) - (1.0 + (-1f64).exp()).ln()).abs()
            < 1e-6
    );

    let bce = Loss::BinaryCrossentropy;
    assert!(loss_of(bce, vec![50.0], 1, &[1], 0.0).abs() < 1e-6);
    assert!((loss_of(bce, vec![-50.0], 1, &[1], 0.0) - 50.0).abs() < 1e-4);
    assert!((loss_of(bce, vec![0.0], 1, &[0], 0.0) - 2f64.ln()).abs() < 1e-6);
    // Smoothing 0.2: the target 1 becomes 0.9, so logit 50 costs 0.1·50.
    assert!((loss_of(bce, vec![50.0], 1, &[1], 0.2) - 5.0).abs() < 1e-4);
    assert!(loss_of(bce, vec![1e30, -1e30], 1, &[1, 0], 0.0).is_finite(), "no overflow at huge logits");
}

#[test]
fn precision_recall_f1_and_top_k_are_counted_over_the_whole_pass() {
    use runner::config::Metric;
    use runner::train::metrics::Counter;
    // Three classes; logits whose arg-max is the prediction. Truth → prediction:
    // 0→0, 0→1, 1→1, 1→1, 2→0, 2→2.
    let rows = [[3.0, 1.0, 0.0], [1.0, 2.0, 1.5], [0.0, 5.0, 1.0], [1.0, 3.0, 2.0], [4.0, 0.0, 3.0], [0.0, 1.0, 2.0]];
    let labels = [0, 0, 1, 1, 2, 2];
    let mut counter = Counter::new(3, 2);
    // In two batches: counts add up, nothing is averaged per batch.
    counter.add(&rows[..2].concat(), &labels[..2]);
    counter.add(&rows[2..].concat(), &labels[2..]);
    // Per class: precision 1/2, 2/3, 1/1; recall 1/2, 2/2, 1/2.
    let macro_mean = |v: [f64; 3]| v.iter().sum::<f64>() / 3.0;
    let close = |m: Metric, want: f64| {
        let got = counter.value(m).unwrap();
        assert!((got - want).abs() < 1e-12, "{m:?}: {got} vs {want}");
    };
    close(Metric::Precision, macro_mean([0.5, 2.0 / 3.0, 1.0]));
    close(Metric::Recall, macro_mean([0.5, 1.0, 0.5]));
    let f1 = |p: f64, r: f64| 2.0 * p * r / (p + r);
    close(Metric::F1Score, macro_mean([f1(0.5, 0.5), f1(2.0 / 3.0, 1.0), f1(1.0, 0.5)]));
    // Top 2: every truth is in its row's two highest, except row 1's class 0 (third).
    close(Metric::TopKAccuracy, 5.0 / 6.0);
    assert_eq!(counter.value(Metric::Accuracy), None, "accuracy is counted by the trainer");
    let names: Vec<String> = counter.values(&[Metric::Precision, Metric::F1Score], "val_").into_keys().collect();
    assert_eq!(names, ["val_f1_score", "val_precision"]);

    // Two classes: the positive (second) class only. Truth → prediction: 1→1, 1→0, 0→1, 0→0.
    let mut binary = Counter::new(2, 5);
    binary.add(&[2.0, -1.0, 0.5, -3.0], &[1, 1, 0, 0]);
    assert_eq!(binary.value(Metric::Precision), Some(0.5));
    assert_eq!(binary.value(Metric::Recall), Some(0.5));
}
