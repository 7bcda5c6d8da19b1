//! The layer kinds beyond convolution, pooling and dense: each forward pass against a float64
//! formula or its gradient against central finite differences (float64 on the loss, so the
//! only error is the step's), batch normalisation in both modes, dropout's mask statistics,
//! and the initialisers' distributions.

use std::cell::RefCell;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use runner::model::layers::{Activation, Ctx, Fans, Init, Initializer, Layer, Training};
use runner::model::{LayerConfig, Shape};
use serde::Deserialize;

fn random(n: usize, seed: u64, away_from_zero: bool) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| loop {
            let v: f32 = rng.gen_range(-1.5..1.5);
            // Kinks (relu-like functions at 0) are not differentiable: keep finite differences away.
            if !away_from_zero || v.abs() > 0.05 {
                break v;
            }
        })
        .collect()
}

fn layer(toml: &str) -> LayerConfig {
    let table: toml::Table = toml.parse().unwrap();
    LayerConfig::deserialize(toml::Value::Table(table)).unwrap()
}

/// Runs `layer` on `x` with `params`; returns the output and the new state values.
fn run(
    layer: &LayerConfig,
    input: Shape,
    x: &[f32],
    batch: usize,
    params: &[Vec<f32>],
    training: Option<Training>,
) -> (Vec<f32>, Vec<(usize, Vec<f32>)>) {
    let dev = Cpu::default();
    let xt = dev.tensor_from_vec(x.to_vec(), (batch, input.len()));
    let params: Vec<_> = params.iter().map(|p| dev.tensor_from_vec(p.clone(), (p.len(),))).collect();
    with_ctx(input, &params, training, |ctx| {
        let y = layer.forward(xt, ctx).as_vec();
        (y, ctx.updates.borrow().iter().map(|(i, t)| (*i, t.as_vec())).collect())
    })
}

/// Calls `f` with the context a network gives layer 3 of a model.
fn with_ctx<R>(
    input: Shape,
    params: &[Tensor<(usize,), f32, Cpu>],
    training: Option<Training>,
    f: impl FnOnce(&Ctx<Cpu>) -> R,
) -> R {
    let updates = RefCell::new(Vec::new());
    f(&Ctx {
        input,
        params,
        skip_activation: false,
        input_grad: true,
        training,
        layer: 3,
        next_max_pool: None,
        fused_next: Default::default(),
        conv_algorithm: Default::default(),
        updates: &updates,
    })
}

/// Checks the gradients of Σ y·r with respect to the input and every trainable parameter
/// against central differences.
fn check_gradients(layer: &LayerConfig, input: Shape, batch: usize, training: Option<Training>, seed: u64) {
    let specs = layer.params(input);
    let mut params: Vec<Vec<f32>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.dims.iter().product();
            let v = random(n, seed + 10 + i as u64, false);
            // Variances must be positive.
            if s.name == "moving_variance" {
                v.iter().map(|x| x.abs() + 0.5).collect()
            } else {
                v
            }
        })
        .collect();
    let x = random(batch * input.len(), seed, true);
    let out_len = layer.output_shape(input).unwrap().len();
    let r = random(batch * out_len, seed + 99, false);
    let loss = |x: &[f32], params: &[Vec<f32>]| -> f64 {
        let (y, _) = run(layer, input, x, batch, params, training);
        y.iter().zip(&r).map(|(&y, &r)| f64::from(y) * f64::from(r)).sum()
    };

    // Analytic gradients through the tape.
    let dev = Cpu::default();
    let xt = dev.tensor_from_vec(x.clone(), (batch, input.len()));
    let pt: Vec<_> = params.iter().map(|p| dev.tensor_from_vec(p.clone(), (p.len(),))).collect();
    let y = with_ctx(input, &pt, training, |ctx| layer.forward(xt.leaky_trace(), ctx));
    let shape = *y.shape();
    let grads = (y * dev.tensor_from_vec(r.clone(), shape)).sum::<Rank0, _>().backward();

    let h = 1e-2f32;
    let compare = |name: &str, analytic: Vec<f32>, numeric: &dyn Fn(usize) -> f64| {
        for (i, &a) in analytic.iter().enumerate() {
            let n = numeric(i);
            let tol = 2e-2 * (1.0 + n.abs());
            assert!(
                (f64::from(a) - n).abs() <= tol,
                "{}: d{name}[{i}]: tape {a}, finite differences {n}",
                layer.kind()
            );
        }
    };
    compare("x", grads.get(&xt).as_vec(), &|i| {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += h;
        down[i] -= h;
        (loss(&up, &params) - loss(&down, &params)) / (2.0 * f64::from(h))
    });
    for (k, spec) in specs.iter().enumerate().filter(|(_, s)| s.trainable) {
        let analytic = grads.get(&pt[k]).as_vec();
        compare(spec.name, analytic, &|i| {
            let mut p = params.clone();
            p[k][i] += h;
            let up = loss(&x, &p);
            p[k][i] -= 2.0 * h;
            (up - loss(&x, &p)) / (2.0 * f64::from(h))
        });
    }
    params.clear();
}

