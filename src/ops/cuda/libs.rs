//! Loads the CUDA libraries at run time, so that a CUDA build starts without them.

/// Loads the CUDA libraries once per process; the error names the library that is missing.
pub fn load() -> Result<(), String> {
    for name in ["libcuda.so.1", "libnvrtc.so.13", "libcublasLt.so.13", "libcublas.so.13"] {
        let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name; the handle is kept for the life of the process.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            return Err(format!("{name} could not be loaded"));
        }
    }
    Ok(())
}
