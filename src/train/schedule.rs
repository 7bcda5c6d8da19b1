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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    /// A `[train.lr_schedule]` table from its TOML body.
    fn schedule(text: &str) -> LrSchedule {
        toml::from_str(text).unwrap()
    }

    /// Step `step` of epoch `epoch`, 10 steps an epoch, 3 epochs.
    fn at(epoch: usize, step: usize) -> Position {
        Position { epoch, step, steps: 10, epochs: 3 }
    }

    /// The rate at `at` with base 0.1 and no plateau state.
    fn rate(s: &LrSchedule, at: Position) -> f64 {
        learning_rate(0.1, Some(s), at, &Plateau::default())
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn no_schedule_and_constant_keep_the_base_rate() {
        let constant = schedule("type = \"constant\"");
        for (e, s) in [(0, 0), (1, 7), (2, 9)] {
            assert_eq!(learning_rate(0.1, None, at(e, s), &Plateau::default()), 0.1);
            assert_eq!(rate(&constant, at(e, s)), 0.1);
        }
    }

    #[test]
    fn step_decay_multiplies_by_factor_every_n_epochs_whatever_the_step() {
        let s = schedule("type = \"step_decay\"\nevery = 2");
        let rates: Vec<f64> = (0..5).map(|e| rate(&s, at(e, 9))).collect();
        assert_eq!(rates, [0.1, 0.1, 0.05, 0.05, 0.025], "default factor 0.5");
        let s = schedule("type = \"step_decay\"\nevery = 1\nfactor = 0.1");
        assert_close(rate(&s, at(2, 0)), 0.1 * 0.01);
    }

    #[test]
    fn exponential_decay_is_lr_times_rate_to_the_global_step_over_decay_steps() {
        // 4 steps an epoch, decay every 10: step 3 of epoch 2 is global step 11.
        let at = Position { epoch: 2, step: 3, steps: 4, epochs: 5 };
        let smooth = schedule("type = \"exponential\"\ndecay_rate = 0.5\ndecay_steps = 10");
        assert_close(rate(&smooth, at), 0.1 * 0.5f64.powf(1.1));
        assert_close(rate(&smooth, Position { epoch: 0, step: 5, ..at }), 0.1 * 0.5f64.sqrt());
        assert_eq!(rate(&smooth, Position { epoch: 0, step: 0, ..at }), 0.1);
        let stair = schedule("type = \"exponential\"\ndecay_rate = 0.5\ndecay_steps = 10\nstaircase = true");
        assert_eq!(rate(&stair, at), 0.05, "11 / 10 floors to 1");
        assert_eq!(rate(&stair, Position { epoch: 2, step: 1, ..at }), 0.1, "global step 9");
        assert_eq!(rate(&stair, Position { epoch: 5, step: 0, ..at }), 0.025, "global step 20");
    }

    #[test]
    fn cosine_decay_goes_from_the_rate_to_alpha_times_it_over_the_run() {
        let s = schedule("type = \"cosine\"");
        // 30 steps in all: progress is global step / 30.
        assert_eq!(rate(&s, at(0, 0)), 0.1);
        assert_close(rate(&s, at(1, 5)), 0.1 * 0.5 * (1.0 + (std::f64::consts::PI / 2.0).cos()));
        assert_close(rate(&s, at(1, 5)), 0.05);
        assert_close(rate(&s, at(2, 0)), 0.1 * 0.5 * (1.0 + (std::f64::consts::PI * 2.0 / 3.0).cos()));
        assert_close(rate(&s, at(2, 0)), 0.025);
        let s = schedule("type = \"cosine\"\nalpha = 0.2");
        assert_close(rate(&s, at(1, 5)), 0.1 * (0.2 + 0.8 * 0.5));
    }

    #[test]
    fn cosine_warm_up_climbs_linearly_then_decays_over_the_remaining_steps() {
        let s = schedule("type = \"cosine\"\nwarmup_epochs = 1\nalpha = 0.1");
        // Warm-up: step i of the first 10 gets 0.1 · (i + 1) / 10.
        assert_close(rate(&s, at(0, 0)), 0.01);
        assert_close(rate(&s, at(0, 4)), 0.05);
        assert_close(rate(&s, at(0, 9)), 0.1);
        // Then cosine over the other 20 steps: step 10 starts it, step 20 is half way.
        assert_close(rate(&s, at(1, 0)), 0.1);
        assert_close(rate(&s, at(2, 0)), 0.1 * (0.1 + 0.9 * 0.5));
        let last = 0.1 * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 19.0 / 20.0).cos()));
        assert_close(rate(&s, at(2, 9)), last);
    }

    fn record(epoch: usize, val_loss: f64, val_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            accuracy: 0.0,
            loss: 0.0,
            val_accuracy,
            val_loss,
            learning_rate: 1e-3,
            metrics: Default::default(),
        }
    }

    fn plateau(text: &str) -> ReduceOnPlateau {
        match schedule(&format!("type = \"reduce_on_plateau\"\n{text}")) {
            LrSchedule::ReduceOnPlateau(p) => p,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// The (epoch, new rate) of each reduction over `records`, from base 0.1.
    fn reductions(config: &ReduceOnPlateau, records: &[EpochRecord]) -> (Vec<(usize, f64)>, Plateau) {
        let mut state = Plateau::default();
        let r = records.iter().filter_map(|r| state.update(config, 0.1, r).map(|lr| (r.epoch, lr))).collect();
        (r, state)
    }

    #[test]
    fn reduce_on_plateau_waits_patience_epochs_cools_down_and_stops_at_min_lr() {
        let p = plateau("patience = 2\nfactor = 0.5\nmin_delta = 0.0\ncooldown = 1\nmin_lr = 0.02");
        let losses = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85];
        let records: Vec<EpochRecord> = losses.iter().enumerate().map(|(e, &l)| record(e, l, 0.0)).collect();
        let (reduced, state) = reductions(&p, &records);
        // Epoch 3: two epochs without improvement. Epoch 4 ends the cooldown and counts one; 5
        // improves; 6 and 7 count, 7 reduces; 8 ends the cooldown and counts; 9 reduces to 0.0125,
        // held at min_lr 0.02; at min_lr nothing more happens.
        assert_eq!(reduced, [(3, 0.05), (7, 0.025), (9, 0.02)]);
        assert_eq!(learning_rate(0.1, Some(&LrSchedule::ReduceOnPlateau(p)), at(2, 0), &state), 0.02);
        assert_eq!(
            learning_rate(0.1, Some(&schedule("type = \"reduce_on_plateau\"")), at(0, 0), &Plateau::default()),
            0.1
        );
    }

    #[test]
    fn reduce_on_plateau_counts_min_delta_and_maximises_accuracy() {
        // min_delta 0.05: 0.97 and 0.96 are no improvement on 1.0, so epoch 2 reduces.
        let p = plateau("patience = 2\nfactor = 0.5\nmin_delta = 0.05");
        let records = [record(0, 1.0, 0.0), record(1, 0.97, 0.0), record(2, 0.96, 0.0)];
        assert_eq!(reductions(&p, &records).0, [(2, 0.05)]);
        // Auto mode on an accuracy: higher is better, so rising accuracy never reduces and
        // falling accuracy does.
        let p = plateau("monitor = \"val_accuracy\"\npatience = 1\nfactor = 0.5\nmin_delta = 0.0");
        assert_eq!(p.mode, Mode::Auto);
        let rising = [record(0, 0.0, 0.5), record(1, 0.0, 0.6), record(2, 0.0, 0.7)];
        assert_eq!(reductions(&p, &rising).0, Vec::<(usize, f64)>::new());
        let falling = [record(0, 0.0, 0.7), record(1, 0.0, 0.6), record(2, 0.0, 0.5)];
        assert_eq!(reductions(&p, &falling).0, [(1, 0.05), (2, 0.025)]);
        // A missing or non-finite value never counts as an improvement.
        let p = plateau("monitor = \"val_nothing\"\npatience = 1\nfactor = 0.5");
        assert_eq!(reductions(&p, &rising).0, [(0, 0.05), (1, 0.025), (2, 0.0125)]);
    }
}
