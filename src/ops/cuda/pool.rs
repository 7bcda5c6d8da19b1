//! 2-D max and average pooling on cuDNN, forward and backward (`cudnnPoolingForward`/
//! `Backward`, the input gradient accumulated with `beta = 1`).
//!
//! Max pooling uses `CUDNN_POOLING_MAX_DETERMINISTIC` (plain `CUDNN_POOLING_MAX` adds
//! gradients with atomics) and propagates NaN, as the CPU kernel does; like the CPU (and
//! TensorFlow) it routes a window's gradient to one input of the window's maximum, but on a
//! tie cuDNN, not the first-in-window rule, decides which. Average pooling divides by the
//! pixels of the window inside the image, as the CPU kernel and Keras do
//! (`CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING`).
//!
//! cuDNN pads both sides alike; "same" padding of an odd total puts one more row or column
//! after than before. Such a pooling reads an explicitly padded copy instead: padded with
//! -inf for max pooling, with zeros for average pooling, whose mean over the whole window is
//! then rescaled per output position to the mean over the pixels inside the image.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cudnn::sys;
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::{self, Buffer};
use super::cudnn::{self, call, symmetric_fits, Padding, PoolDesc, TensorDesc, ONE, ZERO};
use crate::ops::{Batch, Flat, PoolGeom};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The maximum of each window.
    Max,
    /// The mean of each window's pixels inside the image.
    Average,
}

/// The descriptors of one pooling geometry at one batch size.
pub(crate) struct Plan {
    /// The input as the pooling reads it: padded explicitly when `padding` is set.
    x: TensorDesc,
    padding: Option<Padding>,
    y: TensorDesc,
    pool: PoolDesc,
    /// Average pooling of an explicitly padded input: per output position (`oh·ow` values),
    /// the window's area over its pixels inside the image.
    rescale: Option<Flat<Cuda>>,
}

// SAFETY: descriptors are host objects, only used under the context's lock (see `Context`).
unsafe impl Send for Plan {}
// SAFETY: as above: a shared plan is only read, and only used under the context's lock.
unsafe impl Sync for Plan {}

/// The pixels of the window of output `o` inside an axis of `size` pixels: the window starts
/// `o·stride - pad` and is `window` long.
fn inside(o: usize, stride: usize, pad: usize, window: usize, size: usize) -> usize {
    let start = (o * stride).saturating_sub(pad);
    let end = (o * stride + window).saturating_sub(pad).min(size);
    end.saturating_sub(start)
}

impl Plan {
    fn new(dev: &Cuda, g: &PoolGeom, batch: usize, kind: Kind) -> Result<Self, CudaError> {
        let symmetric =
            symmetric_fits(g.h, g.pad_top, g.ph, g.sh, g.oh) && symmetric_fits(g.w, g.pad_left, g.pw, g.sw, g.ow);
        let (x, padding, pad) = if symmetric {
            (TensorDesc::packed([batch, g.c, g.h, g.w])?, None, [g.pad_top, g.pad_left])
        } else {
            let hp = ((g.oh - 1) * g.sh + g.ph).max(g.h + g.pad_top);
            let wp = ((g.ow - 1) * g.sw + g.pw).max(g.w + g.pad_left);
            if !(symmetric_fits(hp, 0, g.ph, g.sh, g.oh) && symmetric_fits(wp, 0, g.pw, g.sw, g.ow)) {
                tracing::error!("cuDNN pooling: no padding of {g:?} gives its output size");
                return Err(CudaError::Cudnn(cudarc::cudnn::CudnnError(sys::cudnnStatus_t::CUDNN_STATUS_BAD_PARAM)));
            }
            let padding = Padding::new([batch, g.c, g.h, g.w], [hp, wp], [g.pad_top, g.pad_left])?;
            (TensorDesc::packed([batch, g.c, hp, wp])?, Some(padding), [0, 0])
        };
        use sys::cudnnPoolingMode_t::*;
        let mode = match (kind, symmetric) {
            (Kind::Max, _) => CUDNN_POOLING_MAX_DETERMINISTIC,
            (Kind::Average, true) => CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
            // No padding of cuDNN's: the whole window is counted, and rescaled after.
            (Kind::Average, false) => CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
        };
        let y = TensorDesc::packed([batch, g.c, g.oh, g.ow])?;
        let pool = PoolDesc::new(mode, [g.ph, g.pw], pad, [g.sh, g.sw])?;
        let rescale = match (kind, &padding) {
            (Kind::Average, Some(_)) => {
                let area = (g.ph * g.pw) as f32;
                let factors = (0..g.oh)
                    .flat_map(|oy| (0..g.ow).map(move |ox| (oy, ox)))
                    .map(|(oy, ox)| {
                        let rows = inside(oy, g.sh, g.pad_top, g.ph, g.h);
                        let cols = inside(ox, g.sw, g.pad_left, g.pw, g.w);
                        area / (rows * cols).max(1) as f32
                    })
                    .collect();
                // Uploaded once per geometry, with the plan.
                Some(dev.try_tensor_from_vec(factors, (g.oh * g.ow,))?)
            }
            _ => None,
        };
        tracing::debug!(
            "cuDNN pooling {kind:?} {g:?}, batch {batch}: padding {}",
            if padding.is_some() { "explicit" } else { "cuDNN's" }
        );
        Ok(Plan { x, padding, y, pool, rescale })
    }
}

