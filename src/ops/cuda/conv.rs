//! 2-D convolution on cuDNN: forward, the bias added in place (`cudnnAddTensor`), then the
//! [`Epilogue`]'s ReLU on dfdx's kernel and its max pooling on cuDNN ([`super::pool`]), each
//! recording its own backward. The convolution's backward accumulates (`beta = 1`) the filter
//! gradient (`cudnnConvolutionBackwardFilter`), the bias gradient
//! (`cudnnConvolutionBackwardBias`) and, unless it is the first layer, the input gradient
//! (`cudnnConvolutionBackwardData`) straight into the tape's gradients.
//!
//! Algorithms: per geometry and batch size, the first of cuDNN's `_v7` heuristics' list that
//! can run, is flagged `CUDNN_DETERMINISTIC`, uses no tensor-core math and needs at most
//! [`MAX_WORKSPACE`](super::cudnn::MAX_WORKSPACE) of workspace; failing that, a fixed deterministic one
//! (`IMPLICIT_GEMM`, `BWD_DATA_ALGO_1`, `BWD_FILTER_ALGO_1`). The algorithms documented as
//! non-deterministic (`BWD_DATA_ALGO_0`, `BWD_FILTER_ALGO_0` and `_3`, which add with atomics)
//! are not taken whatever the heuristics say, except `ALGO_0` as the last resort for a
//! convolution no deterministic algorithm can run (with a warning in the log).

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use cudarc::cudnn::sys;
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::buffers::{self, Buffer};
use super::cudnn::{self, call, raw, symmetric_fits, AlgoPerf, FilterDesc, Padding, TensorDesc, ONE, ZERO};
use crate::ops::{Batch, ConvGeom, Epilogue, Flat};

use sys::cudnnConvolutionBwdDataAlgo_t as BwdData;
use sys::cudnnConvolutionBwdFilterAlgo_t as BwdFilter;
use sys::cudnnConvolutionFwdAlgo_t as Fwd;

/// The descriptors and algorithms of one convolution geometry at one batch size.
pub(crate) struct Plan {
    /// The input as the convolution reads it: padded explicitly when `padding` is set.
    x: TensorDesc,
    /// Explicit padding, when cuDNN's symmetric padding cannot give the layer's.
    padding: Option<Padding>,
    w: FilterDesc,
    conv: cudnn::ConvDesc,
    y: TensorDesc,
    /// The bias, `(1, f, 1, 1)`.
    bias: TensorDesc,
    fwd: (Fwd, usize),
    bwd_data: (BwdData, usize),
    bwd_filter: (BwdFilter, usize),
}

// SAFETY: descriptors are host objects, only used under the context's lock (see `Context`).
unsafe impl Send for Plan {}
// SAFETY: as above: a shared plan is only read, and only used under the context's lock.
unsafe impl Sync for Plan {}

