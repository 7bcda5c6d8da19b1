//! Dropout masks made on the GPU by a small kernel, compiled with NVRTC on first use (as
//! dfdx's own run-time kernels are), so a training step uploads no mask.
//!
//! Each value of the mask is a function of one 64-bit key (drawn from the layer's seeded
//! stream, which is keyed by seed, epoch, step and layer) and its index: a SplitMix64 hash, of
//! which the top 24 bits make a uniform number in [0, 1). The mask is therefore the same on
//! every run and after a resume, and independent of the GPU and of how the kernel is
//! scheduled; it is not the CPU's mask, which draws one number per value.

use cudarc::driver::{DriverError, LaunchAsync, LaunchConfig};
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::Buffer;
use crate::ops::Batch;

/// The module and function names the kernel is loaded under.
const MODULE: &str = "runner_dropout";
const FUNCTION: &str = "runner_dropout_mask";

/// `mask[i]` is 0 where the hash of (`key`, i) falls below `rate`, else `scale`.
const SOURCE: &str = r#"
extern "C" __global__ void runner_dropout_mask(
    const unsigned long long key,
    const float rate,
    const float scale,
    const unsigned long long n,
    float *mask
) {
    const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    unsigned long long z = key + (i + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    const float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    mask[i] = u < rate ? 0.0f : scale;
}
"#;

/// [`crate::ops::dropout_mask`] on CUDA, keyed by `key`.
pub(crate) fn mask(
    dev: &Cuda,
    shape: (usize, usize),
    rate: f64,
    scale: f32,
    key: u64,
) -> Result<Batch<Cuda, NoneTape>, CudaError> {
    let gpu = dev.cuda_device();
    gpu.bind_to_thread()?;
    if !gpu.has_func(MODULE, FUNCTION) {
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| {
            tracing::error!("NVRTC could not compile the dropout kernel: {e:?}");
            CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_SOURCE))
        })?;
        gpu.load_ptx(ptx, MODULE, &[FUNCTION])?;
    }
    let kernel = gpu
        .get_func(MODULE, FUNCTION)
        .ok_or(CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_NOT_FOUND)))?;
    let n = shape.0 * shape.1;
    let blocks = u32::try_from(n).map_err(|_| {
        tracing::error!("dropout: {n} values are more than one launch covers");
        CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_VALUE))
    })?;
    let mut mask = Buffer::zeros(dev, n)?;
    let params = (key, rate as f32, scale, n as u64, mask.slice_mut());
    // SAFETY: the parameters match the kernel's (u64, f32, f32, u64, float*); it writes `n`
    // values of the `n`-long buffer, threads past `n` return.
    unsafe { kernel.launch(LaunchConfig::for_num_elems(blocks), params) }?;
    mask.into_tensor(dev, shape)
}
