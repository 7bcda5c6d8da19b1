//! Register-blocked matrix multiply kernels for x86-64, one body ([`kernel!`]) built for each
//! instruction set: AVX-512 (16 lanes) and AVX2 with FMA (8 lanes). The `gemm` crate on stable
//! Rust stops at AVX2, so on AVX-512 CPUs it uses half the vector width; and neither it nor any
//! BLAS reads a matrix from a table of row starts, which lets a convolution multiply its input
//! in place instead of building the im2col matrix. Right operands have contiguous rows, the
//! layout of all the convolution's and dense layer's products. Callers check the bounds (see
//! `gemm`).
//!
//! A panel of up to `MR` rows of `a` (broadcast one value at a time) times a strip of two
//! vectors per row of `b`, accumulated in registers. The loops run over `k` in slices of
//! [`KC`], then over strips of `b`, then over panels of `a`: one strip of a slice of `b` stays
//! in the L1 cache while every panel of `a` passes by, so the wide operand is read from L1 and
//! only the narrow one (`MR` values per step of `k`) streams from L2. Column tails use masked
//! loads and stores.
//! Every output is one multiply-add chain in `k` order, so results depend neither on threads
//! nor on where a block falls, nor on the instruction set: AVX-512 and AVX2 compute the same
//! chains and give the same bits (the `gemm` crate, used on CPUs with neither, sums in another
//! order).

/// Most rows of `a` per panel: 6 rows × 2 vectors = 12 accumulators, which with the two vectors
/// of `b` and the broadcast fills the 16 registers of AVX2 (AVX-512 has 32 and measured no
/// better with 12 rows).
const MR: usize = 6;
/// Steps of `k` per pass: a `KC × NR` strip of `b` is 32 KiB with AVX-512 (16 KiB with AVX2),
/// within a 32 or 48 KiB L1.
const KC: usize = 256;

/// The three matrices of a product, as raw pointers with row (and for `a` column) strides:
/// element (i, p) of `a` is `a[i·a_rs + p·a_cs]` (or, with a row table, `a[a_rows[i] + p·a_cs]`),
/// (p, j) of `b` is `b[p·b_rs + j]` (or `b[b_rows[p] + j]`), (i, j) of `c` is `c[i·c_rs + j]`.
#[derive(Clone, Copy)]
pub struct Operands {
    pub a: *const f32,
    pub a_rs: usize,
    /// Null, or where each row of `a` starts (`m` offsets).
    pub a_rows: *const usize,
    pub a_cs: usize,
    pub b: *const f32,
    pub b_rs: usize,
    /// Null, or where each row of `b` starts (`k` offsets).
    pub b_rows: *const usize,
    pub c: *mut f32,
    pub c_rs: usize,
}

impl Operands {
    /// The same matrices, starting at row `i` of `a` and `c` and column `j` of `b` and `c`.
    unsafe fn at(self, i: usize, j: usize) -> Self {
        let o = Operands { b: self.b.add(j), c: self.c.add(i * self.c_rs + j), ..self };
        match self.a_rows.is_null() {
            true => Operands { a: self.a.add(i * self.a_rs), ..o },
            false => Operands { a_rows: self.a_rows.add(i), ..o },
        }
    }

    /// The same matrices from step `p` of `k` on.
    unsafe fn at_step(self, p: usize) -> Self {
        match self.b_rows.is_null() {
            true => Operands { a: self.a.add(p * self.a_cs), b: self.b.add(p * self.b_rs), ..self },
            false => Operands { a: self.a.add(p * self.a_cs), b_rows: self.b_rows.add(p), ..self },
        }
    }
}

