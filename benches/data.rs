//! Data throughput: a cold scan + decode + resize of a PetImages-like folder (2,000 JPEGs of
//! 300-500 px, two classes) to 128x128 RGB, on one thread and on all, and warm batch
//! production from the decoded-image cache (open the cache, read every batch of 32 as the
//! trainer does). The folder is written once to `target/bench-data/PetImages`, where
//! `benches/reference/decode_pillow.py` times Pillow on the very same files:
//!
//! ```sh
//! cargo bench --bench data -- decode/
//! python benches/reference/decode_pillow.py target/bench-data/PetImages
//! ```
//!
//! Compare `decode/cold_1_thread_bilinear` with the script's one-core figure.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use runner::data;
use runner::data::{ColorMode, Interpolation, Resize};

const PER_CLASS: usize = 1000;
const SIZE: [usize; 2] = [128, 128];

/// Photo-like JPEGs: smooth gradients plus noise, random sizes of 300-500 pixels a side,
/// about 27 KiB each; written once (a complete folder is kept between runs).
fn pet_images() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/PetImages");
    let done = root.join(".complete");
    if done.exists() {
        return root;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for class in ["Cat", "Dog"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..PER_CLASS {
            let (w, h) = (rng.gen_range(300..=500), rng.gen_range(300..=500));
            let img = RgbImage::from_fn(w, h, |x, y| {
                let n: u8 = rng.gen_range(0..32);
                Rgb([(x * 255 / w) as u8 ^ n, (y * 255 / h) as u8, ((x + y) % 256) as u8 | n])
            });
            img.save(root.join(class).join(format!("{i}.jpg"))).unwrap();
        }
    }
    std::fs::write(&done, b"").unwrap();
    root
}

fn bench(c: &mut Criterion) {
    let root = pet_images();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let n = 2 * PER_CLASS;
    // Decoded images that are not cached go to an unnamed file in the cache folder.
    std::env::set_var("RUNNER_CACHE_DIR", tmp.path());
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();

    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    for interpolation in [Interpolation::Bilinear, Interpolation::Nearest, Interpolation::Area] {
        let name = format!("{interpolation:?}").to_lowercase();
        let cold = || {
            data::load(data::scan(&root).unwrap(), SIZE, ColorMode::Rgb, interpolation, Resize::Stretch, None).unwrap()
        };
        group.bench_function(format!("cold_1_thread_{name}"), |b| b.iter(|| one.install(cold)));
        if interpolation == Interpolation::Bilinear {
            group.bench_function(format!("cold_all_threads_{name}"), |b| b.iter(cold));
        }
    }
    group.finish();

    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    // Fill the cache once, then measure what a second run does before and during training.
    let load = || {
        data::load(
            data::scan(&root).unwrap(),
            SIZE,
            ColorMode::Rgb,
            Interpolation::Bilinear,
            Resize::Stretch,
            Some(&cache),
        )
    };
    load().unwrap();
    group.bench_function("warm_load_from_cache_and_all_batches_of_32", |b| {
        b.iter(|| {
            let (images, stats) = load().unwrap();
            assert_eq!(stats.decoded, 0);
            let order: Vec<usize> = (0..images.len()).collect();
            order.chunks(32).map(|chunk| images.batch(chunk).unwrap().len()).sum::<usize>()
        })
    });
    group.finish();
}

/// The tutorial's augmentation (rotation 40, shear 0.2, zoom 0.2, horizontal flip, nearest
/// fill, bilinear) on a batch of 32 images of 128x128 RGB. Run with `RAYON_NUM_THREADS=1` for
/// the per-core figure.
fn augmentation(c: &mut Criterion) {
    use runner::data::augment::{self, AugmentConfig, ZoomRange};
    let cfg = AugmentConfig {
        rotation_range: 40.0,
        shear_range: 0.2,
        zoom_range: ZoomRange([0.8, 1.2]),
        horizontal_flip: true,
        ..AugmentConfig::default()
    };
    let shape = [3, 128, 128];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let pixels: Vec<u8> = (0..32 * 3 * 128 * 128).map(|_| rng.gen()).collect();
    let indices: Vec<usize> = (0..32).collect();
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(32));
    let mut epoch = 0;
    group.bench_function("tutorial_settings_128x128_rgb_batch32", |b| {
        b.iter(|| {
            epoch += 1;
            augment::batch(&cfg, &pixels, shape, &indices, 42, epoch)
        })
    });
    group.finish();
}

criterion_group!(benches, bench, augmentation);
criterion_main!(benches);
