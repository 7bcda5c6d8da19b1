//! Our own dfdx ops. dfdx 0.13 compiles its `conv2d`/`pool2d` only with the `nightly` feature,
//! so convolution and pooling are written here, and the dense layer too so that the whole hot
//! path runs on our kernels. Each op is a function generic over the [`Backend`] (`conv2d`,
//! `max_pool2d`, `avg_pool2d`, `dense`, `gelu::gelu`, `dropout_mask`) that hands the work to
//! the device's own implementation:
//!
//! - On the CPU, each op runs its own forward kernel on host memory and registers its backward
//!   on the tape (`Tape::add_backward_op`), accumulating into the gradients of its input and
//!   parameters. The kernels split work into pieces computed the same way whatever thread
//!   takes them (images, bands of an image's output rows, or blocks of a dense layer's units)
//!   and reduce partial sums in a fixed order, so results do not depend on thread count.
//! - On CUDA ([`cuda`], with `--features cuda`), convolution and pooling run forward and
//!   backward on cuDNN with deterministic algorithms, the dense layer on cuBLAS through dfdx's
//!   `matmul`, biases on cuDNN, ReLUs on dfdx's kernels, GELU and dropout masks on kernels of
//!   ours: data stays on the GPU.

pub mod conv2d;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dense;
pub mod gelu;
pub mod gemm;
pub mod pool2d;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod winograd;

pub use conv2d::{conv2d, ConvAlgorithm, ConvGeom, Epilogue};
pub use dense::dense;
pub use gemm::Kernel;
pub use pool2d::{avg_pool2d, max_pool2d, PoolGeom};

use dfdx::prelude::*;
use dfdx::tensor::Tensorlike;

use std::borrow::Cow;

/// Training allocates and frees the same large buffers (activations, gradients, im2col
/// columns) every step. By default glibc maps each one anew and returns it to the kernel, and
/// the page faults and TLB shootdowns that follow cost more than the arithmetic of a step;
/// keeping freed memory in the heap for reuse removes them. One arena for all threads: the
/// worker threads' own arenas live in 64 MiB heaps that glibc unmaps whenever one empties,
/// whatever the trim threshold, and whether that happens every step depended on which worker
/// happened to free what (a refactor that changed no allocation made training 2x slower,
/// with 6x the page faults). Allocations here are few and large, so the shared lock costs
/// nothing measurable. Call once, before threads start (the binary and the benchmarks do).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// For a window tap `offset` pixels from the window's start, along one axis: the outputs
/// whose tap falls inside the input (`lo..hi`), and the input position of output 0 (negative
/// when it lies in the padding). Output `o` reads input `o·stride + start`.
#[inline]
fn tap_span(offset: usize, pad: usize, stride: usize, size: usize, out: usize) -> (usize, usize, isize) {
    let start = offset as isize - pad as isize;
    let (s, n) = (stride as isize, size as isize);
    // o·s + start in [0, n)  ⇔  o in [ceil(-start / s), ceil((n - start) / s)).
    let lo = if start >= 0 { 0 } else { ((-start) + s - 1) / s };
    let hi = if n - start <= 0 { 0 } else { ((n - start) + s - 1) / s };
    (lo.clamp(0, out as isize) as usize, hi.clamp(0, out as isize) as usize, start)
}

/// The values of `t` on the host, in logical order: on the CPU a borrow of its buffer when
/// that is packed in the shape's row-major order (every tensor our ops receive), so an op's
/// inputs are neither zeroed nor copied (4% of a training step when they were, all of it on
/// one thread); otherwise a copy. dfdx's `as_vec` walks the tensor element by element through
/// its strides; the copy reshapes to a flat vector (a view for a contiguous tensor) and copies
/// that buffer in one go.
pub fn host<S: Shape, D: Backend>(t: &Tensor<S, f32, D>) -> Cow<'_, [f32]> {
    if let Some(values) = D::borrow(t) {
        return Cow::Borrowed(values);
    }
    let n = t.shape().num_elements();
    let mut out = vec![0.0; n];
    t.clone().reshape_like(&(n,)).copy_into(&mut out);
    Cow::Owned(out)
}

