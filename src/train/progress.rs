//! What a person watching sees: a Keras-like progress bar on a terminal, one plain line per
//! epoch otherwise (logs, CI, Slurm output files). Both are information: `--quiet`, which
//! lowers the log level to warnings, silences the bar as well as the lines.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::history::EpochRecord;

/// Progress of one epoch.
pub struct Progress {
    tty: bool,
    epochs: usize,
    steps: usize,
    start: Instant,
}

impl Progress {
    /// Starts epoch `epoch` (0-based) of `epochs`, with `steps` batches.
    pub fn start(epoch: usize, epochs: usize, steps: usize) -> Self {
        let tty = std::io::stderr().is_terminal() && tracing::enabled!(tracing::Level::INFO);
        if tty {
            eprintln!("Epoch {}/{epochs}", epoch + 1);
        }
        Progress { tty, epochs, steps, start: Instant::now() }
    }

    /// After each batch: redraws the bar with the running loss and accuracy.
    pub fn step(&self, step: usize, loss: f64, accuracy: f64) {
        if !self.tty {
            return;
        }
        let width = 30;
        let done = (step * width) / self.steps.max(1);
        let bar = format!(
            "{}{}{}",
            "=".repeat(done.saturating_sub(1)),
            if done > 0 { ">" } else { "" },
            ".".repeat(width - done)
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{step:>5}/{} [{bar}] - loss: {loss:.4} - accuracy: {accuracy:.4}", self.steps);
        let _ = err.flush();
    }

    /// At the end of the epoch: the Keras summary line.
    pub fn finish(&self, r: &EpochRecord) {
        let secs = self.start.elapsed().as_secs_f64();
        let per_step = secs * 1000.0 / self.steps.max(1) as f64;
        let line = format!(
            "{s}/{s} - {secs:.1}s {per_step:.0}ms/step - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
            r.loss,
            r.accuracy,
            r.val_loss,
            r.val_accuracy,
            s = self.steps
        );
        if self.tty {
            eprintln!("\r{line}\x1b[K");
        } else {
            tracing::info!("epoch {}/{} {line}", r.epoch + 1, self.epochs);
        }
    }
}