/// The plan for `g` at `batch` in `ctx`, made on first use.
fn plan(ctx: &mut cudnn::Context, dev: &Cuda, g: &PoolGeom, batch: usize, kind: Kind) -> Result<Arc<Plan>, CudaError> {
    if let Some((_, plan)) = ctx.pools.iter().find(|(key, _)| *key == (*g, batch, kind)) {
        return Ok(plan.clone());
    }
    let plan = Arc::new(Plan::new(dev, g, batch, kind)?);
    ctx.pools.push(((*g, batch, kind), plan.clone()));
    Ok(plan)
}

/// [`crate::ops::max_pool2d`] and [`crate::ops::avg_pool2d`] on CUDA.
pub(crate) fn pool2d<T: Tape<f32, Cuda>>(
    x: Batch<Cuda, T>,
    g: PoolGeom,
    kind: Kind,
) -> Result<Batch<Cuda, T>, CudaError> {
    let (x, mut tape) = x.try_contiguous()?.split_tape();
    let dev = x.device().clone();
    let batch = x.shape().0;
    if x.shape().1 != g.in_len() {
        tracing::error!("cuDNN pooling: input of {} values per image, not {}", x.shape().1, g.in_len());
        return Err(CudaError::Cpu(dfdx::tensor::CpuError::WrongNumElements));
    }
    let fill = match kind {
        Kind::Max => f32::NEG_INFINITY,
        Kind::Average => 0.0,
    };
    let context = cudnn::context(&dev)?;
    let (plan, y, padded) = {
        let mut ctx = cudnn::lock(&context);
        ctx.bind()?;
        let plan = plan(&mut ctx, &dev, &g, batch, kind)?;
        let xv = buffers::values(&x)?;
        let padded = match &plan.padding {
            Some(p) => Some(p.pad(&ctx, &dev, xv, fill)?),
            None => None,
        };
        let input = padded.as_ref().map_or(xv, |p| p.ptr);
        let y = Buffer::zeros(&dev, batch * g.out_len())?;
        // SAFETY: the descriptors describe `input` and `y`, both live.
        unsafe {
            call!(cudnnPoolingForward(
                ctx.cudnn.0,
                plan.pool.0,
                ONE,
                plan.x.0,
                input as *const c_void,
                ZERO,
                plan.y.0,
                y.ptr as *mut c_void
            ))?
        };
        (plan, y, padded)
    };
    let out = y.into_tensor(&dev, (batch, g.out_len()))?;
    let rescale = plan.rescale.clone();
    if T::OWNS_TAPE {
        // The backward reads the output's values (to find each window's maximum) and id.
        let kept = out.clone();
        let context = context.clone();
        tape.add_backward_op(move |grads| {
            let dy = buffers::grad(grads, &kept)?;
            let dx = buffers::grad(grads, &x)?;
            let ctx = cudnn::lock(&context);
            ctx.bind()?;
            let yv = buffers::values(&kept)?;
            let input = match &padded {
                Some(p) => p.ptr,
                None => buffers::values(&x)?,
            };
            let target = match &plan.padding {
                Some(p) => Some(Buffer::zeros(&dev, p.len)?),
                None => None,
            };
            let (into, beta) = match &target {
                Some(t) => (t.ptr, ZERO),
                None => (dx, ONE),
            };
            // SAFETY: the descriptors describe `yv`, `dy`, `input` and `into`, all live.
            unsafe {
                call!(cudnnPoolingBackward(
                    ctx.cudnn.0,
                    plan.pool.0,
                    ONE,
                    plan.y.0,
                    yv as *const c_void,
                    plan.y.0,
                    dy as *const c_void,
                    plan.x.0,
                    input as *const c_void,
                    beta,
                    plan.x.0,
                    into as *mut c_void
                ))?
            };
            match (&plan.padding, &target) {
                (Some(p), Some(t)) => p.add_inner(&ctx, t.ptr, dx),
                _ => Ok(()),
            }
        });
    }
    let out = out.put_tape(tape);
    match rescale {
        // Elementwise on dfdx's kernels, on the tape: its backward scales the gradient alike.
        Some(factors) => {
            let shape = (batch, g.c, g.oh * g.ow);
            let factors = factors.try_broadcast_like::<_, Axes2<0, 1>>(&shape)?;
            out.try_reshape_like(&shape)?.try_mul(factors)?.try_reshape_like(&(batch, g.out_len()))
        }
        None => Ok(out),
    }
}