/// A batch of values, `(batch, features)`, as our ops take and give them.
pub type Batch<D, T> = Tensor<(usize, usize), f32, D, T>;
/// A parameter, stored flat.
pub type Flat<D> = Tensor<(usize,), f32, D>;

/// A dfdx device our ops can run on: dfdx's own kernels, our ops' forward passes (each
/// registering its backward on the tape), and access to the tape's gradient store.
///
/// The ops' methods return the device's errors; the functions of this module that call them
/// ([`conv2d`], [`dense`], ...) panic on one instead, as dfdx's own operators do (`x.relu()`
/// unwraps a CUDA error too), since a layer's forward pass gives a tensor, not a result. On
/// the CPU they cannot fail. Errors in a backward pass come out of `try_backward`.
pub trait Backend: Device<f32> {
    /// `cpu` or `cuda`, for the manifest.
    const NAME: &'static str;

    /// See [`conv2d`].
    fn try_conv2d<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        g: ConvGeom,
        epilogue: Epilogue,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err>;

    /// The values of `t` in place, if they are host memory packed in the shape's row-major
    /// order (see [`host`]).
    fn borrow<S: Shape>(_t: &Tensor<S, f32, Self>) -> Option<&[f32]> {
        None
    }

    /// See [`max_pool2d`].
    fn try_max_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err>;

    /// See [`avg_pool2d`].
    fn try_avg_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err>;

    /// See [`dense`].
    fn try_dense<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        units: usize,
        relu: bool,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err>;

    /// See [`gelu::gelu`].
    fn try_gelu<T: Tape<f32, Self>>(x: Batch<Self, T>) -> Result<Batch<Self, T>, Self::Err>;

    /// See [`dropout_mask`].
    fn try_dropout_mask(
        &self,
        shape: (usize, usize),
        rate: f64,
        scale: f32,
        rng: &mut impl rand::Rng,
    ) -> Result<Batch<Self, NoneTape>, Self::Err>;

    /// The sum of the squares of the gradient of `t` (allocated as zeros if missing), for
    /// gradient clipping.
    fn grad_sum_squares<S: Shape>(grads: &mut Gradients<f32, Self>, t: &Tensor<S, f32, Self>)
        -> Result<f64, Self::Err>;

    /// Calls `f` with the gradient of `t` on the host (allocated as zeros if missing): a
    /// borrow on the CPU, a copy from a GPU.
    fn with_grad<S: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, Self::Err>;

    /// Calls `f` with the gradient of an op's output `out` (read) and of its input `inp`
    /// (changed in place, allocated as zeros if missing), so a backward kernel accumulates
    /// straight into the input's gradient without a temporary of its size.
    fn with_grads<S1: Shape, S2: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        out: &Tensor<S1, f32, Self>,
        inp: &Tensor<S2, f32, Self>,
        f: impl FnOnce(&[f32], &mut [f32]) -> R,
    ) -> Result<R, Self::Err>;

    /// Lets `f` change the gradient of `t` in place (allocated as zeros if missing): on the
    /// CPU directly, on a GPU through a host copy written back.
    fn update_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&mut [f32]),
    ) -> Result<(), Self::Err>;

    /// Adds `delta` (same length as `t`) into the gradient of `t`, allocating it if needed.
    fn add_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        delta: &[f32],
    ) -> Result<(), Self::Err> {
        Self::update_grad(grads, t, |g| {
            debug_assert_eq!(g.len(), delta.len());
            g.iter_mut().zip(delta).for_each(|(g, d)| *g += d);
        })
    }

    /// Multiplies the gradient of `t` by `factor`.
    fn scale_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        factor: f32,
    ) -> Result<(), Self::Err> {
        Self::update_grad(grads, t, |g| g.iter_mut().for_each(|g| *g *= factor))
    }
}

