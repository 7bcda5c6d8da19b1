//! A safe, bounds-checked front for the matrix multiply kernels: ours (`simd`) where the CPU
//! has AVX-512 or AVX2 with FMA, else the `gemm` crate (the same one dfdx uses).

use std::sync::OnceLock;

/// A row-major or strided view of a matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    /// The values, borrowed in place.
    pub data: &'a [f32],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

/// Rows gathered from anywhere in one buffer: row `i` is the values of `data` from `rows[i]`
/// on. A convolution reads its input this way, in place, instead of building the im2col
/// matrix.
#[derive(Clone, Copy)]
pub struct Gathered<'a> {
    /// The buffer the rows are read from.
    pub data: &'a [f32],
    /// Where each row starts in `data`.
    pub rows: &'a [usize],
}

/// Either operand of a product.
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    /// A strided matrix.
    Mat(Mat<'a>),
    /// Rows gathered in place.
    Gathered(Gathered<'a>),
}

static CHOSEN: OnceLock<Kernel> = OnceLock::new();

/// What runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Ours, 16 lanes.
    Avx512,
    /// Ours, 8 lanes: the same sums as [`Kernel::Avx512`], so the same bits.
    Avx2,
    /// The `gemm` crate, on CPUs with neither (it sums in another order, and cannot read
    /// gathered rows).
    Crate,
}

impl Kernel {
    /// Every kernel, fastest first.
    const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Crate];
    /// Their names on the command line.
    pub const NAMES: [&'static str; 3] = [Kernel::ALL[0].name(), Kernel::ALL[1].name(), Kernel::ALL[2].name()];

    /// The one every product uses: the fastest this CPU runs (detected once), unless
    /// [`Kernel::choose`] picked another first.
    pub fn best() -> Kernel {
        *CHOSEN.get_or_init(|| Kernel::available()[0])
    }

    /// Makes every product use `self` (for `runner bench --kernel`, to compare kernels on one
    /// machine). Fails if the CPU cannot run it, or once a product has run with another.
    pub fn choose(self) -> Result<(), String> {
        if !self.runs_here() {
            return Err(format!("this CPU cannot run the {} kernel", self.name()));
        }
        match *CHOSEN.get_or_init(|| self) == self {
            true => Ok(()),
            false => Err(format!("the {} kernel is already in use", Kernel::best().name())),
        }
    }

    /// Its name on the command line: `avx512`, `avx2` or `gemm`.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::Crate => "gemm",
        }
    }

    /// The kernel called `name` (see [`Kernel::name`]).
    pub fn named(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every kernel this CPU runs, fastest first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| k.runs_here()).collect()
    }

    #[cfg(target_arch = "x86_64")]
    fn runs_here(self) -> bool {
        match self {
            Kernel::Avx512 => std::is_x86_feature_detected!("avx512f"),
            Kernel::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            Kernel::Crate => true,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn runs_here(self) -> bool {
        self == Kernel::Crate
    }

    /// Whether it reads [`Gathered`] rows.
    pub fn gathers(self) -> bool {
        self != Kernel::Crate
    }

    /// Runs `f` compiled for this kernel's instruction set: the loops around the products
    /// (transposes, col2im, sums, pooling's routing) then use its vector width, where the
    /// crate's baseline (x86-64, SSE2) gives them four lanes. `f` is inlined into a function
    /// with the kernel's target features, and what `f` calls with it where marked
    /// `#[inline]`. Same bits either way: these loops add in the same order at any width.
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: a kernel is only chosen where the CPU runs it (`runs_here`).
            match self {
                Kernel::Avx512 => unsafe { avx512(f) },
                Kernel::Avx2 => unsafe { avx2(f) },
                Kernel::Crate => f(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        f()
    }

    /// For `runner bench`.
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX-512 (runner's own)",
            Kernel::Avx2 => "AVX2/FMA (runner's own)",
            Kernel::Crate => "the gemm crate's",
        }
    }

    /// `c (m×n) = [c +] a (m×k) · b (k×n)`; `c` is row-major with `n` columns. Either operand
    /// may be gathered rows when [`Kernel::gathers`]; a strided `b` needs contiguous rows
    /// (`cs == 1`) except on [`Kernel::Crate`]. Single-threaded: callers split the work into
    /// fixed pieces, which keeps results deterministic.
    ///
    /// # Panics
    /// When an operand reaches outside its buffer, or the kernel cannot take its layout (a
    /// caller's bug), or the CPU lacks the kernel's instructions.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(self, m: usize, n: usize, k: usize, a: Operand, b: Operand, c: &mut [f32], accumulate: bool) {
        assert!(self.runs_here(), "gemm: this CPU cannot run {self:?}");
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
        let fits = |g: &Gathered, rows: usize, len: usize| {
            g.rows.len() == rows && g.rows.iter().all(|&r| r + len <= g.data.len())
        };
        match a {
            Operand::Mat(a) => assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "gemm: lhs out of bounds"),
            Operand::Gathered(a) => assert!(self.gathers() && fits(&a, m, k), "gemm: gathered lhs out of bounds"),
        }
        match b {
            Operand::Mat(b) => {
                assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "gemm: rhs out of bounds");
                assert!(b.cs == 1 || self == Kernel::Crate, "gemm: rhs rows must be contiguous");
            }
            Operand::Gathered(b) => assert!(self.gathers() && fits(&b, k, n), "gemm: gathered rhs out of bounds"),
        }
        match (self, a, b) {
            (Kernel::Crate, Operand::Mat(a), Operand::Mat(b)) => crate_matmul(m, n, k, a, b, c, accumulate),
            #[cfg(target_arch = "x86_64")]
            (kernel, a, b) => {
                let none = std::ptr::null();
                let (a, a_rs, a_cs, a_rows) = match a {
                    Operand::Mat(a) => (a.data, a.rs, a.cs, none),
                    Operand::Gathered(a) => (a.data, 0, 1, a.rows.as_ptr()),
                };
                let (b, b_rs, b_rows) = match b {
                    Operand::Mat(b) => (b.data, b.rs, none),
                    Operand::Gathered(b) => (b.data, 0, b.rows.as_ptr()),
                };
                let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
                let o = super::simd::Operands { a, a_rs, a_rows, a_cs, b, b_rs, b_rows, c, c_rs: n };
                // SAFETY: the CPU has the instructions, the bounds are checked above, and c is
                // a separate buffer (a &mut).
                unsafe {
                    match kernel {
                        Kernel::Avx512 => super::simd::avx512::matmul(m, n, k, o, accumulate),
                        _ => super::simd::avx2::matmul(m, n, k, o, accumulate),
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the gemm crate runs here, on strided matrices"),
        }
    }
}

/// [`Kernel::matmul`] on two strided matrices with the best kernel.
pub fn matmul(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    let kernel = match b.cs {
        1 => Kernel::best(),
        _ => Kernel::Crate,
    };
    kernel.matmul(m, n, k, Operand::Mat(a), Operand::Mat(b), c, accumulate)
}

/// Through the `gemm` crate (bounds checked by the caller).
fn crate_matmul(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    // SAFETY: all indices touched are inside the slices (checked by the caller); c does not
    // alias a or b.
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
