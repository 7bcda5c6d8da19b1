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

/// Whether this CPU runs [`matmul`] (checked once; the standard library caches it).
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `c[i·c_rs + j] (+)= Σ_p a[i·a_rs + p·a_cs] · b[p·b_rs + j]` for i < m, j < n, p < k.
///
/// # Safety
/// The CPU has AVX-512F ([`available`]); every index above is inside its buffer; `c` does
/// not alias `a` or `b`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    (a_rs, a_cs): (usize, usize),
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        let mut j = 0;
        while j < n {
            let cols = (n - j).min(NR);
            let (a, b, c) = (a.add(i * a_rs), b.add(j), c.add(i * c_rs + j));
            macro_rules! tile {
                ($($r:literal)*) => {
                    match (rows, cols > 16) {
                        $(($r, true) => tile::<$r, 2>(k, a, (a_rs, a_cs), b, b_rs, c, c_rs, cols, accumulate),)*
                        $(($r, false) => tile::<$r, 1>(k, a, (a_rs, a_cs), b, b_rs, c, c_rs, cols, accumulate),)*
                        _ => unreachable!("1 to {MR} rows"),
                    }
                };
            }
            tile!(1 2 3 4 5 6);
            j += NR;
        }
        i += MR;
    }
}

/// One `R × cols` block of `c` (cols ≤ 16·V).
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const V: usize>(
    k: usize,
    a: *const f32,
    (a_rs, a_cs): (usize, usize),
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    cols: usize,
    accumulate: bool,
) {
    // Lanes in use in the two vectors of a row of the strip.
    let lanes = |from: usize| -> __mmask16 {
        let n = cols.saturating_sub(from).min(16);
        if n == 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let masks: [__mmask16; V] = std::array::from_fn(|h| lanes(16 * h));
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for p in 0..k {
        let row = b.add(p * b_rs);
        let bv: [__m512; V] = std::array::from_fn(|h| _mm512_maskz_loadu_ps(masks[h], row.add(16 * h)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(r * a_rs + p * a_cs));
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(x, bv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = c.add(r * c_rs);
        for (h, (&v, &mask)) in acc.iter().zip(&masks).enumerate() {
            let out = out.add(16 * h);
            let v = if accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), v) } else { v };
            _mm512_mask_storeu_ps(out, mask, v);
        }
    }
}
