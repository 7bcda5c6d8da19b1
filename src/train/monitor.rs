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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            accuracy: 0.5,
            loss: 1.0,
            val_accuracy,
            val_loss,
            learning_rate: 1e-3,
            metrics: Default::default(),
        }
    }

    /// A monitor that has seen `best` at epoch 0.
    fn seen(best: f64) -> Monitor {
        Monitor { best: Some(best), best_epoch: 0, wait: 0 }
    }

    #[test]
    fn auto_mode_minimises_losses_and_maximises_everything_else() {
        for key in ["loss", "val_loss"] {
            assert!(!maximize(key, Mode::Auto), "{key}");
            assert!(maximize(key, Mode::Max), "{key}");
        }
        for key in ["accuracy", "val_accuracy", "val_f1_score", "val_top_k_accuracy", "val_auc", "val_pr_auc"] {
            assert!(maximize(key, Mode::Auto), "{key}");
            assert!(!maximize(key, Mode::Min), "{key}");
        }
    }

    #[test]
    fn value_reads_the_fixed_columns_and_further_metrics_by_name() {
        let mut r = record(0, 0.25, 0.75);
        r.metrics.insert("val_precision".into(), 0.5);
        assert_eq!(value(&r, "val_loss"), Some(0.25));
        assert_eq!(value(&r, "val_accuracy"), Some(0.75));
        assert_eq!(value(&r, "val_precision"), Some(0.5));
        assert_eq!(value(&r, "val_recall"), None);
    }

    #[test]
    fn the_first_finite_value_is_always_the_best() {
        let mut m = Monitor::default();
        assert!(m.update(0, 5.0, false, 100.0), "no best yet, whatever min_delta");
        assert_eq!(m, Monitor { best: Some(5.0), best_epoch: 0, wait: 0 });
    }

    #[test]
    fn minimising_needs_a_drop_of_more_than_min_delta() {
        let mut m = seen(1.0);
        assert!(!m.update(1, 0.95, false, 0.1), "a drop of 0.05 is not more than 0.1");
        assert!(!m.update(2, 1.0, false, 0.0), "equal is no improvement");
        assert!(!m.update(3, 1.2, false, 0.0), "higher is worse");
        assert_eq!(m, Monitor { best: Some(1.0), best_epoch: 0, wait: 3 });
        assert!(m.update(4, 0.85, false, 0.1));
        assert_eq!(m, Monitor { best: Some(0.85), best_epoch: 4, wait: 0 });
        // A negative min_delta counts as its size, as in Keras.
        assert!(!seen(1.0).update(1, 0.95, false, -0.1));
        assert!(seen(1.0).update(1, 0.85, false, -0.1));
    }

    #[test]
    fn maximising_needs_a_rise_of_more_than_min_delta() {
        let mut m = seen(0.5);
        assert!(!m.update(1, 0.55, true, 0.1), "a rise of 0.05 is not more than 0.1");
        assert!(!m.update(2, 0.5, true, 0.0), "equal is no improvement");
        assert!(!m.update(3, 0.3, true, 0.0), "lower is worse");
        assert_eq!(m.wait, 3);
        assert!(m.update(4, 0.65, true, 0.1));
        assert_eq!(m, Monitor { best: Some(0.65), best_epoch: 4, wait: 0 });
        assert!(!seen(0.5).update(1, 0.55, true, -0.1));
    }

    #[test]
    fn non_finite_values_never_improve() {
        let mut m = Monitor::default();
        assert!(!m.update(0, f64::NAN, false, 0.0), "not even as the first value");
        assert_eq!(m.best, None);
        assert!(m.update(1, 2.0, false, 0.0));
        assert!(!m.update(2, f64::NEG_INFINITY, false, 0.0), "minus infinity is not a better loss");
        assert!(!m.update(3, f64::NAN, false, 0.0));
        assert!(!seen(0.5).update(1, f64::INFINITY, true, 0.0), "infinity is not a better accuracy");
        assert_eq!(m, Monitor { best: Some(2.0), best_epoch: 1, wait: 2 });
    }

    fn early(monitor: &str, mode: Mode, patience: usize, min_delta: f64) -> EarlyStopping {
        EarlyStopping { monitor: monitor.into(), mode, patience, min_delta, restore_best_weights: false }
    }

    /// The epoch (0-based) after which `config` stops on the val_loss / val_accuracy series, if any.
    fn stops_after(config: &EarlyStopping, series: &[(f64, f64)]) -> Option<usize> {
        let mut monitor = Monitor::default();
        series
            .iter()
            .enumerate()
            .find_map(|(e, &(loss, acc))| should_stop(config, &mut monitor, &record(e, loss, acc)).then_some(e))
    }

    #[test]
    fn early_stopping_waits_patience_epochs_without_improvement() {
        let losses = [(1.0, 0.5), (0.8, 0.6), (0.81, 0.7), (0.79, 0.65), (0.9, 0.6), (0.95, 0.6), (0.99, 0.6)];
        // patience 0: the first epoch that does not improve stops training.
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 0, 0.0), &losses), Some(2));
        // patience 2: 0.79 at epoch 3 improves, then two epochs without.
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 2, 0.0), &losses), Some(5));
        // min_delta 0.05: 0.8 improves on 1.0 by more; 0.79 does not improve on 0.8 by 0.05.
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 2, 0.05), &losses), Some(3));
        // Accuracy is maximised in auto mode: 0.7 at epoch 2 is the best, then three worse.
        assert_eq!(stops_after(&early("val_accuracy", Mode::Auto, 3, 0.0), &losses), Some(5));
        // mode = "min" on accuracy: the first epoch is the best, so epoch 1 stops it.
        assert_eq!(stops_after(&early("val_accuracy", Mode::Min, 0, 0.0), &losses), Some(1));
        // Not while improving.
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 0, 0.0), &[(1.0, 0.5), (0.9, 0.5), (0.8, 0.5)]), None);
        // A NaN never counts as an improvement: patience 1 stops after the first one.
        let nan = [(1.0, 0.5), (f64::NAN, 0.5), (f64::NAN, 0.5)];
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 1, 0.0), &nan), Some(1));
        assert_eq!(stops_after(&early("val_loss", Mode::Auto, 2, 0.0), &nan), Some(2));
    }

    #[test]
    fn early_stopping_never_stops_after_the_first_epoch() {
        let config = early("val_loss", Mode::Auto, 0, 0.0);
        assert_eq!(stops_after(&config, &[(1.0, 0.5)]), None);
        // Even when the first epoch gives nothing to improve on (a NaN loss).
        assert_eq!(stops_after(&config, &[(f64::NAN, 0.5), (1.0, 0.5), (1.0, 0.5)]), Some(2));
        // Nor on a column the history lacks, until the second epoch.
        assert_eq!(stops_after(&early("val_recall", Mode::Auto, 0, 0.0), &[(1.0, 0.5), (0.5, 0.9)]), Some(1));
    }
}
