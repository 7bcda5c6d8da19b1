//! Ctrl-C during training: the first one asks training to stop at the next batch boundary
//! (the run folder keeps its history and is marked interrupted); a second one kills the
//! process at once, as usual.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: `signal` is async-signal-safe; restoring the default makes a second Ctrl-C fatal.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// While alive, Ctrl-C requests a stop instead of killing the process.
pub struct Guard(());

impl Guard {
    /// Starts catching Ctrl-C.
    pub fn install() -> Guard {
        REQUESTED.store(false, Ordering::SeqCst);
        #[cfg(unix)]
        // SAFETY: the handler only touches an atomic and calls the async-signal-safe `signal`.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the default disposition.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

/// Whether Ctrl-C was pressed since the guard was installed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
