//! What the optimizer does to gradients besides its update, on cuBLAS: scaling one
//! (`cublasSscal`, for gradient clipping and SGD's scheduled momentum) and measuring one
//! (`cublasSnrm2`, for clipping: one scalar comes down per weight).

use std::ffi::c_int;

use cudarc::cublas::sys;
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::{buffers, cudnn};

/// The length of a gradient as cuBLAS's `int`.
fn len<S: Shape>(t: &Tensor<S, f32, Cuda>) -> Result<c_int, CudaError> {
    cudnn::int(t.shape().num_elements())
}

/// The sum of the squares of the gradient of `t` (the square of its Euclidean norm, which
/// cuBLAS computes scaled so that it does not overflow).
pub(crate) fn sum_squares<S: Shape>(
    grads: &mut Gradients<f32, Cuda>,
    t: &Tensor<S, f32, Cuda>,
) -> Result<f64, CudaError> {
    let n = len(t)?;
    let g = buffers::grad(grads, t)?;
    let context = cudnn::context(t.device())?;
    let ctx = cudnn::lock(&context);
    ctx.bind()?;
    let mut norm = 0.0f32;
    // SAFETY: `g` holds `n` floats; with cuBLAS's default host pointer mode the result is
    // written to `norm` before the call returns.
    unsafe { sys::cublasSnrm2_v2(ctx.blas.0, n, g as *const f32, 1, &mut norm) }.result()?;
    Ok(f64::from(norm) * f64::from(norm))
}

/// Multiplies the gradient of `t` by `factor`, in place.
pub(crate) fn scale<S: Shape>(
    grads: &mut Gradients<f32, Cuda>,
    t: &Tensor<S, f32, Cuda>,
    factor: f32,
) -> Result<(), CudaError> {
    let n = len(t)?;
    let g = buffers::grad(grads, t)?;
    let context = cudnn::context(t.device())?;
    let ctx = cudnn::lock(&context);
    ctx.bind()?;
    // SAFETY: `g` holds `n` floats; `factor` is read during the call (host pointer mode).
    unsafe { sys::cublasSscal_v2(ctx.blas.0, n, &factor, g as *mut f32, 1) }.result()?;
    Ok(())
}
