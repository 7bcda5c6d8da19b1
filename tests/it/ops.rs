//! Our conv2d, max and average pooling and dense layers, forward and backward through the
//! dfdx tape, against a float64 naive reference on random inputs of several shapes.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use runner::model::layers::conv2d::Conv2dConfig;
use runner::model::layers::dense::DenseConfig;
use runner::model::layers::{Activation, Ctx, Initializer, Layer, Padding, Pair, PoolWindow};
use runner::model::Shape;
use runner::ops;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * (1.0 + w.abs());
        assert!((f64::from(g) - w).abs() <= tol, "{name}[{i}]: got {g}, want {w}");
    }
}

/// Loss = Σ y·r for a fixed random r, so dL/dy = r.
fn weighted_sum(
    y: Tensor<(usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>,
    r: &[f32],
) -> Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>> {
    let dev = y.device().clone();
    let shape = *y.shape();
    (y * dev.tensor_from_vec(r.to_vec(), shape)).sum::<Rank0, _>()
}

struct ConvCase {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    filters: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    dilation: [usize; 2],
    bias: bool,
}

#[test]
fn conv2d_matches_float64_reference_forward_and_backward() {
    let cases = [
        // Read in place (stride 1, no padding), dilated, in several bands of output rows.
        ConvCase {
            batch: 3,
            c: 32,
            h: 45,
            w: 33,
            filters: 5,
            kernel: [3, 2],
            strides: [1, 1],
            padding: Padding::Valid,
            dilation: [2, 1],
            bias: true,
        },
        // Large enough that each image is processed in several bands of output rows.
        ConvCase {
            batch: 2,
            c: 16,
            h: 40,
            w: 37,
            filters: 4,
            kernel: [3, 3],
            strides: [1, 1],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 33,
            c: 2,
            h: 9,
            w: 8,
            filters: 3,
            kernel: [3, 3],
            strides: [1, 1],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 2,
            c: 3,
            h: 7,
            w: 5,
            filters: 4,
            kernel: [3, 3],
            strides: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 1,
            c: 2,
            h: 9,
            w: 8,
            filters: 3,
            kernel: [3, 3],
            strides: [2, 2],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 3,
            c: 1,
            h: 6,
            w: 7,
            filters: 5,
            kernel: [2, 3],
            strides: [2, 1],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 1,
            c: 4,
            h: 5,
            w: 5,
            filters: 2,
            kernel: [5, 5],
            strides: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 2,
            c: 2,
            h: 11,
            w: 6,
            filters: 3,
            kernel: [4, 4],
            strides: [3, 2],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 2,
            c: 3,
            h: 8,
            w: 9,
            filters: 2,
            kernel: [3, 3],
            strides: [2, 2],
            padding: Padding::Valid,
            dilation: [1, 1],
            bias: true,
        },
        ConvCase {
            batch: 2,
            c: 2,
            h: 9,
            w: 8,
            filters: 3,
            kernel: [3, 3],
            strides: [1, 1],
            padding: Padding::Valid,
            dilation: [2, 2],
            bias: true,
        },
        ConvCase {
            batch: 1,
            c: 3,
            h: 7,
            w: 9,
            filters: 2,
            kernel: [3, 2],
            strides: [1, 1],
            padding: Padding::Same,
            dilation: [2, 3],
            bias: false,
        },
        ConvCase {
            batch: 3,
            c: 1,
            h: 5,
            w: 5,
            filters: 2,
            kernel: [3, 3],
            strides: [2, 2],
            padding: Padding::Same,
            dilation: [1, 1],
            bias: false,
        },
    ];
    for (n, t) in cases.iter().enumerate() {
        let layer = Conv2dConfig {
            filters: t.filters,
            kernel_size: Pair(t.kernel),
            strides: Pair(t.strides),
            padding: t.padding,
            dilation_rate: Pair(t.dilation),
            activation: Activation::Linear,
            use_bias: t.bias,
            kernel_initializer: Initializer::GlorotUniform,
            trainable: true,
        };
        let input = Shape::Image { c: t.c, h: t.h, w: t.w };
        let g = layer.geometry(input).unwrap();
        let [kh, kw] = t.kernel;
        let x = random(t.batch * g.in_len(), 1 + n as u64);
        let w = random(t.filters * t.c * kh * kw, 100 + n as u64);
        let b = if t.bias { random(t.filters, 200 + n as u64) } else { vec![0.0; t.filters] };
        let r = random(t.batch * g.out_len(), 300 + n as u64);

        // Naive float64 reference: every (output, input, weight) triple the convolution uses.
        let (oh, ow) = (g.oh, g.ow);
        let mut taps = Vec::new(); // (output index, input index, weight index)
        for bi in 0..t.batch {
            for f in 0..t.filters {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = ((bi * t.filters + f) * oh + oy) * ow + ox;
                        for c in 0..t.c {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * t.strides[0] + ki * t.dilation[0]) as isize - g.pad_top as isize;
                                    let ix = (ox * t.strides[1] + kj * t.dilation[1]) as isize - g.pad_left as isize;
                                    if iy < 0 || ix < 0 || iy >= t.h as isize || ix >= t.w as isize {
                                        continue;
                                    }
                                    let xi = ((bi * t.c + c) * t.h + iy as usize) * t.w + ix as usize;
                                    taps.push((o, xi, ((f * t.c + c) * kh + ki) * kw + kj));
                                }
                            }
                        }
                    }
                }
            }
        }
        let filter_of = |o: usize| (o / (oh * ow)) % t.filters;
        let mut pre = vec![0f64; t.batch * g.out_len()];
        pre.iter_mut().enumerate().for_each(|(o, v)| *v = f64::from(b[filter_of(o)]));
        for &(o, xi, wi) in &taps {
            pre[o] += f64::from(x[xi]) * f64::from(w[wi]);
        }

        // Plain, and with the fused ReLU: the gradient passes only where the output is positive;
        // with the direct product and, where it fits, with Winograd's algorithm.
        let algorithms = [false, true].into_iter().filter(|&w| !w || ops::winograd::fits(&g));
        for (relu, winograd) in [false, true].into_iter().flat_map(|r| algorithms.clone().map(move |w| (r, w))) {
            let g = ops::ConvGeom { winograd, ..g };
            let dev = Cpu::default();
            let xt = dev.tensor_from_vec(x.clone(), (t.batch, g.in_len()));
            let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
            let bt = dev.tensor_from_vec(b.clone(), (b.len(),));
            let epilogue = ops::Epilogue { relu, max_pool: None };
            let y = ops::conv2d(xt.leaky_trace(), &wt, t.bias.then_some(&bt), g, epilogue, true);
            let y_host = y.as_vec();
            let grads = weighted_sum(y, &r).backward();

            let y_ref: Vec<f64> = pre.iter().map(|&v| if relu { v.max(0.0) } else { v }).collect();
            let through = |o: usize| if relu && pre[o] <= 0.0 { 0.0 } else { f64::from(r[o]) };
            let (mut dx, mut dw, mut db) = (vec![0f64; x.len()], vec![0f64; w.len()], vec![0f64; b.len()]);
            for &(o, xi, wi) in &taps {
                dx[xi] += through(o) * f64::from(w[wi]);
                dw[wi] += through(o) * f64::from(x[xi]);
            }
            (0..pre.len()).for_each(|o| db[filter_of(o)] += through(o));
            let name = format!("case {n} relu={relu} winograd={winograd}");
            assert_close(&format!("{name} y"), &y_host, &y_ref);
            assert_close(&format!("{name} dx"), &grads.get(&xt).as_vec(), &dx);
            assert_close(&format!("{name} dw"), &grads.get(&wt).as_vec(), &dw);
            if t.bias {
                assert_close(&format!("{name} db"), &grads.get(&bt).as_vec(), &db);
            }
        }
    }
}

