//! Dropout masks made on the GPU ([`super::kernels`]), so a training step uploads no mask.
//!
//! Each value of the mask is a function of one 64-bit key (drawn from the layer's seeded
//! stream, which is keyed by seed, epoch, step and layer) and its index. The mask is therefore
//! the same on every run and after a resume, and independent of the GPU and of how the kernel
//! is scheduled; it is not the CPU's mask, which draws one number per value.

use cudarc::driver::LaunchAsync;
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::Buffer;
use super::kernels;
use crate::ops::Batch;

/// [`crate::ops::dropout_mask`] on CUDA, keyed by `key`.
pub(crate) fn mask(
    dev: &Cuda,
    shape: (usize, usize),
    rate: f64,
    scale: f32,
    key: u64,
) -> Result<Batch<Cuda, NoneTape>, CudaError> {
    let kernel = kernels::function(dev, kernels::DROPOUT_MASK)?;
    let n = shape.0 * shape.1;
    let config = kernels::launch_config(n)?;
    let mut mask = Buffer::zeros(dev, n)?;
    let params = (key, rate as f32, scale, n as u64, mask.slice_mut());
    // SAFETY: the parameters match the kernel's (u64, f32, f32, u64, float*); it writes the
    // first `n` values of the `n`-long buffer.
    unsafe { kernel.launch(config, params) }?;
    mask.into_tensor(dev, shape)
}
