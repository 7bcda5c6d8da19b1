//! The CUDA build of `scripts/build-cuda.sh`, when `RUNNER_CUDA_BIN` names it: CI builds it and
//! sets that; elsewhere these tests are skipped, saying so (under CI they fail without it). None
//! needs a GPU: they check that the binary starts and trains on the CPU where the NVIDIA
//! libraries are missing, and what `device = "cuda"` and `"auto"` do there. With
//! `RUNNER_CUDA_DRIVER` naming a folder that holds the NVIDIA driver's libcuda.so.1 (CI unpacks
//! Debian's there), also what they do on a machine that has the driver but no GPU.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// The CUDA binary, or `None` (the test then says it is skipped).
fn cuda_bin() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("RUNNER_CUDA_BIN") else {
        assert!(std::env::var_os("CI").is_none(), "RUNNER_CUDA_BIN is not set: .ci/run must build the CUDA binary");
        eprintln!("skipped: RUNNER_CUDA_BIN is not set (`bash scripts/build-cuda.sh` builds the CUDA binary)");
        return None;
    };
    let bin = PathBuf::from(bin);
    assert!(bin.is_file(), "RUNNER_CUDA_BIN names {}, which is not a file", bin.display());
    Some(bin)
}

/// Whether this machine has the NVIDIA driver's library where any program finds it. Tests of a
/// machine without it are skipped on one that has it (it may have a GPU too).
fn driver_installed() -> bool {
    // SAFETY: opening and closing a library; nothing in it is called.
    unsafe {
        let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if !handle.is_null() {
            libc::dlclose(handle);
        }
        !handle.is_null()
    }
}

/// Whether this machine lacks the driver's library, saying that the test is skipped if not.
fn no_driver() -> bool {
    let installed = driver_installed();
    if installed {
        eprintln!("skipped: this machine has libcuda.so.1, and perhaps a GPU");
    }
    !installed
}

/// Runs the CUDA binary with `args` in `cwd`, on two worker threads, with `lib_path` (if any) as
/// LD_LIBRARY_PATH.
fn run(bin: &Path, cwd: &Path, args: &[&str], lib_path: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd).env("RAYON_NUM_THREADS", "2").env("RUNNER_CACHE_DIR", cwd.join("cache"));
    if let Some(dir) = lib_path {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    cmd.output().expect("the CUDA binary starts")
}

/// A two-class, one-epoch run's config in `root` (data in `root/data`, results in
/// `root/results/tiny`).
fn tiny_config(root: &Path) -> PathBuf {
    let data = root.join("data");
    fashion_subset(&data, &["trouser", "bag"], 8);
    let config = root.join("tiny.toml");
    std::fs::write(&config, small_config("tiny", &data, &root.join("results"), 1, 1, 2)).unwrap();
    config
}

/// The run folders `root/results/tiny` holds.
fn runs(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("results/tiny")) else { return Vec::new() };
    entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("run-")).collect()
}

/// Asserts that `out` is the refusal of `device` (such as `cuda:1`): exit code 69 and a message
/// that begins `device "cuda:1"`, and returns that message.
fn assert_refused(out: &Output, device: &str) -> String {
    assert_exit(out, 69);
    let err = stderr(out);
    let start = format!("device \"{device}\"");
    let line = err.lines().map(|l| l.strip_prefix("error: ").unwrap_or(l)).find(|l| l.starts_with(&start));
    line.unwrap_or_else(|| panic!("no message beginning {start}:\n{err}")).to_string()
}

#[test]
fn the_cuda_build_starts_without_the_nvidia_libraries() {
    let Some(bin) = cuda_bin() else { return };
    let out = run(&bin, &repo(), &["--help"], None);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{}", String::from_utf8_lossy(&out.stdout));
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&bin, &repo(), &["check", "experiments/baseline.toml"], None);
    assert_exit(&out, 0);
    // The same where LD_LIBRARY_PATH leads nowhere useful, as on a machine that has no CUDA.
    let out = run(&bin, &repo(), &["--version"], Some(tmp.path()));
    assert_exit(&out, 0);
}

#[test]
fn the_cuda_build_trains_on_the_cpu() {
    let Some(bin) = cuda_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = tiny_config(root);
    let out = run(&bin, root, &[config.to_str().unwrap(), "--set", "experiment.device=\"cpu\""], None);
    assert_exit(&out, 0);
    let run = root.join("results/tiny/run-001");
    assert_eq!(manifest(&run)["device"], "cpu");
    assert_eq!(history_column(&run, "epoch").len(), 1, "one epoch in history.csv");
}

// The tests below depend on the device choice of src/pipeline/device.rs (`auto` falls back to
// the CPU saying why, in the log and the manifest; `cuda` and `cuda:N` without a usable GPU end
// with exit code 69 and a message beginning `device "cuda:N"`, before any run folder exists).