impl Backend for Cpu {
    const NAME: &'static str = "cpu";

    fn borrow<S: Shape>(t: &Tensor<S, f32, Self>) -> Option<&[f32]> {
        let values: &[f32] = Tensorlike::data(t)?;
        let packed = Tensorlike::strides(t) == t.shape().strides() && values.len() == t.shape().num_elements();
        packed.then_some(values)
    }

    fn try_conv2d<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        g: ConvGeom,
        epilogue: Epilogue,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err> {
        Ok(conv2d::on_host(x, kernel, bias, g, epilogue, input_grad))
    }

    fn try_max_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err> {
        Ok(pool2d::max_on_host(x, g))
    }

    fn try_avg_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err> {
        Ok(pool2d::avg_on_host(x, g))
    }

    fn try_dense<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        units: usize,
        relu: bool,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err> {
        Ok(dense::on_host(x, kernel, bias, units, relu, input_grad))
    }

    fn try_gelu<T: Tape<f32, Self>>(x: Batch<Self, T>) -> Result<Batch<Self, T>, Self::Err> {
        Ok(gelu::on_host(x))
    }

    fn try_dropout_mask(
        &self,
        shape: (usize, usize),
        rate: f64,
        scale: f32,
        rng: &mut impl rand::Rng,
    ) -> Result<Batch<Self, NoneTape>, Self::Err> {
        let mask: Vec<f32> =
            (0..shape.0 * shape.1).map(|_| if rng.gen::<f64>() < rate { 0.0 } else { scale }).collect();
        self.try_tensor_from_vec(mask, shape)
    }

    fn grad_sum_squares<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
    ) -> Result<f64, Self::Err> {
        grads.try_alloc_for(t)?;
        Ok(grads.get(t).as_vec().iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
    }

    fn with_grad<S: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, Self::Err> {
        Ok(f(grads.get_or_alloc_mut(t)?))
    }

    fn with_grads<S1: Shape, S2: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        out: &Tensor<S1, f32, Self>,
        inp: &Tensor<S2, f32, Self>,
        f: impl FnOnce(&[f32], &mut [f32]) -> R,
    ) -> Result<R, Self::Err> {
        // dfdx lends one gradient at a time, so the output's is moved out and back in.
        let dy = std::mem::take::<Vec<f32>>(grads.get_or_alloc_mut(out)?);
        let result = grads.get_or_alloc_mut(inp).map(|dx| f(&dy, dx));
        **grads.get_or_alloc_mut(out)? = dy;
        result
    }

    fn update_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&mut [f32]),
    ) -> Result<(), Self::Err> {
        f(grads.get_or_alloc_mut(t)?);
        Ok(())
    }
}

/// On CUDA our ops run on the GPU ([`cuda`]). The host access to gradients below (a copy down
/// and, for a change, back up) is only for what happens once per run, such as loading an
/// optimizer's state from a checkpoint; nothing in a training step uses it.
#[cfg(feature = "cuda")]
impl Backend for Cuda {
    const NAME: &'static str = "cuda";

    fn try_conv2d<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        g: ConvGeom,
        epilogue: Epilogue,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err> {
        cuda::conv::conv2d(x, kernel, bias, g, epilogue, input_grad)
    }

    fn try_max_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err> {
        cuda::pool::pool2d(x, g, cuda::pool::Kind::Max)
    }

    fn try_avg_pool2d<T: Tape<f32, Self>>(x: Batch<Self, T>, g: PoolGeom) -> Result<Batch<Self, T>, Self::Err> {
        cuda::pool::pool2d(x, g, cuda::pool::Kind::Average)
    }

    fn try_dense<T: Tape<f32, Self>>(
        x: Batch<Self, T>,
        kernel: &Flat<Self>,
        bias: Option<&Flat<Self>>,
        units: usize,
        relu: bool,
        input_grad: bool,
    ) -> Result<Batch<Self, T>, Self::Err> {
        cuda::dense::dense(x, kernel, bias, units, relu, input_grad)
    }

