//! Choosing the device a command computes on: the CPU, a CUDA GPU, or (`auto`) a GPU when one
//! answers. Training, resuming, evaluating, predicting and benchmarking all start here, so a
//! config's `experiment.device` means the same thing to each of them.
//!
//! Every dfdx device is its own type, so the work to run is an [`OnDevice`] job, generic over
//! the backend, rather than a closure. This is the one module of the commands that names dfdx.

use dfdx::prelude::*;

use crate::config::{DeviceKind, Plan};
use crate::ops::Backend;
use crate::seed::{self, Stream};
use crate::{Error, Result};

/// Work that runs on whichever device the config chooses.
pub trait OnDevice {
    /// What the work gives back.
    type Output;
    /// Runs the work on `dev`.
    fn run<D: Backend>(self, dev: D) -> Result<Self::Output>;
}

/// Where a command computes, decided once per process for each `experiment.device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// The CPU; with `auto`, why no GPU was used.
    Cpu {
        /// Set when `auto` looked for a GPU and found none usable.
        why_not_gpu: Option<String>,
    },
    /// CUDA GPU `ordinal` (only in builds with `--features cuda`).
    Cuda {
        /// The driver's device number.
        ordinal: usize,
        /// Its name, compute capability and driver, for the log and the manifest.
        about: String,
    },
}

impl Chosen {
    /// `cpu` or `cuda:N`, as the manifest records it.
    pub fn name(&self) -> String {
        match self {
            Chosen::Cpu { .. } => "cpu".into(),
            Chosen::Cuda { ordinal, .. } => format!("cuda:{ordinal}"),
        }
    }

    /// What the manifest adds to the name: the GPU, or why `auto` did not use one.
    pub fn note(&self) -> Option<String> {
        match self {
            Chosen::Cpu { why_not_gpu } => why_not_gpu.as_ref().map(|why| format!("no usable GPU: {why}")),
            Chosen::Cuda { about, .. } => Some(about.clone()),
        }
    }
}

/// Decides where `kind` computes, looking for the GPU once per process (the answer is kept,
/// so the log says it once and every command of the process agrees). `cuda`/`cuda:N` without
/// a usable GPU is an [`Error::Device`]; commands call this before they create a folder or
/// read data, so nothing is left behind.
pub fn choose(kind: DeviceKind) -> Result<Chosen> {
    static CHOSEN: std::sync::Mutex<Vec<(DeviceKind, Chosen)>> = std::sync::Mutex::new(Vec::new());
    let mut known = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, chosen)) = known.iter().find(|(k, _)| *k == kind) {
        return Ok(chosen.clone());
    }
    let chosen = match kind {
        DeviceKind::Cpu => Chosen::Cpu { why_not_gpu: None },
        DeviceKind::Auto => match gpu::probe(0) {
            Ok(about) => {
                tracing::info!("device auto: training on CUDA device 0 ({about})");
                Chosen::Cuda { ordinal: 0, about }
            }
            Err(why) => {
                tracing::info!("device auto: no usable GPU ({why}); training on the CPU");
                Chosen::Cpu { why_not_gpu: Some(why) }
            }
        },
        DeviceKind::Cuda(ordinal) => match gpu::probe(ordinal) {
            Ok(about) => {
                tracing::info!("device cuda:{ordinal}: {about}");
                Chosen::Cuda { ordinal, about }
            }
            Err(why) => {
                let hint = match why.contains("device = \"cpu\"") {
                    true => "",
                    false => "; set `experiment.device = \"cpu\"` (or \"auto\", which falls back to the CPU), or run on a machine with that GPU",
                };
                return Err(Error::Device(format!("device \"cuda:{ordinal}\" cannot be used: {why}{hint}")));
            }
        },
    };
    known.push((kind, chosen.clone()));
    Ok(chosen)
}

/// Runs `job` on the device `plan` asks for, its random numbers seeded from the config's seed.
pub fn run_on<J: OnDevice>(plan: &Plan, job: J) -> Result<J::Output> {
    run_chosen(choose(plan.config.experiment.device)?, device_seed(plan), job)
}