#[test]
fn cuda_without_the_driver_exits_69_before_making_a_run_folder() {
    let Some(bin) = cuda_bin() else { return };
    if !no_driver() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = tiny_config(root);
    let config = config.to_str().unwrap();
    for (set, device) in [("cuda", "cuda:0"), ("cuda:1", "cuda:1")] {
        let out = run(&bin, root, &[config, "--set", &format!("experiment.device=\"{set}\"")], None);
        let message = assert_refused(&out, device);
        assert!(stderr(&out).contains("libcuda.so.1"), "says that the driver's library is missing:\n{}", stderr(&out));
        assert!(runs(root).is_empty(), "{message}; yet made {:?}", runs(root));
    }
}

#[test]
fn auto_without_the_driver_trains_on_the_cpu_saying_why() {
    let Some(bin) = cuda_bin() else { return };
    if !no_driver() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = tiny_config(root);
    let out = run(&bin, root, &[config.to_str().unwrap(), "--set", "experiment.device=\"auto\""], None);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("libcuda.so.1"), "the log says why there is no GPU:\n{}", stderr(&out));
    let mut manifest = manifest(&root.join("results/tiny/run-001"));
    assert_eq!(manifest["device"], "cpu");
    manifest.as_object_mut().unwrap().remove("command");
    assert!(manifest.to_string().contains("libcuda.so.1"), "the manifest says why there is no GPU: {manifest}");
}

#[test]
fn with_the_driver_but_no_gpu_cuda_exits_69_and_auto_trains_on_the_cpu() {
    let Some(bin) = cuda_bin() else { return };
    let Some(driver) = std::env::var_os("RUNNER_CUDA_DRIVER").map(PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "RUNNER_CUDA_DRIVER is not set: .ci/run must unpack the driver's library"
        );
        eprintln!(
            "skipped: RUNNER_CUDA_DRIVER does not name a folder holding the driver's libcuda.so.1 (.ci/run makes one)"
        );
        return;
    };
    assert!(driver.join("libcuda.so.1").exists(), "RUNNER_CUDA_DRIVER={} has no libcuda.so.1", driver.display());
    // The real driver library beside the build's link-time stubs of the other libraries under
    // their run-time names: runner opens them all, and only the driver's is called before the
    // device fails to start.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let libs = root.join("libs");
    std::fs::create_dir(&libs).unwrap();
    std::os::unix::fs::symlink(driver.join("libcuda.so.1"), libs.join("libcuda.so.1")).unwrap();
    let stubs = repo().join("target/cuda-root/lib64/stubs");
    for (stub, soname) in [
        ("libnvrtc.so", "libnvrtc.so.13"),
        ("libcublasLt.so", "libcublasLt.so.13"),
        ("libcublas.so", "libcublas.so.13"),
        ("libcudnn.so", "libcudnn.so.9"),
    ] {
        assert!(
            stubs.join(stub).is_file(),
            "{} is missing: run bash scripts/build-cuda.sh",
            stubs.join(stub).display()
        );
        std::os::unix::fs::symlink(stubs.join(stub), libs.join(soname)).unwrap();
    }
    let config = tiny_config(root);
    let config = config.to_str().unwrap();
    let no_device = |text: &str| text.contains("CUDA_ERROR_NO_DEVICE") || text.contains("no CUDA-capable device");

    let out = run(&bin, root, &[config, "--set", "experiment.device=\"cuda\""], Some(&libs));
    let message = assert_refused(&out, "cuda:0");
    assert!(no_device(&stderr(&out)), "says that the driver finds no GPU:\n{}", stderr(&out));
    assert!(runs(root).is_empty(), "{message}; yet made {:?}", runs(root));

    let out = run(&bin, root, &[config, "--set", "experiment.device=\"auto\""], Some(&libs));
    assert_exit(&out, 0);
    assert!(no_device(&stderr(&out)), "the log says why there is no GPU:\n{}", stderr(&out));
    assert_eq!(manifest(&root.join("results/tiny/run-001"))["device"], "cpu");
}

#[test]
fn gpu_check_without_the_driver_exits_69_naming_the_missing_library() {
    let Some(bin) = cuda_bin() else { return };
    if !no_driver() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (args, device) in [(&["gpu-check"][..], "cuda:0"), (&["gpu-check", "--device", "cuda:1", "--json"], "cuda:1")] {
        let out = run(&bin, tmp.path(), args, None);
        assert_refused(&out, device);
        assert!(stderr(&out).contains("libcuda.so.1"), "says that the driver's library is missing:\n{}", stderr(&out));
        assert!(out.stdout.is_empty(), "nothing compared, nothing printed");
    }
    // The CPU against itself needs no NVIDIA library.
    let out = run(&bin, tmp.path(), &["gpu-check", "--device", "cpu"], None);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("all within tolerance"));
}