#[test]
fn pooling_matches_reference_forward_and_backward() {
    // (batch, c, h, w, pool, strides, padding)
    let cases = [
        (2, 2, 7, 7, [2, 2], None, Padding::Valid),
        (1, 3, 5, 6, [3, 3], Some([2, 2]), Padding::Same),
        (3, 1, 6, 5, [2, 2], Some([1, 1]), Padding::Valid),
        (1, 2, 9, 4, [2, 3], Some([2, 1]), Padding::Same),
        // Keras' default window on odd sizes with "same": the last window hangs off the image.
        (2, 3, 5, 7, [2, 2], None, Padding::Same),
        // Wide enough for the 2×2 window's blocks of 16 outputs, and a tail.
        (2, 3, 6, 42, [2, 2], None, Padding::Valid),
    ];
    for (n, (batch, c, h, w, pool, strides, padding)) in cases.into_iter().enumerate() {
        let window = PoolWindow { pool_size: Pair(pool), strides: strides.map(Pair), padding, trainable: true };
        let g = window.geometry(Shape::Image { c, h, w }, "max_pooling2d").unwrap();
        let x = random(batch * c * h * w, 10 + n as u64);
        let r = random(batch * g.out_len(), 20 + n as u64);
        let dev = Cpu::default();
        let xt = dev.tensor_from_vec(x.clone(), (batch, c * h * w));
        let y = ops::max_pool2d(xt.leaky_trace(), g);
        let y_host = y.as_vec();
        let grads = weighted_sum(y, &r).backward();

        let mut y_ref = vec![0f64; r.len()];
        let mut dx = vec![0f64; x.len()];
        let [sh, sw] = strides.unwrap_or(pool);
        for bi in 0..batch {
            for ch in 0..c {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut best = (f64::NEG_INFINITY, 0);
                        for ki in 0..pool[0] {
                            for kj in 0..pool[1] {
                                let iy = (oy * sh + ki) as isize - g.pad_top as isize;
                                let ix = (ox * sw + kj) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let i = ((bi * c + ch) * h + iy as usize) * w + ix as usize;
                                if f64::from(x[i]) > best.0 {
                                    best = (f64::from(x[i]), i);
                                }
                            }
                        }
                        let o = ((bi * c + ch) * g.oh + oy) * g.ow + ox;
                        y_ref[o] = best.0;
                        dx[best.1] += f64::from(r[o]);
                    }
                }
            }
        }
        assert_close(&format!("pool case {n} y"), &y_host, &y_ref);
        assert_close(&format!("pool case {n} dx"), &grads.get(&xt).as_vec(), &dx);

        // Average pooling: the mean of the window's pixels inside the image.
        let y = ops::avg_pool2d(xt.leaky_trace(), g);
        let y_host = y.as_vec();
        let grads = weighted_sum(y, &r).backward();
        let mut y_ref = vec![0f64; r.len()];
        let mut dx = vec![0f64; x.len()];
        for bi in 0..batch {
            for ch in 0..c {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut inside = Vec::new();
                        for ki in 0..pool[0] {
                            for kj in 0..pool[1] {
                                let iy = (oy * sh + ki) as isize - g.pad_top as isize;
                                let ix = (ox * sw + kj) as isize - g.pad_left as isize;
                                if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                    inside.push(((bi * c + ch) * h + iy as usize) * w + ix as usize);
                                }
                            }
                        }
                        let o = ((bi * c + ch) * g.oh + oy) * g.ow + ox;
                        let k = inside.len() as f64;
                        y_ref[o] = inside.iter().map(|&i| f64::from(x[i])).sum::<f64>() / k;
                        inside.iter().for_each(|&i| dx[i] += f64::from(r[o]) / k);
                    }
                }
            }
        }
        assert_close(&format!("avg pool case {n} y"), &y_host, &y_ref);
        assert_close(&format!("avg pool case {n} dx"), &grads.get(&xt).as_vec(), &dx);
    }
}