/// Runs `job` on `chosen`, seeding the device's own random stream with `seed`.
fn run_chosen<J: OnDevice>(chosen: Chosen, seed: u64, job: J) -> Result<J::Output> {
    match chosen {
        Chosen::Cpu { .. } => {
            tracing::debug!(
                "{} worker threads; matrix products on the {} kernel",
                rayon::current_num_threads(),
                crate::ops::Kernel::best().describe()
            );
            job.run(Cpu::seed_from_u64(seed))
        }
        #[cfg(feature = "cuda")]
        Chosen::Cuda { ordinal, .. } => {
            let dev = Cuda::try_build(ordinal, seed)
                .map_err(|e| Error::Device(format!("device \"cuda:{ordinal}\" could not be started: {e:?}")))?;
            job.run(dev)
        }
        #[cfg(not(feature = "cuda"))]
        Chosen::Cuda { .. } => unreachable!("`choose` finds no GPU in a build without CUDA"),
    }
}

/// Looking for a usable GPU without ever letting the CUDA libraries panic or abort: the
/// libraries are loaded first (a build with `--features cuda` starts without them), then the
/// driver is asked, step by step, what cudarc's `CudaDevice::new` would unwrap; last, a small
/// op runs on the device, which loads dfdx's compiled kernels and so also catches a driver
/// too old for them or a GPU older than the build's compute capability.
#[cfg(feature = "cuda")]
mod gpu {
    use std::ffi::{c_char, c_int, c_uint, CStr};

    use dfdx::prelude::*;

    // The driver calls of the probe, declared here with plain integer results: cudarc 0.9's
    // `CUresult` enum lacks codes that a driver returns (35, CUDA_ERROR_INSUFFICIENT_DRIVER,
    // among them), and an enum value it does not list is undefined behaviour in Rust.
    extern "C" {
        fn cuDriverGetVersion(version: *mut c_int) -> c_int;
        fn cuInit(flags: c_uint) -> c_int;
        fn cuDeviceGetCount(count: *mut c_int) -> c_int;
        fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> c_int;
        fn cuDeviceGetName(name: *mut c_char, len: c_int, device: c_int) -> c_int;
        fn cuDeviceGetAttribute(value: *mut c_int, attribute: c_int, device: c_int) -> c_int;
        fn cuGetErrorName(code: c_int, name: *mut *const c_char) -> c_int;
    }

    /// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` and `_MINOR`.
    const CAPABILITY: [c_int; 2] = [75, 76];

    /// A driver result as a sentence, by its name where the driver knows it.
    fn failed(code: c_int) -> String {
        let hint = match code {
            34 => ": this is the CUDA toolkit's stub libcuda, not the driver's; put the driver's library first",
            35 => ": the NVIDIA driver is older than the CUDA this runner was built for; update the driver",
            100 => ": the driver sees no GPU",
            803 | 804 => ": the driver and the CUDA libraries do not match",
            _ => "",
        };
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: the driver writes a pointer to a static string, or fails.
        let known = unsafe { cuGetErrorName(code, &mut name) } == 0 && !name.is_null();
        let name = match known {
            // SAFETY: a static NUL-terminated string of the driver.
            true => unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned(),
            false => format!("CUDA error {code}"),
        };
        format!("{name}{hint}")
    }

