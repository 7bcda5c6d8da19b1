//! Learning-rate schedules (`[train.lr_schedule]`), Keras' names and formulas: the rate for
//! each optimizer step follows from the epoch and step alone, except `reduce_on_plateau`,
//! whose state (saved in checkpoints) changes at the end of each epoch.

use serde::{Deserialize, Serialize};

use super::monitor;
use super::EpochRecord;
use crate::config::{LrSchedule, ReduceOnPlateau};

/// Where in training a step is.
#[derive(Clone, Copy, Debug)]
pub struct Position {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based step within it.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// Epochs in all.
    pub epochs: usize,
}

/// The learning rate of the step at `at`: `base` shaped by `schedule` (`plateau` holds the
/// rate `reduce_on_plateau` has reached).
pub fn learning_rate(base: f64, schedule: Option<&LrSchedule>, at: Position, plateau: &Plateau) -> f64 {
    let global = (at.epoch * at.steps + at.step) as f64;
    match schedule {
        None | Some(LrSchedule::Constant(_)) => base,
        Some(LrSchedule::StepDecay(s)) => base * s.factor.powi((at.epoch / s.every.max(1)) as i32),
        Some(LrSchedule::Exponential(s)) => {
            let p = global / s.decay_steps.max(1) as f64;
            base * s.decay_rate.powf(if s.staircase { p.floor() } else { p })
        }
        Some(LrSchedule::Cosine(s)) => {
            let total = (at.epochs * at.steps) as f64;
            let warm = (s.warmup_epochs * at.steps) as f64;
            if global < warm {
                // Linear warm-up from base/warm-steps to base.
                base * (global + 1.0) / warm
            } else {
                let progress = ((global - warm) / (total - warm).max(1.0)).min(1.0);
                base * (s.alpha + (1.0 - s.alpha) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
            }
        }
        Some(LrSchedule::ReduceOnPlateau(_)) => plateau.lr.unwrap_or(base),
    }
}

/// Keras' `ReduceLROnPlateau` state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// The current rate, once reduced (none: the base rate).
    pub lr: Option<f64>,
    /// Best monitored value so far.
    pub best: Option<f64>,
    /// Epochs without improvement.
    pub wait: usize,
    /// Epochs left before reductions may happen again.
    pub cooldown: usize,
}

impl Plateau {
    /// Keras' `on_epoch_end`: updates the state with `record`; returns the new rate when it
    /// was reduced.
    pub fn update(&mut self, config: &ReduceOnPlateau, base: f64, record: &EpochRecord) -> Option<f64> {
        let current = monitor::value(record, &config.monitor).unwrap_or(f64::NAN);
        let maximize = monitor::maximize(&config.monitor, config.mode);
        if self.cooldown > 0 {
            self.cooldown -= 1;
            self.wait = 0;
        }
        let improved = current.is_finite()
            && match self.best {
                None => true,
                Some(best) if maximize => current > best + config.min_delta,
                Some(best) => current < best - config.min_delta,
            };
        if improved {
            self.best = Some(current);
            self.wait = 0;
            return None;
        }
        if self.cooldown > 0 {
            return None;
        }
        self.wait += 1;
        let lr = self.lr.unwrap_or(base);
        if self.wait >= config.patience && lr > config.min_lr {
            let reduced = (lr * config.factor).max(config.min_lr);
            self.lr = Some(reduced);
            self.cooldown = config.cooldown;
            self.wait = 0;
            return Some(reduced);
        }
        None
    }
}
