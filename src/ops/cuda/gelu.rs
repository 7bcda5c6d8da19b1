//! [`crate::ops::gelu::gelu`] on CUDA: the exact GELU and its derivative on our kernels
//! ([`super::kernels`]), recorded on the tape.

use cudarc::driver::LaunchAsync;
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::{self, Buffer};
use super::kernels;
use crate::ops::Batch;

/// `x·Φ(x)` elementwise, recorded on `x`'s tape.
pub(crate) fn gelu<T: Tape<f32, Cuda>>(x: Batch<Cuda, T>) -> Result<Batch<Cuda, T>, CudaError> {
    let (x, mut tape) = x.try_contiguous()?.split_tape();
    let dev = x.device().clone();
    let n = x.shape().0 * x.shape().1;
    let forward = kernels::function(&dev, kernels::GELU_FORWARD)?;
    let config = kernels::launch_config(n)?;
    let xv = buffers::values(&x)?;
    let mut y = Buffer::zeros(&dev, n)?;
    // SAFETY: the parameters match the kernel's (u64, const float*, float*); `xv` and `y` hold
    // `n` values each.
    unsafe { forward.launch(config, (n as u64, xv, y.slice_mut())) }?;
    let out = y.into_tensor(&dev, *x.shape())?;
    if T::OWNS_TAPE {
        let out_id = out.ghost();
        tape.add_backward_op(move |grads| {
            let dy = buffers::grad(grads, &out_id)?;
            let dx = buffers::grad(grads, &x)?;
            let backward = kernels::function(&dev, kernels::GELU_BACKWARD)?;
            let xv = buffers::values(&x)?;
            // SAFETY: the parameters match the kernel's (u64, const float*, const float*,
            // float*); `xv`, `dy` and `dx` hold `n` values each, and each thread adds to its
            // own value of `dx`.
            unsafe { backward.launch(config, (n as u64, xv, dy, dx)) }?;
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
