//! Watching a history column across epochs, as Keras' `EarlyStopping` and `ModelCheckpoint`
//! do: which epoch is the best so far, and when to stop because it stopped improving.

use serde::{Deserialize, Serialize};

use super::EpochRecord;
use crate::config::{EarlyStopping, Mode};

/// The value of history column `key` in `record`, if it is one.
pub fn value(record: &EpochRecord, key: &str) -> Option<f64> {
    record.columns().get(key).copied()
}

/// Whether higher is better for `key` under `mode` (`auto`: lower for losses).
pub fn maximize(key: &str, mode: Mode) -> bool {
    match mode {
        Mode::Max => true,
        Mode::Min => false,
        Mode::Auto => !key.contains("loss"),
    }
}

/// The best value of a column so far and how long ago it was, saved in checkpoints so a
/// resumed run decides exactly as an uninterrupted one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    /// Best value so far (none before the first epoch).
    pub best: Option<f64>,
    /// Its epoch (0-based).
    pub best_epoch: usize,
    /// Epochs since the last improvement.
    pub wait: usize,
}

impl Monitor {
    /// Records `current` (the value at `epoch`); true when it improves on the best by more
    /// than `min_delta` (Keras: `current - min_delta > best` when maximising,
    /// `current + min_delta < best` when minimising). Non-finite values never improve.
    pub fn update(&mut self, epoch: usize, current: f64, maximize: bool, min_delta: f64) -> bool {
        self.wait += 1;
        let improved = current.is_finite()
            && match self.best {
                None => true,
                Some(best) if maximize => current - min_delta.abs() > best,
                Some(best) => current + min_delta.abs() < best,
            };
        if improved {
            self.best = Some(current);
            self.best_epoch = epoch;
            self.wait = 0;
        }
        improved
    }
}

/// Keras' `EarlyStopping.on_epoch_end`: updates `monitor` with `record`; true when training
/// should stop (no improvement for `patience` epochs, never after the first epoch).
pub fn should_stop(config: &EarlyStopping, monitor: &mut Monitor, record: &EpochRecord) -> bool {
    let current = value(record, &config.monitor).unwrap_or(f64::NAN);
    let improved = monitor.update(record.epoch, current, maximize(&config.monitor, config.mode), config.min_delta);
    !improved && monitor.wait >= config.patience && record.epoch > 0
}
