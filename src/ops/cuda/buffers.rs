//! The device buffers behind dfdx tensors and gradients, and tensors made of buffers our
//! kernels filled: what the vendored dfdx's `Tensorlike` and `Cuda::try_tensor_from_storage`
//! expose (see vendor/dfdx/PATCHES.md). Buffers are handed to cuDNN and cuBLAS as device
//! addresses; every call runs on the device's one stream, in order, so a buffer freed (or
//! returned to dfdx's cache) after a call has been queued is not reused before it ran.

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{DevicePtr, DeviceSlice};
use dfdx::prelude::*;
use dfdx::tensor::{CpuError, Cuda, CudaError};

/// A buffer is not laid out as a tensor of its shape, packed: an error rather than a wrong
/// read. Our ops make their inputs contiguous first, so this means a bug.
fn layout_error(what: &str) -> CudaError {
    tracing::error!("CUDA op: {what} is not a packed buffer of its shape's length");
    CudaError::Cpu(CpuError::WrongNumElements)
}

/// The device address of the values of `t`, which must be packed in its shape's row-major
/// order (as dfdx makes every tensor that is not a broadcast or permuted view).
pub(crate) fn values<S: Shape, T>(t: &Tensor<S, f32, Cuda, T>) -> Result<CUdeviceptr, CudaError> {
    let n = t.shape().num_elements();
    match Tensorlike::data(t) {
        Some(data) if Tensorlike::strides(t) == t.shape().strides() && data.len() == n => Ok(*data.device_ptr()),
        _ => Err(layout_error("a tensor")),
    }
}

/// The device address of the gradient of `t` in `grads`, allocated as zeros if missing. The
/// address stays valid while the gradient is in `grads` (its buffer does not move when other
/// gradients are added), so several can be held at once.
pub(crate) fn grad<S: Shape>(
    grads: &mut Gradients<f32, Cuda>,
    t: &impl Tensorlike<S, f32, Cuda>,
) -> Result<CUdeviceptr, CudaError> {
    let n = t.shape().num_elements();
    let g = grads.get_or_alloc_mut(t)?;
    match g.len() == n {
        true => Ok(*g.device_ptr()),
        false => Err(layout_error("a gradient")),
    }
}

/// A buffer from dfdx's allocator (and its cache), zeroed, with its address.
pub(crate) struct Buffer {
    data: <Cuda as Storage<f32>>::Vec,
    /// Its device address.
    pub ptr: CUdeviceptr,
}

impl Buffer {
    /// `len` zeros.
    pub(crate) fn zeros(dev: &Cuda, len: usize) -> Result<Self, CudaError> {
        let data = <Cuda as Storage<f32>>::try_alloc_len(dev, len)?;
        let ptr = *data.device_ptr();
        Ok(Buffer { data, ptr })
    }

    /// A tensor of `shape` made of this buffer (of exactly `shape`'s length).
    pub(crate) fn into_tensor<S: Shape>(self, dev: &Cuda, shape: S) -> Result<Tensor<S, f32, Cuda>, CudaError> {
        dev.try_tensor_from_storage(shape, self.data)
    }

    /// The underlying buffer, for a kernel launch.
    pub(crate) fn slice_mut(&mut self) -> &mut cudarc::driver::CudaSlice<f32> {
        &mut self.data
    }
}

/// Checks that a parameter has the length its layer needs: a wrong one would make cuDNN read
/// past its end.
pub(crate) fn check_len(what: &str, t: &Tensor<(usize,), f32, Cuda>, want: usize) -> Result<(), CudaError> {
    match t.shape().0 == want {
        true => Ok(()),
        false => {
            tracing::error!("CUDA op: {what} has {} values, not {want}", t.shape().0);
            Err(CudaError::Cpu(CpuError::WrongNumElements))
        }
    }
}