    /// Describes GPU `ordinal` if it is usable, or says why not.
    pub fn probe(ordinal: usize) -> Result<String, String> {
        crate::ops::cuda::libs::load()?;
        let check = |code: c_int, doing: &str| match code {
            0 => Ok(()),
            code => Err(format!("{doing}: {}", failed(code))),
        };
        let mut version = 0;
        // SAFETY: each call writes only through the pointer it is given.
        unsafe {
            check(cuDriverGetVersion(&mut version), "asking the driver its version")?;
            check(cuInit(0), "starting the NVIDIA driver")?;
        }
        let mut count = 0;
        // SAFETY: as above.
        unsafe { check(cuDeviceGetCount(&mut count), "counting GPUs")? };
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(match count {
                0 => "the NVIDIA driver sees no GPU".to_string(),
                1 => format!("this machine has 1 GPU, cuda:0, so there is no cuda:{ordinal}"),
                n => format!("this machine has {n} GPUs, cuda:0 to cuda:{}, so there is no cuda:{ordinal}", n - 1),
            });
        }
        let mut device = 0;
        // SAFETY: as above; `ordinal` is below the count.
        unsafe { check(cuDeviceGet(&mut device, ordinal as c_int), "opening the GPU")? };
        let about = describe(device, version);
        // The first kernel loads dfdx's PTX: a driver or GPU too old for it fails here.
        let dev = Cuda::try_build(ordinal, 0).map_err(|e| format!("{about}: cannot start it ({e:?})"))?;
        let t = dev.try_tensor_from_vec(vec![-1.0f32, 2.0], (2,)).map_err(|e| format!("{about}: {e:?}"))?;
        let out = t.try_relu().map_err(|e| format!("{about}: its first kernel failed ({e:?})"))?;
        match out.as_vec()[..] {
            [a, b] if a == 0.0 && b == 2.0 => Ok(about),
            ref other => Err(format!("{about}: a test op gave {other:?} instead of [0, 2]")),
        }
    }

    /// `NVIDIA H200, compute 9.0, driver CUDA 13.0`, as far as the driver tells.
    fn describe(device: c_int, version: c_int) -> String {
        let mut name = [0 as c_char; 256];
        // SAFETY: the buffer's length is passed; the driver writes a NUL-terminated name.
        let mut about = match unsafe { cuDeviceGetName(name.as_mut_ptr(), name.len() as c_int, device) } {
            // SAFETY: NUL-terminated by the driver, within the buffer.
            0 => unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned(),
            _ => "an unnamed GPU".to_string(),
        };
        let [mut major, mut minor] = [0, 0];
        // SAFETY: each call writes one int.
        let known = unsafe {
            cuDeviceGetAttribute(&mut major, CAPABILITY[0], device) == 0
                && cuDeviceGetAttribute(&mut minor, CAPABILITY[1], device) == 0
        };
        if known {
            about += &format!(", compute {major}.{minor}");
        }
        about + &format!(", driver CUDA {}.{}", version / 1000, version % 1000 / 10)
    }
}

/// Without `--features cuda` there is never a GPU to use.
#[cfg(not(feature = "cuda"))]
mod gpu {
    pub fn probe(_ordinal: usize) -> Result<String, String> {
        Err("this runner was built without CUDA; build it with scripts/build-cuda.sh".into())
    }
}

/// The device's own random stream (dfdx draws from it for its random tensors), derived from
/// the config's seed so that it too is reproducible.
fn device_seed(plan: &Plan) -> u64 {
    use rand::RngCore;
    seed::rng(plan.config.experiment.seed, Stream::Init, &[u64::MAX]).next_u64()
}

/// Runs `work` on a worker of a fresh rayon pool, so the thread driving the work is one of
/// the pool's threads instead of an extra one competing with them for the cores.
pub fn in_pool<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| Error::Train(format!("cannot start worker threads: {e}")))?;
    pool.install(work)
}

/// Runs `job` on the device `kind` names, its random numbers seeded from `seed`: for commands
/// that take their device from the command line rather than from a config (`runner
/// gpu-check`). The device is chosen (and a GPU probed) as for a config's `experiment.device`,
/// so `cuda`/`cuda:N` without a usable GPU, or in a build without CUDA, is an [`Error::Device`].
/// `auto` is refused: such a command must say which device it means.
pub fn run_on_named<J: OnDevice>(kind: DeviceKind, seed: u64, job: J) -> Result<J::Output> {
    if kind == DeviceKind::Auto {
        return Err(Error::Usage("device `auto`: name the device, `cpu`, `cuda` or `cuda:N`".into()));
    }
    run_chosen(choose(kind)?, seed, job)
}
