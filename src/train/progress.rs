//! What a person watching sees: a Keras-like progress bar on a terminal, redrawn after every
//! training batch and every validation batch; in a log (CI, Slurm output files, a pipe) a line
//! every few seconds during an epoch (as `crate::progress` paces them) and one at its end, so
//! a long epoch is never silent. Both are information: `--quiet`, which lowers the log level
//! to warnings, silences the bar as well as the lines.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::history::EpochRecord;
use crate::progress::{self as pace, Pacer};

/// Progress of one epoch.
pub struct Progress {
    /// Where it goes: a terminal's bar, a log's paced lines, or nowhere (`--quiet`).
    shown: Shown,
    epoch: usize,
    epochs: usize,
    steps: usize,
    start: Instant,
    /// The last training figures, shown again while validating.
    last: String,
}

enum Shown {
    Hidden,
    Bar,
    Lines(Pacer),
}

impl Progress {
    /// Starts epoch `epoch` (0-based) of `epochs`, with `steps` batches.
    pub fn start(epoch: usize, epochs: usize, steps: usize) -> Self {
        let shown = if !tracing::enabled!(tracing::Level::INFO) {
            Shown::Hidden
        } else if std::io::stderr().is_terminal() {
            eprintln!("Epoch {}/{epochs}", epoch + 1);
            Shown::Bar
        } else {
            Shown::Lines(Pacer::new(pace::interval()))
        };
        Progress { shown, epoch, epochs, steps, start: Instant::now(), last: String::new() }
    }

    /// After each batch: redraws the bar with the running loss and accuracy, or writes a
    /// line to the log when one is due.
    pub fn step(&mut self, step: usize, loss: f64, accuracy: f64) {
        self.last = format!("loss: {loss:.4} - accuracy: {accuracy:.4}");
        match &mut self.shown {
            Shown::Hidden => {}
            Shown::Bar => self.redraw(step, self.steps, ""),
            Shown::Lines(pacer) => {
                let elapsed = self.start.elapsed();
                if pacer.due(elapsed) {
                    let batches = pace::line("batches", "batch", step as u64, Some(self.steps as u64), elapsed);
                    tracing::info!("epoch {}/{}: {batches} - {}", self.epoch + 1, self.epochs, self.last);
                }
            }
        }
    }

    /// After each validation batch: `done` of `total` images, shown like the training batches.
    pub fn validating(&mut self, done: usize, total: usize) {
        match &mut self.shown {
            Shown::Hidden => {}
            Shown::Bar => self.redraw(self.steps, self.steps, &format!(" - validating {done}/{total}")),
            Shown::Lines(pacer) => {
                let elapsed = self.start.elapsed();
                if pacer.due(elapsed) {
                    let images = pace::line("validation", "img", done as u64, Some(total as u64), elapsed);
                    tracing::info!("epoch {}/{}: {images}", self.epoch + 1, self.epochs);
                }
            }
        }
    }

    fn redraw(&self, step: usize, steps: usize, tail: &str) {
        let width = 30;
        let done = (step * width) / steps.max(1);
        let bar = format!(
            "{}{}{}",
            "=".repeat(done.saturating_sub(1)),
            if done > 0 { ">" } else { "" },
            ".".repeat(width - done)
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{step:>5}/{steps} [{bar}] - {}{tail}\x1b[K", self.last);
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
        match self.shown {
            Shown::Hidden => {}
            Shown::Bar => eprintln!("\r{line}\x1b[K"),
            Shown::Lines(_) => tracing::info!("epoch {}/{} {line}", r.epoch + 1, self.epochs),
        }
    }
}
