//! Augmentation: exactness, Keras' semantics, distributions, determinism, and that validation
//! never sees it.

use dfdx::prelude::*;
use rand::SeedableRng;
use runner::config::{self, Source};
use runner::data::augment::{self, AugmentConfig, FillMode, Interpolation, Params, ShiftRange, ZoomRange};
use runner::data::Images;

fn ramp(c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..c * h * w).map(|i| (i * 7 % 251) as u8).collect()
}

fn identity() -> Params {
    Params { zx: 1.0, zy: 1.0, ..Params::default() }
}

/// Applies `p` under `cfg` to a CHW image, returning values in 0-255.
fn run(cfg: &AugmentConfig, p: &Params, img: &[u8], shape: [usize; 3]) -> Vec<f32> {
    let mut out = vec![0.0; img.len()];
    augment::apply(cfg, p, img, shape, &mut out);
    out.iter().map(|v| v * 255.0).collect()
}

fn assert_bytes(name: &str, got: &[f32], want: impl Fn(usize) -> u8) {
    for (i, &g) in got.iter().enumerate() {
        assert!((g - f32::from(want(i))).abs() < 1e-3, "{name}[{i}]: got {g}, want {}", want(i));
    }
}

#[test]
fn zero_ranges_are_the_identity_byte_for_byte() {
    let cfg = AugmentConfig::default();
    let img = ramp(3, 5, 7);
    let out = augment::batch(&cfg, &img, [3, 5, 7], &[0], 1, 0);
    let plain: Vec<f32> = img.iter().map(|&v| f32::from(v) / 255.0).collect();
    assert_eq!(out, plain);
    let p = cfg.draw(5, 7, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    assert!(p.is_identity(), "{p:?}");
}

#[test]
fn flips_are_exact() {
    let (c, h, w) = (2, 4, 5);
    let img = ramp(c, h, w);
    let cfg = AugmentConfig::default();
    let at = |ch: usize, r: usize, col: usize| img[(ch * h + r) * w + col];
    let out = run(&cfg, &Params { flip_horizontal: true, ..identity() }, &img, [c, h, w]);
    assert_bytes("horizontal", &out, |i| at(i / (h * w), i / w % h, w - 1 - i % w));
    let out = run(&cfg, &Params { flip_vertical: true, ..identity() }, &img, [c, h, w]);
    assert_bytes("vertical", &out, |i| at(i / (h * w), h - 1 - i / w % h, i % w));
}

#[test]
fn a_90_degree_rotation_of_a_square_image_is_a_transpose_and_flip() {
    let n = 6;
    let img = ramp(1, n, n);
    let cfg = AugmentConfig { interpolation: Interpolation::Nearest, ..AugmentConfig::default() };
    let out = run(&cfg, &Params { theta: 90.0, ..identity() }, &img, [1, n, n]);
    // Output (r, c) samples input (c, n-1-r): Keras turns the picture anticlockwise.
    assert_bytes("rot90", &out, |i| img[(i % n) * n + (n - 1 - i / n)]);
}

#[test]
fn fill_modes_give_the_known_border_pixels() {
    let img = [10u8, 20, 30, 40];
    let shape = [1, 1, 4];
    for (mode, right, left) in [
        (FillMode::Nearest, [30, 40, 40, 40], [10, 10, 10, 20]),
        (FillMode::Constant, [30, 40, 7, 7], [7, 7, 10, 20]),
        (FillMode::Reflect, [30, 40, 40, 30], [20, 10, 10, 20]),
        // scipy's `wrap` (what Keras calls): period n-1, the first and last pixels overlap.
        (FillMode::Wrap, [30, 40, 20, 30], [20, 30, 10, 20]),
    ] {
        for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
            let cfg = AugmentConfig { fill_mode: mode, cval: 7.0, interpolation, ..AugmentConfig::default() };
            let out = run(&cfg, &Params { tx: 2.0, ..identity() }, &img, shape);
            assert_bytes(&format!("{mode:?} +2"), &out, |i| right[i]);
            let out = run(&cfg, &Params { tx: -2.0, ..identity() }, &img, shape);
            assert_bytes(&format!("{mode:?} -2"), &out, |i| left[i]);
        }
    }
}

