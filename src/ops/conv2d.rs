//! 2-D convolution as im2col + matrix multiply, NCHW, with a tape-registered backward.
//!
//! Per image, with K = channels·kh·kw and P = oh·ow, one band of output rows at a time:
//! forward `y[F×P] = W[F×K] · col[K×P] + b`, then the [`Epilogue`]; backward
//! `dWᵀ += col · dyᵀ`, `db += Σ_p dy`, `dcol = Wᵀ · dy` scattered back by col2im. `col` is
//! rebuilt in the backward pass rather than kept, which trades a cheap copy for a lot of memory.
//!
//! A 3×3 stride-1 convolution can instead run Winograd's algorithm ([`super::winograd`],
//! chosen by [`ConvAlgorithm`]), which produces the same bands and takes the same epilogue.

use dfdx::prelude::*;
use rayon::prelude::*;

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::gemm::{matmul, Gathered, Kernel, Mat, Operand};
use super::pool2d::{self, PoolGeom};
use super::winograd;
use super::Backend;

/// Sizes of one convolution (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Filters (output channels).
    pub f: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Vertical dilation: the kernel reads every `dh`-th row.
    pub dh: usize,
    /// Horizontal dilation: the kernel reads every `dw`-th column.
    pub dw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Zero padding before the first row.
    pub pad_top: usize,
    /// Zero padding before the first column.
    pub pad_left: usize,
    /// Computed with Winograd's F(2×2, 3×3) on the CPU ([`super::winograd`]) instead of as a
    /// matrix product; only for shapes it [fits](super::winograd::fits).
    pub winograd: bool,
}

impl ConvGeom {
    /// Values per input image.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Values per output image.
    pub fn out_len(&self) -> usize {
        self.f * self.oh * self.ow
    }
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// For kernel column kj: the output columns whose input column lies inside the image, as
    /// `lo..hi`, and the input column of output column 0 (which may be negative).
    #[inline]
    fn columns(&self, kj: usize) -> (usize, usize, isize) {
        super::tap_span(kj * self.dw, self.pad_left, self.sw, self.w, self.ow)
    }

    /// Output rows per band: images are processed a band of output rows at a time, so that
    /// the band's columns (`k` values per output position) stay in the L2 cache between
    /// being written and being multiplied. 2^17 values (512 KiB of a 2 MiB L2) measured best
    /// of 2^13..2^21 on the tutorial CNN with the forward pass reading in place (`runner
    /// bench`), by 2-3% over 2^15; whole images were 8% slower to train.
    fn tile_rows(&self) -> usize {
        const TILE_VALUES: usize = 1 << 17;
        (TILE_VALUES / (self.k() * self.ow).max(1)).clamp(1, self.oh.max(1))
    }

    /// The output-row bands of one image, in order; each starts at a multiple of `align` rows
    /// (so that a pooling's windows do not straddle two bands).
    fn tiles(&self, align: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let t = (self.tile_rows() / align).max(1) * align;
        (0..self.oh).step_by(t).map(move |r| r..(r + t).min(self.oh))
    }

    /// Whether the products that read the input (forward, weight gradient) can read it in
    /// place, without an im2col matrix ([`Self::tap_offsets`]): a direct convolution (not
    /// [Winograd's](Self::winograd), which has no such products), stride 1, every tap of every
    /// output inside the image (no padding), and a CPU with a kernel for gathered rows.
    fn reads_in_place(&self) -> bool {
        !self.winograd
            && (self.sh, self.sw, self.pad_top, self.pad_left) == (1, 1, 0, 0)
            && self.oh + (self.kh - 1) * self.dh <= self.h
            && self.ow + (self.kw - 1) * self.dw <= self.w
            && super::Kernel::best().gathers()
    }

    /// For each row `(ch, ki, kj)` of the im2col matrix, where the input under that tap of
    /// output (0, 0) lies. With stride 1 and no padding, the tap's values for output rows
    /// `r..` are the input's values from `offset + r·w` on, contiguous if the product computes
    /// `w` columns per output row instead of `ow` (the extra `w - ow` are dropped): this costs
    /// `(w - ow) / ow` more arithmetic and saves writing and reading the matrix.
    fn tap_offsets(&self) -> Vec<usize> {
        let (c, kh, kw) = (self.c, self.kh, self.kw);
        let tap = |ch: usize, ki: usize, kj: usize| ch * self.h * self.w + ki * self.dh * self.w + kj * self.dw;
        (0..c).flat_map(|ch| (0..kh).flat_map(move |ki| (0..kw).map(move |kj| tap(ch, ki, kj)))).collect()
    }

