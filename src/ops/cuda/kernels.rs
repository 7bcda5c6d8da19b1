//! Our own CUDA kernels, for what neither cuDNN nor dfdx has in the form we need: dropout
//! masks and the exact GELU with its correct derivative. They are CUDA C compiled with NVRTC
//! on first use on a device, as dfdx compiles its own run-time kernels (the driver turns the
//! PTX into code for the GPU at hand), and loaded once per device.

use cudarc::driver::{CudaFunction, DriverError, LaunchConfig};
use dfdx::tensor::{Cuda, CudaError};

/// The module the kernels are loaded as.
const MODULE: &str = "runner_kernels";

/// The kernels' names, as loaded.
pub(crate) const DROPOUT_MASK: &str = "runner_dropout_mask";
pub(crate) const GELU_FORWARD: &str = "runner_gelu_forward";
pub(crate) const GELU_BACKWARD: &str = "runner_gelu_backward";

/// The kernels. One thread per value; threads past `n` return.
///
/// - `runner_dropout_mask`: `mask[i]` is 0 where a SplitMix64 hash of (`key`, i), taken as a
///   uniform number in [0, 1) from its top 24 bits, falls below `rate`, else `scale`.
/// - `runner_gelu_forward`: `y = x·Φ(x)`, in double precision as the CPU kernel computes it.
/// - `runner_gelu_backward`: `dx += dy·(Φ(x) + x·φ(x))`.
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

extern "C" __global__ void runner_gelu_forward(
    const unsigned long long n,
    const float *x,
    float *y
) {
    const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const double v = (double)x[i];
    y[i] = (float)(v * 0.5 * (1.0 + erf(v * 0.70710678118654752440)));
}

extern "C" __global__ void runner_gelu_backward(
    const unsigned long long n,
    const float *x,
    const float *dy,
    float *dx
) {
    const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const double v = (double)x[i];
    const double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752440));
    const double pdf = exp(-0.5 * v * v) * 0.39894228040143267794;
    dx[i] += (float)((double)dy[i] * (cdf + v * pdf));
}
"#;

/// The kernel `name` on `dev`, compiling and loading the module on first use.
pub(crate) fn function(dev: &Cuda, name: &'static str) -> Result<CudaFunction, CudaError> {
    let gpu = dev.cuda_device();
    gpu.bind_to_thread()?;
    if !gpu.has_func(MODULE, name) {
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| {
            tracing::error!("NVRTC could not compile runner's CUDA kernels: {e:?}");
            CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_SOURCE))
        })?;
        gpu.load_ptx(ptx, MODULE, &[DROPOUT_MASK, GELU_FORWARD, GELU_BACKWARD])?;
    }
    gpu.get_func(MODULE, name)
        .ok_or(CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_NOT_FOUND)))
}

/// A launch of one thread per value for `n` values, or an error past what one launch covers.
pub(crate) fn launch_config(n: usize) -> Result<LaunchConfig, CudaError> {
    let n = u32::try_from(n).map_err(|_| {
        tracing::error!("CUDA kernel: {n} values are more than one launch covers");
        CudaError::Driver(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_VALUE))
    })?;
    Ok(LaunchConfig::for_num_elems(n))
}
