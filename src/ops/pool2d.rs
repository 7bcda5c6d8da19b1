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
    if g.is_2x2() {
        // Keras' default pool, in one pass per channel.
        let planes = x.chunks(g.h * g.w).zip(y.chunks_mut(g.oh * g.ow).zip(arg.chunks_mut(g.oh * g.ow)));
        for (ch, (plane, (best, win))) in planes.enumerate() {
            // SAFETY: only initialised values are written through the views.
            let best = unsafe { &mut *(best as *mut [f32] as *mut [MaybeUninit<f32>]) };
            let win = unsafe { &mut *(win as *mut [u32] as *mut [MaybeUninit<u32>]) };
            let rows = Rows2x2 { x: plane, stride: g.w, w: g.w as u32, at: (ch * g.h * g.w) as u32, pre: None };
            rows_2x2::<true>(rows, g.ow, best, win, false);
        }
        return;
    }
    let taps: Vec<_> = (0..g.pw).map(|kj| g.columns(kj)).collect();
    for (r, (best, win)) in y.chunks_mut(g.ow).zip(arg.chunks_mut(g.ow)).enumerate() {
        let (ch, oy) = (r / g.oh, r % g.oh);
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

/// What a folded convolution does to each value before it enters a window: adds the bias,
/// then (with `relu`) clips at 0 as `if v > 0 { v } else { 0 }` (NaN and -0.0 give +0.0, which
/// is what the vector instructions' `max(v, 0)` gives, so every path agrees to the bit).
#[derive(Clone, Copy, Debug)]
pub(super) struct Pre {
    pub bias: f32,
    pub relu: bool,
}

impl Pre {
    #[inline]
    fn apply(pre: Option<Pre>, v: f32) -> f32 {
        match pre {
            None => v,
            Some(Pre { bias, relu: false }) => v + bias,
            Some(Pre { bias, relu: true }) => {
                let v = v + bias;
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
        }
    }
}

/// The input of [`rows_2x2`]: row `i` of the values starts at `x[i·stride]`; the value at
/// `x[i·stride + j]` has the index `at + i·w + j` in the image (its winner's number), and goes
/// through `pre` before it enters a window.
#[derive(Clone, Copy)]
pub(super) struct Rows2x2<'a> {
    pub x: &'a [f32],
    pub stride: usize,
    pub w: u32,
    pub at: u32,
    pub pre: Option<Pre>,
}

/// Rows of 2×2 windows over `input`, `ow` windows per row, as many rows as `best` holds: the
/// maxima, taps in window order, into `best` and, with `ARG`, each winner's index into `win`.
/// With `clip` (a ReLU before the pool), a window whose maximum is 0 or less records
/// `u32::MAX`: the ReLU passes no gradient back through it.
///
/// On the AVX-512 and AVX2 kernels 16 or 8 windows at a time ([`x86`]): compiled for the
/// crate's baseline (SSE2), the compiler left this loop scalar, and it was a tenth of a
/// training step. One call per plane, not per row: per row, the calls cost as much again.
pub(super) fn rows_2x2<const ARG: bool>(
    input: Rows2x2,
    ow: usize,
    best: &mut [MaybeUninit<f32>],
    win: &mut [MaybeUninit<u32>],
    clip: bool,
) {
    let rows = best.len() / ow.max(1);
    assert!(best.len() == rows * ow && (!ARG || win.len() >= best.len()), "pool: output rows");
    assert!(rows == 0 || (2 * rows - 1) * input.stride + 2 * ow <= input.x.len(), "pool: input rows");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the kernel runs on this CPU (`Kernel::best`), and the lengths are checked above.
    let done = unsafe {
        match super::Kernel::best() {
            super::Kernel::Avx512 => x86::avx512::rows_2x2::<ARG>(input, ow, best, win, clip),
            super::Kernel::Avx2 => x86::avx2::rows_2x2::<ARG>(input, ow, best, win, clip),
            super::Kernel::Crate => 0,
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done < ow {
        scalar_rows_2x2::<ARG>(input, ow, done, best, win, clip);
    }
}

/// [`rows_2x2`] one window at a time, for the windows of each row from `done` on.
fn scalar_rows_2x2<const ARG: bool>(
    input: Rows2x2,
    ow: usize,
    done: usize,
    best: &mut [MaybeUninit<f32>],
    win: &mut [MaybeUninit<u32>],
    clip: bool,
) {
    let Rows2x2 { x, stride, w, at, pre } = input;
    for (r, best) in best.chunks_mut(ow).enumerate() {
        let (top, bottom) = (&x[2 * r * stride..][2 * done..2 * ow], &x[(2 * r + 1) * stride..][2 * done..2 * ow]);
        let cells = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        for (ox, (b, (t, u))) in (done..).zip(best[done..].iter_mut().zip(cells)) {
            let i = at + 2 * r as u32 * w + 2 * ox as u32;
            let (mut m, mut k) = (Pre::apply(pre, t[0]), i);
            for (v, j) in [(t[1], i + 1), (u[0], i + w), (u[1], i + w + 1)] {
                let v = Pre::apply(pre, v);
                let take = (v > m) | (v.is_nan() & !m.is_nan());
                m = if take { v } else { m };
                k = if take { j } else { k };
            }
            b.write(m);
            if ARG {
                win[r * ow + ox].write(if clip && m <= 0.0 { u32::MAX } else { k });
            }
        }
    }
}

/// The gradient of [`rows_2x2`] for one plane: each gradient of `dy` (`rows × ow` windows)
/// onto the value that won its window (`win`, numbered from `at`, rows `w` apart), every other
/// value of `dx` (the plane, rows of `w`) zero. Writes every value of `dx`, so nothing needs
/// zeroing first, and gives what adding each gradient onto zeros gives (`0 + d`, so -0.0
/// becomes +0.0): one pass over the plane instead of a zeroing pass and a scatter.
pub(super) fn unpool_2x2(dy: &[f32], win: &[u32], ow: usize, at: u32, w: usize, dx: &mut [f32]) {
    let rows = dy.len() / ow.max(1);
    assert!(dy.len() == rows * ow && win.len() == dy.len() && 2 * ow <= w && 2 * rows * w <= dx.len(), "unpool");
    match super::Kernel::best() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has the instructions; the lengths are checked above.
        super::Kernel::Avx512 => unsafe { x86::avx512::unpool_2x2(dy, win, ow, at, w, dx) },
        _ => scalar_unpool_2x2(dy, win, ow, at, w, dx),
    }
    // The rows below the last row of windows.
    dx[2 * rows * w..].fill(0.0);
}

/// [`unpool_2x2`] one window at a time, for the rows of windows.
fn scalar_unpool_2x2(dy: &[f32], win: &[u32], ow: usize, at: u32, w: usize, dx: &mut [f32]) {
    for (r, (dy, win)) in dy.chunks(ow).zip(win.chunks(ow)).enumerate() {
        let (top, bottom) = dx[2 * r * w..][..2 * w].split_at_mut(w);
        for (ox, (&d, &k)) in dy.iter().zip(win).enumerate() {
            let i = at + (2 * r * w + 2 * ox) as u32;
            let pick = |j: u32| if k == j { 0.0 + d } else { 0.0 };
            (top[2 * ox], top[2 * ox + 1]) = (pick(i), pick(i + 1));
            (bottom[2 * ox], bottom[2 * ox + 1]) = (pick(i + w as u32), pick(i + w as u32 + 1));
        }
        top[2 * ow..].fill(0.0);
        bottom[2 * ow..].fill(0.0);
    }
}

/// [`rows_2x2`] on vectors, window for window the same selects, so the same values and
/// winners: one body ([`rows_2x2!`]) over each instruction set's operations, as the matrix
/// kernel is built. Each returns how many windows of each row (from the first) it did; the
/// caller does the rest.
#[cfg(target_arch = "x86_64")]
mod x86 {
    /// `rows_2x2` for the enclosing module's vector `V` of `LANES` floats (indices `I`), its
    /// operations (`add`, `relu`, `splat`, `pairs`, `step`, `store`, `store_winners`) and
    /// whether it masks a row's last, partial group (`MASKED`; if not, the caller does it).
    macro_rules! rows_2x2 {
        ($feature:literal) => {
            /// Through the bias and ReLU, if any.
            #[target_feature(enable = $feature)]
            #[inline]
            unsafe fn pre(v: V, pre: Option<Pre>) -> V {
                match pre {
                    None => v,
                    Some(Pre { bias, relu: false }) => add(v, splat(bias)),
                    Some(Pre { bias, relu: true }) => relu(add(v, splat(bias))),
                }
            }

            /// See [`super::super::rows_2x2`].
            #[target_feature(enable = $feature)]
            pub unsafe fn rows_2x2<const ARG: bool>(
                input: Rows2x2,
                ow: usize,
                best: &mut [MaybeUninit<f32>],
                win: &mut [MaybeUninit<u32>],
                clip: bool,
            ) -> usize {
                let Rows2x2 { x, stride, w, at, pre: p } = input;
                let done = if MASKED { ow } else { ow / LANES * LANES };
                for r in 0..best.len() / ow.max(1) {
                    let (top, bottom) = (x.as_ptr().add(2 * r * stride), x.as_ptr().add((2 * r + 1) * stride));
                    let first = at.wrapping_add(2 * r as u32 * w);
                    for ox in (0..done).step_by(LANES) {
                        let n = (ow - ox).min(LANES);
                        let (t0, t1) = pairs(top.add(2 * ox), n);
                        let (u0, u1) = pairs(bottom.add(2 * ox), n);
                        // The windows' first taps' indices, then the other taps' offsets.
                        let i = first.wrapping_add(2 * ox as u32);
                        let (mut m, mut k) = (pre(t0, p), index(i, 0));
                        step(&mut m, &mut k, pre(t1, p), index(i, 1));
                        step(&mut m, &mut k, pre(u0, p), index(i, w));
                        step(&mut m, &mut k, pre(u1, p), index(i, w + 1));
                        let out = r * ow + ox;
                        store(best.as_mut_ptr().add(out) as *mut f32, n, m);
                        if ARG {
                            store_winners(win.as_mut_ptr().add(out) as *mut u32, n, k, clip.then_some(m));
                        }
                    }
                }
                done
            }
        };
    }

    pub mod avx512 {
        use super::super::{Pre, Rows2x2};
        use crate::ops::simd::avx512::{mask as lanes, splat};
        use std::arch::x86_64::*;
        use std::mem::MaybeUninit;

        type V = __m512;
        type I = __m512i;
        const LANES: usize = 16;
        const MASKED: bool = true;

        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn add(a: V, b: V) -> V {
            _mm512_add_ps(a, b)
        }
        /// MAXPS gives its second operand on NaN and on equal zeros: `v > 0 ? v : 0`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn relu(v: V) -> V {
            _mm512_max_ps(v, _mm512_setzero_ps())
        }
        /// Even positions 0, 2, .., 30.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn even() -> I {
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
        }
        /// `i + d` plus each lane's even position.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn index(i: u32, d: u32) -> I {
            _mm512_add_epi32(_mm512_set1_epi32(i.wrapping_add(d) as i32), even())
        }
        /// The even and the odd values of the `2·n` (n ≤ 16) from `p`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn pairs(p: *const f32, n: usize) -> (V, V) {
            let a = _mm512_maskz_loadu_ps(lanes((2 * n).min(16)), p);
            let b = _mm512_maskz_loadu_ps(lanes(2 * n.saturating_sub(8)), p.wrapping_add(16));
            let odd = _mm512_add_epi32(even(), _mm512_set1_epi32(1));
            (_mm512_permutex2var_ps(a, even(), b), _mm512_permutex2var_ps(a, odd, b))
        }
        /// Takes `v` (index `j`) over the maximum so far where it is greater, or NaN over a
        /// number.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn step(m: &mut V, k: &mut I, v: V, j: I) {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(*m, *m);
            let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, *m) | nan;
            *m = _mm512_mask_blend_ps(take, *m, v);
            *k = _mm512_mask_blend_epi32(take, *k, j);
        }
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn store(p: *mut f32, n: usize, v: V) {
            _mm512_mask_storeu_ps(p, lanes(n), v)
        }
        /// The winners `k`, `u32::MAX` where the maximum `clip` holds is 0 or less.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn store_winners(p: *mut u32, n: usize, k: I, clip: Option<V>) {
            let k = match clip {
                Some(m) => {
                    let stopped = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(m, _mm512_setzero_ps());
                    _mm512_mask_blend_epi32(stopped, k, _mm512_set1_epi32(-1))
                }
                None => k,
            };
            _mm512_mask_storeu_epi32(p as *mut i32, lanes(n), k)
        }

        rows_2x2!("avx512f");

        /// See [`super::super::unpool_2x2`]; writes the rows of windows (not the rows below).
        #[target_feature(enable = "avx512f")]
        pub unsafe fn unpool_2x2(dy: &[f32], win: &[u32], ow: usize, at: u32, w: usize, dx: &mut [f32]) {
            let even = even();
            let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
            let (right, below) = (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32));
            let zero = _mm512_setzero_ps();
            for r in 0..dy.len() / ow.max(1) {
                let top = dx.as_mut_ptr().add(2 * r * w);
                let bottom = top.add(w);
                for ox in (0..ow).step_by(16) {
                    let n = (ow - ox).min(16);
                    // The gradients and winners stream from memory (written long before).
                    let ahead = r * ow + ox + 256;
                    _mm_prefetch::<_MM_HINT_T0>(dy.as_ptr().wrapping_add(ahead) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(win.as_ptr().wrapping_add(ahead) as *const i8);
                    let d = _mm512_maskz_loadu_ps(lanes(n), dy.as_ptr().add(r * ow + ox));
                    let k = _mm512_maskz_loadu_epi32(lanes(n), win.as_ptr().add(r * ow + ox) as *const i32);
                    let i =
                        _mm512_add_epi32(_mm512_set1_epi32(at.wrapping_add((2 * r * w + 2 * ox) as u32) as i32), even);
                    let pick = |j: __m512i| _mm512_maskz_add_ps(_mm512_cmpeq_epi32_mask(k, j), zero, d);
                    for (row, left) in [(top, i), (bottom, _mm512_add_epi32(i, below))] {
                        let (l, r_) = (pick(left), pick(_mm512_add_epi32(left, right)));
                        let out = row.add(2 * ox);
                        _mm512_mask_storeu_ps(out, lanes((2 * n).min(16)), _mm512_permutex2var_ps(l, first, r_));
                        _mm512_mask_storeu_ps(
                            out.wrapping_add(16),
                            lanes(2 * n.saturating_sub(8)),
                            _mm512_permutex2var_ps(l, second, r_),
                        );
                    }
                }
                for row in [top, bottom] {
                    std::ptr::write_bytes(row.add(2 * ow), 0, w - 2 * ow);
                }
            }
        }
    }

    pub mod avx2 {
        use super::super::{Pre, Rows2x2};
        use crate::ops::simd::avx2::splat;
        use std::arch::x86_64::*;
        use std::mem::MaybeUninit;

        type V = __m256;
        type I = __m256i;
        const LANES: usize = 8;
        /// Masked stores are slow on AMD's Zen cores: whole groups only.
        const MASKED: bool = false;

        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn add(a: V, b: V) -> V {
            _mm256_add_ps(a, b)
        }
        /// MAXPS gives its second operand on NaN and on equal zeros: `v > 0 ? v : 0`.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn relu(v: V) -> V {
            _mm256_max_ps(v, _mm256_setzero_ps())
        }
        /// `i + d` plus each lane's even position (0, 2, .., 14).
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn index(i: u32, d: u32) -> I {
            _mm256_add_epi32(_mm256_set1_epi32(i.wrapping_add(d) as i32), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14))
        }
        /// The even and the odd values of the 16 from `p` (a whole group: `n` is 8).
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn pairs(p: *const f32, _n: usize) -> (V, V) {
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            // Within each half [a0 a2 b0 b2 | a4 a6 b4 b6], then the quarters put in order.
            let order = |v: V| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            (order(_mm256_shuffle_ps::<0x88>(a, b)), order(_mm256_shuffle_ps::<0xDD>(a, b)))
        }
        /// Takes `v` (index `j`) over the maximum so far where it is greater, or NaN over a
        /// number.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn step(m: &mut V, k: &mut I, v: V, j: I) {
            let nan = _mm256_and_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v), _mm256_cmp_ps::<_CMP_ORD_Q>(*m, *m));
            let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, *m), nan);
            *m = _mm256_blendv_ps(*m, v, take);
            *k = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*k), _mm256_castsi256_ps(j), take));
        }
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn store(p: *mut f32, _n: usize, v: V) {
            _mm256_storeu_ps(p, v)
        }
        /// The winners `k`, `u32::MAX` where the maximum `clip` holds is 0 or less.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn store_winners(p: *mut u32, _n: usize, k: I, clip: Option<V>) {
            let k = match clip {
                Some(m) => _mm256_or_si256(k, _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(m, _mm256_setzero_ps()))),
                None => k,
            };
            _mm256_storeu_si256(p as *mut __m256i, k)
        }

        rows_2x2!("avx2,fma");
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every vector path gives the scalar path's maxima and winners to the bit: ties, NaNs,
    /// negative maxima under the ReLU's clip, rows of every length around the vector widths,
    /// a stride wider than the rows, and the standalone pool (no bias).
    #[test]
    fn vector_paths_match_the_scalar_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for ow in [1, 7, 8, 9, 15, 16, 17, 31, 33, 63] {
            let (rows, stride) = (3, 2 * ow + 3);
            let x: Vec<f32> = (0..2 * rows * stride)
                .map(|_| match rng.gen_range(0..10) {
                    0 => f32::NAN,
                    1 => 0.5,
                    2 => -0.0,
                    _ => rng.gen_range(-1.0..1.0),
                })
                .collect();
            for pre in [None, Some(Pre { bias: 0.25, relu: true }), Some(Pre { bias: -0.5, relu: false })] {
                let clip = pre.is_some_and(|p| p.relu);
                let input = Rows2x2 { x: &x, stride, w: stride as u32, at: 5, pre };
                let run = |path: &dyn Fn(&mut [MaybeUninit<f32>], &mut [MaybeUninit<u32>]) -> usize| {
                    let (mut best, mut win) =
                        (vec![MaybeUninit::new(9.0f32); rows * ow], vec![MaybeUninit::new(7u32); rows * ow]);
                    let done = path(&mut best, &mut win);
                    scalar_rows_2x2::<true>(input, ow, done, &mut best, &mut win, clip);
                    // SAFETY: every value was initialised above.
                    let bits: Vec<u32> = best.iter().map(|b| unsafe { b.assume_init() }.to_bits()).collect();
                    // SAFETY: as above.
                    let win: Vec<u32> = win.iter().map(|w| unsafe { w.assume_init() }).collect();
                    (bits, win)
                };
                let scalar = run(&|_, _| 0);
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the instructions; the lengths fit.
                    let avx512 = run(&|b, w| unsafe { x86::avx512::rows_2x2::<true>(input, ow, b, w, clip) });
                    assert_eq!(avx512, scalar, "AVX-512, {ow} windows, {pre:?}");
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    let avx2 = run(&|b, w| unsafe { x86::avx2::rows_2x2::<true>(input, ow, b, w, clip) });
                    assert_eq!(avx2, scalar, "AVX2, {ow} windows, {pre:?}");
                }
            }
        }
    }

    /// The pooled gradient's one-pass routing gives, on every path, what adding each gradient
    /// onto a zeroed plane at its winner gives (including a window the ReLU stopped, and rows
    /// and columns past the last window).
    #[test]
    fn unpool_matches_a_scatter_onto_zeros() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (oh, ow) in [(5, 7), (4, 16), (3, 33), (6, 63)] {
            let (h, w, at) = (2 * oh + 1, 2 * ow + 1, 3 * 1000);
            let dy: Vec<f32> = (0..oh * ow).map(|i| if i % 9 == 0 { -0.0 } else { rng.gen_range(-1.0..1.0) }).collect();
            let win: Vec<u32> = (0..oh * ow)
                .map(|i| match rng.gen_range(0..5) {
                    4 => u32::MAX,
                    tap => (at + 2 * (i / ow * w + i % ow) + (tap / 2) * w + tap % 2) as u32,
                })
                .collect();
            let mut expected = vec![0.0f32; h * w];
            for (d, &k) in dy.iter().zip(&win) {
                if k != u32::MAX {
                    expected[k as usize - at] += d;
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // Each path writes the rows of windows; the row below them is left to the caller.
            let run = |path: &dyn Fn(&mut [f32])| {
                let mut got = vec![f32::NAN; h * w];
                path(&mut got);
                got[2 * oh * w..].fill(0.0);
                bits(&got)
            };
            let scalar = run(&|dx| scalar_unpool_2x2(&dy, &win, ow, at as u32, w, dx));
            assert_eq!(scalar, bits(&expected), "{oh}×{ow} windows, one at a time");
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the instructions; the lengths fit.
                let avx512 = run(&|dx| unsafe { x86::avx512::unpool_2x2(&dy, &win, ow, at as u32, w, dx) });
                assert_eq!(avx512, bits(&expected), "{oh}×{ow} windows, AVX-512");
            }
        }
    }
}
