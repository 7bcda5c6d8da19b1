//! 2-D max and average pooling, NCHW, with tape-registered backwards: max routes each output
//! gradient to the input element that won its window (first one on ties, as TensorFlow does);
//! average spreads it evenly over the window's pixels inside the image.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::Backend;

/// Sizes of one pooling (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PoolGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Window.
    pub ph: usize,
    pub pw: usize,
    /// Strides.
    pub sh: usize,
    pub sw: usize,
    /// Output size.
    pub oh: usize,
    pub ow: usize,
    /// Padding before the first row and column (padded cells never win).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl PoolGeom {
    /// Values per input image.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Values per output image.
    pub fn out_len(&self) -> usize {
        self.c * self.oh * self.ow
    }
}

/// Forward pass on host memory: the maxima and, per output, the index of the winner within
/// its image.
pub fn forward(x: &[f32], batch: usize, g: &PoolGeom) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![0.0; batch * g.out_len()];
    let mut arg = vec![0u32; batch * g.out_len()];
    y.par_chunks_mut(g.out_len()).zip(arg.par_chunks_mut(g.out_len())).zip(x.par_chunks(g.in_len())).for_each(
        |((y, arg), x)| {
            let mut o = 0;
            for ch in 0..g.c {
                for oy in 0..g.oh {
                    let rows = (oy * g.sh).saturating_sub(g.pad_top)..(oy * g.sh + g.ph - g.pad_top).min(g.h);
                    for ox in 0..g.ow {
                        let cols = (ox * g.sw).saturating_sub(g.pad_left)..(ox * g.sw + g.pw - g.pad_left).min(g.w);
                        let (mut best, mut best_i) = (f32::NEG_INFINITY, usize::MAX);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let i = (ch * g.h + iy) * g.w + ix;
                                // NaN wins so that it propagates instead of vanishing.
                                if best_i == usize::MAX || x[i] > best || x[i].is_nan() && !best.is_nan() {
                                    (best, best_i) = (x[i], i);
                                }
                            }
                        }
                        y[o] = best;
                        arg[o] = best_i as u32;
                        o += 1;
                    }
                }
            }
        },
    );
    (y, arg)
}

/// Input gradient on host memory.
pub fn backward(dy: &[f32], arg: &[u32], batch: usize, g: &PoolGeom) -> Vec<f32> {
    let mut dx = vec![0.0; batch * g.in_len()];
    dx.par_chunks_mut(g.in_len()).zip(dy.par_chunks(g.out_len()).zip(arg.par_chunks(g.out_len()))).for_each(
        |(dx, (dy, arg))| {
            for (&d, &i) in dy.iter().zip(arg) {
                dx[i as usize] += d;
            }
        },
    );
    dx
}

/// Max pooling of a batch `(batch, c·h·w)`, recorded on `x`'s tape.
pub fn max_pool2d<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    g: PoolGeom,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let (y, arg) = forward(&super::host(&x), batch, &g);
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        tape.add_backward_op(move |grads| {
            let dx = D::with_grad(grads, &out_handle, |dy| backward(dy, &arg, batch, &g))?;
            D::add_grad(grads, &x, &dx)
        });
    }
    out.put_tape(tape)
}

/// The input pixels (indices within an image's channel plane) of output (oy, ox).
fn window(g: &PoolGeom, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let rows = (oy * g.sh).saturating_sub(g.pad_top)..(oy * g.sh + g.ph - g.pad_top).min(g.h);
    let cols = (ox * g.sw).saturating_sub(g.pad_left)..(ox * g.sw + g.pw - g.pad_left).min(g.w);
    (rows, cols)
}

/// Average pooling forward on host memory.
pub fn avg_forward(x: &[f32], batch: usize, g: &PoolGeom) -> Vec<f32> {
    let mut y = vec![0.0; batch * g.out_len()];
    y.par_chunks_mut(g.out_len()).zip(x.par_chunks(g.in_len())).for_each(|(y, x)| {
        let mut o = 0;
        for ch in 0..g.c {
            let plane = &x[ch * g.h * g.w..(ch + 1) * g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (rows, cols) = window(g, oy, ox);
                    let count = (rows.len() * cols.len()).max(1) as f32;
                    let sum: f32 = rows.flat_map(|iy| plane[iy * g.w + cols.start..iy * g.w + cols.end].iter()).sum();
                    y[o] = sum / count;
                    o += 1;
                }
            }
        }
    });
    y
}

/// Average pooling input gradient on host memory.
pub fn avg_backward(dy: &[f32], batch: usize, g: &PoolGeom) -> Vec<f32> {
    let mut dx = vec![0.0; batch * g.in_len()];
    dx.par_chunks_mut(g.in_len()).zip(dy.par_chunks(g.out_len())).for_each(|(dx, dy)| {
        let mut o = 0;
        for ch in 0..g.c {
            let plane = &mut dx[ch * g.h * g.w..(ch + 1) * g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (rows, cols) = window(g, oy, ox);
                    let share = dy[o] / (rows.len() * cols.len()).max(1) as f32;
                    for iy in rows {
                        plane[iy * g.w + cols.start..iy * g.w + cols.end].iter_mut().for_each(|d| *d += share);
                    }
                    o += 1;
                }
            }
        }
    });
    dx
}

/// Average pooling of a batch `(batch, c·h·w)`, recorded on `x`'s tape.
pub fn avg_pool2d<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    g: PoolGeom,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let out = x.device().tensor_from_vec(avg_forward(&super::host(&x), batch, &g), (batch, g.out_len()));
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        tape.add_backward_op(move |grads| {
            let dx = D::with_grad(grads, &out_handle, |dy| avg_backward(dy, batch, &g))?;
            D::add_grad(grads, &x, &dx)
        });
    }
    out.put_tape(tape)
}