/// The kernel, for the enclosing module's vector type `V` of `LANES` floats, its mask type
/// `Mask` and its operations (`zero`, `splat`, `fma`, `mask`, `load`, `store`), all compiled
/// for the instruction set `$feature`.
macro_rules! kernel {
    ($feature:literal) => {
        use super::{Operands, KC, MR};
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};

        /// Columns per strip: two vectors.
        const NR: usize = 2 * LANES;

        #[target_feature(enable = $feature)]
        /// `c (+)= a · b` for an `m × k` times `k × n` product.
        ///
        /// # Safety
        /// The CPU has the instructions; every element of the three matrices is inside its
        /// buffer; `c` does not alias `a` or `b`.
        pub unsafe fn matmul(m: usize, n: usize, k: usize, o: Operands, accumulate: bool) {
            // Panels of as equal a height as `MR` allows: 32 rows as 6, 6, 5, 5, 5, 5 rather
            // than five of 6 and one of 2, whose 4 accumulators are too few chains to keep the
            // multiply-add units busy.
            let panels = m.div_ceil(MR);
            // Gathered rows of `b` that many panels read are first copied into one contiguous,
            // aligned strip: the rows start anywhere, so their vector loads straddle cache
            // lines. With three panels or fewer (the first layer's 16 filters) the copy cost
            // more than it saved (measured); those panels read the rows in place.
            let pack = !o.b_rows.is_null() && panels > 3;
            let mut strip = std::mem::MaybeUninit::<Strip>::uninit();
            let strip = strip.as_mut_ptr() as *mut f32;
            for p in (0..k).step_by(KC) {
                let kc = (k - p).min(KC);
                // Slices after the first continue the sums already in `c`.
                let accumulate = accumulate || p > 0;
                let o = o.at_step(p);
                for j in (0..n).step_by(NR) {
                    let cols = (n - j).min(NR);
                    // Whether a pass over this strip's rows fetches the next strip's into the
                    // cache: the copy's, or else the first panel's.
                    let fetch = j + NR < n;
                    if pack {
                        match cols > LANES {
                            true => pack_strip::<2>(kc, o.b.add(j), o.b_rows, cols, fetch, strip),
                            false => pack_strip::<1>(kc, o.b.add(j), o.b_rows, cols, fetch, strip),
                        }
                    }
                    for q in 0..panels {
                        let (i, rows) =
                            (q * (m / panels) + q.min(m % panels), m / panels + usize::from(q < m % panels));
                        let o = match pack {
                            true => Operands { b: strip, b_rs: NR, b_rows: std::ptr::null(), ..o.at(i, j) },
                            false => o.at(i, j),
                        };
                        match (cols > LANES, o.b_rows.is_null()) {
                            (true, true) => panel::<2, false>(rows, kc, o, cols, accumulate, false),
                            (false, true) => panel::<1, false>(rows, kc, o, cols, accumulate, false),
                            (true, false) => panel::<2, true>(rows, kc, o, cols, accumulate, fetch && q == 0),
                            (false, false) => panel::<1, true>(rows, kc, o, cols, accumulate, fetch && q == 0),
                        }
                    }
                }
            }
        }

        /// One slice of a strip of `b`: `KC × NR` values, aligned to a cache line.
        #[repr(align(64))]
        struct Strip {
            _values: [f32; KC * NR],
        }

        /// Copies `cols` columns of the `kc` gathered rows of `b` (from `b`, the strip's first
        /// column) into `strip`, `NR` values per row (lanes past `cols` zero), fetching the next
        /// strip's columns into the cache when `fetch`.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn pack_strip<const W: usize>(
            kc: usize,
            b: *const f32,
            b_rows: *const usize,
            cols: usize,
            fetch: bool,
            strip: *mut f32,
        ) {
            let masks = lane_masks::<W>(cols);
            let all = mask(LANES);
            for q in 0..kc {
                let row = b.add(*b_rows.add(q));
                if fetch {
                    fetch_next_strip::<W>(row);
                }
                for (h, &mask) in masks.iter().enumerate() {
                    store(strip.add(q * NR + LANES * h), all, true, load(row.add(LANES * h), mask));
                }
            }
        }

        /// For each of a strip's `W` vectors, the lanes that hold one of its `cols` columns.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn lane_masks<const W: usize>(cols: usize) -> [Mask; W] {
            std::array::from_fn(|h| mask(cols.saturating_sub(LANES * h).min(LANES)))
        }

        /// Asks the cache for the columns of the next strip in the row starting at `row` (a
        /// hint: it never faults, so `row` may point anywhere).
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn fetch_next_strip<const W: usize>(row: *const f32) {
            for h in 0..W {
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR + LANES * h) as *const i8);
            }
        }

        /// A panel of `rows` rows: the tile for that many.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn panel<const W: usize, const TABLE: bool>(
            rows: usize,
            k: usize,
            o: Operands,
            cols: usize,
            accumulate: bool,
            fetch: bool,
        ) {
            match rows {
                1 => tile::<1, W, TABLE>(k, o, cols, accumulate, fetch),
                2 => tile::<2, W, TABLE>(k, o, cols, accumulate, fetch),
                3 => tile::<3, W, TABLE>(k, o, cols, accumulate, fetch),
                4 => tile::<4, W, TABLE>(k, o, cols, accumulate, fetch),
                5 => tile::<5, W, TABLE>(k, o, cols, accumulate, fetch),
                6 => tile::<6, W, TABLE>(k, o, cols, accumulate, fetch),
                _ => unreachable!("1 to {MR} rows"),
            }
        }

        /// One `R × cols` block of `c` (cols ≤ LANES·W), with `b`'s rows from the table when
        /// `TABLE`.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn tile<const R: usize, const W: usize, const TABLE: bool>(
            k: usize,
            o: Operands,
            cols: usize,
            accumulate: bool,
            fetch: bool,
        ) {
            let Operands { a, a_rs, a_rows, a_cs, b, b_rs, b_rows, c, c_rs } = o;
            // Where each of the panel's rows of `a` starts.
            let a_row: [*const f32; R] =
                std::array::from_fn(|r| if a_rows.is_null() { a.add(r * a_rs) } else { a.add(*a_rows.add(r)) });
            // Lanes in use in each vector of a row of the strip.
            let masks = lane_masks::<W>(cols);
            let full = cols == LANES * W;
            // Each output is one multiply-add chain in `k` order, starting from its old value
            // when accumulating, so a product split into slices of `k` gives the same bits as
            // one pass.
            let mut acc = [[zero(); W]; R];
            if accumulate {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (h, acc) in acc.iter_mut().enumerate() {
                        *acc = load(c.add(r * c_rs + LANES * h), masks[h]);
                    }
                }
            }
            for p in 0..k {
                let row = if TABLE { b.add(*b_rows.add(p)) } else { b.add(p * b_rs) };
                if TABLE && fetch {
                    fetch_next_strip::<W>(row);
                }
                let bv: [V; W] = std::array::from_fn(|h| load(row.add(LANES * h), masks[h]));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = splat(*a_row[r].add(p * a_cs));
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = fma(x, bv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let out = c.add(r * c_rs);
                for (h, (&v, &mask)) in acc.iter().zip(&masks).enumerate() {
                    store(out.add(LANES * h), mask, full, v);
                }
            }
        }
    };
}

