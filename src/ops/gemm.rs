//! A safe, bounds-checked front for the `gemm` crate (the same one dfdx uses).

use std::mem::MaybeUninit;

/// A row-major or strided view of a matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// `c (m×n) = [c +] a (m×k) · b (k×n)`; `c` is row-major with `n` columns.
/// Single-threaded: callers parallelise over the batch, which keeps results deterministic.
pub fn matmul(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    assert!(c.len() >= m * n, "gemm: output too small");
    // SAFETY: c holds m·n initialised values.
    unsafe { product(m, n, k, a, b, c.as_mut_ptr(), accumulate) }
}

/// `c (m×n) = a (m×k) · b (k×n)` into memory that need not be initialised (gemm only writes
/// it), returned initialised: no zeroing of an output the product overwrites anyway.
pub fn matmul_into<'c>(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &'c mut [MaybeUninit<f32>]) -> &'c mut [f32] {
    assert_eq!(c.len(), m * n, "gemm: output size");
    // SAFETY: c has room for m·n values; without `accumulate` they are written, never read.
    unsafe { product(m, n, k, a, b, c.as_mut_ptr().cast(), false) };
    // SAFETY: every element was written above.
    unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Checks `a` and `b` against their sizes and multiplies into `c`.
///
/// # Safety
/// `c` must point to `m·n` writable values, initialised when `accumulate`, not aliasing `a`/`b`.
unsafe fn product(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: *mut f32, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            std::slice::from_raw_parts_mut(c.cast::<MaybeUninit<f32>>(), m * n).fill(MaybeUninit::new(0.0));
        }
        return;
    }
    let last = |v: Mat, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(last(a, m, k) < a.data.len(), "gemm: lhs out of bounds");
    assert!(last(b, k, n) < b.data.len(), "gemm: rhs out of bounds");
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        n as isize,
        accumulate,
        a.data.as_ptr(),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr(),
        b.cs as isize,
        b.rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
