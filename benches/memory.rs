//! Memory against dataset size: trains one epoch of a small model on two synthetic datasets of
//! 224x224 RGB JPEGs whose decoded sizes differ eightfold (1,792 images, 256 MiB decoded, and
//! 14,336 images, 2 GiB decoded), through the real `runner` binary, and prints the peak
//! anonymous memory each run records in its manifest, with the time taken.
//!
//! ```sh
//! cargo bench --bench memory
//! ```
//!
//! The model pools each image straight down (8x8 max pooling, then one dense layer), so the
//! data path (cache, batches, prefetch) dominates what a run holds. Runs go one after another,
//! each with a cold cache (decode, then train) and again with the cache filled. The datasets are
//! written once to `target/bench-data/memory-*` (about 0.4 GB of JPEGs in all).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

const SIDE: u32 = 224;
const SMALL: usize = 1_792;
const LARGE: usize = 8 * SMALL;

/// Two classes of photo-like JPEGs (gradients and noise); written once, kept between runs.
fn dataset(images: usize) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/memory-{images}"));
    let done = root.join(".complete");
    if done.exists() {
        return root;
    }
    (0..images).into_par_iter().for_each(|i| {
        let class = ["a", "b"][i % 2];
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let tint: [u8; 3] = rng.gen();
        let img = RgbImage::from_fn(SIDE, SIDE, |x, y| {
            let n: u8 = rng.gen_range(0..24);
            Rgb([tint[0] ^ (x as u8) ^ n, tint[1].wrapping_add(y as u8), tint[2] | n])
        });
        img.save(dir.join(format!("{i:06}.jpg"))).unwrap();
    });
    std::fs::write(&done, b"").unwrap();
    root
}

fn config(name: &str, data: &Path, results: &Path) -> String {
    format!(
        r#"[experiment]
name = "{name}"

[data]
path = "{}"
image_size = [{SIDE}, {SIDE}]

[[model.layers]]
type = "max_pooling2d"
pool_size = [8, 8]

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 2
activation = "softmax"

[train]
loss = "sparse_categorical_crossentropy"
epochs = 1
batch_size = 32

[output]
dir = "{}"
plot_formats = []
"#,
        data.display(),
        results.display()
    )
}

/// Runs `runner` on `config` and returns (peak anonymous MiB from the manifest, seconds).
fn run(config: &Path, cache: &Path, run: &Path) -> (f64, f64) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg(config)
        .arg("--quiet")
        .env("RUNNER_CACHE_DIR", cache)
        .output()
        .expect("runner starts");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    (manifest["peak_anonymous_mib"].as_f64().expect("peak_anonymous_mib"), secs)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another benchmark skips this one.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"memory".contains(a.as_str())) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l[l.find(':').unwrap() + 1..].trim().to_string())
        })
        .unwrap_or_default();
    println!("memory: one epoch at {SIDE}x{SIDE} RGB, batch 32, {} threads, {cpu}", rayon::current_num_threads());
    println!("| images | decoded | cold: peak anonymous | cold: time | warm: peak anonymous | warm: time |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for images in [SMALL, LARGE] {
        let data = dataset(images);
        let name = format!("memory-{images}");
        let path = tmp.path().join(format!("{name}.toml"));
        let results = tmp.path().join("results");
        std::fs::write(&path, config(&name, &data, &results)).unwrap();
        let cache = tmp.path().join(format!("cache-{images}"));
        let (cold, cold_s) = run(&path, &cache, &results.join(&name).join("run-001"));
        let (warm, warm_s) = run(&path, &cache, &results.join(&name).join("run-002"));
        let decoded = images as f64 * f64::from(SIDE * SIDE * 3) / (1 << 20) as f64;
        println!("| {images} | {decoded:.0} MiB | {cold:.0} MiB | {cold_s:.1} s | {warm:.0} MiB | {warm_s:.1} s |");
    }
}