/// A max pooling folded into the convolution before it (with or without its ReLU) gives the
/// same outputs and gradients, bit for bit, as the two ops run one after the other, which the
/// tests above check against float64 references; with either algorithm.
#[test]
fn conv2d_with_folded_max_pool_equals_the_two_ops_in_turn() {
    // (batch, c, h, w, filters, kernel, conv padding, pool, pool strides, pool padding)
    let cases = [
        (1, 3, 9, 9, 4, [3, 3], Padding::Valid, [2, 2], None, Padding::Valid),
        (33, 2, 8, 7, 3, [3, 3], Padding::Same, [2, 2], None, Padding::Valid),
        (2, 3, 11, 10, 5, [3, 2], Padding::Valid, [3, 3], Some([2, 2]), Padding::Same),
        (3, 1, 7, 6, 2, [2, 2], Padding::Same, [2, 3], Some([1, 2]), Padding::Valid),
        // Several bands of output rows, an odd number of rows in all.
        (2, 16, 41, 41, 8, [3, 3], Padding::Valid, [2, 2], None, Padding::Valid),
        // A 2×2 window hanging off an odd-sized output.
        (2, 2, 7, 7, 3, [3, 3], Padding::Valid, [2, 2], None, Padding::Same),
    ];
    for (n, (batch, c, h, w, filters, kernel, conv_padding, pool, strides, pool_padding)) in
        cases.into_iter().enumerate()
    {
        let conv = Conv2dConfig { padding: conv_padding, ..Conv2dConfig::new(filters, kernel) };
        let g = conv.geometry(Shape::Image { c, h, w }).unwrap();
        let window =
            PoolWindow { pool_size: Pair(pool), strides: strides.map(Pair), padding: pool_padding, trainable: true };
        let pg = window.geometry(Shape::Image { c: filters, h: g.oh, w: g.ow }, "max_pooling2d").unwrap();
        let algorithms = [false, true].into_iter().filter(|&w| !w || ops::winograd::fits(&g));
        for winograd in algorithms {
            let g = ops::ConvGeom { winograd, ..g };
            let x = random(batch * g.in_len(), 40 + n as u64);
            let w = random(filters * c * kernel[0] * kernel[1], 50 + n as u64);
            let b = random(filters, 60 + n as u64);
            let r = random(batch * pg.out_len(), 70 + n as u64);
            for relu in [false, true] {
                let run = |folded: bool| {
                    let dev = Cpu::default();
                    let xt = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
                    let wt = dev.tensor_from_vec(w.clone(), (w.len(),));
                    let bt = dev.tensor_from_vec(b.clone(), (b.len(),));
                    let y = if folded {
                        let epilogue = ops::Epilogue { relu, max_pool: Some(pg) };
                        ops::conv2d(xt.leaky_trace(), &wt, Some(&bt), g, epilogue, true)
                    } else {
                        let epilogue = ops::Epilogue { relu, max_pool: None };
                        ops::max_pool2d(ops::conv2d(xt.leaky_trace(), &wt, Some(&bt), g, epilogue, true), pg)
                    };
                    let y_host = y.as_vec();
                    let grads = weighted_sum(y, &r).backward();
                    [y_host, grads.get(&xt).as_vec(), grads.get(&wt).as_vec(), grads.get(&bt).as_vec()]
                };
                let (folded, apart) = (run(true), run(false));
                // Without a tape (inference) nothing is recorded for a backward pass; same outputs.
                let dev = Cpu::default();
                let xt = dev.tensor_from_vec(x.clone(), (batch, g.in_len()));
                let (wt, bt) = (dev.tensor_from_vec(w.clone(), (w.len(),)), dev.tensor_from_vec(b.clone(), (b.len(),)));
                let epilogue = ops::Epilogue { relu, max_pool: Some(pg) };
                let inference = ops::conv2d(xt, &wt, Some(&bt), g, epilogue, true).as_vec();
                assert!(
                    inference.iter().zip(&apart[0]).all(|(i, a)| i.to_bits() == a.to_bits()),
                    "case {n} relu={relu}: inference output differs"
                );
                for (name, (f, a)) in ["y", "dx", "dw", "db"].iter().zip(folded.iter().zip(&apart)) {
                    let same = f.iter().zip(a).all(|(f, a)| f.to_bits() == a.to_bits());
                    assert!(
                        same && f.len() == a.len(),
                        "case {n} relu={relu} winograd={winograd}: {name} differs when the pool is folded in"
                    );
                }
            }
        }
    }
}

