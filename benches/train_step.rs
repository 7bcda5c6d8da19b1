//! Training throughput: a full step (forward, backward, Adam) of the baseline model and of the
//! tutorial model, the tutorial's first convolution alone, each layer of the tutorial model
//! forward and forward + backward at batch 32 (each convolution Winograd's algorithm fits both
//! with it and with the direct product) (`cargo bench --bench train_step -- layer/`), and
//! each matrix-multiply kernel on the tutorial's products (`-- kernel/`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use runner::config;
use runner::model::layers::conv2d::Conv2dConfig;
use runner::model::layers::Activation;
use runner::model::{Network, Shape};
use runner::train::{loss, optimizer::Optimizer};

fn random(n: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    (0..n).map(|_| rng.gen_range(0.0..1.0)).collect()
}

fn train_step(c: &mut Criterion) {
    runner::ops::keep_freed_memory();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    for name in ["baseline", "cats_vs_dogs"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("experiments/{name}.toml"));
        let (cfg, source) = config::load(&path, &Default::default()).unwrap();
        let plan = config::validate(cfg, source).unwrap();
        let dev = Cpu::default();
        let mut net = Network::new(plan.model.clone(), &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let mut optimizer = Optimizer::new(&plan.config.train);
        let batch = 32;
        let input_len = plan.model.input.len();
        let x = random(batch * input_len);
        let classes = match plan.model.output() {
            Shape::Flat(1) => 2,
            other => other.len(),
        };
        let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("batch32", name), |b| {
            b.iter(|| {
                let input = dev.tensor_from_vec(x.clone(), (batch, input_len));
                let logits = net.forward(input.traced(Gradients::leaky()), true);
                let l = loss::loss(plan.config.train.loss, logits, &labels, 0.0, None);
                let mut grads = l.backward();
                optimizer.update(&mut net.params, &mut grads, 1e-3).unwrap();
            })
        });
    }
    group.finish();
}

fn tutorial_first_conv(c: &mut Criterion) {
    let layer = Conv2dConfig { activation: Activation::Relu, ..Conv2dConfig::new(16, [3, 3]) };
    let g = layer.geometry(Shape::Image { c: 3, h: 128, w: 128 }).unwrap();
    let batch = 8;
    let x = random(batch * g.in_len());
    let w = random(16 * 27);
    let b = random(16);
    let dy = random(batch * g.out_len());
    let relu = runner::ops::Epilogue { relu: true, max_pool: None };
    let mut group = c.benchmark_group("conv2d_128x128x3_to_16");
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("forward", |bench| {
        bench.iter(|| runner::ops::conv2d::forward(&x, &w, &b, batch, &g, relu, true))
    });
    group.bench_function("backward_weights", |bench| {
        bench.iter(|| {
            runner::ops::conv2d::backward(&x, &w, &dy, &runner::ops::conv2d::Kept::Nothing, batch, &g, relu, None)
        })
    });
    group.finish();
}