const TRAINING: Option<Training> = Some(Training { seed: 9, epoch: 2, step: 5 });

#[test]
fn activations_match_their_formulas_and_their_gradients() {
    let input = Shape::Flat(7);
    let x = random(3 * 7, 1, true);
    type Case = (&'static str, fn(f64) -> f64);
    let cases: [Case; 5] = [
        ("leaky_relu", |v| if v > 0.0 { v } else { 0.2 * v }),
        ("elu", |v| if v > 0.0 { v } else { v.exp() - 1.0 }),
        ("gelu", |v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))),
        ("tanh", f64::tanh),
        ("relu", |v| v.max(0.0)),
    ];
    for (name, f) in cases {
        let l = layer(&format!("type = \"activation\"\nactivation = \"{name}\""));
        let (y, _) = run(&l, input, &x, 3, &[], None);
        for (&y, &x) in y.iter().zip(&x) {
            let want = f(f64::from(x));
            assert!((f64::from(y) - want).abs() < 1e-5 * (1.0 + want.abs()), "{name}({x}) = {y}, want {want}");
        }
        check_gradients(&l, input, 3, None, 2);
    }
    let l = layer("type = \"leaky_relu\"\nalpha = 0.1");
    let (y, _) = run(&l, input, &x, 3, &[], None);
    assert!(y.iter().zip(&x).all(|(&y, &x)| y == if x > 0.0 { x } else { 0.1 * x }));
    check_gradients(&l, input, 3, None, 3);
    assert_eq!(Activation::Gelu, layer("type = \"dense\"\nunits = 2\nactivation = \"gelu\"").activation());
}