#[test]
fn dense_matches_reference_forward_and_backward() {
    // Batch 1 and 33; more inputs and units than one task takes (256, 64); ReLU, sigmoid
    // (applied after the op) and no activation; with and without a bias.
    let cases = [
        (1, 5, 3, Activation::Linear, true),
        (4, 7, 1, Activation::Sigmoid, true),
        (3, 13, 6, Activation::Relu, false),
        (33, 300, 70, Activation::Relu, true),
        (2, 517, 129, Activation::Linear, true),
    ];
    for (n, (batch, fan_in, units, activation, use_bias)) in cases.into_iter().enumerate() {
        let layer = DenseConfig {
            units,
            activation,
            use_bias,
            kernel_initializer: Initializer::GlorotUniform,
            trainable: true,
        };
        let x = random(batch * fan_in, 40 + n as u64);
        let w = random(fan_in * units, 50 + n as u64);
        let b = if use_bias { random(units, 60 + n as u64) } else { vec![0.0; units] };
        let r = random(batch * units, 70 + n as u64);
        let dev = Cpu::default();
        let xt = dev.tensor_from_vec(x.clone(), (batch, fan_in));
        let mut params = vec![dev.tensor_from_vec(w.clone(), (w.len(),))];
        if use_bias {
            params.push(dev.tensor_from_vec(b.clone(), (units,)));
        }
        let updates = std::cell::RefCell::new(Vec::new());
        let ctx = Ctx {
            input: Shape::Flat(fan_in),
            params: &params,
            skip_activation: false,
            input_grad: true,
            training: None,
            layer: 0,
            next_max_pool: None,
            fused_next: Default::default(),
            conv_algorithm: Default::default(),
            updates: &updates,
        };
        let y = layer.forward(xt.leaky_trace(), &ctx);
        let y_host = y.as_vec();
        let grads = weighted_sum(y, &r).backward();

        let mut y_ref = vec![0f64; batch * units];
        let (mut dx, mut dw, mut db) = (vec![0f64; x.len()], vec![0f64; w.len()], vec![0f64; units]);
        for i in 0..batch {
            for u in 0..units {
                let o = i * units + u;
                let z = (0..fan_in).map(|k| f64::from(x[i * fan_in + k]) * f64::from(w[k * units + u])).sum::<f64>()
                    + f64::from(b[u]);
                let (out, slope) = match activation {
                    Activation::Linear => (z, 1.0),
                    Activation::Relu => (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 }),
                    _ => {
                        let s = 1.0 / (1.0 + (-z).exp());
                        (s, s * (1.0 - s))
                    }
                };
                y_ref[o] = out;
                let dz = f64::from(r[o]) * slope;
                db[u] += dz;
                for k in 0..fan_in {
                    dx[i * fan_in + k] += dz * f64::from(w[k * units + u]);
                    dw[k * units + u] += dz * f64::from(x[i * fan_in + k]);
                }
            }
        }
        assert_close(&format!("dense case {n} y"), &y_host, &y_ref);
        assert_close(&format!("dense case {n} dx"), &grads.get(&xt).as_vec(), &dx);
        assert_close(&format!("dense case {n} dw"), &grads.get(&params[0]).as_vec(), &dw);
        if use_bias {
            assert_close(&format!("dense case {n} db"), &grads.get(&params[1]).as_vec(), &db);
        }
    }
}

