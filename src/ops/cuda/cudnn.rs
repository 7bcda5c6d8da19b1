//! cuDNN and cuBLAS handles, cuDNN descriptors and the per-device [`Context`] that caches them.
//!
//! The calls go to the C functions that cudarc 0.9 binds (`cudarc::cudnn::sys`), but through
//! our own declarations ([`raw`]) that read the returned status as a plain integer. cudarc's
//! bindings date from cuDNN 8, whose status codes were 0 to 14; the target's cuDNN 9
//! (`libcudnn.so.9`) numbers them by category (1xxx initialisation, 2xxx bad parameter, 3xxx
//! not supported, 4xxx internal, 5xxx execution), and reading such a value as cudarc's
//! `cudnnStatus_t` enum would be undefined behaviour. Each declaration's parameter types are
//! checked against cudarc's at compile time; only the status type differs. Likewise the
//! algorithm searches write into [`AlgoPerf`], whose enum fields are plain integers.
//!
//! Only functions that cuDNN 9 still exports are used: the legacy API's tensor, filter,
//! convolution and pooling descriptors, `cudnnConvolutionForward`/`BackwardData`/
//! `BackwardFilter`/`BackwardBias` with the `_v7` algorithm heuristics, `cudnnPoolingForward`/
//! `Backward`, `cudnnAddTensor`, `cudnnTransformTensor`, `cudnnSetTensor` and
//! `cudnnGetErrorString`. (cudarc's own `result::version_check` names cuDNN 8 functions that
//! cuDNN 9 dropped; nothing here calls it.)

use std::ffi::{c_int, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cudarc::cublas::{result as blas_result, sys as blas_sys};
use cudarc::cudnn::{sys, CudnnError};
use cudarc::driver::{CudaDevice, CudaSlice, DevicePtr, DeviceSlice};
use dfdx::tensor::{Cuda, CudaError};

use crate::ops::{ConvGeom, PoolGeom};

/// Declares cuDNN functions as cudarc's bindings do, but returning the status as a `u32`, and
/// checks at compile time that the parameter types are cudarc's.
macro_rules! declare {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?);)*) => {
        /// cuDNN's C functions, each returning its status as an integer.
        #[allow(non_snake_case, clippy::too_many_arguments)]
        pub(super) mod raw {
            use cudarc::cudnn::sys::*;
            use std::ffi::{c_int, c_void};

            extern "C" {
                $(pub fn $name($($arg: $ty),*) -> u32;)*
                /// A static description of a status, any status (cuDNN 8 and 9).
                pub fn cudnnGetErrorString(status: u32) -> *const std::ffi::c_char;
            }

            // The same parameters as cudarc's declarations (they are the C headers').
            $(const _: unsafe extern "C" fn($($ty),*) -> cudnnStatus_t = cudarc::cudnn::sys::$name;)*
        }
    };
}

