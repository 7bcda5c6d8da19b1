//! Ctrl-C and SIGTERM during training: the first asks training to stop at the next batch
//! boundary (the run folder keeps its history and a checkpoint there, and is marked
//! interrupted); a second Ctrl-C kills the process at once, as usual.
//!
//! SIGTERM is what schedulers send before they kill a job (Slurm at a time limit, on
//! preemption or requeue; `kill` sends it too), so it is taken like Ctrl-C, except that a
//! second SIGTERM changes nothing: a scheduler's SIGKILL follows anyway, and one SIGTERM may
//! arrive twice (sent to the whole job and passed on by a local sweep) and must not kill the
//! trial before its checkpoint is written. [`exit_code`] tells the two apart: 130 for Ctrl-C,
//! 143 for SIGTERM, 128 plus the signal as shells report a process that a signal ended.
//!
//! Guards nest: the outermost one starts catching the signals (forgetting an earlier request)
//! and stops when it is dropped, so `runner trial` catches them from its start, through data
//! preparation, into training, whose own guard then changes nothing.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The first signal caught since the outermost guard was installed (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Guards alive.
static DEPTH: AtomicUsize = AtomicUsize::new(0);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    if signal == libc::SIGINT {
        // SAFETY: `signal` is async-signal-safe; restoring the default makes a second Ctrl-C fatal.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

/// While alive, Ctrl-C and SIGTERM request a stop instead of killing the process.
pub struct Guard(());

impl Guard {
    /// Starts catching Ctrl-C and SIGTERM (when no other guard already does).
    pub fn install() -> Guard {
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            SIGNAL.store(0, Ordering::SeqCst);
            #[cfg(unix)]
            // SAFETY: the handler only touches an atomic and calls the async-signal-safe `signal`.
            unsafe {
                let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::signal(libc::SIGINT, handler);
                libc::signal(libc::SIGTERM, handler);
            }
        }
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            #[cfg(unix)]
            // SAFETY: restores the default dispositions.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
            }
        }
    }
}

/// Whether Ctrl-C or SIGTERM came since the outermost guard was installed.
pub fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// Whether the request came by SIGTERM (a scheduler or `kill`) rather than Ctrl-C.
pub fn by_sigterm() -> bool {
    SIGNAL.load(Ordering::SeqCst) == SIGTERM
}

/// The exit code of a process that a request stopped: 130 for Ctrl-C (SIGINT), 143 for
/// SIGTERM; `None` when none came.
pub fn exit_code() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        SIGTERM => Some(128 + SIGTERM as u8),
        _ => Some(128 + SIGINT as u8),
    }
}

/// What stopped the process, for messages: `SIGINT (Ctrl-C)` or `SIGTERM`.
pub fn describe() -> &'static str {
    match SIGNAL.load(Ordering::SeqCst) {
        SIGTERM => "SIGTERM",
        _ => "SIGINT (Ctrl-C)",
    }
}