    /// How the products of the output rows `band` lay out their positions: `(ts, tn)`, `ts`
    /// per output row (the first `ow` being outputs) and `tn` in all. In place, `ts` is the
    /// input's width `w` and the last row stops at `ow`, the end of the input.
    fn band_columns(&self, band: &std::ops::Range<usize>, in_place: bool) -> (usize, usize) {
        match in_place {
            true => (self.w, band.len() * self.w - (self.w - self.ow)),
            false => (self.ow, band.len() * self.ow),
        }
    }

    /// The im2col matrix of the output rows `band` of image `x` (`k` rows of `tn` values, see
    /// [`Self::band_columns`]), as a product reads it: in place, rows of `x` gathered from the
    /// `taps` of [`Self::tap_offsets`] (their starts written to `rows`); otherwise built in
    /// `col`.
    fn band_matrix<'a>(
        &self,
        x: &'a [f32],
        band: &std::ops::Range<usize>,
        taps: Option<&[usize]>,
        rows: &'a mut Vec<usize>,
        col: &'a mut Vec<f32>,
    ) -> Operand<'a> {
        let (_, tn) = self.band_columns(band, taps.is_some());
        match taps {
            Some(taps) => {
                rows.clear();
                rows.extend(taps.iter().map(|t| t + band.start * self.w));
                Operand::Gathered(Gathered { data: x, rows })
            }
            None => {
                col.resize(self.k() * tn, 0.0);
                self.im2col(x, col, band.clone());
                Operand::Mat(Mat { data: col, rs: tn, cs: 1 })
            }
        }
    }

    /// Writes `dy` (one image's output gradient, `f × oh·ow`) for the output rows `band` into
    /// `dy_t` transposed, a row of `f` values per position, `ts ≥ ow` rows per output row
    /// (rows past `ow` are left as they are). On AVX-512 with filters in sixteens, 16 × 16
    /// blocks transposed in registers; otherwise blocks of 8 filters × 8 positions, read as
    /// eight contiguous runs and written as eight, which the compiler turns into shuffles.
    #[inline]
    fn transpose_band(&self, dy: &[f32], band: std::ops::Range<usize>, ts: usize, dy_t: &mut [f32]) {
        const B: usize = 8;
        let (f, ow, p) = (self.f, self.ow, self.p());
        #[cfg(target_arch = "x86_64")]
        if f % 16 == 0 && Kernel::best() == Kernel::Avx512 {
            assert!(dy.len() >= f * p && dy_t.len() >= ((band.len() - 1) * ts + ow) * f, "transpose: sizes");
            for (r, oy) in band.enumerate() {
                for f0 in (0..f).step_by(16) {
                    let (src, dst) = (dy[f0 * p + oy * ow..].as_ptr(), dy_t[r * ts * f + f0..].as_mut_ptr());
                    // SAFETY: the CPU has AVX-512; the 16 rows of `ow` values from `src` lie in
                    // `dy` and the `ow` rows of 16 from `dst` in `dy_t` (checked above).
                    unsafe { super::simd::avx512::transpose16(src, p, ow, dst, f) };
                }
            }
            return;
        }
        for (r, oy) in band.enumerate() {
            let out = &mut dy_t[r * ts * f..][..ow * f];
            for f0 in (0..f).step_by(B) {
                let nf = (f - f0).min(B);
                for x0 in (0..ow).step_by(B) {
                    let nx = (ow - x0).min(B);
                    if (nf, nx) == (B, B) {
                        let mut block = [[0.0f32; B]; B];
                        for (i, row) in block.iter_mut().enumerate() {
                            row.copy_from_slice(&dy[(f0 + i) * p + oy * ow + x0..][..B]);
                        }
                        for x in 0..B {
                            let dst: &mut [f32; B] = (&mut out[(x0 + x) * f + f0..][..B]).try_into().expect("B values");
                            *dst = std::array::from_fn(|i| block[i][x]);
                        }
                    } else {
                        for i in 0..nf {
                            for x in 0..nx {
                                out[(x0 + x) * f + f0 + i] = dy[(f0 + i) * p + oy * ow + x0 + x];
                            }
                        }
                    }
                }
            }
        }
    }

    /// For the output rows `band`: row `(ch, ki, kj)` of `col` holds, for every output position
    /// in the band, the input value under that kernel tap (zero where it falls in the
    /// padding). Every element is written.
    #[inline]
    fn im2col(&self, x: &[f32], col: &mut [f32], band: std::ops::Range<usize>) {
        let p = band.len() * self.ow;
        let mut rows = col.chunks_mut(p);
        for ch in 0..self.c {
            let plane = &x[ch * self.h * self.w..(ch + 1) * self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = rows.next().expect("c·kh·kw rows");
                    let (lo, hi, start) = self.columns(kj);
                    for (oy, out) in band.clone().zip(row.chunks_mut(self.ow)) {
                        let iy = (oy * self.sh + ki * self.dh) as isize - self.pad_top as isize;
                        if iy < 0 || iy >= self.h as isize || lo >= hi {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        let first = (lo as isize * self.sw as isize + start) as usize;
                        if self.sw == 1 {
                            out[lo..hi].copy_from_slice(&line[first..first + (hi - lo)]);
                        } else {
                            for (o, i) in out[lo..hi].iter_mut().zip(line[first..].iter().step_by(self.sw)) {
                                *o = *i;
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`Self::col2im`] where the input is read in place ([`Self::reads_in_place`]), for a
    /// `col` laid out as that product's: `tn` columns per row, `w` per output row (see
    /// [`Self::band_columns`]). Each row of `col` is then one contiguous run of the input
    /// plane, added in one go, where `col2im` adds a run per output row: the runs were as
    /// short as a row (12 to 61 values) and cost more in loop overhead than in additions.
    /// The `w - ow` columns past each output row hold exact zeros (their `dy` is zero), which
    /// leave what they land on unchanged: a gradient sum starts at +0 and so is never -0.
    /// Each input value gets its taps in the same order as from `col2im`, so the same bits.
    #[inline]
    fn col2im_in_place(&self, col: &[f32], dx: &mut [f32], band: std::ops::Range<usize>, tn: usize) {
        let mut rows = col.chunks(tn);
        for plane in dx.chunks_mut(self.h * self.w).take(self.c) {
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = rows.next().expect("c·kh·kw rows");
                    let start = (band.start + ki * self.dh) * self.w + kj * self.dw;
                    plane[start..start + tn].iter_mut().zip(row).for_each(|(d, v)| *d += v);
                }
            }
        }
    }

    /// Adds each element of `col` back onto the input position it was read from (the
    /// transpose of `im2col`).
    #[inline]
    fn col2im(&self, col: &[f32], dx: &mut [f32], band: std::ops::Range<usize>) {
        let p = band.len() * self.ow;
        let mut rows = col.chunks(p);
        for ch in 0..self.c {
            let plane = &mut dx[ch * self.h * self.w..(ch + 1) * self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = rows.next().expect("c·kh·kw rows");
                    let (lo, hi, start) = self.columns(kj);
                    if lo >= hi {
                        continue;
                    }
                    for (oy, out) in band.clone().zip(row.chunks(self.ow)) {
                        let iy = (oy * self.sh + ki * self.dh) as isize - self.pad_top as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let line = &mut plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        let first = (lo as isize * self.sw as isize + start) as usize;
                        if self.sw == 1 {
                            line[first..first + (hi - lo)].iter_mut().zip(&out[lo..hi]).for_each(|(i, o)| *i += *o);
                        } else {
                            for (i, o) in line[first..].iter_mut().step_by(self.sw).zip(&out[lo..hi]) {
                                *i += *o;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `train.conv_algorithm`: how the CPU computes the convolutions [Winograd's
/// algorithm](super::winograd) fits (3×3 kernels, stride 1, no dilation). Others, and every
/// convolution on a GPU (cuDNN chooses there), are direct.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConvAlgorithm {
    /// Winograd where it was measured faster ([`winograd::pays`]): at least 64 channels and
    /// 64 filters, outputs at least 16 wide.
    #[default]
    Auto,
    /// Always the direct product (implicit GEMM or im2col).
    Direct,
    /// Winograd on every convolution it fits.
    Winograd,
}

impl ConvAlgorithm {
    /// Whether convolution `g` runs with Winograd's algorithm under this choice; the same
    /// answer for the same shape on every CPU.
    pub fn winograd(self, g: &ConvGeom) -> bool {
        match self {
            ConvAlgorithm::Auto => winograd::pays(g),
            ConvAlgorithm::Direct => false,
            ConvAlgorithm::Winograd => winograd::fits(g),
        }
    }
}

/// What the convolution's own pass does after adding the bias: a ReLU, then a max pooling.
/// Folding them in saves passes over the largest tensors of a network (and, with the pool,
/// ever storing the full-size output): each image's output is still in cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    /// Apply max(0, x).
    pub relu: bool,
    /// Then max-pool with this window (its input being the convolution's output).
    pub max_pool: Option<PoolGeom>,
}

impl Epilogue {
    /// Values per output image, after the pooling if there is one.
    pub fn out_len(&self, g: &ConvGeom) -> usize {
        self.max_pool.map_or(g.out_len(), |pg| pg.out_len())
    }
}

/// What the backward pass keeps of the epilogue: which outputs the ReLU let through (a byte
/// each), or the index in the convolution's output of each pooling window's winner
/// (`u32::MAX` where the ReLU stopped the gradient).
pub enum Kept {
    /// Nothing to undo.
    Nothing,
    /// Which outputs the ReLU let through.
    Relu(Vec<u8>),
    /// The winners of the max pooling.
    Pool(Vec<u32>),
}

/// Forward pass on host memory: `x` is `(batch, c·h·w)`, `w` is `(f, c, kh, kw)`, the result
/// `(batch, epilogue.out_len)`. With `keep == false` (no backward pass to come) neither the
/// ReLU mask nor the pooling's winners are recorded.
///
/// Each band's product gets the bias and activation on its way out of the tile, while it is
/// in cache. Without a pool it is written straight into the (unzeroed) result. A 2×2/stride-2
/// pool (Keras' default) is applied to the band right there, in bands of an even number of
/// rows; any other pool runs over the image's whole output, kept per worker.
///
/// The work is split into tasks of whole bands of output rows, not only of whole images:
/// bands write disjoint rows of the output, so a batch smaller than the thread count (one
/// image to classify, or 32 images on 64 cores) still keeps every core busy, and a thread
/// count that does not divide the batch leaves less idle at the end. A pool over the whole
/// image keeps one task per image. Each band is computed the same way whichever task or
/// thread takes it, so the result does not depend on the thread count.
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    batch: usize,
    g: &ConvGeom,
    epilogue: Epilogue,
    keep: bool,
) -> (Vec<f32>, Kept) {
    let (p, out_len) = (g.p(), epilogue.out_len(g));
    let n = batch * out_len;
    let mut kept = match epilogue {
        // The 2×2 pool writes every winner (so the vector is filled in place, not zeroed
        // first: that was a pass over the largest buffer of the step, on one thread).
        Epilogue { max_pool: Some(pg), .. } if keep && pg.is_2x2() => Kept::Pool(Vec::with_capacity(n)),
        Epilogue { max_pool: Some(_), .. } if keep => Kept::Pool(vec![0; n]),
        Epilogue { relu: true, max_pool: None } if keep => Kept::Relu(vec![0; n]),
        _ => Kept::Nothing,
    };
    let band_pool = epilogue.max_pool.filter(PoolGeom::is_2x2);
    let image_pool = epilogue.max_pool.filter(|pg| !pg.is_2x2());
    let align = if band_pool.is_some() { 2 } else { 1 };
    let bands: Vec<_> = match g.winograd {
        true => winograd::bands(g).collect(),
        false => g.tiles(align).collect(),
    };
    let product = BandProduct {
        g,
        w,
        wt: g.winograd.then(|| winograd::kernel(w, g)),
        taps: g.reads_in_place().then(|| g.tap_offsets()),
        bias: b,
        epilogue,
    };
    let mut y = Vec::with_capacity(n);
    let images = y.spare_capacity_mut()[..n].chunks_mut(out_len).zip(x.chunks(g.in_len()));
    if let Some(pg) = image_pool {
        // A pool over the whole image: one task per image, its full-size output kept per
        // worker.
        let per_image: Vec<Option<&mut [u32]>> = match &mut kept {
            Kept::Pool(arg) => arg.chunks_mut(out_len).map(Some).collect(),
            _ => (0..batch).map(|_| None).collect(),
        };
        let tasks: Vec<_> = images.zip(per_image).collect();
        let cuts: Vec<usize> = bands.iter().map(|band| band.end * g.ow).collect();
        tasks.into_par_iter().for_each_init(
            || (Scratch::default(), Vec::new(), Vec::new()),
            |(scratch, full, winners), ((y, x), arg)| {
                full.resize(g.out_len(), MaybeUninit::new(0.0));
                for (band, mut rows) in bands.iter().zip(split_planes(full, p, &cuts)) {
                    product.band(x, band, scratch, &mut rows, &mut KeptBand::Nothing);
                }
                // SAFETY: the bands cover every output row, so every value was written above.
                let conv = unsafe { &*(&full[..] as *const [MaybeUninit<f32>] as *const [f32]) };
                y.fill(MaybeUninit::new(0.0));
                // SAFETY: initialised just above.
                let y = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
                let arg = arg.unwrap_or_else(|| {
                    winners.resize(pg.out_len(), 0);
                    &mut winners[..]
                });
                pool2d::image(conv, &pg, y, arg);
                if epilogue.relu {
                    // A window whose maximum was clipped to 0 passes no gradient back.
                    arg.iter_mut().zip(y.iter()).filter(|(_, v)| **v <= 0.0).for_each(|(a, _)| *a = u32::MAX);
                }
            },
        );
    } else {
        // Where each band's rows end in a plane of the output (pooled, with a 2×2 pool).
        let (plane, cuts): (usize, Vec<usize>) = match band_pool {
            Some(pg) => (pg.oh * pg.ow, bands.iter().map(|band| (band.end / 2).min(pg.oh) * pg.ow).collect()),
            None => (p, bands.iter().map(|band| band.end * g.ow).collect()),
        };
        let mut kept_images: Vec<Vec<KeptBand>> = match &mut kept {
            Kept::Nothing => (0..batch).map(|_| bands.iter().map(|_| KeptBand::Nothing).collect()).collect(),
            Kept::Relu(mask) => mask
                .chunks_mut(out_len)
                .map(|m| split_planes(m, plane, &cuts).into_iter().map(KeptBand::Relu).collect())
                .collect(),
            Kept::Pool(arg) => arg.spare_capacity_mut()[..n]
                .chunks_mut(out_len)
                .map(|a| split_planes(a, plane, &cuts).into_iter().map(KeptBand::Pool).collect())
                .collect(),
        };
        // Consecutive bands of an image go to one task while there are enough images to keep
        // every thread busy (about four tasks per thread): an image's input then stays in one
        // core's cache.
        let per_image = (4 * rayon::current_num_threads()).div_ceil(batch).clamp(1, bands.len().max(1));
        let group = bands.len().div_ceil(per_image).max(1);
        let mut tasks = Vec::with_capacity(batch * per_image);
        for ((y, x), kept) in images.zip(kept_images.iter_mut()) {
            let mut parts = bands.iter().zip(split_planes(y, plane, &cuts)).zip(kept.drain(..)).peekable();
            while parts.peek().is_some() {
                tasks.push((x, parts.by_ref().take(group).collect::<Vec<_>>()));
            }
        }
        tasks.into_par_iter().for_each_init(Scratch::default, |scratch, (x, bands)| {
            Kernel::best().run(|| {
                for ((band, mut rows), mut kept) in bands {
                    product.band(x, band, scratch, &mut rows, &mut kept);
                    if let KeptBand::Relu(mask) = &mut kept {
                        for (mask, rows) in mask.iter_mut().zip(&rows) {
                            // SAFETY: `band` wrote every value of its rows just above.
                            let rows = unsafe { &*(&rows[..] as *const [MaybeUninit<f32>] as *const [f32]) };
                            mask.iter_mut().zip(rows).for_each(|(m, v)| *m = u8::from(*v > 0.0));
                        }
                    }
                }
            })
        });
    }
    // SAFETY: the chunks cover all n elements, and each was written above (a pooling writes
    // every output of every window row, and with a 2×2 pool every winner).
    unsafe { y.set_len(n) };
    if let Kept::Pool(arg) = &mut kept {
        // SAFETY: as above (a pool over the whole image started from zeros, with length n).
        unsafe { arg.set_len(n) };
    }
    (y, kept)
}

/// Splits each `plane`-long plane of `image` at the offsets `cuts` (ascending, within a plane,
/// the last one at the end of the rows that are split): part `b` of every plane goes to band
/// `b`. This is how one image's output, laid out plane by plane, is handed to the tasks of its
/// bands, each of which writes the same rows of every plane.
fn split_planes<'a, T>(image: &'a mut [T], plane: usize, cuts: &[usize]) -> Vec<Vec<&'a mut [T]>> {
    let mut bands: Vec<Vec<&mut [T]>> = cuts.iter().map(|_| Vec::new()).collect();
    for mut rest in image.chunks_mut(plane) {
        let mut at = 0;
        for (band, &cut) in bands.iter_mut().zip(cuts) {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(cut - at);
            band.push(part);
            (rest, at) = (tail, cut);
        }
    }
    bands
}

/// A band's share of [`Kept`]: for each filter, the ReLU mask of its rows, or the winners of
/// its pooled rows.
enum KeptBand<'a> {
    Nothing,
    Relu(Vec<&'a mut [u8]>),
    Pool(Vec<&'a mut [MaybeUninit<u32>]>),
}

/// Per worker, in the forward and backward passes: one band of columns (or of where they
/// start in the input), the forward pass's product of it, and Winograd's transforms.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    rows: Vec<usize>,
    tile: Vec<f32>,
    transforms: winograd::Scratch,
}

/// What every band of a forward pass shares: the layer, its kernel (transformed for
/// Winograd), where the taps start when the input is read in place, the bias and epilogue.
struct BandProduct<'a> {
    g: &'a ConvGeom,
    w: &'a [f32],
    wt: Option<Vec<f32>>,
    taps: Option<Vec<usize>>,
    bias: &'a [f32],
    epilogue: Epilogue,
}

impl BandProduct<'_> {
    /// The output rows `band` of image `x`, through the epilogue, into `out`: one slice per
    /// filter holding those rows (of the pooled output with a 2×2 pool), and their share of
    /// what is kept.
    #[inline]
    fn band(
        &self,
        x: &[f32],
        band: &std::ops::Range<usize>,
        s: &mut Scratch,
        out: &mut [&mut [MaybeUninit<f32>]],
        kept: &mut KeptBand,
    ) {
        let (g, epilogue) = (self.g, self.epilogue);
        // The band's product, `tn` values per filter: `ts` per output row (the last row may
        // be shorter), of which the first `ow` are outputs.
        let (ts, tn) = g.band_columns(band, self.taps.is_some());
        s.tile.resize(g.f * tn, 0.0);
        if let Some(wt) = &self.wt {
            winograd::forward_band(x, wt, g, band, &mut s.transforms, &mut s.tile);
        } else {
            let weights = Operand::Mat(Mat { data: self.w, rs: g.k(), cs: 1 });
            let cols = g.band_matrix(x, band, self.taps.as_deref(), &mut s.rows, &mut s.col);
            Kernel::best().matmul(g.f, tn, g.k(), weights, cols, &mut s.tile, false);
        }
        let Some(pg) = epilogue.max_pool.filter(PoolGeom::is_2x2) else {
            for ((out, row), &bias) in out.iter_mut().zip(s.tile.chunks(tn)).zip(self.bias) {
                for (out, row) in out.chunks_mut(g.ow).zip(row.chunks(ts)) {
                    let row = &row[..g.ow];
                    match epilogue.relu {
                        true => out.iter_mut().zip(row).for_each(|(o, v)| _ = o.write((v + bias).max(0.0))),
                        false => out.iter_mut().zip(row).for_each(|(o, v)| _ = o.write(v + bias)),
                    }
                }
            }
            return;
        };
        for (f, ((row, &bias), out)) in s.tile.chunks(tn).zip(self.bias).zip(out.iter_mut()).enumerate() {
            // The pairs of rows in the band, up to the pooling's last row, through the bias
            // and ReLU as the pool reads them.
            let (first, last) = (band.start / 2, (band.end / 2).min(pg.oh));
            let input = pool2d::Rows2x2 {
                x: row,
                stride: ts,
                w: g.ow as u32,
                at: (f * g.p() + 2 * first * g.ow) as u32,
                pre: Some(pool2d::Pre { bias, relu: epilogue.relu }),
            };
            let out = &mut out[..(last - first) * pg.ow];
            match kept {
                KeptBand::Pool(arg) => pool2d::rows_2x2::<true>(input, pg.ow, out, arg[f], epilogue.relu),
                _ => pool2d::rows_2x2::<false>(input, pg.ow, out, &mut [], false),
            }
        }
    }
}

/// Sums `v` with eight interleaved partial sums: a fixed order (so the same bits on any
/// thread count) that the compiler can vectorise, unlike a single running sum.
#[inline]
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, x)| *a += x);
    }
    acc.iter().sum::<f32>() + tail
}