declare! {
    fn cudnnCreate(handle: *mut cudnnHandle_t);
    fn cudnnDestroy(handle: cudnnHandle_t);
    fn cudnnSetStream(handle: cudnnHandle_t, streamId: cudaStream_t);
    fn cudnnCreateTensorDescriptor(tensorDesc: *mut cudnnTensorDescriptor_t);
    fn cudnnSetTensor4dDescriptorEx(
        tensorDesc: cudnnTensorDescriptor_t,
        dataType: cudnnDataType_t,
        n: c_int,
        c: c_int,
        h: c_int,
        w: c_int,
        nStride: c_int,
        cStride: c_int,
        hStride: c_int,
        wStride: c_int,
    );
    fn cudnnDestroyTensorDescriptor(tensorDesc: cudnnTensorDescriptor_t);
    fn cudnnCreateFilterDescriptor(filterDesc: *mut cudnnFilterDescriptor_t);
    fn cudnnSetFilter4dDescriptor(
        filterDesc: cudnnFilterDescriptor_t,
        dataType: cudnnDataType_t,
        format: cudnnTensorFormat_t,
        k: c_int,
        c: c_int,
        h: c_int,
        w: c_int,
    );
    fn cudnnDestroyFilterDescriptor(filterDesc: cudnnFilterDescriptor_t);
    fn cudnnCreateConvolutionDescriptor(convDesc: *mut cudnnConvolutionDescriptor_t);
    fn cudnnSetConvolution2dDescriptor(
        convDesc: cudnnConvolutionDescriptor_t,
        pad_h: c_int,
        pad_w: c_int,
        u: c_int,
        v: c_int,
        dilation_h: c_int,
        dilation_w: c_int,
        mode: cudnnConvolutionMode_t,
        computeType: cudnnDataType_t,
    );
    fn cudnnSetConvolutionMathType(convDesc: cudnnConvolutionDescriptor_t, mathType: cudnnMathType_t);
    fn cudnnDestroyConvolutionDescriptor(convDesc: cudnnConvolutionDescriptor_t);
    fn cudnnGetConvolutionForwardAlgorithm_v7(
        handle: cudnnHandle_t,
        srcDesc: cudnnTensorDescriptor_t,
        filterDesc: cudnnFilterDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        destDesc: cudnnTensorDescriptor_t,
        requestedAlgoCount: c_int,
        returnedAlgoCount: *mut c_int,
        perfResults: *mut cudnnConvolutionFwdAlgoPerf_t,
    );
    fn cudnnGetConvolutionForwardWorkspaceSize(
        handle: cudnnHandle_t,
        xDesc: cudnnTensorDescriptor_t,
        wDesc: cudnnFilterDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        yDesc: cudnnTensorDescriptor_t,
        algo: cudnnConvolutionFwdAlgo_t,
        sizeInBytes: *mut usize,
    );
    fn cudnnConvolutionForward(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        xDesc: cudnnTensorDescriptor_t,
        x: *const c_void,
        wDesc: cudnnFilterDescriptor_t,
        w: *const c_void,
        convDesc: cudnnConvolutionDescriptor_t,
        algo: cudnnConvolutionFwdAlgo_t,
        workSpace: *mut c_void,
        workSpaceSizeInBytes: usize,
        beta: *const c_void,
        yDesc: cudnnTensorDescriptor_t,
        y: *mut c_void,
    );
    fn cudnnGetConvolutionBackwardDataAlgorithm_v7(
        handle: cudnnHandle_t,
        filterDesc: cudnnFilterDescriptor_t,
        diffDesc: cudnnTensorDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        gradDesc: cudnnTensorDescriptor_t,
        requestedAlgoCount: c_int,
        returnedAlgoCount: *mut c_int,
        perfResults: *mut cudnnConvolutionBwdDataAlgoPerf_t,
    );
    fn cudnnGetConvolutionBackwardDataWorkspaceSize(
        handle: cudnnHandle_t,
        wDesc: cudnnFilterDescriptor_t,
        dyDesc: cudnnTensorDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        dxDesc: cudnnTensorDescriptor_t,
        algo: cudnnConvolutionBwdDataAlgo_t,
        sizeInBytes: *mut usize,
    );
    fn cudnnConvolutionBackwardData(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        wDesc: cudnnFilterDescriptor_t,
        w: *const c_void,
        dyDesc: cudnnTensorDescriptor_t,
        dy: *const c_void,
        convDesc: cudnnConvolutionDescriptor_t,
        algo: cudnnConvolutionBwdDataAlgo_t,
        workSpace: *mut c_void,
        workSpaceSizeInBytes: usize,
        beta: *const c_void,
        dxDesc: cudnnTensorDescriptor_t,
        dx: *mut c_void,
    );
    fn cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        handle: cudnnHandle_t,
        srcDesc: cudnnTensorDescriptor_t,
        diffDesc: cudnnTensorDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        gradDesc: cudnnFilterDescriptor_t,
        requestedAlgoCount: c_int,
        returnedAlgoCount: *mut c_int,
        perfResults: *mut cudnnConvolutionBwdFilterAlgoPerf_t,
    );
    fn cudnnGetConvolutionBackwardFilterWorkspaceSize(
        handle: cudnnHandle_t,
        xDesc: cudnnTensorDescriptor_t,
        dyDesc: cudnnTensorDescriptor_t,
        convDesc: cudnnConvolutionDescriptor_t,
        gradDesc: cudnnFilterDescriptor_t,
        algo: cudnnConvolutionBwdFilterAlgo_t,
        sizeInBytes: *mut usize,
    );
    fn cudnnConvolutionBackwardFilter(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        xDesc: cudnnTensorDescriptor_t,
        x: *const c_void,
        dyDesc: cudnnTensorDescriptor_t,
        dy: *const c_void,
        convDesc: cudnnConvolutionDescriptor_t,
        algo: cudnnConvolutionBwdFilterAlgo_t,
        workSpace: *mut c_void,
        workSpaceSizeInBytes: usize,
        beta: *const c_void,
        dwDesc: cudnnFilterDescriptor_t,
        dw: *mut c_void,
    );
    fn cudnnConvolutionBackwardBias(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        dyDesc: cudnnTensorDescriptor_t,
        dy: *const c_void,
        beta: *const c_void,
        dbDesc: cudnnTensorDescriptor_t,
        db: *mut c_void,
    );
    fn cudnnAddTensor(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        aDesc: cudnnTensorDescriptor_t,
        A: *const c_void,
        beta: *const c_void,
        cDesc: cudnnTensorDescriptor_t,
        C: *mut c_void,
    );
    fn cudnnTransformTensor(
        handle: cudnnHandle_t,
        alpha: *const c_void,
        xDesc: cudnnTensorDescriptor_t,
        x: *const c_void,
        beta: *const c_void,
        yDesc: cudnnTensorDescriptor_t,
        y: *mut c_void,
    );
    fn cudnnSetTensor(
        handle: cudnnHandle_t,
        yDesc: cudnnTensorDescriptor_t,
        y: *mut c_void,
        valuePtr: *const c_void,
    );
    fn cudnnCreatePoolingDescriptor(poolingDesc: *mut cudnnPoolingDescriptor_t);
    fn cudnnSetPooling2dDescriptor(
        poolingDesc: cudnnPoolingDescriptor_t,
        mode: cudnnPoolingMode_t,
        maxpoolingNanOpt: cudnnNanPropagation_t,
        windowHeight: c_int,
        windowWidth: c_int,
        verticalPadding: c_int,
        horizontalPadding: c_int,
        verticalStride: c_int,
        horizontalStride: c_int,
    );
    fn cudnnDestroyPoolingDescriptor(poolingDesc: cudnnPoolingDescriptor_t);
    fn cudnnPoolingForward(
        handle: cudnnHandle_t,
        poolingDesc: cudnnPoolingDescriptor_t,
        alpha: *const c_void,
        xDesc: cudnnTensorDescriptor_t,
        x: *const c_void,
        beta: *const c_void,
        yDesc: cudnnTensorDescriptor_t,
        y: *mut c_void,
    );
    fn cudnnPoolingBackward(
        handle: cudnnHandle_t,
        poolingDesc: cudnnPoolingDescriptor_t,
        alpha: *const c_void,
        yDesc: cudnnTensorDescriptor_t,
        y: *const c_void,
        dyDesc: cudnnTensorDescriptor_t,
        dy: *const c_void,
        xDesc: cudnnTensorDescriptor_t,
        x: *const c_void,
        beta: *const c_void,
        dxDesc: cudnnTensorDescriptor_t,
        dx: *mut c_void,
    );
}

