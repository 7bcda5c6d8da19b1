//! The dense layer on CUDA: `x · W` on cuBLAS through dfdx's `matmul` (whose backward makes
//! both products on cuBLAS too), the bias on cuDNN ([`bias_add`]), the ReLU on dfdx's kernel.

use std::ffi::c_void;

use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::{self, Buffer};
use super::cudnn::{self, call, TensorDesc, ONE};
use crate::ops::{Batch, Flat};

/// [`crate::ops::dense`] on CUDA. dfdx's matmul makes the input gradient of the first layer
/// too (`input_grad` is for the CPU kernel, which skips it); it is dropped unread.
pub(crate) fn dense<T: Tape<f32, Cuda>>(
    x: Batch<Cuda, T>,
    kernel: &Flat<Cuda>,
    bias: Option<&Flat<Cuda>>,
    units: usize,
    relu: bool,
    input_grad: bool,
) -> Result<Batch<Cuda, T>, CudaError> {
    let _ = input_grad;
    let fan_in = x.shape().1;
    buffers::check_len("the dense layer's kernel", kernel, fan_in * units)?;
    // The kernel joins x's tape, so that the product's backward gives it its gradient.
    let w = kernel.retaped::<T>().try_reshape_like(&(fan_in, units))?;
    let y = x.try_matmul(w)?;
    let y = match bias {
        Some(bias) => bias_add(y, bias)?,
        None => y,
    };
    match relu {
        true => y.try_relu(),
        false => Ok(y),
    }
}

/// `y + bias`, the bias broadcast over the rows of `y` `(batch, units)`: forward with
/// `cudnnAddTensor`, the bias gradient summed over the batch by `cudnnConvolutionBackwardBias`
/// (a fixed order, unlike dfdx's broadcast, whose backward adds with atomics).
pub(crate) fn bias_add<T: Tape<f32, Cuda>>(y: Batch<Cuda, T>, bias: &Flat<Cuda>) -> Result<Batch<Cuda, T>, CudaError> {
    let (y, mut tape) = y.try_contiguous()?.split_tape();
    let dev = y.device().clone();
    let (batch, units) = *y.shape();
    buffers::check_len("the dense layer's bias", bias, units)?;
    // The batch as `units` channels of one pixel.
    let y_desc = TensorDesc::packed([batch, units, 1, 1])?;
    let b_desc = TensorDesc::packed([1, units, 1, 1])?;
    let context = cudnn::context(&dev)?;
    let out = {
        let ctx = cudnn::lock(&context);
        ctx.bind()?;
        let (yv, bv) = (buffers::values(&y)?, buffers::values(bias)?);
        let out = Buffer::zeros(&dev, batch * units)?;
        // SAFETY: `y_desc` describes `yv` and `out`, `b_desc` describes `bv`; all live.
        // out = y (a copy, beta = 0 on zeros), then out += bias.
        unsafe {
            call!(cudnnAddTensor(
                ctx.cudnn.0,
                ONE,
                y_desc.0,
                yv as *const c_void,
                ONE,
                y_desc.0,
                out.ptr as *mut c_void
            ))?;
            call!(cudnnAddTensor(
                ctx.cudnn.0,
                ONE,
                b_desc.0,
                bv as *const c_void,
                ONE,
                y_desc.0,
                out.ptr as *mut c_void
            ))?
        };
        out
    };
    let out = out.into_tensor(&dev, (batch, units))?;
    if T::OWNS_TAPE {
        // Only the ids: the backward reads no values.
        let (out_id, y_id) = (out.ghost(), y.ghost());
        let bias = bias.ghost();
        tape.add_backward_op(move |grads| {
            let dout = buffers::grad(grads, &out_id)?;
            let dy = buffers::grad(grads, &y_id)?;
            let db = buffers::grad(grads, &bias)?;
            let ctx = cudnn::lock(&context);
            ctx.bind()?;
            // SAFETY: `y_desc` describes `dout` and `dy`, `b_desc` describes `db`; all live.
            // dy += dout; db += the sum of dout over the batch.
            unsafe {
                call!(cudnnAddTensor(
                    ctx.cudnn.0,
                    ONE,
                    y_desc.0,
                    dout as *const c_void,
                    ONE,
                    y_desc.0,
                    dy as *mut c_void
                ))?;
                call!(cudnnConvolutionBackwardBias(
                    ctx.cudnn.0,
                    ONE,
                    y_desc.0,
                    dout as *const c_void,
                    ONE,
                    b_desc.0,
                    db as *mut c_void
                ))
            }
        });
    }
    Ok(out.put_tape(tape))
}
