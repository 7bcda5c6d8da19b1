//! A register-blocked matrix multiply for CPUs with AVX-512, where the `gemm` crate (on stable
//! Rust) stops at AVX2 and so uses half the vector width. It takes a right operand with
//! contiguous rows, the layout of all three of the convolution's products (forward `W · col`,
//! input gradient `Wᵀ · dy`, weight gradient `col · dyᵀ`); callers check the bounds (see
//! `gemm::matmul`). On the tutorial CNN's shapes it runs at 1.3-1.6x the gemm crate.
//!
//! A panel of `MR` rows of `a` (broadcast one value at a time, from L1) times a strip of one or
//! two 16-lane vectors per row of `b` (streamed from L2), accumulated in registers over the
//! whole `k`. Column tails use masked loads and stores. Every output is one multiply-add chain
//! in `k` order, so results do not depend on threads or on where a block falls.

use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 32;
/// Steps of `k` per pass: a `KC × NR` strip of `b` is 32 KiB, two thirds of a 48 KiB L1.
const KC: usize = 256;

/// Whether this CPU runs [`matmul`] (checked once; the standard library caches it).
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

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
    /// Null, or where each row of `b` starts (`k` offsets): rows gathered from anywhere in one
    /// buffer, as a convolution reads its input without building the im2col matrix.
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
    unsafe fn from_step(self, p: usize) -> Self {
        match self.b_rows.is_null() {
            true => Operands { a: self.a.add(p * self.a_cs), b: self.b.add(p * self.b_rs), ..self },
            false => Operands { a: self.a.add(p * self.a_cs), b_rows: self.b_rows.add(p), ..self },
        }
    }
}

/// `c (+)= a · b` for an `m × k` times `k × n` product.
///
/// The loops run over `k` in slices of [`KC`], then over strips of [`NR`] columns of `b`, then
/// over panels of [`MR`] rows of `a`: one strip of a slice of `b` (`KC × NR`, 32 KiB) stays in
/// the L1 cache while every panel of `a` passes by, so the wide operand is read from L1 and
/// only the narrow one (`MR` values per step of `k`) streams from L2.
///
/// # Safety
/// The CPU has AVX-512F ([`available`]); every element of the three matrices is inside its
/// buffer; `c` does not alias `a` or `b`.
#[target_feature(enable = "avx512f")]
pub unsafe fn matmul(m: usize, n: usize, k: usize, o: Operands, accumulate: bool) {
    for p in (0..k).step_by(KC) {
        let kc = (k - p).min(KC);
        // Slices after the first continue the sums already in `c`.
        let accumulate = accumulate || p > 0;
        let o = o.from_step(p);
        for j in (0..n).step_by(NR) {
            let cols = (n - j).min(NR);
            for i in (0..m).step_by(MR) {
                let (rows, o) = ((m - i).min(MR), o.at(i, j));
                macro_rules! tile {
                    ($($r:literal)*) => {
                        match (rows, cols > 16, o.b_rows.is_null()) {
                            $(($r, true, true) => tile::<$r, 2, false>(kc, o, cols, accumulate),)*
                            $(($r, false, true) => tile::<$r, 1, false>(kc, o, cols, accumulate),)*
                            $(($r, true, false) => tile::<$r, 2, true>(kc, o, cols, accumulate),)*
                            $(($r, false, false) => tile::<$r, 1, true>(kc, o, cols, accumulate),)*
                            _ => unreachable!("1 to {MR} rows"),
                        }
                    };
                }
                tile!(1 2 3 4 5 6);
            }
        }
    }
}

/// One `R × cols` block of `c` (cols ≤ 16·V), with `b`'s rows from the table when `TABLE`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const V: usize, const TABLE: bool>(
    k: usize,
    o: Operands,
    cols: usize,
    accumulate: bool,
) {
    let Operands { a, a_rs, a_rows, a_cs, b, b_rs, b_rows, c, c_rs } = o;
    // Where each of the panel's rows of `a` starts.
    let a_row: [*const f32; R] =
        std::array::from_fn(|r| if a_rows.is_null() { a.add(r * a_rs) } else { a.add(*a_rows.add(r)) });
    // Lanes in use in each vector of a row of the strip.
    let lanes = |from: usize| -> __mmask16 {
        let n = cols.saturating_sub(from).min(16);
        if n == 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let masks: [__mmask16; V] = std::array::from_fn(|h| lanes(16 * h));
    // Each output is one multiply-add chain in `k` order, starting from its old value when
    // accumulating, so a product split into slices of `k` gives the same bits as one pass.
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if accumulate {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (h, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_maskz_loadu_ps(masks[h], c.add(r * c_rs + 16 * h));
            }
        }
    }
    for p in 0..k {
        let row = if TABLE { b.add(*b_rows.add(p)) } else { b.add(p * b_rs) };
        let bv: [__m512; V] = std::array::from_fn(|h| _mm512_maskz_loadu_ps(masks[h], row.add(16 * h)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a_row[r].add(p * a_cs));
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(x, bv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = c.add(r * c_rs);
        for (h, (&v, &mask)) in acc.iter().zip(&masks).enumerate() {
            _mm512_mask_storeu_ps(out.add(16 * h), mask, v);
        }
    }
}
