//! Data throughput: a cold scan + decode + resize of a PetImages-like folder (JPEGs of
//! 300-500 px, two classes) to 128x128 RGB, and warm batch production from the decoded-image
//! cache (open the cache, assemble every batch of 32 as the trainer does). Compare with Keras'
//! ImageDataGenerator at about 306 images/s per core on this machine kind (README.md, "Augmentation").

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use runner::data;
use runner::data::ColorMode;

const PER_CLASS: usize = 48;
const SIZE: [usize; 2] = [128, 128];

/// Photos-like JPEGs: smooth gradients plus noise, random sizes of 300-500 pixels a side.
fn pet_images(root: &Path) {
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
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("PetImages");
    pet_images(&root);
    let cache = tmp.path().join("cache");
    let n = 2 * PER_CLASS;

    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("cold_scan_decode_resize_128_rgb", |b| {
        b.iter(|| {
            let listing = data::scan(&root).unwrap();
            data::load(listing, SIZE, ColorMode::Rgb, None).unwrap()
        })
    });
    // Fill the cache once, then measure what a second run does before training.
    data::load(data::scan(&root).unwrap(), SIZE, ColorMode::Rgb, Some(&cache)).unwrap();
    group.bench_function("warm_load_from_cache_and_all_batches_of_32", |b| {
        b.iter(|| {
            let (images, stats) = data::load(data::scan(&root).unwrap(), SIZE, ColorMode::Rgb, Some(&cache)).unwrap();
            assert_eq!(stats.decoded, 0);
            let order: Vec<usize> = (0..images.len()).collect();
            order.chunks(32).map(|chunk| images.batch(chunk).len()).sum::<usize>()
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