/// Each layer of the tutorial model: forward alone, and forward + backward (the gradient of
/// Σ y with respect to its input and parameters), at batch 32 on random data.
fn tutorial_layers(c: &mut Criterion) {
    use runner::model::layers::{Ctx, Layer as _};
    use runner::model::LayerConfig;
    runner::ops::keep_freed_memory();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/cats_vs_dogs.toml");
    let (cfg, source) = config::load(&path, &Default::default()).unwrap();
    let plan = config::validate(cfg, source).unwrap();
    let dev = Cpu::default();
    let net = Network::new(plan.model.clone(), &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let batch = 32;
    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    let mut first_param = 0;
    for (i, layer) in plan.model.layers.iter().enumerate() {
        let params: Vec<_> =
            net.params[first_param..first_param + layer.params.len()].iter().map(|p| p.tensor.clone()).collect();
        first_param += layer.params.len();
        let x = random(batch * layer.input.len());
        let updates = std::cell::RefCell::new(Vec::new());
        // Each layer alone; and a convolution followed by a max pooling also as the network
        // runs it, with the pooling folded in.
        let next = plan.model.layers.get(i + 1);
        let next_pool = next.and_then(|next| next.config.max_pool(next.input));
        let mut variants = vec![(format!("{i}_{}", layer.name), None)];
        if let (Some(pool), Some(next), LayerConfig::Conv2d(_)) = (next_pool, next, &layer.config) {
            variants.push((format!("{i}_{}+{}", layer.name, next.name), Some(pool)));
        }
        // A convolution Winograd's algorithm fits, both ways.
        use runner::ops::ConvAlgorithm;
        let algorithms: &[(ConvAlgorithm, &str)] = match &layer.config {
            LayerConfig::Conv2d(conv) if runner::ops::winograd::fits(&conv.geometry(layer.input).unwrap()) => {
                &[(ConvAlgorithm::Direct, "/direct"), (ConvAlgorithm::Winograd, "/winograd")]
            }
            _ => &[(ConvAlgorithm::Auto, "")],
        };
        let variants = variants.into_iter().flat_map(|(name, pool)| {
            algorithms.iter().map(move |(algorithm, suffix)| (format!("{name}{suffix}"), pool, *algorithm))
        });
        for (name, next_max_pool, conv_algorithm) in variants {
            let ctx = Ctx {
                input: layer.input,
                params: &params,
                skip_activation: false,
                input_grad: i > 0,
                training: None,
                layer: i,
                next_max_pool,
                fused_next: Default::default(),
                conv_algorithm,
                updates: &updates,
            };
            group.bench_function(BenchmarkId::new("forward", &name), |b| {
                b.iter(|| {
                    runner::ops::host(
                        &layer.config.forward(dev.tensor_from_vec(x.clone(), (batch, layer.input.len())), &ctx),
                    )
                    .into_owned()
                })
            });
            group.bench_function(BenchmarkId::new("forward_backward", &name), |b| {
                b.iter(|| {
                    let input = dev.tensor_from_vec(x.clone(), (batch, layer.input.len())).traced(Gradients::leaky());
                    layer.config.forward(input, &ctx).sum::<Rank0, _>().backward()
                })
            });
        }
    }
    group.finish();
}

/// Each matrix-multiply kernel this CPU runs, single-threaded, on the products of the tutorial
/// CNN's third convolution (one band of output rows of one image: forward `W·col`, input
/// gradient `Wᵀ·dy`, weight gradient `col·dyᵀ`), of its first dense layer's forward pass, and
/// the first two convolutions' forward products reading their input in place
/// (`cargo bench --bench train_step -- kernel/`).
fn kernels(c: &mut Criterion) {
    use runner::ops::gemm::{Gathered, Kernel, Mat, Operand};
    let mut group = c.benchmark_group("kernel");
    // (name, m, n, k)
    let products = [
        ("conv3_forward", 64, 448, 288),
        ("conv3_input_grad", 288, 448, 64),
        ("conv3_weight_grad", 288, 64, 448),
        ("dense_forward", 32, 256, 4608),
    ];
    for (name, m, n, k) in products {
        let (a, b) = (random(m * k), random(k * n));
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for kernel in Kernel::available() {
            group.bench_function(BenchmarkId::new(name, kernel.name()), |bench| {
                bench.iter(|| {
                    let (a, b) =
                        (Operand::Mat(Mat { data: &a, rs: k, cs: 1 }), Operand::Mat(Mat { data: &b, rs: n, cs: 1 }));
                    kernel.matmul(m, n, k, a, b, &mut out, false)
                })
            });
        }
    }
    // The forward products as the convolutions run them, reading their input in place
    // (gathered rows, see `ops::gemm::Gathered`): (name, filters, channels, image side,
    // output rows in the band).
    let convolutions = [("conv1_forward_in_place", 16, 3, 128, 38), ("conv2_forward_in_place", 32, 16, 63, 14)];
    for (name, m, c, side, rows) in convolutions {
        let k = c * 9;
        let n = rows * side - 2;
        let (a, image) = (random(m * k), random(c * side * side));
        let taps: Vec<usize> = (0..c)
            .flat_map(|ch| (0..3).flat_map(move |ki| (0..3).map(move |kj| (ch * side + ki) * side + kj)))
            .collect();
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for kernel in Kernel::available().into_iter().filter(|k| k.gathers()) {
            group.bench_function(BenchmarkId::new(name, kernel.name()), |bench| {
                bench.iter(|| {
                    let a = Operand::Mat(Mat { data: &a, rs: k, cs: 1 });
                    let b = Operand::Gathered(Gathered { data: &image, rows: &taps });
                    kernel.matmul(m, n, k, a, b, &mut out, false)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, train_step, tutorial_first_conv, tutorial_layers, kernels);
criterion_main!(benches);