/// Gradients on host memory: returns `(dw, db)` and, when `dx` is given, adds the input
/// gradient into it. `dy` is the gradient of the epilogue's output; it is first taken back
/// through the epilogue (`kept`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    kept: &Kept,
    batch: usize,
    g: &ConvGeom,
    epilogue: Epilogue,
    dx: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (k, p, out_len) = (g.k(), g.p(), epilogue.out_len(g));
    let wt = g.winograd.then(|| winograd::kernel(w, g));
    let in_place = g.reads_in_place();
    let taps = in_place.then(|| g.tap_offsets());
    let dx: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx.chunks_mut(g.in_len()).map(Some).collect(),
        None => (0..batch).map(|_| None).collect(),
    };
    // Per-image partial weight and bias gradients, summed afterwards in batch order
    // (deterministic). Each worker reuses one column buffer and one buffer for dy.
    let per_image: Vec<(Vec<f32>, Vec<f32>)> = dx
        .into_par_iter()
        .enumerate()
        .map_init(
            || (Scratch::default(), Vec::new(), Vec::new()),
            |(s, through, dy_t), (i, mut dx)| {
                Kernel::best().run(|| {
                    let x = &x[i * g.in_len()..(i + 1) * g.in_len()];
                    let image = i * out_len..(i + 1) * out_len;
                    let dy = match kept {
                        Kept::Nothing => &dy[image],
                        Kept::Relu(mask) => {
                            through.clear();
                            through.extend(dy[image.clone()].iter().zip(&mask[image]).map(|(d, &m)| {
                                if m == 1 {
                                    *d
                                } else {
                                    0.0
                                }
                            }));
                            &through[..]
                        }
                        Kept::Pool(arg) if epilogue.max_pool.is_some_and(|pg| pg.is_2x2()) => {
                            let pg = epilogue.max_pool.expect("a 2×2 pool");
                            through.resize(g.out_len(), 0.0);
                            let planes = through.chunks_mut(p).zip(dy[image.clone()].chunks(pg.oh * pg.ow));
                            for (f, ((plane, dy), win)) in planes.zip(arg[image].chunks(pg.oh * pg.ow)).enumerate() {
                                pool2d::unpool_2x2(dy, win, pg.ow, (f * p) as u32, g.ow, plane);
                            }
                            &through[..]
                        }
                        Kept::Pool(arg) => {
                            through.clear();
                            through.resize(g.out_len(), 0.0);
                            for (d, &a) in dy[image.clone()].iter().zip(&arg[image]) {
                                if a != u32::MAX {
                                    through[a as usize] += d;
                                }
                            }
                            &through[..]
                        }
                    };
                    let db = dy.chunks(p).map(sum).collect();
                    if let Some(wt) = &wt {
                        // The transformed kernel's gradient, [ξ][f][c].
                        let mut dwt = vec![0.0; wt.len()];
                        winograd::backward_image(x, wt, dy, g, &mut dwt, dx, &mut s.transforms);
                        return (dwt, db);
                    }
                    // The weight gradient is made transposed, dWᵀ (k × f) += col · dyᵀ, so that both
                    // operands have contiguous rows, the layout the fast multiply kernels take.
                    let mut dw_t = vec![0.0; k * g.f];
                    for band in g.tiles(1) {
                        // dyᵀ for the band: `ts` positions per output row, as the product reads
                        // the input (in place, the `w - ow` past each row's end being zero).
                        let (ts, tn) = g.band_columns(&band, in_place);
                        dy_t.clear();
                        dy_t.resize(tn * g.f, 0.0);
                        g.transpose_band(dy, band.clone(), ts, dy_t);
                        let dy_t = Operand::Mat(Mat { data: dy_t, rs: g.f, cs: 1 });
                        let cols = g.band_matrix(x, &band, taps.as_deref(), &mut s.rows, &mut s.col);
                        Kernel::best().matmul(k, g.f, tn, cols, dy_t, &mut dw_t, true);
                        if let (Some(dx), true) = (dx.as_deref_mut(), in_place) {
                            // dcol with `ts` = `w` columns per output row, like dyᵀ above (see
                            // `ConvGeom::col2im_in_place`): dy's rows spaced out to `w`.
                            s.tile.clear();
                            s.tile.resize(g.f * tn, 0.0);
                            for (out, dy) in s.tile.chunks_mut(tn).zip(dy.chunks(p)) {
                                for (out, dy) in out.chunks_mut(ts).zip(dy[band.start * g.ow..].chunks(g.ow)) {
                                    out[..g.ow].copy_from_slice(dy);
                                }
                            }
                            s.col.resize(k * tn, 0.0);
                            let dy = Mat { data: &s.tile, rs: tn, cs: 1 };
                            matmul(k, tn, g.f, Mat { data: w, rs: 1, cs: k }, dy, &mut s.col, false);
                            g.col2im_in_place(&s.col, dx, band, tn);
                        } else if let Some(dx) = dx.as_deref_mut() {
                            let tp = band.len() * g.ow;
                            s.col.resize(k * tp, 0.0);
                            let dy = Mat { data: &dy[band.start * g.ow..], rs: p, cs: 1 };
                            matmul(k, tp, g.f, Mat { data: w, rs: 1, cs: k }, dy, &mut s.col, false);
                            g.col2im(&s.col, dx, band);
                        }
                    }
                    (dw_t, db)
                })
            },
        )
        .collect();
    // The sum over images, split across threads by element: each element still adds the
    // images in batch order, so the bits do not depend on the thread count, and this part of
    // the step shrinks with more cores instead of holding them all up.
    const CHUNK: usize = 1 << 12;
    let mut dw_t = vec![0.0; wt.as_ref().map_or(k * g.f, Vec::len)];
    dw_t.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| {
        Kernel::best().run(|| {
            for (dw_i, _) in &per_image {
                out.iter_mut().zip(&dw_i[i * CHUNK..]).for_each(|(a, b)| *a += b);
            }
        })
    });
    let mut db = vec![0.0; g.f];
    for (_, db_i) in &per_image {
        db.iter_mut().zip(db_i).for_each(|(a, b)| *a += b);
    }
    // Back to the kernel's (f, c, kh, kw) layout, once for the batch.
    let dw = match wt {
        Some(_) => winograd::kernel_grad(&dw_t, g),
        None => (0..g.f * k).into_par_iter().map(|i| dw_t[(i % k) * g.f + i / k]).collect(),
    };
    (dw, db)
}

