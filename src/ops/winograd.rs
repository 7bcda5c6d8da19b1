//! Winograd's minimal filtering F(2×2, 3×3) for 3×3 stride-1 convolutions (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016), forward and both gradients.
//!
//! A 2×2 block of outputs is computed from the 4×4 block of input under it with 16
//! multiplications per (filter, channel) instead of 36: the input block is transformed to
//! `V = Bᵀ d B`, the kernel to `Ŵ = G w Gᵀ`, they are multiplied element by element and the
//! 16 products brought back by `Y = Aᵀ M A`. Summed over channels, each of the 16 positions
//! `ξ` of the transformed block is one matrix product, `M[ξ] (f×tiles) = Ŵ[ξ] (f×c) ·
//! V[ξ] (c×tiles)`, which runs on the same kernels as the direct convolution.
//!
//! The gradients reuse the transforms, transposed. With `Ũ = A dy Aᵀ` (the output gradient
//! of each block taken back through `Aᵀ·A`):
//! - input: `dV[ξ] = Ŵ[ξ]ᵀ · Ũ[ξ]`, then `dd = B dV Bᵀ` added onto the 4×4 input block (blocks
//!   overlap by two rows and columns);
//! - kernel: `dŴ[ξ] += Ũ[ξ] · V[ξ]ᵀ` over every block of every image (a product whose inner
//!   dimension is the number of blocks, the kernels' best shape), then `dw = Gᵀ dŴ G`.
//!
//! Every sum runs in a fixed order (the transforms are fixed expressions, the products run on
//! the deterministic kernels, images are reduced in batch order), so results are the same bits
//! on any thread count and on the AVX-512 and AVX2 kernels. F(4×4, 3×3) would save more
//! multiplications (36 instead of 144 per 4×4 block) but its transforms have entries up to 8
//! and lose about two more decimal digits: F(2×2, 3×3)'s error stays within a few float32
//! rounding steps of the direct sum (`tests` below bound it against float64).

use std::ops::Range;

use super::conv2d::ConvGeom;
use super::gemm::{Kernel, Mat, Operand};

/// Positions of a transformed 4×4 block.
const XI: usize = 16;

/// Whether `g` is a convolution this algorithm computes: a 3×3 kernel, stride 1, no
/// dilation (any padding).
pub fn fits(g: &ConvGeom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
}

/// Whether `auto` runs `g` with Winograd: it fits, it has at least 64 channels and 64
/// filters, and its output is at least 16 wide. The transforms cost in proportion to
/// channels + filters and the products save in proportion to channels × filters, so narrow
/// layers do not gain; on narrow outputs the short rows of blocks and the padding block of
/// each row (`Blocks`) eat the rest. Measured on an AMD EPYC (Zen 5, AVX-512, 2 threads):
/// the tutorial's 16→32 and 32→64 layers were as fast or slower with it, its 64→128 layer
/// (12 wide) at par or slower, and a network of 64 to 256 channels on 64 to 16 pixels trained
/// 1.2x faster (docs/benchmarks.md, "Winograd").
pub fn pays(g: &ConvGeom) -> bool {
    fits(g) && g.c >= 64 && g.f >= 64 && g.ow >= 16
}

/// Blocks per row of outputs.
fn tiles_wide(g: &ConvGeom) -> usize {
    g.ow.div_ceil(2)
}

/// The output-row bands of one image for [`forward_band`], in order: each starts on an even
/// row, and holds as many blocks as keep the band's transformed input and products (16·(c +
/// f) values per block) within 2^17 values, so that they stay in L2 between being written
/// and read.
pub fn bands(g: &ConvGeom) -> impl Iterator<Item = Range<usize>> {
    const BAND_VALUES: usize = 1 << 17;
    let per_block_row = XI * (g.c + g.f) * tiles_wide(g);
    let rows = 2 * (BAND_VALUES / per_block_row.max(1)).clamp(1, g.oh.div_ceil(2).max(1));
    let oh = g.oh;
    (0..oh).step_by(rows).map(move |r| r..(r + rows).min(oh))
}