#[test]
fn first_layer_skips_the_input_gradient_but_keeps_weight_gradients() {
    let layer = Conv2dConfig::new(2, [3, 3]);
    let g = layer.geometry(Shape::Image { c: 1, h: 5, w: 5 }).unwrap();
    let dev = Cpu::default();
    let xt = dev.tensor_from_vec(random(25, 1), (1, 25));
    let wt = dev.tensor_from_vec(random(18, 2), (18,));
    let bt = dev.tensor_from_vec(vec![0.0; 2], (2,));
    let y = ops::conv2d(xt.leaky_trace(), &wt, Some(&bt), g, Default::default(), false);
    let r = vec![1.0; 18];
    let mut grads = weighted_sum(y, &r).backward();
    assert!(grads.get_or_alloc_mut(&wt).unwrap().iter().any(|&v| v != 0.0));
    // The input's gradient was never written: allocating it now gives zeros.
    assert!(grads.get_or_alloc_mut(&xt).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn host_borrows_packed_tensors_and_copies_views_in_logical_order() {
    use std::borrow::Cow;
    let dev = Cpu::default();
    let t = dev.tensor_from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2usize, 3usize));
    let values = ops::host(&t);
    assert!(matches!(values, Cow::Borrowed(_)), "a packed CPU tensor is read in place");
    assert_eq!(&values[..], &t.as_vec()[..]);
    // A broadcast view has less physical data than logical values.
    let row = dev.tensor_from_vec(vec![7.0f32, 8.0, 9.0], (3usize,));
    let view: Tensor<(usize, usize), f32, Cpu> = row.broadcast_like::<_, Axis<0>>(&(2, 3));
    let values = ops::host(&view);
    assert!(matches!(values, Cow::Owned(_)));
    assert_eq!(&values[..], [7.0, 8.0, 9.0, 7.0, 8.0, 9.0]);
    // A permuted view has all the values, in another order.
    let transposed = t.clone().permute::<_, Axes2<1, 0>>();
    let values = ops::host(&transposed);
    assert!(matches!(values, Cow::Owned(_)));
    assert_eq!(&values[..], &transposed.as_vec()[..]);
}