/// erf by its Taylor series (exact to float64 for |x| < 3), independent of the code under test.
fn erf(x: f64) -> f64 {
    let mut sum = 0.0;
    let mut term = x;
    for n in 0..60 {
        sum += term / (2 * n + 1) as f64;
        term *= -x * x / (n + 1) as f64;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

#[test]
fn pooling_layers_and_convolution_options_have_the_tape_gradients() {
    let image = Shape::Image { c: 2, h: 5, w: 6 };
    check_gradients(&layer("type = \"global_average_pooling2d\""), image, 2, None, 4);
    check_gradients(&layer("type = \"average_pooling2d\"\npool_size = 2\npadding = \"same\""), image, 2, None, 5);
    let dilated = "type = \"conv2d\"\nfilters = 3\nkernel_size = 2\ndilation_rate = 2\nuse_bias = false";
    check_gradients(&layer(dilated), image, 2, None, 6);
    let (y, _) = run(
        &layer("type = \"global_average_pooling2d\""),
        image,
        &(0..120).map(|v| v as f32).collect::<Vec<_>>(),
        2,
        &[],
        None,
    );
    for (got, want) in y.iter().zip([14.5, 44.5, 74.5, 104.5]) {
        assert!((got - want).abs() < 1e-4, "the mean of each channel: {y:?}");
    }
}

#[test]
fn batch_normalization_uses_batch_statistics_in_training_and_moving_averages_in_evaluation() {
    let l = layer("type = \"batch_normalization\"\nmomentum = 0.9\nepsilon = 0.001");
    let image = Shape::Image { c: 3, h: 2, w: 2 };
    let (batch, n) = (4, 4);
    let x = random(batch * 12, 7, false);
    let (gamma, beta) = (vec![1.5, 0.5, -1.0], vec![0.1, -0.2, 0.3]);
    let (mean0, var0) = (vec![0.2, -0.1, 0.0], vec![1.2, 0.8, 2.0]);
    let params = [gamma.clone(), beta.clone(), mean0.clone(), var0.clone()];
    let at = |b: usize, c: usize, i: usize| f64::from(x[b * 12 + c * n + i]);

    // Training: each channel normalised by its own batch mean and biased variance.
    let (y, updates) = run(&l, image, &x, batch, &params, TRAINING);
    for c in 0..3 {
        let values: Vec<f64> = (0..batch).flat_map(|b| (0..n).map(move |i| (b, i))).map(|(b, i)| at(b, c, i)).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        for b in 0..batch {
            for i in 0..n {
                let want = (at(b, c, i) - mean) / (var + 1e-3).sqrt() * f64::from(gamma[c]) + f64::from(beta[c]);
                let got = f64::from(y[b * 12 + c * n + i]);
                assert!((got - want).abs() < 1e-4, "training y[{b},{c},{i}] = {got}, want {want}");
            }
        }
        // The moving averages move 10% of the way to the batch's statistics.
        let (m, v) = (&updates[0], &updates[1]);
        assert_eq!((m.0, v.0), (2, 3), "moving_mean and moving_variance are parameters 2 and 3");
        assert!((f64::from(m.1[c]) - (0.9 * f64::from(mean0[c]) + 0.1 * mean)).abs() < 1e-5);
        assert!((f64::from(v.1[c]) - (0.9 * f64::from(var0[c]) + 0.1 * var)).abs() < 1e-5);
    }
    // Evaluation: the moving averages, and no updates.
    let (y, updates) = run(&l, image, &x, batch, &params, None);
    assert!(updates.is_empty());
    for (j, &got) in y.iter().enumerate() {
        let c = (j % 12) / n;
        let want = (f64::from(x[j]) - f64::from(mean0[c])) / (f64::from(var0[c]) + 1e-3).sqrt() * f64::from(gamma[c])
            + f64::from(beta[c]);
        assert!((f64::from(got) - want).abs() < 1e-4, "evaluation y[{j}] = {got}, want {want}");
    }
    check_gradients(&l, image, batch, TRAINING, 8);
    check_gradients(&l, image, batch, None, 9);
    check_gradients(&l, Shape::Flat(5), 6, TRAINING, 10);
    let specs = l.params(image);
    let trainable: Vec<bool> = specs.iter().map(|s| s.trainable).collect();
    assert_eq!(trainable, [true, true, false, false], "gamma and beta train; the moving averages do not");
}

#[test]
fn dropout_drops_the_rate_scales_the_rest_repeats_per_step_and_is_off_in_evaluation() {
    let l = layer("type = \"dropout\"\nrate = 0.3");
    let input = Shape::Flat(1000);
    let x = vec![1.0f32; 100 * 1000];
    let (y, _) = run(&l, input, &x, 100, &[], TRAINING);
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((dropped - 0.3).abs() < 0.01, "dropped {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6), "kept values are scaled by 1/(1-rate)");
    let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.02, "the expected value is kept: {mean}");
    assert_eq!(run(&l, input, &x, 100, &[], TRAINING).0, y, "the same (seed, epoch, step, layer), the same mask");
    let next = Some(Training { step: 6, ..TRAINING.unwrap() });
    assert_ne!(run(&l, input, &x, 100, &[], next).0, y, "another step, another mask");
    assert_eq!(run(&l, input, &x, 100, &[], None).0, x, "evaluation passes values through");
    check_gradients(&l, Shape::Flat(20), 3, TRAINING, 11);
}

#[test]
fn initialisers_draw_keras_distributions() {
    let fans = Fans { fan_in: 300, fan_out: 100 };
    let n = 200_000;
    let draw = |kind| {
        let spec = runner::model::layers::ParamSpec::trainable("kernel", vec![n], Init::Kernel(kind, fans));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        runner::model::network::initial_values(spec.init, n, &mut rng)
    };
    let stats = |v: &[f32]| {
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let max = v.iter().fold(0f32, |m, &x| m.max(x.abs()));
        (mean, var.sqrt(), f64::from(max))
    };
    for (kind, std) in [
        (Initializer::GlorotUniform, (2.0f64 / 400.0).sqrt()),
        (Initializer::GlorotNormal, (2.0f64 / 400.0).sqrt()),
        (Initializer::HeUniform, (2.0f64 / 300.0).sqrt()),
        (Initializer::HeNormal, (2.0f64 / 300.0).sqrt()),
    ] {
        let (mean, sd, max) = stats(&draw(kind));
        assert!(mean.abs() < 0.01 * std * 10.0, "{kind:?}: mean {mean}");
        assert!((sd / std - 1.0).abs() < 0.01, "{kind:?}: standard deviation {sd}, want {std}");
        let bound = match kind {
            Initializer::GlorotUniform | Initializer::HeUniform => std * 3f64.sqrt(),
            _ => 2.0 * std / 0.879_625_661_034_239_8,
        };
        assert!(max <= bound * (1.0 + 1e-6), "{kind:?}: {max} beyond {bound}");
    }
    assert!(draw(Initializer::Zeros).iter().all(|&v| v == 0.0));
}