pub mod avx512 {
    use std::arch::x86_64::*;

    type V = __m512;
    type Mask = __mmask16;
    const LANES: usize = 16;

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(in crate::ops) unsafe fn splat(x: f32) -> V {
        _mm512_set1_ps(x)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    /// The first `n` lanes.
    #[inline]
    pub(in crate::ops) fn mask(n: usize) -> Mask {
        ((1u32 << n) - 1) as Mask
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(p: *const f32, mask: Mask) -> V {
        _mm512_maskz_loadu_ps(mask, p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(p: *mut f32, mask: Mask, _full: bool, v: V) {
        _mm512_mask_storeu_ps(p, mask, v)
    }

    kernel!("avx512f");

    /// `dst[j·dst_rs + i] = src[i·src_rs + j]` for 16 rows `i` and `cols` columns `j`: a
    /// 16 × 16 transpose in registers per block of columns (unpack, then two rounds of
    /// 128-bit-lane shuffles), masked for the last block.
    ///
    /// # Safety
    /// The CPU has AVX-512F; the 16 rows of `cols` values from `src` and the `cols` rows of
    /// 16 values from `dst` are inside their buffers, which do not overlap.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose16(src: *const f32, src_rs: usize, cols: usize, dst: *mut f32, dst_rs: usize) {
        for j in (0..cols).step_by(LANES) {
            let n = (cols - j).min(LANES);
            let r: [V; 16] = std::array::from_fn(|i| load(src.add(i * src_rs + j), mask(n)));
            // Pairs of rows interleaved, then quadruples: within each 128-bit lane, t holds
            // 4×4 transposed blocks.
            let u: [V; 16] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                match i % 2 {
                    0 => _mm512_unpacklo_ps(a, b),
                    _ => _mm512_unpackhi_ps(a, b),
                }
            });
            let t: [V; 16] = std::array::from_fn(|i| {
                let (q, k) = (i / 4 * 4, i % 4);
                let (a, b) = (u[q + k / 2], u[q + 2 + k / 2]);
                match k % 2 {
                    0 => _mm512_shuffle_ps::<0x44>(a, b),
                    _ => _mm512_shuffle_ps::<0xEE>(a, b),
                }
            });
            // Now t[4q + k] lane l holds row 4q + (column's index within the lane), for the
            // column 4l + k: move the 128-bit lanes into place in two steps.
            let v: [V; 16] = std::array::from_fn(|i| {
                let (half, k) = (i / 8, i % 8);
                let (a, b) = (t[half * 8 + k % 4], t[half * 8 + 4 + k % 4]);
                match k / 4 {
                    0 => _mm512_shuffle_f32x4::<0x88>(a, b),
                    _ => _mm512_shuffle_f32x4::<0xDD>(a, b),
                }
            });
            for c in 0..n {
                let (k, lane) = (c % 4, c / 4);
                let (a, b) = (v[(lane % 2) * 4 + k], v[8 + (lane % 2) * 4 + k]);
                let col = match lane / 2 {
                    0 => _mm512_shuffle_f32x4::<0x88>(a, b),
                    _ => _mm512_shuffle_f32x4::<0xDD>(a, b),
                };
                store(dst.add((j + c) * dst_rs), mask(LANES), true, col);
            }
        }
    }
}

pub mod avx2 {
    use std::arch::x86_64::*;