    fn try_gelu<T: Tape<f32, Self>>(x: Batch<Self, T>) -> Result<Batch<Self, T>, Self::Err> {
        cuda::gelu::gelu(x)
    }

    fn try_dropout_mask(
        &self,
        shape: (usize, usize),
        rate: f64,
        scale: f32,
        rng: &mut impl rand::Rng,
    ) -> Result<Batch<Self, NoneTape>, Self::Err> {
        cuda::dropout::mask(self, shape, rate, scale, rand::RngCore::next_u64(rng))
    }

    fn grad_sum_squares<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
    ) -> Result<f64, Self::Err> {
        cuda::grads::sum_squares(grads, t)
    }

    fn scale_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        factor: f32,
    ) -> Result<(), Self::Err> {
        cuda::grads::scale(grads, t, factor)
    }

    fn with_grad<S: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, Self::Err> {
        let g: &mut cudarc::driver::CudaSlice<f32> = grads.get_or_alloc_mut(t)?;
        let host = g.device().dtoh_sync_copy(g)?;
        Ok(f(&host))
    }

    fn with_grads<S1: Shape, S2: Shape, R>(
        grads: &mut Gradients<f32, Self>,
        out: &Tensor<S1, f32, Self>,
        inp: &Tensor<S2, f32, Self>,
        f: impl FnOnce(&[f32], &mut [f32]) -> R,
    ) -> Result<R, Self::Err> {
        let dy = Self::with_grad(grads, out, |dy| dy.to_vec())?;
        let g: &mut cudarc::driver::CudaSlice<f32> = grads.get_or_alloc_mut(inp)?;
        let gpu = g.device();
        let mut dx = gpu.dtoh_sync_copy(g)?;
        let result = f(&dy, &mut dx);
        gpu.htod_sync_copy_into(&dx, g)?;
        Ok(result)
    }

    fn update_grad<S: Shape>(
        grads: &mut Gradients<f32, Self>,
        t: &Tensor<S, f32, Self>,
        f: impl FnOnce(&mut [f32]),
    ) -> Result<(), Self::Err> {
        let g: &mut cudarc::driver::CudaSlice<f32> = grads.get_or_alloc_mut(t)?;
        let gpu = g.device();
        let mut host = gpu.dtoh_sync_copy(g)?;
        f(&mut host);
        gpu.htod_sync_copy_into(&host, g)?;
        Ok(())
    }
}

/// A dropout mask of `shape`: each value 0 with probability `rate`, else `scale`, from `rng`
/// (on the CPU one draw per value; on CUDA a single draw keys the GPU's own stream, so the
/// two devices drop different values). Panics if the device fails.
pub fn dropout_mask<D: Backend>(
    dev: &D,
    shape: (usize, usize),
    rate: f64,
    scale: f32,
    rng: &mut impl rand::Rng,
) -> Batch<D, NoneTape> {
    dev.try_dropout_mask(shape, rate, scale, rng).unwrap_or_else(|e| failed::<D>("dropout", e))
}

/// Stops on an op that failed on the device, as dfdx's own infallible operators do.
fn failed<D: Backend>(op: &str, e: D::Err) -> ! {
    panic!("{op} failed on the {} device: {e}", D::NAME)
}

/// The instruction-set extensions of this CPU that decide which matrix kernel runs, for the
/// manifest (a run is bit-for-bit reproducible on any CPU that runs the same kernel family).
pub fn cpu_features() -> Vec<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        macro_rules! check {
            ($($feature:tt),*) => {$(
                if std::is_x86_feature_detected!($feature) {
                    found.push($feature.to_string());
                }
            )*};
        }
        check!("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl");
        found
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        vec![std::env::consts::ARCH.to_string()]
    }
}
