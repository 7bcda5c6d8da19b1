//! The one error type of the library, and the exit code each class of failure maps to.
//!
//! Messages are written for the person who wrote the config: they name the file, key, image or
//! path involved and say what to do. Exit codes follow sysexits(3), as typos and cargo-deny do.

use std::path::Path;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is malformed or describes something impossible (already rendered with
    /// file:line:col and a caret; all problems at once).
    #[error("{0}")]
    Config(String),
    /// The dataset folder is missing, empty, or holds no usable images for a class.
    #[error("{0}")]
    Data(String),
    /// The command line itself is wrong.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, naming the path.
        context: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Training could not go on (for example a non-finite loss).
    #[error("{0}")]
    Train(String),
    /// The config asks for a GPU this machine or build cannot use (which one, and why).
    #[error("{0}")]
    Device(String),
    /// Training was stopped with Ctrl-C or SIGTERM (at the given point).
    #[error(
        "interrupted at {0}; the run folder has a checkpoint there, and `runner resume <run folder>` goes on from it"
    )]
    Interrupted(String),
    /// `runner verify` found a rerun that differs from the run (the first difference), or
    /// `runner gpu-check` a device whose results differ from the CPU's.
    #[error("{0}")]
    NotReproduced(String),
    /// A sweep's pruning stopped the run at an epoch boundary (why); a trial that ends so is
    /// `pruned`, not failed.
    #[error("pruned: {0}")]
    Pruned(String),
    /// A sweep was stopped with Ctrl-C or SIGTERM (what it had done).
    #[error("sweep interrupted: {0}")]
    SweepInterrupted(String),
}

impl Error {
    /// The process exit code for this error (sysexits: 64 usage, 65 data, 69 device
    /// unavailable, 74 I/O, 78 config; 130 for Ctrl-C, as shells report it; the binary makes
    /// that 143 when SIGTERM stopped it, see `interrupt::exit_code`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 64,
            Error::Data(_) => 65,
            Error::Device(_) => 69,
            Error::Io { .. } => 74,
            Error::Config(_) => 78,
            Error::Train(_) | Error::NotReproduced(_) | Error::Pruned(_) => 1,
            Error::Interrupted(_) | Error::SweepInterrupted(_) => 130,
        }
    }

    /// Wraps an I/O error with what we were doing to which path.
    pub fn io(action: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io { context: format!("{action} `{}`", path.display()), source }
    }
}

/// The text a caught panic carries (dfdx's GPU operators panic on a device error, as their
/// forward passes return tensors, not results).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}