/// Convolution of a batch `(batch, c·h·w)` with `kernel` `(f·c·kh·kw)` and `bias` `(f)` (when
/// there is one), followed by the `epilogue`, recorded on `x`'s tape. With
/// `input_grad == false` (first layer) no input gradient is made. Runs on the device's own
/// kernels ([`Backend::try_conv2d`]); panics if the device fails.
pub fn conv2d<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    kernel: &Tensor<(usize,), f32, D>,
    bias: Option<&Tensor<(usize,), f32, D>>,
    g: ConvGeom,
    epilogue: Epilogue,
    input_grad: bool,
) -> Tensor<(usize, usize), f32, D, T> {
    D::try_conv2d(x, kernel, bias, g, epilogue, input_grad).unwrap_or_else(|e| super::failed::<D>("conv2d", e))
}

/// [`conv2d`] on the host: the CPU's implementation (on another device, its inputs come down
/// and its results go back up).
pub(super) fn on_host<D: Backend, T: Tape<f32, D>>(
    x: Tensor<(usize, usize), f32, D, T>,
    kernel: &Tensor<(usize,), f32, D>,
    bias: Option<&Tensor<(usize,), f32, D>>,
    g: ConvGeom,
    epilogue: Epilogue,
    input_grad: bool,
) -> Tensor<(usize, usize), f32, D, T> {
    let (x, mut tape) = x.split_tape();
    let batch = x.shape().0;
    let b = bias.map_or_else(|| Cow::Owned(vec![0.0; g.f]), super::host);
    let (y, kept) = forward(&super::host(&x), &super::host(kernel), &b, batch, &g, epilogue, T::OWNS_TAPE);
    let out = x.device().tensor_from_vec(y, (batch, epilogue.out_len(&g)));
    if T::OWNS_TAPE {
        let out_handle = out.clone();
        let (kernel, bias) = (kernel.clone(), bias.cloned());
        tape.add_backward_op(move |grads| {
            // The input and kernel as the forward pass read them: the tape holds both tensors.
            let (xv, wv) = (super::host(&x), super::host(&kernel));
            let grad = |dy: &[f32], dx: Option<&mut [f32]>| backward(&xv, &wv, dy, &kept, batch, &g, epilogue, dx);
            let (dw, db) = if input_grad {
                D::with_grads(grads, &out_handle, &x, |dy, dx| grad(dy, Some(dx)))?
            } else {
                D::with_grad(grads, &out_handle, |dy| grad(dy, None))?
            };
            D::add_grad(grads, &kernel, &dw)?;
            match &bias {
                Some(bias) => D::add_grad(grads, bias, &db),
                None => Ok(()),
            }
        });
    }
    out.put_tape(tape)
}
