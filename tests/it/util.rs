//! Shared helpers: run the real binary, build small datasets and configs in temp folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageBuffer, Luma, Rgb};
use rand::{Rng, SeedableRng};

/// Repository root (tests run with it as the working directory too).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `runner` with `args` in `cwd`, on two worker threads.
pub fn runner(cwd: &Path, args: &[&str]) -> Output {
    runner_with_threads(cwd, args, 2)
}

/// Runs `runner` with `args` in `cwd` on `threads` worker threads.
pub fn runner_with_threads(cwd: &Path, args: &[&str], threads: usize) -> Output {
    runner_with(cwd, args, threads, &Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-cache"))
}

/// Runs `runner` with `args` in `cwd` on `threads` worker threads, with its image cache in `cache`.
pub fn runner_with(cwd: &Path, args: &[&str], threads: usize, cache: &Path) -> Output {
    command(cwd, args, threads, cache).output().expect("runner starts")
}

/// Runs `runner` with `args` in `cwd` on `threads` worker threads and, when `kernel` names one,
/// on that matrix kernel (`RUNNER_KERNEL`), with the shared image cache.
pub fn runner_on_kernel(cwd: &Path, args: &[&str], threads: usize, kernel: Option<&str>) -> Output {
    let mut cmd = command(cwd, args, threads, &Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-cache"));
    if let Some(kernel) = kernel {
        cmd.env("RUNNER_KERNEL", kernel);
    }
    cmd.output().expect("runner starts")
}

fn command(cwd: &Path, args: &[&str], threads: usize, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(args).current_dir(cwd).env("RAYON_NUM_THREADS", threads.to_string()).env("RUNNER_CACHE_DIR", cache);
    cmd
}

/// The newest run folder of an experiment's folder (`run-NNN` sorts by number).
pub fn newest_run(experiment: &Path) -> PathBuf {
    std::fs::read_dir(experiment).unwrap().map(|e| e.unwrap().path()).max().expect("a run folder")
}

/// A run's manifest.
pub fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the process exited with `code` and did not panic.
pub fn assert_exit(out: &Output, code: i32) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "runner panicked:\n{err}");
    assert_eq!(out.status.code(), Some(code), "unexpected exit status; stderr:\n{err}");
}

/// Copies the first `per_class` images of `classes` of the bundled Fashion-MNIST into `dst`.
pub fn fashion_subset(dst: &Path, classes: &[&str], per_class: usize) {
    for class in classes {
        let src = repo().join("data/fashion_mnist").join(class);
        let mut files: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        std::fs::create_dir_all(dst.join(class)).unwrap();
        for f in files.iter().take(per_class) {
            std::fs::copy(f, dst.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
}

/// A small Fashion-MNIST experiment: the baseline's model on `data`, for `epochs`.
pub fn small_config(name: &str, data: &Path, results: &Path, seed: u64, epochs: usize, classes: usize) -> String {
    format!(
        r#"[experiment]
name = "{name}"
seed = {seed}

[data]
path = "{data}"
image_size = [28, 28]
color_mode = "grayscale"
validation_split = 0.25

[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 3
activation = "relu"

[[model.layers]]
type = "max_pooling2d"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 32
activation = "relu"

[[model.layers]]
type = "dense"
units = {classes}
activation = "softmax"

[train]
loss = "sparse_categorical_crossentropy"
epochs = {epochs}
batch_size = 16

[output]
dir = "{results}"
"#,
        data = data.display(),
        results = results.display()
    )
}

/// Writes a folder of small JPEGs in two classes that a CNN can tell apart (horizontal vs
/// vertical stripes, with noise), plus a zero-byte JPEG, a text file named `.jpg`, and OS litter.
pub fn striped_jpegs(dst: &Path, per_class: usize, size: (u32, u32)) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (class, vertical) in [("Cat", false), ("Dog", true)] {
        let dir = dst.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let phase = rng.gen_range(0..8);
            let img = ImageBuffer::from_fn(size.0, size.1, |x, y| {
                let t = if vertical { x } else { y };
                let on = (t + phase) / 4 % 2 == 0;
                let base: u8 = if on { 200 } else { 50 };
                let noise: u8 = rng.gen_range(0..40);
                Rgb([base.saturating_add(noise), base, base.saturating_sub(noise)])
            });
            img.save(dir.join(format!("{i}.jpg"))).unwrap();
        }
    }
    std::fs::write(dst.join("Cat/666.jpg"), b"").unwrap();
    std::fs::write(dst.join("Dog/11702.jpg"), b"this is not a jpeg").unwrap();
    std::fs::write(dst.join("Dog/Thumbs.db"), b"litter").unwrap();
}

/// A greyscale PNG of `size` with pixel values from `f`.
pub fn gray_png(path: &Path, size: u32, f: impl Fn(u32, u32) -> u8) {
    ImageBuffer::from_fn(size, size, |x, y| Luma([f(x, y)])).save(path).unwrap();
}

/// The Python that has the reference packages of `.ci/pyenv` (onnxruntime, TensorBoard's event
/// reader): `RUNNER_TEST_PYTHON`, else `target/pyenv/bin/python`. `None` (the test is then
/// skipped, saying why) when neither exists, except under CI, where it must.
pub fn reference_python() -> Option<PathBuf> {
    let python = std::env::var_os("RUNNER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    if python.is_file() {
        return Some(python);
    }
    assert!(std::env::var_os("CI").is_none(), "{} is missing: .ci/run must run .ci/pyenv", python.display());
    eprintln!("skipped: no reference Python at {} (run `bash .ci/pyenv`)", python.display());
    None
}

/// Column `name` of a run's `history.csv`, one value per epoch.
pub fn history_column(run: &Path, name: &str) -> Vec<f64> {
    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    lines.map(|l| l.split(',').nth(col).unwrap().parse().unwrap()).collect()
}

/// Starts `runner args` in `root` and sends it `signal` (`-INT`, `-TERM`, `-KILL`) as soon as
/// its run in `run` has saved its first epoch completely: its time in the manifest is the last
/// thing an epoch writes, so the signal lands early in the second epoch's batches. (A fixed
/// wait after the checkpoint could land while the epoch's plots are drawn, or in the last
/// batch, where a Ctrl-C stops at the epoch boundary instead: epochs here take milliseconds.)
pub fn signal_after_first_epoch(root: &Path, args: &[&str], run: &Path, signal: &str) -> std::process::ExitStatus {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(root)
        .env("RAYON_NUM_THREADS", "2")
        .env("RUNNER_CACHE_DIR", root.join("cache"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_epoch_saved = || {
        let manifest = std::fs::read(run.join("manifest.json")).unwrap_or_default();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap_or_default();
        manifest["epoch_seconds"].as_array().is_some_and(|e| !e.is_empty())
    };
    let started = std::time::Instant::now();
    while !first_epoch_saved() {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "no epoch finished within two minutes");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    child.wait().unwrap()
}
