//! A safe, bounds-checked front for the `gemm` crate (the same one dfdx uses), and for our
//! AVX-512 kernel where the CPU has it and the product suits it.

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
    if m == 0 || n == 0 {
        return;
    }
    let last = |v: Mat, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(c.len() >= m * n, "gemm: output too small");
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(last(a, m, k) < a.data.len(), "gemm: lhs out of bounds");
    assert!(last(b, k, n) < b.data.len(), "gemm: rhs out of bounds");
    #[cfg(target_arch = "x86_64")]
    if b.cs == 1 && super::avx512::available() {
        // SAFETY: AVX-512F is present, the bounds are checked above, and c is m·n values
        // (row stride n) apart from a and b.
        unsafe {
            let operands = super::avx512::Operands {
                a: a.data.as_ptr(),
                a_rs: a.rs,
                a_rows: std::ptr::null(),
                a_cs: a.cs,
                b: b.data.as_ptr(),
                b_rs: b.rs,
                b_rows: std::ptr::null(),
                c: c.as_mut_ptr(),
                c_rs: n,
            };
            super::avx512::matmul(m, n, k, operands, accumulate)
        };
        return;
    }
    // SAFETY: all indices touched are inside the slices (checked above); c does not alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
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
}

/// Whether [`matmul_gathered`] runs on this CPU (it needs our AVX-512 kernel).
pub fn gathers() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::avx512::available();
    #[allow(unreachable_code)]
    false
}

/// Rows gathered from anywhere in one buffer: row `i` is the values of `data` from `rows[i]`
/// on. A convolution reads its input this way, in place, instead of building the im2col
/// matrix.
#[derive(Clone, Copy)]
pub struct Gathered<'a> {
    pub data: &'a [f32],
    pub rows: &'a [usize],
}

impl Gathered<'_> {
    /// Whether every row has `len` values inside the buffer.
    fn fits(&self, len: usize) -> bool {
        self.rows.iter().all(|&r| r + len <= self.data.len())
    }
}

/// Either operand of [`matmul_gathered`]: a strided matrix or gathered rows.
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    Mat(Mat<'a>),
    Gathered(Gathered<'a>),
}

/// `c (m×n) = [c +] a (m×k) · b (k×n)` like [`matmul`], where either operand may be gathered
/// rows (`b`'s rows then being contiguous, and a strided `a` or `b` needing contiguous rows
/// too, `cs == 1` for `b`).
///
/// # Panics
/// When [`gathers`] is false; callers check it and build the matrix instead.
#[allow(clippy::too_many_arguments)]
pub fn matmul_gathered(m: usize, n: usize, k: usize, a: Operand, b: Operand, c: &mut [f32], accumulate: bool) {
    assert!(gathers(), "gemm: no kernel for gathered rows on this CPU");
    assert!(c.len() >= m * n, "gemm: output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let none = std::ptr::null();
    let (a, a_rs, a_cs, a_rows) = match a {
        Operand::Mat(a) => {
            assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "gemm: lhs out of bounds");
            (a.data, a.rs, a.cs, none)
        }
        Operand::Gathered(a) => {
            assert!(a.rows.len() == m && a.fits(k), "gemm: gathered lhs out of bounds");
            (a.data, 0, 1, a.rows.as_ptr())
        }
    };
    let (b, b_rs, b_rows) = match b {
        Operand::Mat(b) => {
            assert!(b.cs == 1 && (k - 1) * b.rs + n <= b.data.len(), "gemm: rhs out of bounds");
            (b.data, b.rs, none)
        }
        Operand::Gathered(b) => {
            assert!(b.rows.len() == k && b.fits(n), "gemm: gathered rhs out of bounds");
            (b.data, 0, b.rows.as_ptr())
        }
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present and the bounds are checked above; c is a separate buffer.
    unsafe {
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let operands = super::avx512::Operands { a, a_rs, a_rows, a_cs, b, b_rs, b_rows, c, c_rs: n };
        super::avx512::matmul(m, n, k, operands, accumulate)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, a_rs, a_cs, a_rows, b, b_rs, b_rows);
}

/// Which kernels run the convolutions' products on this CPU, for `runner bench`.
pub fn kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        return "AVX-512 (runner's own)";
    }
    "the gemm crate's (AVX2/FMA where present)"
}
