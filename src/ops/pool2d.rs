//! 2-D max and average pooling, NCHW, with tape-registered backwards: max routes each output
//! gradient to the input element that won its window (first one on ties, as TensorFlow does);
//! average spreads it evenly over the window's pixels inside the image.

use dfdx::prelude::*;
use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::Backend;

/// Sizes of one pooling (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Channels (pooled one by one).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window height.
    pub ph: usize,
    /// Window width.
    pub pw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Padding before the first row (padded cells never win).
    pub pad_top: usize,
    /// Padding before the first column.
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
    /// A 2×2 window with stride 2 whose windows all lie inside the image ("same" padding on an
    /// odd size adds a row or column after the last).
    pub(super) fn is_2x2(&self) -> bool {
        (self.ph, self.pw, self.sh, self.sw, self.pad_top, self.pad_left) == (2, 2, 2, 2, 0, 0)
            && 2 * self.oh <= self.h
            && 2 * self.ow <= self.w
    }
    /// The input rows of output row `oy`'s window that lie inside the image.
    fn rows(&self, oy: usize) -> std::ops::Range<usize> {
        (oy * self.sh).saturating_sub(self.pad_top)..(oy * self.sh + self.ph - self.pad_top).min(self.h)
    }
    /// The input columns of output column `ox`'s window that lie inside the image.
    fn cols(&self, ox: usize) -> std::ops::Range<usize> {
        (ox * self.sw).saturating_sub(self.pad_left)..(ox * self.sw + self.pw - self.pad_left).min(self.w)
    }
    /// For window column kj: see [`super::tap_span`].
    fn columns(&self, kj: usize) -> (usize, usize, isize) {
        super::tap_span(kj, self.pad_left, self.sw, self.w, self.ow)
    }
}

/// Forward pass on host memory: the maxima and, per output, the index of the winner within
/// its image.
pub fn forward(x: &[f32], batch: usize, g: &PoolGeom) -> (Vec<f32>, Vec<u32>) {
    let n = batch * g.out_len();
    let (mut y, mut arg) = (vec![0.0; n], vec![0u32; n]);
    y.par_chunks_mut(g.out_len())
        .zip(arg.par_chunks_mut(g.out_len()))
        .zip(x.par_chunks(g.in_len()))
        .for_each(|((y, arg), x)| image(x, g, y, arg));
    (y, arg)
}

/// Max pooling of one image `x` into `y`, with the index in `x` of each output's winner in
/// `arg` (the first of equal values, as TensorFlow picks). The window is scanned tap by tap,
/// each tap along a whole output row, choosing with a branch-free select: on real activations
/// the winner is unpredictable, and a branch per comparison cost several times the memory
/// traffic.
pub(super) fn image(x: &[f32], g: &PoolGeom, y: &mut [f32], arg: &mut [u32]) {
    // The general path's kernel columns; the 2×2 path needs none.
    let taps: Vec<_> = if g.is_2x2() { Vec::new() } else { (0..g.pw).map(|kj| g.columns(kj)).collect() };
    for (r, (best, win)) in y.chunks_mut(g.ow).zip(arg.chunks_mut(g.ow)).enumerate() {
        let (ch, oy) = (r / g.oh, r % g.oh);
        if g.is_2x2() {
            // Keras' default pool, in one pass.
            let top = &x[(ch * g.h + 2 * oy) * g.w..][..2 * g.ow];
            let bottom = &x[(ch * g.h + 2 * oy + 1) * g.w..][..2 * g.ow];
            let at = ((ch * g.h + 2 * oy) * g.w) as u32;
            // SAFETY: only initialised values are written through the view.
            let best = unsafe { &mut *(best as *mut [f32] as *mut [MaybeUninit<f32>]) };
            row_2x2::<true>(top, bottom, at, g.w as u32, best, win, false);
            continue;
        }
        best.fill(f32::NEG_INFINITY);
        win.fill(u32::MAX);
        for iy in g.rows(oy) {
            let line = (ch * g.h + iy) * g.w;
            for &(lo, hi, start) in &taps {
                let first = (line as isize + lo as isize * g.sw as isize + start) as usize;
                for (k, (b, w)) in best[lo..hi].iter_mut().zip(&mut win[lo..hi]).enumerate() {
                    let i = first + k * g.sw;
                    let v = x[i];
                    // The first tap in the image wins; NaN wins so that it propagates.
                    let take = (*w == u32::MAX) | (v > *b) | (v.is_nan() & !b.is_nan());
                    *b = if take { v } else { *b };
                    *w = if take { i as u32 } else { *w };
                }
            }
        }
    }
}

