//! A fully connected layer, `y = x · W + b` with an optional ReLU in the same pass, on host
//! memory with a tape-registered backward. All three products go through [`matmul`]:
//! forward `y = x · W`, weight gradient `dW = xᵀ · dy`, input gradient `dxᵀ = W · dyᵀ` (the
//! transposed form keeps every right operand row-contiguous, the layout the fast kernels take).
//!
//! The work is split into blocks of a fixed number of units (forward) or inputs (backward), so
//! that each thread reads its own part of `W` once and the results do not depend on the
//! thread count: every output is one sum over the same values in the same order.

use dfdx::prelude::*;
use rayon::prelude::*;

use std::borrow::Cow;

use super::gemm::{matmul, Mat};
use super::Backend;

/// Units per forward task: 64 columns of `W` (the kernel's strips are 32 wide).
const UNITS_PER_TASK: usize = 64;
/// Inputs per backward task: 256 rows of `W` and of `dW`.
const INPUTS_PER_TASK: usize = 256;

/// Sizes of one dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseGeom {
    /// Images in the batch.
    pub batch: usize,
    /// Inputs per image.
    pub fan_in: usize,
    /// Outputs per image.
    pub units: usize,
}

/// `relu(x · w + b)` (or without the ReLU): `x` is `(batch, fan_in)`, `w` `(fan_in, units)`,
/// `b` `(units)`; the result is `(batch, units)`.
pub fn forward(x: &[f32], w: &[f32], b: &[f32], g: DenseGeom, relu: bool) -> Vec<f32> {
    let DenseGeom { batch, fan_in, units } = g;
    let blocks: Vec<Vec<f32>> = (0..units)
        .into_par_iter()
        .step_by(UNITS_PER_TASK)
        .map(|j| {
            let n = (units - j).min(UNITS_PER_TASK);
            let mut block = vec![0.0; batch * n];
            let a = Mat { data: x, rs: fan_in, cs: 1 };
            matmul(batch, n, fan_in, a, Mat { data: &w[j..], rs: units, cs: 1 }, &mut block, false);
            for row in block.chunks_mut(n) {
                row.iter_mut().zip(&b[j..j + n]).for_each(|(v, b)| *v += b);
                if relu {
                    row.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
            block
        })
        .collect();
    let mut y = vec![0.0; batch * units];
    for (j, block) in (0..units).step_by(UNITS_PER_TASK).zip(&blocks) {
        let n = (units - j).min(UNITS_PER_TASK);
        for (out, row) in y.chunks_mut(units).zip(block.chunks(n)) {
            out[j..j + n].copy_from_slice(row);
        }
    }
    y
}

/// The gradient of the layer's output before the ReLU: `dy` where `y > 0` (with `relu`),
/// else `dy` itself.
pub fn through_relu(dy: &[f32], y: &[f32], relu: bool) -> Vec<f32> {
    match relu {
        true => dy.iter().zip(y).map(|(d, y)| if *y > 0.0 { *d } else { 0.0 }).collect(),
        false => dy.to_vec(),
    }
}

/// Adds `xᵀ · dy` (fan_in × units) into `dw`, a block of rows of `dw` per task.
pub fn weight_grad(x: &[f32], dy: &[f32], g: DenseGeom, dw: &mut [f32]) {
    let DenseGeom { batch, fan_in, units } = g;
    dw.par_chunks_mut(INPUTS_PER_TASK * units).enumerate().for_each(|(t, rows)| {
        let a = Mat { data: &x[t * INPUTS_PER_TASK..], rs: 1, cs: fan_in };
        matmul(rows.len() / units, units, batch, a, Mat { data: dy, rs: units, cs: 1 }, rows, true);
    });
}

/// Adds the column sums of `dy` (in batch order) into `db`.
pub fn bias_grad(dy: &[f32], g: DenseGeom, db: &mut [f32]) {
    for row in dy.chunks(g.units) {
        db.iter_mut().zip(row).for_each(|(s, d)| *s += d);
    }
}

/// Adds `dy · Wᵀ` into `dx`, computed as `dxᵀ = W · dyᵀ` a block of inputs per task.
pub fn input_grad(w: &[f32], dy: &[f32], g: DenseGeom, dx: &mut [f32]) {
    let DenseGeom { batch, fan_in, units } = g;
    let mut dy_t = vec![0.0; units * batch];
    for (i, row) in dy.chunks(units).enumerate() {
        row.iter().enumerate().for_each(|(u, d)| dy_t[u * batch + i] = *d);
    }
    let mut dx_t = vec![0.0; fan_in * batch];
    dx_t.par_chunks_mut(INPUTS_PER_TASK * batch).enumerate().for_each(|(t, rows)| {
        let a = Mat { data: &w[t * INPUTS_PER_TASK * units..], rs: units, cs: 1 };
        matmul(rows.len() / batch, batch, units, a, Mat { data: &dy_t, rs: batch, cs: 1 }, rows, false);
    });
    for (i, dx) in dx.chunks_mut(fan_in).enumerate() {
        dx.iter_mut().zip(dx_t[i..].iter().step_by(batch)).for_each(|(d, v)| *d += v);
    }
}

/// `x · kernel + bias` (then a ReLU when `relu`) for a batch `(batch, fan_in)`, with `kernel`
/// `(fan_in·units)` row-major and `bias` `(units)` when there is one, recorded on `x`'s tape.
/// With `input_grad == false` no input gradient is made. Runs on the device's own kernels
/// ([`Backend::try_dense`]); panics if the device fails.
pub fn dense<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    kernel: &Tensor<(usize,), f32, D>,
    bias: Option<&Tensor<(usize,), f32, D>>,
    units: usize,
    relu: bool,
    input_grad: bool,
) -> Tensor<(usize, usize), f32, D, T> {
    D::try_dense(x, kernel, bias, units, relu, input_grad).unwrap_or_else(|e| super::failed::<D>("dense", e))
}

/// [`dense`] on the host, the CPU's implementation.
pub(super) fn on_host<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    kernel: &Tensor<(usize,), f32, D>,
    bias: Option<&Tensor<(usize,), f32, D>>,
    units: usize,
    relu: bool,
    input_grad: bool,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let (batch, fan_in) = *x.shape();
    let g = DenseGeom { batch, fan_in, units };
    let b = bias.map_or_else(|| Cow::Owned(vec![0.0; units]), super::host);
    let y = forward(&super::host(&x), &super::host(kernel), &b, g, relu);
    // The backward pass reads the output only to undo the ReLU.
    let kept = if T::OWNS_TAPE && relu { y.clone() } else { Vec::new() };
    let out = x.device().tensor_from_vec(y, (batch, units));
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        let (kernel, bias) = (kernel.clone(), bias.cloned());
        tape.add_backward_op(move |grads| {
            // Each gradient is accumulated in place, one at a time (dfdx lends one at a time).
            let (xv, wv) = (super::host(&x), super::host(&kernel));
            let dy = D::with_grad(grads, &out_handle, |dy| through_relu(dy, &kept, relu))?;
            D::update_grad(grads, &kernel, |dw| weight_grad(&xv, &dy, g, dw))?;
            if let Some(bias) = &bias {
                D::update_grad(grads, bias, |db| bias_grad(&dy, g, db))?;
            }
            match input_grad {
                true => D::update_grad(grads, &x, |dx| self::input_grad(&wv, &dy, g, dx)),
                false => Ok(()),
            }
        });
    }
    out.put_tape(tape)
}
