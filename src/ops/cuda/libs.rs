//! Opening the NVIDIA libraries at run time, so that one CUDA build starts, and trains on the
//! CPU, on machines without them.
//!
//! `scripts/build-cuda.sh` links the binary against stubs of libcuda, NVRTC, cuBLAS, cuBLASLt
//! and cuDNN, then removes their NEEDED entries, and links it with partial RELRO, so its calls
//! into them go through a lazily bound PLT: the dynamic linker looks each function up at its
//! first call, not when the program starts. [`load`] opens the real libraries with
//! `RTLD_GLOBAL`, which puts their symbols where those lookups search.
//!
//! The contract: **no cudarc function (so nothing that touches dfdx's `Cuda` device) may run
//! before [`load`] has returned `Ok`.** Calling one that is not yet resolved does not fail in a
//! way Rust can catch: the dynamic linker prints `symbol lookup error: ... undefined symbol`
//! and ends the process at once (exit status 127), with no panic, no unwinding and no files
//! closed or flushed. The same holds with `LD_BIND_NOW` set, which resolves every symbol at
//! start: a binary from the script then does not start without the libraries.
//!
//! A binary linked the ordinary way against a real toolkit (`cargo build --features cuda`, with
//! its NEEDED entries) works too: opening a library the process already has loaded only
//! takes another reference to it.
//!
//! The libraries opened are those of CUDA 13 (the driver's libcuda.so.1, libnvrtc.so.13,
//! libcublasLt.so.13, libcublas.so.13, libcudnn.so.9 of cuDNN 9), found as `dlopen` finds any
//! library: through LD_LIBRARY_PATH, the system's library folders and the ld.so cache. They are
//! never closed. Opened does not mean usable: a machine can have the driver library and no GPU,
//! which `cuInit` or device creation then reports.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// The libraries, in the order they are opened: each after those it depends on.
pub const LIBRARIES: [&str; 5] =
    ["libcuda.so.1", "libnvrtc.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcudnn.so.9"];

/// Opens the NVIDIA libraries, once per process; later calls give the first call's outcome.
/// The error names the library that could not be opened, says why (`dlerror`'s text) and
/// what to do.
pub fn load() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(|| LIBRARIES.into_iter().try_for_each(open)).clone()
}

/// `dlopen`s `lib` with its symbols global and resolved now.
fn open(lib: &str) -> Result<(), String> {
    let name = CString::new(lib).expect("library names have no NUL");
    // SAFETY: `name` is a valid C string; dlopen runs the library's initialisers, which for
    // NVIDIA's libraries only set up their own state. The handle is deliberately never closed.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if !handle.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns null or a C string valid until the next dl* call on this thread.
    let why = unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "no reason given".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    };
    let what = if lib == "libcuda.so.1" {
        "the NVIDIA driver's library: install the NVIDIA driver (CUDA 13, driver 580 or newer)"
    } else {
        "a CUDA 13 library: install CUDA 13 with cuDNN 9, or, for NVIDIA's Python wheels, put \
         their lib folders (site-packages/nvidia/*/lib) on LD_LIBRARY_PATH (README, \"CUDA build\")"
    };
    Err(format!("cannot open {lib} ({why}); it is {what}; or set device = \"cpu\""))
}