/// The kernel `(f, c, 3, 3)` transformed, `Ŵ = G w Gᵀ`, laid out `[ξ][f][c]`.
pub fn kernel(w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (f, c) = (g.f, g.c);
    let mut out = vec![0.0; XI * f * c];
    // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
    let g3 = |a: f32, b: f32, c: f32| [a, (a + b + c) * 0.5, (a - b + c) * 0.5, c];
    for (i, k) in w.chunks_exact(9).enumerate() {
        let rows: [[f32; 4]; 3] = std::array::from_fn(|r| g3(k[3 * r], k[3 * r + 1], k[3 * r + 2]));
        for j in 0..4 {
            let col = g3(rows[0][j], rows[1][j], rows[2][j]);
            for (r, v) in col.into_iter().enumerate() {
                out[(r * 4 + j) * f * c + i] = v;
            }
        }
    }
    out
}

/// The kernel's gradient `(f, c, 3, 3)` from that of its transform (`[ξ][f][c]`):
/// `dw = Gᵀ dŴ G`.
pub fn kernel_grad(dwt: &[f32], g: &ConvGeom) -> Vec<f32> {
    let fc = g.f * g.c;
    // Gᵀ = [[1, ½, ½, 0], [0, ½, -½, 0], [0, ½, ½, 1]].
    let gt = |e: [f32; 4]| [e[0] + (e[1] + e[2]) * 0.5, (e[1] - e[2]) * 0.5, (e[1] + e[2]) * 0.5 + e[3]];
    let mut dw = vec![0.0; fc * 9];
    for (i, out) in dw.chunks_exact_mut(9).enumerate() {
        let rows: [[f32; 3]; 4] = std::array::from_fn(|r| gt(std::array::from_fn(|j| dwt[(r * 4 + j) * fc + i])));
        for j in 0..3 {
            let col = gt([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
            for (r, v) in col.into_iter().enumerate() {
                out[r * 3 + j] = v;
            }
        }
    }
    dw
}

/// Per-worker buffers, reused from band to band and image to image.
#[derive(Default)]
pub struct Scratch {
    /// Transformed input, `[ξ][c][block]`.
    v: Vec<f32>,
    /// The same transposed, `[ξ][block][c]` (the kernel gradient's right operand).
    vt: Vec<f32>,
    /// Products (forward), or the transformed output gradient (backward), `[ξ][f][block]`.
    m: Vec<f32>,
    /// The input gradient's transform, `[ξ][c][block]`.
    dv: Vec<f32>,
    /// Intermediate rows of the transforms.
    work: Vec<f32>,
}

/// The layout of a band's blocks: `rows` rows of blocks, each of `tw + 1` blocks of which the
/// last is padding. With that spare block a row of blocks and the next follow each other in
/// every buffer with the same step, so that each step of a transform is one loop over the
/// whole band, shifted by one block or one row of blocks, instead of a short loop per row
/// (rows of 6 to 30 blocks leave most of a 16-lane vector empty). The padding blocks' products
/// are computed and dropped, and their output gradients are zero.
#[derive(Clone, Copy)]
struct Blocks {
    /// First row of blocks (output row / 2).
    first: usize,
    /// Rows of blocks.
    rows: usize,
    /// Blocks per row, the padding included.
    step: usize,
}

impl Blocks {
    fn of(g: &ConvGeom, band: &Range<usize>) -> Self {
        let first = band.start / 2;
        Blocks { first, rows: band.end.div_ceil(2) - first, step: tiles_wide(g) + 1 }
    }
    /// Blocks in the band, padding included.
    fn len(&self) -> usize {
        self.rows * self.step
    }
}

/// The transforms compiled for an instruction set: `$isa::input_transform` and so on, each
/// the `_body` function of that name compiled with `$feature` enabled. The transforms are
/// loops of additions over contiguous runs, which the compiler vectorises for whatever they
/// are compiled for, and the crate is compiled for plain x86-64 (SSE2). Additions give the
/// same bits at any vector width, so every kernel gives the same results.
macro_rules! compiled_for {
    ($isa:ident $(, $feature:literal)?) => {
        mod $isa {
            use super::*;
            $(#[target_feature(enable = $feature)])?
            pub unsafe fn input_transform(x: &[f32], g: &ConvGeom, b: Blocks, s: &mut Scratch) {
                input_transform_body(x, g, b, s)
            }
            $(#[target_feature(enable = $feature)])?
            pub unsafe fn output_transform(g: &ConvGeom, b: Blocks, rows: usize, s: &mut Scratch, out: &mut [f32]) {
                output_transform_body(g, b, rows, s, out)
            }
            $(#[target_feature(enable = $feature)])?
            pub unsafe fn output_grad_transform(dy: &[f32], g: &ConvGeom, b: Blocks, s: &mut Scratch) {
                output_grad_transform_body(dy, g, b, s)
            }
            $(#[target_feature(enable = $feature)])?
            pub unsafe fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
                transpose_body(src, rows, cols, dst)
            }
            $(#[target_feature(enable = $feature)])?
            pub unsafe fn input_grad_transform(g: &ConvGeom, b: Blocks, s: &mut Scratch, dx: &mut [f32]) {
                input_grad_transform_body(g, b, s, dx)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
compiled_for!(avx512, "avx512f");
#[cfg(target_arch = "x86_64")]
compiled_for!(avx2, "avx2,fma");
compiled_for!(portable);

/// Calls transform `$f` compiled for the instruction set of the kernel in use
/// ([`Kernel::best`]).
macro_rules! vectorized {
    ($f:ident($($arg:expr),*)) => {
        // SAFETY: the kernel in use only runs on CPUs with its instructions.
        unsafe {
            match Kernel::best() {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => avx512::$f($($arg),*),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => avx2::$f($($arg),*),
                _ => portable::$f($($arg),*),
            }
        }
    };
}

/// `out[i] = op(a[i], b[i])`, in a loop the compiler vectorises.
#[inline(always)]
fn map2(out: &mut [f32], a: &[f32], b: &[f32], op: impl Fn(f32, f32) -> f32) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (a, b))| *o = op(*a, *b));
}

/// `out[i] = op(a[i], b[i], c[i])`.
#[inline(always)]
fn map3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], op: impl Fn(f32, f32, f32) -> f32) {
    out.iter_mut().zip(a.iter().zip(b.iter().zip(c))).for_each(|(o, (a, (b, c)))| *o = op(*a, *b, *c));
}

/// `n` equal consecutive runs of `len` values at the start of `s`.
fn runs<const N: usize>(s: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rest = &mut s[..N * len];
    std::array::from_fn(|_| {
        let (run, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        run
    })
}

/// Where the even (`parity` 0) or odd columns of an input row land in a split row of
/// `len` values (value k is column 2k + parity - pad_left): the values `lo..hi` that lie in
/// the image, and the column of value `lo`.
fn split_columns(g: &ConvGeom, parity: usize, len: usize) -> (usize, usize, usize) {
    let column = |k: usize| (2 * k + parity) as isize - g.pad_left as isize;
    let lo = (0..len).find(|&k| column(k) >= 0).unwrap_or(len);
    let hi = (lo..len).take_while(|&k| column(k) < g.w as isize).last().map_or(lo, |k| k + 1);
    (lo, hi, if lo < hi { column(lo) as usize } else { 0 })
}

/// Input row `row` of `plane` split into its even and odd columns from column `-pad_left`
/// on, zero outside the image; `spans` are [`split_columns`] of both parities.
#[inline(always)]
fn deinterleave(plane: &[f32], g: &ConvGeom, row: isize, spans: [(usize, usize, usize); 2], split: [&mut [f32]; 2]) {
    for ((lo, hi, first), out) in spans.into_iter().zip(split) {
        out.fill(0.0);
        if (0..g.h as isize).contains(&row) && lo < hi {
            let line = &plane[row as usize * g.w..][..g.w];
            out[lo..hi].iter_mut().zip(line[first..].iter().step_by(2)).for_each(|(o, i)| *o = *i);
        }
    }
}

/// `out[2k] = even[k]`, `out[2k + 1] = odd[k]`, in blocks of 8 the compiler turns into
/// shuffles.
#[inline(always)]
fn interleave(even: &[f32], odd: &[f32], out: &mut [f32]) {
    let n = even.len().min(odd.len()).min(out.len() / 2);
    let body = n / 8 * 8;
    for (o, (e, d)) in
        out[..2 * body].chunks_exact_mut(16).zip(even[..body].chunks_exact(8).zip(odd[..body].chunks_exact(8)))
    {
        for k in 0..8 {
            o[2 * k] = e[k];
            o[2 * k + 1] = d[k];
        }
    }
    for k in body..n {
        out[2 * k] = even[k];
        out[2 * k + 1] = odd[k];
    }
}

/// `V = Bᵀ d B` for the blocks `b` of one image `x` (`c·h·w`), into `s.v` (`[ξ][c][block]`).
///
/// Per channel: the band's input rows split into even and odd columns, even rows and odd
/// rows apart (block row r reads rows 2r, 2r + 1, 2r + 2, 2r + 3: even row r, odd row r,
/// even row r + 1, odd row r + 1); `Bᵀ` along the rows (d₀ - d₂, d₁ + d₂, d₂ - d₁, d₁ - d₃
/// of each block's four columns: even[k] - even[k+1], odd[k] + even[k+1], ...); then the
/// same down the columns, each one loop over the band.
#[inline(always)]
fn input_transform_body(x: &[f32], g: &ConvGeom, b: Blocks, s: &mut Scratch) {
    let (c, nt, step) = (g.c, b.len(), b.step);
    // Rows of blocks + 1 even and odd input rows, plus one value read past the last.
    let lines = (b.rows + 1) * step + 1;
    s.v.resize(XI * c * nt, 0.0);
    s.work.resize(12 * lines, 0.0);
    let [even_even, even_odd, odd_even, odd_odd, rest @ ..] = runs::<12>(&mut s.work, lines);
    let [h0, h1, h2, h3, h4, h5, h6, h7] = rest;
    let top = 2 * b.first as isize - g.pad_top as isize;
    let spans = [split_columns(g, 0, step), split_columns(g, 1, step)];
    for ch in 0..c {
        let plane = &x[ch * g.h * g.w..][..g.h * g.w];
        for r in 0..=b.rows {
            let at = r * step..(r + 1) * step;
            let row = top + 2 * r as isize;
            deinterleave(plane, g, row, spans, [&mut even_even[at.clone()], &mut even_odd[at.clone()]]);
            deinterleave(plane, g, row + 1, spans, [&mut odd_even[at.clone()], &mut odd_odd[at]]);
        }
        let n = lines - 1;
        // Bᵀ along the rows: h[j] for even input rows, h[4 + j] for odd ones.
        for (e, o, h) in [
            (&*even_even, &*even_odd, [&mut *h0, &mut *h1, &mut *h2, &mut *h3]),
            (&*odd_even, &*odd_odd, [&mut *h4, &mut *h5, &mut *h6, &mut *h7]),
        ] {
            let [t0, t1, t2, t3] = h;
            let (e0, e1, o0, o1) = (&e[..n], &e[1..=n], &o[..n], &o[1..=n]);
            map2(&mut t0[..n], e0, e1, |a, b| a - b);
            map2(&mut t1[..n], o0, e1, |a, b| a + b);
            map2(&mut t2[..n], e1, o0, |a, b| a - b);
            map2(&mut t3[..n], o0, o1, |a, b| a - b);
        }
        // Then down the columns: rows 2r, 2r + 1, 2r + 2, 2r + 3 are even[r], odd[r],
        // even[r + 1], odd[r + 1].
        let hs = [&*h0, &*h1, &*h2, &*h3, &*h4, &*h5, &*h6, &*h7];
        for j in 0..4 {
            let (d0, d1) = (&hs[j][..nt], &hs[4 + j][..nt]);
            let (d2, d3) = (&hs[j][step..step + nt], &hs[4 + j][step..step + nt]);
            let out = |i: usize| ((i * 4 + j) * c + ch) * nt;
            map2(&mut s.v[out(0)..][..nt], d0, d2, |a, b| a - b);
            map2(&mut s.v[out(1)..][..nt], d1, d2, |a, b| a + b);
            map2(&mut s.v[out(2)..][..nt], d2, d1, |a, b| a - b);
            map2(&mut s.v[out(3)..][..nt], d1, d3, |a, b| a - b);
        }
    }
}

/// The convolution of the output rows `band` of one image `x` with the transformed kernel
/// `wt` ([`kernel`]), without bias: `f` rows of `band.len()·ow` values in `out`.
pub fn forward_band(x: &[f32], wt: &[f32], g: &ConvGeom, band: &Range<usize>, s: &mut Scratch, out: &mut [f32]) {
    let (c, f) = (g.c, g.f);
    let b = Blocks::of(g, band);
    let nt = b.len();
    vectorized!(input_transform(x, g, b, s));
    s.m.resize(XI * f * nt, 0.0);
    let kernel = Kernel::best();
    for xi in 0..XI {
        let a = Operand::Mat(Mat { data: &wt[xi * f * c..][..f * c], rs: c, cs: 1 });
        let v = Operand::Mat(Mat { data: &s.v[xi * c * nt..][..c * nt], rs: nt, cs: 1 });
        kernel.matmul(f, nt, c, a, v, &mut s.m[xi * f * nt..][..f * nt], false);
    }
    vectorized!(output_transform(g, b, band.len(), s, out));
}

/// `Y = Aᵀ M A` for each filter: m₀ + m₁ + m₂ and m₁ - m₂ - m₃ down the columns, then along
/// the rows into pairs of output columns, each one loop over the band; then the band's output
/// rows (`rows` of them, `ow` values each) are copied out of the pairs.
#[inline(always)]
fn output_transform_body(g: &ConvGeom, b: Blocks, rows: usize, s: &mut Scratch, out: &mut [f32]) {
    let (f, ow, nt, step) = (g.f, g.ow, b.len(), b.step);
    s.work.resize(12 * nt, 0.0);
    let (cols, rest) = s.work.split_at_mut(8 * nt);
    let (halves, pair) = rest.split_at_mut(2 * nt);
    let (y0, y1) = halves.split_at_mut(nt);
    for (fi, out) in out.chunks_exact_mut(rows * ow).enumerate().take(f) {
        let m = |xi: usize| &s.m[(xi * f + fi) * nt..][..nt];
        for j in 0..4 {
            let (top, bottom) = cols[2 * j * nt..][..2 * nt].split_at_mut(nt);
            map3(top, m(j), m(4 + j), m(8 + j), |a, b, c| a + b + c);
            map3(bottom, m(4 + j), m(8 + j), m(12 + j), |a, b, c| a - b - c);
        }
        for r in 0..2 {
            let c = |j: usize| &cols[(2 * j + r) * nt..][..nt];
            map3(y0, c(0), c(1), c(2), |a, b, c| a + b + c);
            map3(y1, c(1), c(2), c(3), |a, b, c| a - b - c);
            interleave(y0, y1, pair);
            for br in (0..b.rows).filter(|br| 2 * br + r < rows) {
                out[(2 * br + r) * ow..][..ow].copy_from_slice(&pair[br * 2 * step..][..ow]);
            }
        }
    }
}

/// Writes `src` (`rows × cols`, row-major) transposed into `dst`: in 8×8 blocks read as
/// eight runs and written as eight (which the compiler turns into shuffles), the edges one
/// value at a time.
#[inline(always)]
fn transpose_body(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 8;
    let (whole_rows, whole_cols) = (rows / B * B, cols / B * B);
    for r0 in (0..whole_rows).step_by(B) {
        for c0 in (0..whole_cols).step_by(B) {
            let block: [[f32; B]; B] =
                std::array::from_fn(|i| src[(r0 + i) * cols + c0..][..B].try_into().expect("B values"));
            for j in 0..B {
                let out: &mut [f32; B] = (&mut dst[(c0 + j) * rows + r0..][..B]).try_into().expect("B values");
                *out = std::array::from_fn(|i| block[i][j]);
            }
        }
    }
    for r in 0..rows {
        for c in if r < whole_rows { whole_cols } else { 0 }..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// The gradients of one image: adds `Ũ · Vᵀ` into `dwt` (the transformed kernel's gradient,
/// `[ξ][f][c]`) and, when `dx` is given, the input gradient into `dx`. `dy` is the gradient
/// of the convolution's full output (`f·oh·ow`), `wt` the transformed kernel.
pub fn backward_image(
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
    g: &ConvGeom,
    dwt: &mut [f32],
    mut dx: Option<&mut [f32]>,
    s: &mut Scratch,
) {
    let (c, f) = (g.c, g.f);
    let kernel = Kernel::best();
    for band in bands(g) {
        let b = Blocks::of(g, &band);
        let nt = b.len();
        vectorized!(output_grad_transform(dy, g, b, s));
        vectorized!(input_transform(x, g, b, s));
        s.vt.resize(XI * nt * c, 0.0);
        for xi in 0..XI {
            vectorized!(transpose(&s.v[xi * c * nt..][..c * nt], c, nt, &mut s.vt[xi * nt * c..][..nt * c]));
        }
        // The padding blocks' output gradients are zero, so they add nothing here.
        for xi in 0..XI {
            let u = Operand::Mat(Mat { data: &s.m[xi * f * nt..][..f * nt], rs: nt, cs: 1 });
            let vt = Operand::Mat(Mat { data: &s.vt[xi * nt * c..][..nt * c], rs: c, cs: 1 });
            kernel.matmul(f, c, nt, u, vt, &mut dwt[xi * f * c..][..f * c], true);
        }
        let Some(dx) = dx.as_deref_mut() else { continue };
        s.dv.resize(XI * c * nt, 0.0);
        for xi in 0..XI {
            let wt = Operand::Mat(Mat { data: &wt[xi * f * c..][..f * c], rs: 1, cs: c });
            let u = Operand::Mat(Mat { data: &s.m[xi * f * nt..][..f * nt], rs: nt, cs: 1 });
            kernel.matmul(c, nt, f, wt, u, &mut s.dv[xi * c * nt..][..c * nt], false);
        }
        vectorized!(input_grad_transform(g, b, s, dx));
    }
}

/// `Ũ = A dy Aᵀ` for each filter and block of `b`, into `s.m` (`[ξ][f][block]`): the two
/// output rows of each row of blocks split into even and odd columns (zero past the image
/// and in the padding block), then A = [[1, 0], [1, 1], [1, -1], [0, -1]] along the rows
/// (p, q become p, p + q, p - q, -q) and down the columns, each one loop over the band.
#[inline(always)]
fn output_grad_transform_body(dy: &[f32], g: &ConvGeom, b: Blocks, s: &mut Scratch) {
    let (f, ow, oh, nt, step) = (g.f, g.ow, g.oh, b.len(), b.step);
    s.m.resize(XI * f * nt, 0.0);
    s.work.resize(12 * nt, 0.0);
    let [p_top, q_top, p_bottom, q_bottom, rest @ ..] = runs::<12>(&mut s.work, nt);
    let [t0, t1, t2, t3, b0, b1, b2, b3] = rest;
    for fi in 0..f {
        let plane = &dy[fi * oh * ow..][..oh * ow];
        for br in 0..b.rows {
            let at = br * step..(br + 1) * step;
            for (r, p, q) in [(0, &mut *p_top, &mut *q_top), (1, &mut *p_bottom, &mut *q_bottom)] {
                let (p, q) = (&mut p[at.clone()], &mut q[at.clone()]);
                p.fill(0.0);
                q.fill(0.0);
                let row = 2 * (b.first + br) + r;
                if row < oh {
                    for (k, pair) in plane[row * ow..][..ow].chunks(2).enumerate() {
                        p[k] = pair[0];
                        q[k] = pair.get(1).copied().unwrap_or(0.0);
                    }
                }
            }
        }
        for (p, q, [a0, a1, a2, a3]) in [
            (&*p_top, &*q_top, [&mut *t0, &mut *t1, &mut *t2, &mut *t3]),
            (&*p_bottom, &*q_bottom, [&mut *b0, &mut *b1, &mut *b2, &mut *b3]),
        ] {
            a0.copy_from_slice(p);
            map2(a1, p, q, |p, q| p + q);
            map2(a2, p, q, |p, q| p - q);
            a3.iter_mut().zip(q).for_each(|(a, q)| *a = -q);
        }
        let (top, bottom) = ([&*t0, &*t1, &*t2, &*t3], [&*b0, &*b1, &*b2, &*b3]);
        for j in 0..4 {
            let (p, q) = (top[j], bottom[j]);
            let at = |i: usize| ((i * 4 + j) * f + fi) * nt;
            s.m[at(0)..][..nt].copy_from_slice(p);
            map2(&mut s.m[at(1)..][..nt], p, q, |p, q| p + q);
            map2(&mut s.m[at(2)..][..nt], p, q, |p, q| p - q);
            s.m[at(3)..][..nt].iter_mut().zip(q).for_each(|(u, q)| *u = -q);
        }
    }
}

/// `dd = B dV Bᵀ` for each channel and block (`s.dv`, `[ξ][c][block]`), added onto the 4×4
/// input block it came from (skipping the padding), with B = [[1, 0, 0, 0], [0, 1, -1, 1],
/// [-1, 1, 1, 0], [0, 0, 0, -1]] ((e₀, e₁ - e₂ + e₃, -e₀ + e₁ + e₂, -e₃)). Neighbouring
/// blocks overlap by two columns: input column 2k of a row of blocks takes block k's first
/// value and block k - 1's third (the padding block's being zero, one shift over the band
/// does it). They overlap by two rows too: the rows are added into `dx` in a fixed order.
#[inline(always)]
fn input_grad_transform_body(g: &ConvGeom, b: Blocks, s: &mut Scratch, dx: &mut [f32]) {
    let (c, nt, step) = (g.c, b.len(), b.step);
    s.work.resize(24 * nt, 0.0);
    let (terms, rest) = s.work.split_at_mut(16 * nt);
    let (h, rest) = rest.split_at_mut(4 * nt);
    let (columns, line) = rest.split_at_mut(2 * nt);
    let width = 2 * step;
    for ch in 0..c {
        let e = |xi: usize| &s.dv[(xi * c + ch) * nt..][..nt];
        // B down each column j: terms[i][j].
        for j in 0..4 {
            let t = |i: usize| (i * 4 + j) * nt;
            terms[t(0)..][..nt].copy_from_slice(e(j));
            map3(&mut terms[t(1)..][..nt], e(4 + j), e(8 + j), e(12 + j), |a, b, c| a - b + c);
            map3(&mut terms[t(2)..][..nt], e(j), e(4 + j), e(8 + j), |a, b, c| -a + b + c);
            terms[t(3)..][..nt].iter_mut().zip(e(12 + j)).for_each(|(t, e)| *t = -e);
        }
        let plane = &mut dx[ch * g.h * g.w..][..g.h * g.w];
        for i in 0..4 {
            // B along row i: four columns per block, h[k].
            let t = |j: usize| &terms[(i * 4 + j) * nt..][..nt];
            let [h0, h1, h2, h3] = runs::<4>(h, nt);
            h0.copy_from_slice(t(0));
            map3(h1, t(1), t(2), t(3), |a, b, c| a - b + c);
            map3(h2, t(0), t(1), t(2), |a, b, c| -a + b + c);
            h3.iter_mut().zip(t(3)).for_each(|(h, t)| *h = -t);
            // Columns 2k and 2k + 1: h0[k] + h2[k - 1] and h1[k] + h3[k - 1].
            let [even, odd] = runs::<2>(columns, nt);
            even[0] = h0[0];
            odd[0] = h1[0];
            map2(&mut even[1..], &h0[1..], &h2[..nt - 1], |a, b| a + b);
            map2(&mut odd[1..], &h1[1..], &h3[..nt - 1], |a, b| a + b);
            interleave(even, odd, line);
            // Line column k of a row of blocks is input column k - pad_left.
            let (from, to) = (g.pad_left.min(width), (g.w + g.pad_left).min(width));
            for br in 0..b.rows {
                let iy = (2 * (b.first + br) + i) as isize - g.pad_top as isize;
                if from < to && (0..g.h as isize).contains(&iy) {
                    let src = &line[br * width..][from..to];
                    plane[iy as usize * g.w..][..to - from].iter_mut().zip(src).for_each(|(d, v)| *d += v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn geom(c: usize, h: usize, w: usize, f: usize, pad: usize) -> ConvGeom {
        let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
        ConvGeom {
            c,
            h,
            w,
            f,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            oh,
            ow,
            pad_top: pad,
            pad_left: pad,
            winograd: true,
        }
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// Direct convolution, its input gradient and kernel gradient, in float64.
    fn reference(x: &[f32], w: &[f32], dy: &[f32], g: &ConvGeom) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0f64; g.f * g.oh * g.ow];
        let mut dx = vec![0.0f64; g.c * g.h * g.w];
        let mut dw = vec![0.0f64; g.f * g.c * 9];
        for f in 0..g.f {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let o = (f * g.oh + oy) * g.ow + ox;
                    for c in 0..g.c {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let iy = (oy + ki) as isize - g.pad_top as isize;
                                let ix = (ox + kj) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let i = (c * g.h + iy as usize) * g.w + ix as usize;
                                let k = ((f * g.c + c) * 3 + ki) * 3 + kj;
                                y[o] += x[i] as f64 * w[k] as f64;
                                dx[i] += dy[o] as f64 * w[k] as f64;
                                dw[k] += dy[o] as f64 * x[i] as f64;
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    /// `auto` picks by shape alone; `winograd` pins every layer it fits; `direct` none.
    #[test]
    fn the_algorithm_is_chosen_by_shape() {
        use crate::ops::ConvAlgorithm::{Auto, Direct, Winograd};
        let wide = geom(64, 34, 34, 64, 0);
        let narrow_channels = geom(32, 34, 34, 64, 0);
        let narrow_output = geom(64, 14, 14, 128, 0);
        let strided = ConvGeom { sh: 2, sw: 2, oh: 16, ow: 16, ..wide };
        let five = ConvGeom { kh: 5, kw: 5, oh: 30, ow: 30, ..wide };
        assert!(Auto.winograd(&wide) && Winograd.winograd(&wide) && !Direct.winograd(&wide));
        for g in [narrow_channels, narrow_output] {
            assert!(!Auto.winograd(&g) && Winograd.winograd(&g), "{g:?}");
        }
        for g in [strided, five] {
            assert!(!Auto.winograd(&g) && !Winograd.winograd(&g), "{g:?}");
        }
    }

    /// Largest error relative to the largest magnitude of the reference.
    fn error(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs())) / scale
    }

    /// Forward, input gradient and kernel gradient against float64 direct sums, on odd and
    /// even sizes, with and without padding, and on bands shorter than the image: each
    /// within 1e-5 of the reference's largest value (float32's rounding step is 6e-8; the
    /// direct convolution in float32 is within about 1e-6 on these sizes).
    #[test]
    fn matches_float64_direct_convolution() {
        // The last shape runs in four bands of ten rows.
        for (c, h, w, f, pad) in [
            (1, 4, 4, 1, 0),
            (3, 7, 9, 5, 0),
            (16, 13, 11, 8, 1),
            (8, 30, 30, 16, 0),
            (20, 9, 12, 33, 1),
            (32, 40, 38, 48, 1),
        ] {
            let g = geom(c, h, w, f, pad);
            let x = random(g.in_len(), 1);
            let wk = random(f * c * 9, 2);
            let dy = random(g.out_len(), 3);
            let (y64, dx64, dw64) = reference(&x, &wk, &dy, &g);
            let wt = kernel(&wk, &g);
            let mut s = Scratch::default();
            let mut y = vec![f32::NAN; g.out_len()];
            let mut band_out = Vec::new();
            for band in bands(&g) {
                band_out.resize(f * band.len() * g.ow, f32::NAN);
                forward_band(&x, &wt, &g, &band, &mut s, &mut band_out);
                for fi in 0..f {
                    let rows = &band_out[fi * band.len() * g.ow..][..band.len() * g.ow];
                    y[(fi * g.oh + band.start) * g.ow..][..rows.len()].copy_from_slice(rows);
                }
            }
            let mut dwt = vec![0.0; XI * f * c];
            let mut dx = vec![0.0; g.in_len()];
            backward_image(&x, &wt, &dy, &g, &mut dwt, Some(&mut dx), &mut s);
            let dw = kernel_grad(&dwt, &g);
            let shape = (c, h, w, f, pad);
            assert!(error(&y, &y64) < 1e-5, "forward {shape:?}: {}", error(&y, &y64));
            assert!(error(&dx, &dx64) < 1e-5, "input gradient {shape:?}: {}", error(&dx, &dx64));
            assert!(error(&dw, &dw64) < 1e-5, "kernel gradient {shape:?}: {}", error(&dw, &dw64));
        }
    }
}
