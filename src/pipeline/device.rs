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

/// Runs `job` on the device `plan` asks for, its random numbers seeded from the config's seed.
pub fn run_on<J: OnDevice>(plan: &Plan, job: J) -> Result<J::Output> {
    let seed = device_seed(plan);
    tracing::debug!(
        "{} worker threads; matrix products on the {} kernel",
        rayon::current_num_threads(),
        crate::ops::Kernel::best().describe()
    );
    match plan.config.experiment.device {
        DeviceKind::Cpu => job.run(Cpu::seed_from_u64(seed)),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda(n) => {
            let dev = Cuda::try_build(n, seed).map_err(|e| {
                Error::Train(format!("cannot start CUDA device {n}: {e:?}; check nvidia-smi, or set device = \"cpu\""))
            })?;
            job.run(dev)
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Auto => match Cuda::try_build(0, seed) {
            Ok(dev) => {
                tracing::info!("device auto: training on CUDA device 0");
                job.run(dev)
            }
            Err(e) => {
                tracing::info!("device auto: no usable GPU ({e:?}); training on the CPU");
                job.run(Cpu::seed_from_u64(seed))
            }
        },
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Auto => {
            tracing::info!("device auto: this build has no CUDA; training on the CPU");
            job.run(Cpu::seed_from_u64(seed))
        }
        // `config::validate` already rejects this in builds without CUDA.
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda(_) => Err(Error::Config("device = \"cuda\" needs a build with --features cuda".into())),
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