#[test]
fn draws_stay_inside_their_ranges_and_cover_them() {
    let cfg = AugmentConfig {
        rotation_range: 40.0,
        width_shift_range: ShiftRange::Uniform(0.1),
        height_shift_range: ShiftRange::Uniform(5.0),
        shear_range: 10.0,
        zoom_range: ZoomRange([0.8, 1.2]),
        horizontal_flip: true,
        brightness_range: Some([0.5, 1.5]),
        channel_shift_range: 20.0,
        ..AugmentConfig::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let draws: Vec<Params> = (0..20_000).map(|_| cfg.draw(50, 100, &mut rng)).collect();
    let check = |name: &str, f: fn(&Params) -> f64, lo: f64, hi: f64| {
        let (min, max) = draws.iter().map(f).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        assert!(min >= lo && max <= hi, "{name} outside [{lo}, {hi}]: [{min}, {max}]");
        let span = hi - lo;
        assert!(min < lo + span * 0.01 && max > hi - span * 0.01, "{name} does not cover [{lo}, {hi}]: [{min}, {max}]");
    };
    check("theta", |p| p.theta, -40.0, 40.0);
    check("tx (10% of width 100)", |p| p.tx, -10.0, 10.0);
    check("ty (5 pixels)", |p| p.ty, -5.0, 5.0);
    check("shear", |p| p.shear, -10.0, 10.0);
    check("zx", |p| p.zx, 0.8, 1.2);
    check("zy", |p| p.zy, 0.8, 1.2);
    check("brightness", |p| p.brightness.unwrap(), 0.5, 1.5);
    check("channel shift", |p| p.channel_shift.unwrap(), -20.0, 20.0);
    let flips = draws.iter().filter(|p| p.flip_horizontal).count();
    assert!((9_500..10_500).contains(&flips), "horizontal flips {flips} of 20000");
    assert!(draws.iter().all(|p| !p.flip_vertical));
    assert!(draws.iter().any(|p| (p.zx - p.zy).abs() > 0.1), "x and y zoom are drawn separately");

    // An integer is whole pixels in 0..n, either sign; a list picks its values, either sign.
    let ints = AugmentConfig { width_shift_range: ShiftRange::Pixels(3), ..AugmentConfig::default() };
    let mut seen: Vec<i64> = (0..2000).map(|_| ints.draw(10, 10, &mut rng).tx as i64).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [-2, -1, 0, 1, 2]);
    let list = AugmentConfig { height_shift_range: ShiftRange::Choice(vec![0.1, 0.2]), ..AugmentConfig::default() };
    let mut seen: Vec<i64> = (0..2000).map(|_| list.draw(50, 10, &mut rng).ty.round() as i64).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [-10, -5, 5, 10], "fractions of the height 50");
}

#[test]
fn batches_depend_only_on_seed_epoch_and_image() {
    let cfg = AugmentConfig {
        rotation_range: 30.0,
        zoom_range: ZoomRange([0.7, 1.3]),
        horizontal_flip: true,
        ..AugmentConfig::default()
    };
    let shape = [3, 16, 16];
    let n = 3 * 16 * 16;
    let all: Vec<u8> = (0..8u8).flat_map(|k| ramp(3, 16, 16).into_iter().map(move |v| v ^ k)).collect();
    // A batch holds the pixels of its images, in its order.
    let pixels =
        |indices: &[usize]| -> Vec<u8> { indices.iter().flat_map(|&i| all[i * n..(i + 1) * n].to_vec()).collect() };
    let on = |threads: usize, indices: &[usize]| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| augment::batch(&cfg, &pixels(indices), shape, indices, 42, 3))
    };
    let one = on(1, &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(one, on(4, &[0, 1, 2, 3, 4, 5, 6, 7]), "thread count changed the batch");
    let shuffled = on(3, &[5, 2, 7]);
    for (k, i) in [5, 2, 7].into_iter().enumerate() {
        assert_eq!(shuffled[k * n..(k + 1) * n], one[i * n..(i + 1) * n], "image {i} depends on batch order");
    }
    let eight = [0, 1, 2, 3, 4, 5, 6, 7];
    assert_ne!(one, augment::batch(&cfg, &pixels(&eight), shape, &eight, 42, 4), "epochs must differ");
    assert_ne!(one, augment::batch(&cfg, &pixels(&eight), shape, &eight, 43, 3), "seeds must differ");
}