/// Every matrix-multiply kernel this CPU runs matches a float64 reference, on strided and on
/// gathered operands, across the sizes where the kernels' blocking changes (panels of 6 rows,
/// strips of 16 or 32 columns, slices of 256 steps); and ours (AVX-512, AVX2) give the same
/// bits as each other, so a run is reproducible across those CPUs.
#[test]
fn every_kernel_matches_the_reference_and_ours_agree_bit_for_bit() {
    use runner::ops::gemm::{Gathered, Kernel, Mat, Operand};
    let kernels = Kernel::available();
    assert!(kernels.contains(&Kernel::Crate));
    // (25 rows are five panels: gathered rows of `b` are copied into strips first.)
    let shapes = [(1, 1, 1), (5, 17, 3), (7, 33, 300), (13, 31, 257), (6, 64, 513), (25, 40, 300)];
    for (s, (m, n, k)) in shapes.into_iter().enumerate() {
        let seed = 100 + 10 * s as u64;
        // a is stored transposed (k × m), b row-major; both also scattered over larger
        // buffers with gaps, for the gathered forms.
        let (a_t, b, c0) = (random(k * m, seed), random(k * n, seed + 1), random(m * n, seed + 2));
        let (a_rows, b_rows): (Vec<usize>, Vec<usize>) =
            ((0..m).map(|i| i * (k + 3) + i % 2).collect(), (0..k).map(|p| p * (n + 5) + p % 3).collect());
        let mut a_buf = vec![f32::NAN; m * (k + 3) + 1];
        let mut b_buf = vec![f32::NAN; k * (n + 5) + 2];
        for (i, &r) in a_rows.iter().enumerate() {
            (0..k).for_each(|p| a_buf[r + p] = a_t[p * m + i]);
        }
        for (p, &r) in b_rows.iter().enumerate() {
            b_buf[r..r + n].copy_from_slice(&b[p * n..(p + 1) * n]);
        }
        for accumulate in [false, true] {
            let mut want = vec![0f64; m * n];
            for (o, w) in want.iter_mut().enumerate() {
                let (i, j) = (o / n, o % n);
                *w = if accumulate { f64::from(c0[o]) } else { 0.0 };
                *w += (0..k).map(|p| f64::from(a_t[p * m + i]) * f64::from(b[p * n + j])).sum::<f64>();
            }
            let mut ours = Vec::new();
            for &kernel in &kernels {
                for gathered in [false, true].into_iter().filter(|&g| !g || kernel.gathers()) {
                    let (a, b) = match gathered {
                        true => (
                            Operand::Gathered(Gathered { data: &a_buf, rows: &a_rows }),
                            Operand::Gathered(Gathered { data: &b_buf, rows: &b_rows }),
                        ),
                        false => (
                            Operand::Mat(Mat { data: &a_t, rs: 1, cs: m }),
                            Operand::Mat(Mat { data: &b, rs: n, cs: 1 }),
                        ),
                    };
                    let mut c = c0.clone();
                    kernel.matmul(m, n, k, a, b, &mut c, accumulate);
                    assert_close(&format!("{kernel:?} {m}x{n}x{k} gathered={gathered} acc={accumulate}"), &c, &want);
                    if kernel != Kernel::Crate {
                        ours.push((kernel, c));
                    }
                }
            }
            for (kernel, c) in &ours {
                let same = c.iter().zip(&ours[0].1).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{kernel:?} and {:?} differ on {m}x{n}x{k}", ours[0].0);
            }
        }
    }
}