/// One row of 2×2 windows over the input rows `top` and `bottom` (two values per output
/// each), with the taps in window order: the maxima into `best` and, with `ARG`, each winner's
/// index into `win`, counting from `at` (the index of `top[0]`) with rows `w` apart. With
/// `clip` (a ReLU before the pool), a window whose maximum is 0 or less records `u32::MAX`:
/// the ReLU passes no gradient back through it.
#[inline]
pub(super) fn row_2x2<const ARG: bool>(
    top: &[f32],
    bottom: &[f32],
    at: u32,
    w: u32,
    best: &mut [MaybeUninit<f32>],
    win: &mut [u32],
    clip: bool,
) {
    let cells = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (ox, (b, (t, u))) in best.iter_mut().zip(cells).enumerate() {
        let i = at + 2 * ox as u32;
        let (mut m, mut k) = (t[0], i);
        for (v, j) in [(t[1], i + 1), (u[0], i + w), (u[1], i + w + 1)] {
            let take = (v > m) | (v.is_nan() & !m.is_nan());
            m = if take { v } else { m };
            k = if take { j } else { k };
        }
        b.write(m);
        if ARG {
            win[ox] = if clip && m <= 0.0 { u32::MAX } else { k };
        }
    }
}

/// Adds each output gradient onto the input that won its window.
pub fn backward(dy: &[f32], arg: &[u32], g: &PoolGeom, dx: &mut [f32]) {
    dx.par_chunks_mut(g.in_len()).zip(dy.par_chunks(g.out_len()).zip(arg.par_chunks(g.out_len()))).for_each(
        |(dx, (dy, arg))| {
            for (&d, &i) in dy.iter().zip(arg) {
                dx[i as usize] += d;
            }
        },
    );
}

/// Max pooling of a batch `(batch, c·h·w)`, recorded on `x`'s tape, on the device's own
/// kernels ([`Backend::try_max_pool2d`]); panics if the device fails.
pub fn max_pool2d<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    g: PoolGeom,
) -> Tensor<(usize, usize), f32, D, T> {
    D::try_max_pool2d(x, g).unwrap_or_else(|e| super::failed::<D>("max_pool2d", e))
}

/// [`max_pool2d`] on the host, the CPU's implementation.
pub(super) fn max_on_host<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    g: PoolGeom,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let (y, arg) = forward(&super::host(&x), batch, &g);
    let out = x.device().tensor_from_vec(y, (batch, g.out_len()));
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        tape.add_backward_op(move |grads| D::with_grads(grads, &out_handle, &x, |dy, dx| backward(dy, &arg, &g, dx)));
    }
    out.put_tape(tape)
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
                    let (rows, cols) = (g.rows(oy), g.cols(ox));
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
                    let (rows, cols) = (g.rows(oy), g.cols(ox));
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

/// Average pooling of a batch `(batch, c·h·w)`, recorded on `x`'s tape, on the device's own
/// kernels ([`Backend::try_avg_pool2d`]); panics if the device fails.
pub fn avg_pool2d<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    g: PoolGeom,
) -> Tensor<(usize, usize), f32, D, T> {
    D::try_avg_pool2d(x, g).unwrap_or_else(|e| super::failed::<D>("avg_pool2d", e))
}

/// [`avg_pool2d`] on the host, the CPU's implementation.
pub(super) fn avg_on_host<D: Backend, T: Tape<f32, D>>(
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