/// Calls `raw::$f($args)` and turns its status into a `Result` naming the call. The caller
/// wraps it in `unsafe` and says why the arguments are valid.
macro_rules! call {
    ($f:ident($($arg:expr),* $(,)?)) => {
        $crate::ops::cuda::cudnn::check(stringify!($f), $crate::ops::cuda::cudnn::raw::$f($($arg),*))
    };
}
pub(super) use call;

/// `Ok` for `CUDNN_STATUS_SUCCESS`; otherwise logs the call, the status and cuDNN's
/// description of it, and gives the status as a [`CudaError::Cudnn`] of cudarc's (cuDNN 8)
/// numbering, mapped from cuDNN 9's categories by [`status_name`].
pub(super) fn check(call: &'static str, status: u32) -> Result<(), CudaError> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: cudnnGetErrorString takes any value and returns a static string (or null).
    let text = unsafe { raw::cudnnGetErrorString(status) };
    let text = match text.is_null() {
        true => "no description".into(),
        // SAFETY: a non-null result is a NUL-terminated static string.
        false => unsafe { CStr::from_ptr(text) }.to_string_lossy(),
    };
    tracing::error!("cuDNN: {call} failed with status {status} ({text})");
    Err(CudaError::Cudnn(CudnnError(status_name(status))))
}