    type V = __m256;
    type Mask = __m256i;
    const LANES: usize = 8;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(in crate::ops) unsafe fn splat(x: f32) -> V {
        _mm256_set1_ps(x)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    /// The first `n` lanes (all bits set in each).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn mask(n: usize) -> Mask {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load(p: *const f32, mask: Mask) -> V {
        _mm256_maskload_ps(p, mask)
    }
    /// A plain store when every lane is in use: masked stores are slow on AMD's Zen cores.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store(p: *mut f32, mask: Mask, full: bool, v: V) {
        match full {
            true => _mm256_storeu_ps(p, v),
            false => _mm256_maskstore_ps(p, mask, v),
        }
    }

    kernel!("avx2,fma");
}

#[cfg(test)]
mod tests {
    /// The register transpose against the definition, for whole and partial blocks of columns
    /// and rows spaced wider than they are long.
    #[test]
    fn transpose16_transposes() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        for cols in [1, 5, 15, 16, 17, 40] {
            let src_rs = cols + 3;
            let src: Vec<f32> = (0..16 * src_rs).map(|v| v as f32).collect();
            let dst_rs = 20;
            let mut dst = vec![-1.0f32; cols * dst_rs];
            // SAFETY: the CPU has AVX-512; both buffers hold what is read and written.
            unsafe { super::avx512::transpose16(src.as_ptr(), src_rs, cols, dst.as_mut_ptr(), dst_rs) };
            for j in 0..cols {
                for i in 0..dst_rs {
                    let want = if i < 16 { src[i * src_rs + j] } else { -1.0 };
                    assert_eq!(dst[j * dst_rs + i], want, "{cols} columns: ({i}, {j})");
                }
            }
        }
    }
}
