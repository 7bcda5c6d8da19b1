//! Our ops on CUDA (the module exists with `--features cuda` only): convolution and pooling on cuDNN, the dense layer on
//! cuBLAS through dfdx's `matmul`, biases on cuDNN, ReLUs and the rest on dfdx's kernels,
//! dropout masks and GELU on kernels of ours, gradient norms and scaling on cuBLAS. Every op
//! reads its inputs where they are, on the GPU, and records a backward that adds into the
//! tape's gradients there: in a training step only the batch (images and targets) goes up,
//! and only the loss, the logits (for the metrics) and, with gradient clipping, one norm per
//! weight come down.
//!
//! Reproducibility: the cuDNN algorithms are deterministic ones (see [`conv`], [`pool`]),
//! convolutions use FMA math (no TF32), and cuBLAS's products are deterministic, so our ops
//! give the same bits on every run on the same GPU model, driver, CUDA, cuDNN and cuBLAS.
//! dfdx's own reductions do not: its sums (the loss's mean, batch normalisation's
//! statistics, global average pooling, softmax) add partial sums with atomics, so two runs of
//! a config on the GPU agree to rounding, not bit for bit, and drift apart over training as
//! any such difference does. Runs on the CPU stay bit-for-bit reproducible.

pub(crate) mod buffers;
pub(crate) mod conv;
pub(crate) mod cudnn;
pub(crate) mod dense;
pub(crate) mod dropout;
pub(crate) mod gelu;
pub(crate) mod grads;
pub(crate) mod kernels;
pub mod libs;
pub(crate) mod pool;