/// The cuDNN 8 status (cudarc's enum) that names a status of cuDNN 8 or 9.
fn status_name(status: u32) -> sys::cudnnStatus_t {
    use sys::cudnnStatus_t::*;
    match status {
        0 => CUDNN_STATUS_SUCCESS,
        1 => CUDNN_STATUS_NOT_INITIALIZED,
        2 | 4003 | 4004 => CUDNN_STATUS_ALLOC_FAILED,
        3 | 2000..=2999 => CUDNN_STATUS_BAD_PARAM,
        5 => CUDNN_STATUS_INVALID_VALUE,
        6 | 3007 => CUDNN_STATUS_ARCH_MISMATCH,
        7 => CUDNN_STATUS_MAPPING_ERROR,
        8 | 5000..=5999 => CUDNN_STATUS_EXECUTION_FAILED,
        9 | 3000..=3999 => CUDNN_STATUS_NOT_SUPPORTED,
        10 | 1005 => CUDNN_STATUS_LICENSE_ERROR,
        11 => CUDNN_STATUS_RUNTIME_PREREQUISITE_MISSING,
        12 | 1006 => CUDNN_STATUS_RUNTIME_IN_PROGRESS,
        13 | 1007 => CUDNN_STATUS_RUNTIME_FP_OVERFLOW,
        14 | 1002 | 1003 => CUDNN_STATUS_VERSION_MISMATCH,
        1000..=1999 => CUDNN_STATUS_NOT_INITIALIZED,
        _ => CUDNN_STATUS_INTERNAL_ERROR,
    }
}

/// A size as the `int` cuDNN takes, or `CUDNN_STATUS_BAD_PARAM` for one that does not fit
/// (cuDNN's legacy API addresses at most 2^31 values per tensor anyway).
pub(super) fn int(n: usize) -> Result<c_int, CudaError> {
    c_int::try_from(n).map_err(|_| {
        tracing::error!("cuDNN: size {n} does not fit a C int");
        CudaError::Cudnn(CudnnError(sys::cudnnStatus_t::CUDNN_STATUS_BAD_PARAM))
    })
}

/// `1.0` and `0.0` as cuDNN's `alpha`/`beta` scaling factors for float tensors: pointers to
/// host values that cuDNN reads during the call.
pub(super) const ONE: *const c_void = &1.0f32 as *const f32 as *const c_void;
/// See [`ONE`].
pub(super) const ZERO: *const c_void = &0.0f32 as *const f32 as *const c_void;

/// A cuDNN handle, bound to the device's stream (the one dfdx launches everything on).
pub(super) struct Handle(pub sys::cudnnHandle_t);

impl Handle {
    fn new(gpu: &CudaDevice) -> Result<Self, CudaError> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: cudnnCreate writes a new handle into `handle`.
        unsafe { call!(cudnnCreate(&mut handle))? };
        let handle = Handle(handle);
        // The stream types of the driver's and of cuDNN's bindings are distinct opaque pointers.
        let stream = *gpu.cu_stream() as sys::cudaStream_t;
        // SAFETY: a live handle and the device's own stream (null: the default stream).
        unsafe { call!(cudnnSetStream(handle.0, stream))? };
        Ok(handle)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and destroyed once; the status is of no use here.
        let _ = unsafe { raw::cudnnDestroy(self.0) };
    }
}

/// A cuBLAS handle of our own, on the device's stream (dfdx's is crate-private).
pub(super) struct Blas(pub blas_sys::cublasHandle_t);

impl Blas {
    fn new(gpu: &CudaDevice) -> Result<Self, CudaError> {
        let blas = Blas(blas_result::create_handle()?);
        let stream = *gpu.cu_stream() as blas_sys::cudaStream_t;
        // SAFETY: a live handle and the device's own stream.
        unsafe { blas_result::set_stream(blas.0, stream)? };
        Ok(blas)
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: created by cublasCreate and destroyed once.
        let _ = unsafe { blas_result::destroy_handle(self.0) };
    }
}