/// The forward pass groups an image's bands of output rows into fewer tasks the more images
/// there are per thread: outputs, ReLU masks and pooling winners are the same bits on 1, 2 and
/// 5 threads, with batches of 1 and 5, with and without the folded pool, direct and Winograd.
/// (The direct layer has 5 bands per image: 3 tasks per image on 1 thread with a batch of 1,
/// 5 on 2 threads, 1 on 1 thread with a batch of 5, 3 on 5 threads.)
#[test]
fn conv2d_forward_is_the_same_bits_on_any_thread_count_and_band_split() {
    let (c, h, w, filters) = (64, 41, 30, 32);
    let conv = Conv2dConfig::new(filters, [3, 3]);
    let g = conv.geometry(Shape::Image { c, h, w }).unwrap();
    let window = PoolWindow { pool_size: Pair([2, 2]), strides: None, padding: Padding::Valid, trainable: true };
    let pg = window.geometry(Shape::Image { c: filters, h: g.oh, w: g.ow }, "max_pooling2d").unwrap();
    let weights = random(filters * c * 9, 81);
    let bias = random(filters, 82);
    for batch in [1, 5] {
        let x = random(batch * g.in_len(), 80 + batch as u64);
        for winograd in [false, true] {
            let g = ops::ConvGeom { winograd, ..g };
            for max_pool in [None, Some(pg)] {
                let epilogue = ops::Epilogue { relu: true, max_pool };
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let (y, kept) =
                        pool.install(|| ops::conv2d::forward(&x, &weights, &bias, batch, &g, epilogue, true));
                    let kept: Vec<u32> = match kept {
                        ops::conv2d::Kept::Nothing => Vec::new(),
                        ops::conv2d::Kept::Relu(mask) => mask.into_iter().map(u32::from).collect(),
                        ops::conv2d::Kept::Pool(arg) => arg,
                    };
                    (y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), kept)
                };
                let one = run(1);
                assert!(!one.1.is_empty());
                for threads in [2, 5] {
                    let name = format!("batch {batch}, winograd {winograd}, pool {}", max_pool.is_some());
                    assert!(run(threads) == one, "{name}: {threads} threads differ from 1");
                }
            }
        }
    }
}