fn fwd_algo(v: u32) -> Option<Fwd> {
    Some(match v {
        0 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => Fwd::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

/// Backward-data algorithms, without `ALGO_0` (atomics: not deterministic).
fn bwd_data_algo(v: u32) -> Option<BwdData> {
    Some(match v {
        1 => BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

/// Backward-filter algorithms, without `ALGO_0` and `ALGO_3` (atomics: not deterministic).
fn bwd_filter_algo(v: u32) -> Option<BwdFilter> {
    Some(match v {
        1 => BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        2 => BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        4 => BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        5 => BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        6 => BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
        _ => return None,
    })
}

/// The acceptable algorithms of a heuristics list, best first, then `fallback`.
fn candidates<A: Copy + PartialEq>(perf: &[AlgoPerf], convert: fn(u32) -> Option<A>, fallback: A) -> Vec<A> {
    let mut list: Vec<A> = perf.iter().filter(|p| p.acceptable()).filter_map(|p| convert(p.algo)).collect();
    if !list.contains(&fallback) {
        list.push(fallback);
    }
    list
}

/// The first of `candidates` whose workspace size `size` can tell (an algorithm that cannot
/// run these descriptors fails there), with that size; the last failure if none can.
fn first_usable<A: Copy>(
    candidates: Vec<A>,
    what: &'static str,
    size: impl Fn(A, &mut usize) -> u32,
) -> Result<(A, usize), CudaError> {
    let mut last = 0;
    for algo in candidates {
        let mut bytes = 0;
        match size(algo, &mut bytes) {
            0 => return Ok((algo, bytes)),
            status => last = status,
        }
    }
    // Logs the last failure and gives it as the error.
    cudnn::check(what, last)?;
    Err(CudaError::Cudnn(cudarc::cudnn::CudnnError(sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED)))
}

/// The entries a search filled in.
fn found(perf: &[AlgoPerf], count: c_int) -> &[AlgoPerf] {
    &perf[..usize::try_from(count).unwrap_or(0).min(perf.len())]
}

impl Plan {
    /// Descriptors and algorithms for `batch` images of geometry `g`.
    pub(super) fn new(handle: sys::cudnnHandle_t, g: &ConvGeom, batch: usize) -> Result<Self, CudaError> {
        let (eff_h, eff_w) = ((g.kh - 1) * g.dh + 1, (g.kw - 1) * g.dw + 1);
        // cuDNN pads both sides alike. The layer's padding is `pad_top` before and whatever
        // the output needs after: the same (or less, for "valid"), or one more for "same"
        // padding of an odd total, which then has to be made explicitly.
        let symmetric =
            symmetric_fits(g.h, g.pad_top, eff_h, g.sh, g.oh) && symmetric_fits(g.w, g.pad_left, eff_w, g.sw, g.ow);
        let (x, padding, pad) = if symmetric {
            (TensorDesc::packed([batch, g.c, g.h, g.w])?, None, [g.pad_top, g.pad_left])
        } else {
            let hp = ((g.oh - 1) * g.sh + eff_h).max(g.h + g.pad_top);
            let wp = ((g.ow - 1) * g.sw + eff_w).max(g.w + g.pad_left);
            if !(symmetric_fits(hp, 0, eff_h, g.sh, g.oh) && symmetric_fits(wp, 0, eff_w, g.sw, g.ow)) {
                tracing::error!("cuDNN convolution: no padding of {g:?} gives its output size");
                return Err(CudaError::Cudnn(cudarc::cudnn::CudnnError(sys::cudnnStatus_t::CUDNN_STATUS_BAD_PARAM)));
            }
            let padding = Padding::new([batch, g.c, g.h, g.w], [hp, wp], [g.pad_top, g.pad_left])?;
            (TensorDesc::packed([batch, g.c, hp, wp])?, Some(padding), [0, 0])
        };
        let w = FilterDesc::new([g.f, g.c, g.kh, g.kw])?;
        let conv = cudnn::ConvDesc::new(pad, [g.sh, g.sw], [g.dh, g.dw])?;
        let y = TensorDesc::packed([batch, g.f, g.oh, g.ow])?;
        let bias = TensorDesc::packed([1, g.f, 1, 1])?;

        let mut perf = [AlgoPerf::default(); 8];
        let mut count: c_int = 0;
        let n = perf.len() as c_int;

        // SAFETY: live handle and descriptors; `perf` holds `n` entries of the layout cuDNN
        // writes (`AlgoPerf`), read back only as integers.
        unsafe {
            call!(cudnnGetConvolutionForwardAlgorithm_v7(
                handle,
                x.0,
                w.0,
                conv.0,
                y.0,
                n,
                &mut count,
                perf.as_mut_ptr().cast()
            ))?
        };
        let list = candidates(found(&perf, count), fwd_algo, Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
        let fwd = first_usable(list, "cudnnGetConvolutionForwardWorkspaceSize", |algo, bytes| {
            // SAFETY: live handle and descriptors; `bytes` is written.
            unsafe { raw::cudnnGetConvolutionForwardWorkspaceSize(handle, x.0, w.0, conv.0, y.0, algo, bytes) }
        })?;

        let mut perf = [AlgoPerf::default(); 8];
        // SAFETY: as above.
        unsafe {
            call!(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                handle,
                w.0,
                y.0,
                conv.0,
                x.0,
                n,
                &mut count,
                perf.as_mut_ptr().cast()
            ))?
        };
        let mut list = candidates(found(&perf, count), bwd_data_algo, BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
        list.push(BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
        let bwd_data = first_usable(list, "cudnnGetConvolutionBackwardDataWorkspaceSize", |algo, bytes| {
            // SAFETY: live handle and descriptors; `bytes` is written.
            unsafe { raw::cudnnGetConvolutionBackwardDataWorkspaceSize(handle, w.0, y.0, conv.0, x.0, algo, bytes) }
        })?;

        let mut perf = [AlgoPerf::default(); 8];
        // SAFETY: as above.
        unsafe {
            call!(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                handle,
                x.0,
                y.0,
                conv.0,
                w.0,
                n,
                &mut count,
                perf.as_mut_ptr().cast()
            ))?
        };
        let mut list = candidates(found(&perf, count), bwd_filter_algo, BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
        list.push(BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
        let bwd_filter = first_usable(list, "cudnnGetConvolutionBackwardFilterWorkspaceSize", |algo, bytes| {
            // SAFETY: live handle and descriptors; `bytes` is written.
            unsafe { raw::cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, x.0, y.0, conv.0, w.0, algo, bytes) }
        })?;
        if bwd_data.0 == BwdData::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0
            || bwd_filter.0 == BwdFilter::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0
        {
            tracing::warn!(
                "cuDNN has no deterministic backward algorithm for the convolution {g:?}: its gradients \
                 are summed with atomics, so runs differ in the last bits"
            );
        }
        tracing::debug!(
            "cuDNN convolution {g:?}, batch {batch}: {:?}, {:?}, {:?}, padding {}",
            fwd.0,
            bwd_data.0,
            bwd_filter.0,
            if padding.is_some() { "explicit" } else { "cuDNN's" }
        );
        Ok(Plan { x, padding, w, conv, y, bias, fwd, bwd_data, bwd_filter })
    }
}

/// The plan for `g` at `batch` in `ctx`, made on first use.
fn plan(ctx: &mut cudnn::Context, g: &ConvGeom, batch: usize) -> Result<Arc<Plan>, CudaError> {
    if let Some((_, plan)) = ctx.convs.iter().find(|(key, _)| *key == (*g, batch)) {
        return Ok(plan.clone());
    }
    let plan = Arc::new(Plan::new(ctx.cudnn.0, g, batch)?);
    ctx.convs.push(((*g, batch), plan.clone()));
    Ok(plan)
}

/// [`crate::ops::conv2d`] on CUDA.
pub(crate) fn conv2d<T: Tape<f32, Cuda>>(
    x: Batch<Cuda, T>,
    kernel: &Flat<Cuda>,
    bias: Option<&Flat<Cuda>>,
    g: ConvGeom,
    epilogue: Epilogue,
    input_grad: bool,
) -> Result<Batch<Cuda, T>, CudaError> {
    // A view (none of our layers makes one) is copied, on the tape, so the buffer is packed.
    let (x, mut tape) = x.try_contiguous()?.split_tape();
    let dev = x.device().clone();
    let batch = x.shape().0;
    if x.shape().1 != g.in_len() {
        tracing::error!("cuDNN convolution: input of {} values per image, not {}", x.shape().1, g.in_len());
        return Err(CudaError::Cpu(dfdx::tensor::CpuError::WrongNumElements));
    }
    buffers::check_len("the convolution's kernel", kernel, g.f * g.c * g.kh * g.kw)?;
    if let Some(bias) = bias {
        buffers::check_len("the convolution's bias", bias, g.f)?;
    }
    let context = cudnn::context(&dev)?;
    let (plan, y, padded) = {
        let mut ctx = cudnn::lock(&context);
        ctx.bind()?;
        let plan = plan(&mut ctx, &g, batch)?;
        let (xv, wv) = (buffers::values(&x)?, buffers::values(kernel)?);
        // Explicit padding: a padded copy, kept for the filter gradient.
        let padded = match &plan.padding {
            Some(p) => Some(p.pad(&ctx, &dev, xv, 0.0)?),
            None => None,
        };
        let input = padded.as_ref().map_or(xv, |p| p.ptr);
        let y = Buffer::zeros(&dev, batch * g.out_len())?;
        let (ws, ws_len) = ctx.workspace(plan.fwd.1)?;
        // SAFETY: the descriptors describe `input`, `wv` and `y` (lengths checked above), all
        // live; the workspace holds `ws_len` bytes.
        unsafe {
            call!(cudnnConvolutionForward(
                ctx.cudnn.0,
                ONE,
                plan.x.0,
                input as *const c_void,
                plan.w.0,
                wv as *const c_void,
                plan.conv.0,
                plan.fwd.0,
                ws,
                ws_len,
                ZERO,
                plan.y.0,
                y.ptr as *mut c_void
            ))?
        };
        if let Some(bias) = bias {
            let bv = buffers::values(bias)?;
            // SAFETY: `bias` describes `bv` (f values), broadcast over `y`.
            unsafe {
                call!(cudnnAddTensor(
                    ctx.cudnn.0,
                    ONE,
                    plan.bias.0,
                    bv as *const c_void,
                    ONE,
                    plan.y.0,
                    y.ptr as *mut c_void
                ))?
            };
        }
        (plan, y, padded)
    };
    let out = y.into_tensor(&dev, (batch, g.out_len()))?;
    if T::OWNS_TAPE {
        let out_id = out.ghost();
        let (kernel, bias) = (kernel.clone(), bias.cloned());
        let context = context.clone();
        tape.add_backward_op(move |grads| {
            let dy = buffers::grad(grads, &out_id)?;
            let dw = buffers::grad(grads, &kernel)?;
            let db = bias.as_ref().map(|b| buffers::grad(grads, b)).transpose()?;
            let dx = if input_grad { Some(buffers::grad(grads, &x)?) } else { None };
            let mut ctx = cudnn::lock(&context);
            ctx.bind()?;
            let input = match &padded {
                Some(p) => p.ptr,
                None => buffers::values(&x)?,
            };
            let wv = buffers::values(&kernel)?;
            let (ws, ws_len) = ctx.workspace(plan.bwd_filter.1)?;
            // SAFETY: the descriptors describe `input`, `dy` and `dw`, all live; the workspace
            // holds `ws_len` bytes. beta = 1 adds to the gradient.
            unsafe {
                call!(cudnnConvolutionBackwardFilter(
                    ctx.cudnn.0,
                    ONE,
                    plan.x.0,
                    input as *const c_void,
                    plan.y.0,
                    dy as *const c_void,
                    plan.conv.0,
                    plan.bwd_filter.0,
                    ws,
                    ws_len,
                    ONE,
                    plan.w.0,
                    dw as *mut c_void
                ))?
            };
            if let Some(db) = db {
                // SAFETY: `y` describes `dy`, `bias` the f values of `db`.
                unsafe {
                    call!(cudnnConvolutionBackwardBias(
                        ctx.cudnn.0,
                        ONE,
                        plan.y.0,
                        dy as *const c_void,
                        ONE,
                        plan.bias.0,
                        db as *mut c_void
                    ))?
                };
            }
            let Some(dx) = dx else { return Ok(()) };
            // With explicit padding the input gradient is the padded one's inside.
            let target = match &plan.padding {
                Some(p) => Some(Buffer::zeros(&dev, p.len)?),
                None => None,
            };
            let (ws, ws_len) = ctx.workspace(plan.bwd_data.1)?;
            let (into, beta) = match &target {
                Some(t) => (t.ptr, ZERO),
                None => (dx, ONE),
            };
            // SAFETY: the descriptors describe `wv`, `dy` and `into`, all live; the workspace
            // holds `ws_len` bytes.
            unsafe {
                call!(cudnnConvolutionBackwardData(
                    ctx.cudnn.0,
                    ONE,
                    plan.w.0,
                    wv as *const c_void,
                    plan.y.0,
                    dy as *const c_void,
                    plan.conv.0,
                    plan.bwd_data.0,
                    ws,
                    ws_len,
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
    let out = if epilogue.relu { out.try_relu()? } else { out };
    match epilogue.max_pool {
        Some(pg) => super::pool::pool2d(out, pg, super::pool::Kind::Max),
        None => Ok(out),
    }
}