/// A 4-d float32 tensor descriptor (NCHW, with explicit strides).
pub(super) struct TensorDesc(pub sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    /// Dimensions `[n, c, h, w]` laid out with `strides`.
    pub(super) fn strided(dims: [usize; 4], strides: [usize; 4]) -> Result<Self, CudaError> {
        let [n, c, h, w] = [int(dims[0])?, int(dims[1])?, int(dims[2])?, int(dims[3])?];
        let [ns, cs, hs, ws] = [int(strides[0])?, int(strides[1])?, int(strides[2])?, int(strides[3])?];
        let mut desc = std::ptr::null_mut();
        // SAFETY: writes a new descriptor into `desc`.
        unsafe { call!(cudnnCreateTensorDescriptor(&mut desc))? };
        let desc = TensorDesc(desc);
        let float = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
        // SAFETY: a live descriptor; cuDNN checks the values.
        unsafe { call!(cudnnSetTensor4dDescriptorEx(desc.0, float, n, c, h, w, ns, cs, hs, ws))? };
        Ok(desc)
    }

    /// Dimensions `[n, c, h, w]`, packed (row-major).
    pub(super) fn packed(dims: [usize; 4]) -> Result<Self, CudaError> {
        let [_, c, h, w] = dims;
        Self::strided(dims, [c * h * w, h * w, w, 1])
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { raw::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// A float32 filter descriptor `[k, c, h, w]` (our kernels' `(filters, channels, kh, kw)`).
pub(super) struct FilterDesc(pub sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    pub(super) fn new(dims: [usize; 4]) -> Result<Self, CudaError> {
        let [k, c, h, w] = [int(dims[0])?, int(dims[1])?, int(dims[2])?, int(dims[3])?];
        let mut desc = std::ptr::null_mut();
        // SAFETY: writes a new descriptor into `desc`.
        unsafe { call!(cudnnCreateFilterDescriptor(&mut desc))? };
        let desc = FilterDesc(desc);
        let (float, nchw) = (sys::cudnnDataType_t::CUDNN_DATA_FLOAT, sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW);
        // SAFETY: a live descriptor.
        unsafe { call!(cudnnSetFilter4dDescriptor(desc.0, float, nchw, k, c, h, w))? };
        Ok(desc)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { raw::cudnnDestroyFilterDescriptor(self.0) };
    }
}

/// A 2-d cross-correlation (what Keras and our CPU kernels call convolution) in float32, with
/// FMA math only: no TF32 tensor cores, whose 10-bit mantissas cuDNN's default math would
/// allow on Ampere and later GPUs for float32 convolutions.
pub(super) struct ConvDesc(pub sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    /// Symmetric padding `pad`, `stride` and `dilation`, each `[vertical, horizontal]`.
    pub(super) fn new(pad: [usize; 2], stride: [usize; 2], dilation: [usize; 2]) -> Result<Self, CudaError> {
        let [ph, pw, sh, sw, dh, dw] =
            [int(pad[0])?, int(pad[1])?, int(stride[0])?, int(stride[1])?, int(dilation[0])?, int(dilation[1])?];
        let mut desc = std::ptr::null_mut();
        // SAFETY: writes a new descriptor into `desc`.
        unsafe { call!(cudnnCreateConvolutionDescriptor(&mut desc))? };
        let desc = ConvDesc(desc);
        let mode = sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION;
        let float = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
        // SAFETY: a live descriptor.
        unsafe { call!(cudnnSetConvolution2dDescriptor(desc.0, ph, pw, sh, sw, dh, dw, mode, float))? };
        // SAFETY: a live descriptor.
        unsafe { call!(cudnnSetConvolutionMathType(desc.0, sys::cudnnMathType_t::CUDNN_FMA_MATH))? };
        Ok(desc)
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { raw::cudnnDestroyConvolutionDescriptor(self.0) };
    }
}

/// A 2-d pooling window, NaN propagating (a NaN wins a max pooling, as on the CPU).
pub(super) struct PoolDesc(pub sys::cudnnPoolingDescriptor_t);

impl PoolDesc {
    /// `mode` over `window`, with symmetric padding `pad` and `stride`, each
    /// `[vertical, horizontal]`.
    pub(super) fn new(
        mode: sys::cudnnPoolingMode_t,
        window: [usize; 2],
        pad: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Self, CudaError> {
        let [wh, ww, ph, pw, sh, sw] =
            [int(window[0])?, int(window[1])?, int(pad[0])?, int(pad[1])?, int(stride[0])?, int(stride[1])?];
        let mut desc = std::ptr::null_mut();
        // SAFETY: writes a new descriptor into `desc`.
        unsafe { call!(cudnnCreatePoolingDescriptor(&mut desc))? };
        let desc = PoolDesc(desc);
        let nan = sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN;
        // SAFETY: a live descriptor.
        unsafe { call!(cudnnSetPooling2dDescriptor(desc.0, mode, nan, wh, ww, ph, pw, sh, sw))? };
        Ok(desc)
    }
}

impl Drop for PoolDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { raw::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

/// One entry of an algorithm search (`cudnnConvolution*AlgoPerf_t`, the same layout for the
/// three searches), with its enum fields read as integers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AlgoPerf {
    /// The algorithm, a value of the search's algorithm enum.
    pub algo: u32,
    /// Whether the algorithm can run these descriptors: `CUDNN_STATUS_SUCCESS` (0) if so.
    pub status: u32,
    /// Time (unused: heuristics do not time).
    pub time: f32,
    /// Workspace bytes it needs.
    pub memory: usize,
    /// `CUDNN_DETERMINISTIC` (1) when it gives the same bits on every run.
    pub determinism: u32,
    /// The math it uses: 0 default, 1 and 2 tensor cores, 3 FMA.
    pub math_type: u32,
    reserved: [c_int; 3],
}

const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<AlgoPerf>() == size_of::<sys::cudnnConvolutionFwdAlgoPerf_t>());
    assert!(size_of::<AlgoPerf>() == size_of::<sys::cudnnConvolutionBwdDataAlgoPerf_t>());
    assert!(size_of::<AlgoPerf>() == size_of::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>());
    assert!(align_of::<AlgoPerf>() == align_of::<sys::cudnnConvolutionFwdAlgoPerf_t>());
};

impl AlgoPerf {
    /// Usable as our default: runs these descriptors, gives the same bits every run, uses no
    /// tensor-core math (the descriptor asks for FMA), and needs at most `MAX_WORKSPACE`.
    pub(super) fn acceptable(&self) -> bool {
        self.status == 0 && self.determinism == 1 && !matches!(self.math_type, 1 | 2) && self.memory <= MAX_WORKSPACE
    }
}

/// The most workspace an algorithm picked from the heuristics may need: 512 MiB.
pub(super) const MAX_WORKSPACE: usize = 512 << 20;

/// Where an input must be padded explicitly because cuDNN pads both sides alike and the
/// layer pads one more row or column after than before ("same" padding of an odd total, as
/// TensorFlow splits it): the padded tensor, and the original as a strided view inside it.
pub(super) struct Padding {
    /// Values in the padded tensor.
    pub len: usize,
    /// The padded tensor, packed.
    pub full: TensorDesc,
    /// The unpadded tensor, packed.
    pub inner: TensorDesc,
    /// The unpadded tensor's place inside the padded one: its dimensions, the padded strides.
    pub view: TensorDesc,
    /// Values before the view's first one.
    pub offset: usize,
}

impl Padding {
    /// `n` images of `c` channels of `h × w`, padded to `hp × wp` with `top` rows before and
    /// `left` columns before.
    pub(super) fn new(
        [n, c, h, w]: [usize; 4],
        [hp, wp]: [usize; 2],
        [top, left]: [usize; 2],
    ) -> Result<Self, CudaError> {
        Ok(Padding {
            len: n * c * hp * wp,
            full: TensorDesc::packed([n, c, hp, wp])?,
            inner: TensorDesc::packed([n, c, h, w])?,
            view: TensorDesc::strided([n, c, h, w], [c * hp * wp, hp * wp, wp, 1])?,
            offset: top * wp + left,
        })
    }

    /// A new padded copy of the tensor at `x`, the padding filled with `fill`.
    pub(super) fn pad(
        &self,
        ctx: &Context,
        dev: &Cuda,
        x: u64,
        fill: f32,
    ) -> Result<super::buffers::Buffer, CudaError> {
        let padded = super::buffers::Buffer::zeros(dev, self.len)?;
        if fill != 0.0 {
            let value = &fill as *const f32 as *const c_void;
            // SAFETY: `full` describes the whole of `padded`, a live buffer.
            unsafe { call!(cudnnSetTensor(ctx.cudnn.0, self.full.0, padded.ptr as *mut c_void, value))? };
        }
        let inside = padded.ptr + (self.offset * std::mem::size_of::<f32>()) as u64;
        // SAFETY: `inner` describes `x`; `view` lies inside `padded` from `inside` on.
        unsafe {
            call!(cudnnTransformTensor(
                ctx.cudnn.0,
                ONE,
                self.inner.0,
                x as *const c_void,
                ZERO,
                self.view.0,
                inside as *mut c_void
            ))?
        };
        Ok(padded)
    }

    /// Adds the unpadded part of the padded tensor at `padded` into the tensor at `x`.
    pub(super) fn add_inner(&self, ctx: &Context, padded: u64, x: u64) -> Result<(), CudaError> {
        let inside = padded + (self.offset * std::mem::size_of::<f32>()) as u64;
        // SAFETY: `view` lies inside the padded tensor from `inside` on; `inner` describes `x`.
        unsafe {
            call!(cudnnTransformTensor(
                ctx.cudnn.0,
                ONE,
                self.view.0,
                inside as *const c_void,
                ONE,
                self.inner.0,
                x as *mut c_void
            ))
        }
    }
}

/// Whether cuDNN's output length along one axis, `1 + (size + 2·pad - window) / stride` with
/// the same padding on both sides, is `out`.
pub(super) fn symmetric_fits(size: usize, pad: usize, window: usize, stride: usize, out: usize) -> bool {
    (size + 2 * pad).checked_sub(window).is_some_and(|v| v / stride + 1 == out)
}

/// Everything our CUDA ops keep per device: the cuDNN and cuBLAS handles, a workspace, and
/// the descriptors and chosen algorithms of each convolution and pooling seen (per geometry
/// and batch size, so a short last batch has its own).
pub(crate) struct Context {
    pub(super) gpu: Arc<CudaDevice>,
    pub(super) cudnn: Handle,
    pub(super) blas: Blas,
    workspace: Option<CudaSlice<u8>>,
    pub(super) convs: Vec<((ConvGeom, usize), Arc<super::conv::Plan>)>,
    pub(super) pools: Vec<((PoolGeom, usize, super::pool::Kind), Arc<super::pool::Plan>)>,
}

// SAFETY: the raw handles and descriptors are host objects that cuDNN and cuBLAS allow any
// thread to use, one thread at a time; every use goes through the `Mutex` the context lives
// in, after binding the device's CUDA context to the calling thread (`Context::bind`).
unsafe impl Send for Context {}

impl Context {
    /// Makes the device's CUDA context current on this thread, as cuDNN and cuBLAS need.
    pub(super) fn bind(&self) -> Result<(), CudaError> {
        Ok(self.gpu.bind_to_thread()?)
    }

    /// A workspace of at least `bytes`, as (address, size) for a cuDNN call: null and 0 for
    /// none. The buffer is reused by the next call on the same stream, so it is never read
    /// and written by two calls at once.
    pub(super) fn workspace(&mut self, bytes: usize) -> Result<(*mut c_void, usize), CudaError> {
        if bytes == 0 {
            return Ok((std::ptr::null_mut(), 0));
        }
        if self.workspace.as_ref().is_none_or(|w| w.len() < bytes) {
            // The old one first: freed in stream order, after the calls that used it.
            self.workspace = None;
            self.workspace = Some(self.gpu.alloc_zeros::<u8>(bytes)?);
        }
        match &self.workspace {
            Some(w) => Ok((*w.device_ptr() as *mut c_void, w.len())),
            None => Ok((std::ptr::null_mut(), 0)),
        }
    }
}

/// Every device's context, made on first use and kept for the life of the process, by
/// device (each entry holds its device, so an address is never reused for another one).
#[allow(clippy::type_complexity)]
static CONTEXTS: Mutex<Vec<(Arc<CudaDevice>, Arc<Mutex<Context>>)>> = Mutex::new(Vec::new());

/// The context of `dev`, made (with its cuDNN and cuBLAS handles) on first use. Not to be
/// called with a context locked: its lock is taken after this one's by whoever makes one.
pub(crate) fn context(dev: &Cuda) -> Result<Arc<Mutex<Context>>, CudaError> {
    let gpu = dev.cuda_device();
    let mut all = CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, found)) = all.iter().find(|(g, _)| Arc::ptr_eq(g, gpu)) {
        return Ok(found.clone());
    }
    gpu.bind_to_thread()?;
    let made = Context {
        gpu: gpu.clone(),
        cudnn: Handle::new(gpu)?,
        blas: Blas::new(gpu)?,
        workspace: None,
        convs: Vec::new(),
        pools: Vec::new(),
    };
    let made = Arc::new(Mutex::new(made));
    all.push((gpu.clone(), made.clone()));
    Ok(made)
}

/// Locks a context. A panic while it was locked leaves nothing half-done that matters (its
/// caches only ever gain complete entries), so a poisoned lock is taken over.
pub(crate) fn lock(context: &Mutex<Context>) -> MutexGuard<'_, Context> {
    context.lock().unwrap_or_else(PoisonError::into_inner)
}