const CONFIG: &str = r#"
[experiment]
name = "t"

[data]
path = "unused"
image_size = [8, 8]
color_mode = "grayscale"

[augment]
rotation_range = 40
width_shift_range = 0.2
height_shift_range = 2
zoom_range = 0.2
horizontal_flip = true
fill_mode = "reflect"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 2
activation = "softmax"

[train]
loss = "categorical_crossentropy"
epochs = 1
"#;

#[test]
fn augment_keys_parse_like_keras_and_bad_values_point_at_the_key() {
    let source = Source { path: "a.toml".into(), text: CONFIG.into() };
    let c = config::parse(&source).unwrap();
    let a = c.augment.clone().unwrap();
    assert_eq!(a.zoom_range, ZoomRange([0.8, 1.2]));
    assert_eq!(a.width_shift_range, ShiftRange::Uniform(0.2));
    assert_eq!(a.height_shift_range, ShiftRange::Pixels(2));
    assert_eq!(a.fill_mode, FillMode::Reflect);
    assert_eq!(a.interpolation, Interpolation::Bilinear);

    let bad = CONFIG
        .replace("rotation_range = 40", "rotation_range = -5")
        .replace("zoom_range = 0.2", "zoom_range = [1.5, 1.2]");
    let source = Source { path: "a.toml".into(), text: bad };
    let err = config::validate(config::parse(&source).unwrap(), source).unwrap_err().to_string();
    assert!(err.contains("a.toml:11:18: rotation_range -5 must be 0 or more"), "{err}");
    assert!(err.contains("zoom_range [1.5, 1.2]"), "{err}");

    let typo = CONFIG.replace("horizontal_flip", "horizontal_flips");
    let err = config::parse(&Source { path: "a.toml".into(), text: typo }).unwrap_err().to_string();
    assert!(err.contains("unknown field `horizontal_flips`"), "{err}");
}

#[test]
fn validation_batches_are_never_augmented() {
    let with = Source { path: "a.toml".into(), text: CONFIG.into() };
    // The same config with the [augment] table removed.
    let (head, rest) = CONFIG.split_once("[augment]").unwrap();
    let (_, tail) = rest.split_once("[[model.layers]]").unwrap();
    let without = Source { path: "b.toml".into(), text: format!("{head}[[model.layers]]{tail}") };
    let plan_with = config::validate(config::parse(&with).unwrap(), with).unwrap();
    let plan_without = config::validate(config::parse(&without).unwrap(), without).unwrap();
    assert!(plan_with.config.augment.is_some() && plan_without.config.augment.is_none());

    let tmp = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> =
        (0..10).flat_map(|k| ramp(1, 8, 8).into_iter().map(move |v| v.wrapping_add(k * 20))).collect();
    let images = Images::from_pixels(
        vec!["a".into(), "b".into()],
        [1, 8, 8],
        &pixels,
        (0..10).map(|i| i % 2).collect(),
        (0..10).map(|i| format!("{i}.png").into()).collect(),
        tmp.path(),
    )
    .unwrap();
    let dev = Cpu::default();
    let net =
        runner::model::Network::new(plan_with.model.clone(), &dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let val: Vec<usize> = (0..10).collect();
    let a = runner::train::evaluate(&dev, &net, &plan_with, &images, &val).unwrap();
    let b = runner::train::evaluate(&dev, &net, &plan_without, &images, &val).unwrap();
    assert_eq!(a, b);
}
