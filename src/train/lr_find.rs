//! The learning-rate finder behind `runner lr-find`, after fastai's `Learner.lr_find`
//! (fastai/callback/schedule.py): a short training whose learning rate grows exponentially
//! from `start_lr` to `end_lr` over `steps` optimizer steps, recording a smoothed loss, stopped
//! early once that loss has grown past 4 times its best (the rate is then far too high), and a
//! suggested rate read off the curve by fastai's `valley` rule. Everything here follows
//! fastai's code step for step (in double precision where fastai smooths in float32);
//! tests/reference/make_lr_find_reference.py runs fastai's own `lr_find` on fixed loss curves
//! and tests/it/lr_find.rs compares.
//!
//! The network starts as a run of the same config starts (weights from the seed, or
//! `model.weights`), and trains on the training split only, in the order, augmentation and
//! dropout a run's first epochs would use; nothing of it is saved but the curve.

use dfdx::prelude::*;

use crate::config::Plan;
use crate::data::{epoch_order, sampling, Images};
use crate::model::layers::Training;
use crate::model::Network;
use crate::ops::Backend;
use crate::seed::{self, Stream};
use crate::{Error, Result};

use super::loss;
use super::optimizer::Optimizer;

/// fastai's defaults.
pub const START_LR: f64 = 1e-7;
/// fastai's defaults.
pub const END_LR: f64 = 10.0;
/// fastai's defaults.
pub const STEPS: usize = 100;

/// fastai's `AvgSmoothLoss` weight of the running mean.
const BETA: f64 = 0.98;
/// The smoothed loss may grow to this many times its best before the search stops.
const DIVERGED: f64 = 4.0;
/// Steps left off the end of the curve before the suggestion, as fastai does: the last few
/// are where the loss shoots up.
const SKIP_END: usize = 5;
/// The fewest steps that leave a point to suggest (fastai runs at least as many).
pub const MIN_STEPS: usize = SKIP_END + 1;

/// The range of rates tried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// The rate of the first step.
    pub start_lr: f64,
    /// The rate the last step would reach (`steps` steps after the first; not tried itself).
    pub end_lr: f64,
    /// Optimizer steps at most.
    pub steps: usize,
}

impl Default for Range {
    fn default() -> Self {
        Range { start_lr: START_LR, end_lr: END_LR, steps: STEPS }
    }
}

impl Range {
    /// The options checked: a positive start below a finite end, and at least `MIN_STEPS`
    /// steps.
    pub fn check(&self) -> std::result::Result<(), String> {
        let Range { start_lr, end_lr, steps } = *self;
        if !(start_lr > 0.0 && start_lr.is_finite()) {
            return Err(format!("--start-lr {start_lr}: give a learning rate above 0, such as 1e-7"));
        }
        if !(end_lr > start_lr && end_lr.is_finite()) {
            return Err(format!(
                "--end-lr {end_lr} must be above --start-lr {start_lr} (the rate grows from one to the other)"
            ));
        }
        if steps < MIN_STEPS {
            return Err(format!(
                "--steps {steps}: give at least {MIN_STEPS} steps (the last {SKIP_END} are left out of the suggestion; \
                 fastai's default is {STEPS})"
            ));
        }
        Ok(())
    }

    /// The rate of step `step` (0-based): `start · (end / start)^(step / steps)`, fastai's
    /// `SchedExp` at `train_iter / num_it`.
    pub fn learning_rate(&self, step: usize) -> f64 {
        self.start_lr * (self.end_lr / self.start_lr).powf(step as f64 / self.steps as f64)
    }
}

/// fastai's `AvgSmoothLoss`: an exponential moving average of the batch losses with weight
/// `BETA`, divided by `1 - BETA^n` so that the first values are not pulled towards 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smoother {
    count: i32,
    mean: f64,
}

impl Smoother {
    /// Adds a batch's loss; the smoothed loss so far.
    pub fn add(&mut self, loss: f64) -> f64 {
        self.count += 1;
        self.mean = loss + BETA * (self.mean - loss);
        self.mean / (1.0 - BETA.powi(self.count))
    }
}

/// One step of the search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The step (0-based).
    pub step: usize,
    /// Its learning rate.
    pub learning_rate: f64,
    /// Its batch's mean loss.
    pub loss: f64,
    /// The smoothed loss after it.
    pub smoothed_loss: f64,
}

/// Why the search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every step ran.
    Completed,
    /// The smoothed loss grew past 4 times its best.
    Diverged,
    /// A batch's loss was not a finite number (the weights are past saving).
    NotFinite,
}

/// The search's curve and how it ended.
#[derive(Clone, Debug)]
pub struct Curve {
    /// One point per step run.
    pub points: Vec<Point>,
    /// Why it ended.
    pub ending: Ending,
    /// The steps planned.
    pub steps: usize,
}

/// The bookkeeping of the search, fastai's `Recorder` and `LRFinder` callbacks: each step's
/// rate, loss and smoothed loss, and when to stop.
#[derive(Clone, Debug)]
pub struct Recorder {
    range: Range,
    smoother: Smoother,
    best: f64,
    points: Vec<Point>,
}

impl Recorder {
    /// Nothing recorded yet.
    pub fn new(range: Range) -> Recorder {
        Recorder { range, smoother: Smoother::default(), best: f64::INFINITY, points: Vec::new() }
    }

    /// The rate of the next step.
    pub fn learning_rate(&self) -> f64 {
        self.range.learning_rate(self.points.len())
    }

    /// Records the next step's batch loss; how the search ends when it ends after this step:
    /// at a loss that is not a number, when the smoothed loss has grown past 4 times its best
    /// so far (this step's included), or after the last step.
    pub fn record(&mut self, loss: f64) -> Option<Ending> {
        let (step, learning_rate) = (self.points.len(), self.learning_rate());
        let smoothed_loss = self.smoother.add(loss);
        self.points.push(Point { step, learning_rate, loss, smoothed_loss });
        if !loss.is_finite() {
            return Some(Ending::NotFinite);
        }
        self.best = self.best.min(smoothed_loss);
        if smoothed_loss > DIVERGED * self.best {
            return Some(Ending::Diverged);
        }
        (step + 1 >= self.range.steps).then_some(Ending::Completed)
    }

    /// The curve, ended as `ending` says.
    pub fn finish(self, ending: Ending) -> Curve {
        Curve { points: self.points, ending, steps: self.range.steps }
    }
}

/// fastai's `valley`, word for word: for every point the length of the longest strictly
/// decreasing sequence of losses ending there (not necessarily of neighbours), the longest of
/// all (the first one found, updated only when longer), and the point a third plus a sixth of
/// the way into it: `start + int(len / 3) + int(len / 6)` with `len = end - start`. As in
/// fastai, `start` is `end - length`, one before the sequence's first point (so the point is
/// about half-way down the slope); when that is -1 and the sequence is short, the index is -1,
/// which Python reads as the last point, and so does this. The index into `losses`; `None`
/// for no losses (fastai fails there).
pub fn valley(losses: &[f64]) -> Option<usize> {
    let n = losses.len();
    if n == 0 {
        return None;
    }
    let (mut max_start, mut max_end) = (0i64, 0usize);
    let mut lds = vec![1usize; n];
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as i64 - lds[max_end] as i64;
            }
        }
    }
    let sections = (max_end as i64 - max_start) as f64 / 3.0;
    let idx = max_start + sections as i64 + (sections / 2.0) as i64;
    Some(if idx < 0 { (n as i64 + idx) as usize } else { idx as usize })
}

impl Curve {
    /// The point fastai's `lr_find` suggests: `valley` on the smoothed losses without the
    /// first tenth of the planned steps and the last `SKIP_END` recorded, cut before the first
    /// loss that is not a number. fastai does not stop at a NaN loss and records NaN to the
    /// last planned step, so after a NaN the last five are counted from there; the search here
    /// stops at once, the weights being past saving, and counts as fastai would. An index into
    /// `points`; `None` when nothing is left to choose from.
    pub fn suggestion(&self) -> Option<usize> {
        let points = &self.points;
        let nan = points.last().is_some_and(|p| p.smoothed_loss.is_nan());
        let recorded = if nan { self.steps.max(points.len()) } else { points.len() };
        let first = (self.steps / 10).min(points.len());
        let end = recorded.saturating_sub(SKIP_END).clamp(first, points.len());
        let kept = &points[first..end];
        let finite = kept.iter().position(|p| !p.smoothed_loss.is_finite()).unwrap_or(kept.len());
        let losses: Vec<f64> = kept[..finite].iter().map(|p| p.smoothed_loss).collect();
        valley(&losses).map(|i| first + i)
    }
}

/// Runs the search for `plan` on `dev`, training on the images `train` of `images` from the
/// config's initial weights (`initial`, when the config has `model.weights`, else drawn from
/// the seed as a run draws them). Each step's batch is the one a run would train on at that
/// point (batches of `train.batch_size` in the seed's order, epoch after epoch, the last
/// short batch of an epoch left out as fastai's training loader does, augmented), with the
/// config's optimizer at the step's rate.
pub fn search<D: Backend>(
    dev: &D,
    plan: &Plan,
    images: &Images,
    train: &[usize],
    initial: Option<&[crate::results::safetensors::Named]>,
    range: Range,
) -> Result<Curve> {
    let cfg = &plan.config;
    let seed = cfg.experiment.seed;
    let mut net = Network::new(plan.model.clone(), dev, &mut seed::rng(seed, Stream::Init, &[]));
    if let Some(weights) = initial {
        net.load_weights(dev, weights).map_err(|e| Error::Train(format!("the initial weights: {e}")))?;
    }
    let mut optimizer = Optimizer::<D>::new(&cfg.train);
    let batch_size = cfg.train.batch_size;
    // Full batches only, unless the split is smaller than one batch; an epoch is over- or
    // undersampled as a run's (`data.sampling`) and the loss weighted as a run's.
    let sampling = cfg.data.sampling;
    let epoch_len = sampling::epoch_len(train, &images.labels, sampling);
    let per_epoch = if epoch_len >= batch_size { epoch_len / batch_size } else { 1 };
    let class_weights = loss::class_weights(cfg.train.class_weight.as_ref(), &images.classes, &images.labels_of(train));
    let progress = crate::progress::Progress::new("finding a learning rate", range.steps as u64);
    let mut recorder = Recorder::new(range);
    let mut ending = Ending::Completed;
    let (mut order, mut keys) = (Vec::new(), Vec::new());
    for step in 0..range.steps {
        let (epoch, in_epoch) = (step / per_epoch, step % per_epoch);
        if in_epoch == 0 {
            order = epoch_order(&sampling::epoch_images(train, &images.labels, sampling, seed, epoch), seed, epoch);
            keys = if sampling.is_some() { sampling::augment_keys(&order, images.len()) } else { order.clone() };
        }
        let batch = in_epoch * batch_size..((in_epoch + 1) * batch_size).min(order.len());
        let (indices, keys) = (&order[batch.clone()], &keys[batch]);
        let x = super::inputs(cfg, images, indices, keys, epoch)?;
        let input = dev.tensor_from_vec(x, (indices.len(), images.image_len()));
        let at = Training { seed, epoch, step: in_epoch };
        let (logits, state_updates) = net.forward_train(input.traced(Gradients::leaky()), at);
        let loss = super::Truth::of(images, indices).loss(&cfg.train, logits, class_weights.as_deref());
        let learning_rate = recorder.learning_rate();
        progress.inc(1);
        // The network is thrown away at the end: a last update would change nothing recorded.
        if let Some(end) = recorder.record(f64::from(loss.as_vec()[0])) {
            ending = end;
            break;
        }
        let mut grads = loss.try_backward().map_err(|e| Error::Train(format!("the backward pass failed: {e:?}")))?;
        optimizer
            .update(&mut net.params, &mut grads, learning_rate)
            .map_err(|e| Error::Train(format!("optimizer step failed: {e:?}")))?;
        net.set_state(state_updates);
    }
    progress.finish();
    Ok(recorder.finish(ending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_grows_exponentially_from_start_towards_end() {
        let r = Range { start_lr: 1e-4, end_lr: 1.0, steps: 4 };
        let rates: Vec<f64> = (0..5).map(|s| r.learning_rate(s)).collect();
        for (got, want) in rates.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((got / want - 1.0).abs() < 1e-12, "{rates:?}");
        }
    }

    #[test]
    fn bad_ranges_are_refused_naming_the_option() {
        let bad = |start_lr, end_lr, steps| Range { start_lr, end_lr, steps }.check().unwrap_err();
        assert!(bad(1e-3, 1e-3, 100).contains("--end-lr"));
        assert!(bad(1.0, 1e-3, 100).contains("--end-lr"));
        assert!(bad(0.0, 1.0, 100).contains("--start-lr"));
        assert!(bad(f64::NAN, 1.0, 100).contains("--start-lr"));
        assert!(bad(1e-3, f64::INFINITY, 100).contains("--end-lr"));
        assert!(bad(1e-3, 1.0, 5).contains("--steps"));
        assert!(Range { start_lr: 1e-3, end_lr: 1.0, steps: 6 }.check().is_ok());
        assert!(Range::default().check().is_ok());
    }

    #[test]
    fn the_smoothed_loss_is_debiased() {
        let mut s = Smoother::default();
        // A constant loss stays itself from the first step on.
        for _ in 0..5 {
            assert!((s.add(2.5) - 2.5).abs() < 1e-12);
        }
    }

    /// Hand-worked: losses 5, 4, 6, 3, 2, 7, 1. The longest decreasing sequences end at the
    /// last point (5, 4, 3, 2, 1: length 5), first found there, so start = 6 - 5 = 1,
    /// len / 3 = 5 / 3, index 1 + 1 + 0 = 2.
    #[test]
    fn valley_follows_fastai_by_hand() {
        assert_eq!(valley(&[5.0, 4.0, 6.0, 3.0, 2.0, 7.0, 1.0]), Some(2));
        // Never decreasing: the first point.
        assert_eq!(valley(&[1.0, 1.0, 2.0]), Some(0));
        // Two points going down: start -1, index -1, Python's last point.
        assert_eq!(valley(&[2.0, 1.0]), Some(1));
        assert_eq!(valley(&[]), None);
    }

    #[test]
    fn the_suggestion_leaves_out_the_first_tenth_and_the_last_five() {
        let curve = |n: usize, nan_at: Option<usize>| {
            let points = (0..n)
                .map(|step| {
                    let smoothed_loss = if Some(step) == nan_at { f64::NAN } else { 100.0 - step as f64 };
                    Point { step, learning_rate: step as f64, loss: 0.0, smoothed_loss }
                })
                .collect();
            Curve { points, ending: Ending::Completed, steps: 20 }
        };
        // steps/10 = 2 .. 20-5 = 15: 13 points all decreasing; valley on them: max_end 12,
        // length 13, start -1, 13/3 = 4.33: -1 + 4 + 2 = 5, so point 2 + 5.
        assert_eq!(curve(20, None).suggestion(), Some(7));
        assert_eq!(curve(5, None).suggestion(), None, "nothing left after the last five");
        // A NaN at step 4 ends the search there; fastai would have recorded NaN to step 19,
        // so points 2 and 3 remain: two going down, the last of them.
        assert_eq!(curve(5, Some(4)).suggestion(), Some(3));
        // At step 12, points 2 to 11: ten, all going down: -1 + 3 + 1 = 3, point 5.
        assert_eq!(curve(13, Some(12)).suggestion(), Some(5));
    }

    #[test]
    fn the_recorder_stops_at_divergence_at_a_nan_and_after_the_last_step() {
        let range = Range { start_lr: 1e-3, end_lr: 1.0, steps: 10 };
        let mut r = Recorder::new(range);
        assert_eq!(r.record(1.0), None);
        // The smoothed loss after 1 and 1000: 20.02 / (1 - 0.98²) = 505.6, past 4 times 1.
        assert_eq!(r.record(1000.0), Some(Ending::Diverged));
        let mut r = Recorder::new(range);
        assert_eq!(r.record(f64::NAN), Some(Ending::NotFinite));
        let mut r = Recorder::new(range);
        let ends: Vec<_> = (0..10).map(|_| r.record(1.0)).collect();
        assert_eq!(ends.iter().filter(|e| e.is_some()).count(), 1);
        assert_eq!(ends[9], Some(Ending::Completed));
        assert_eq!(r.finish(Ending::Completed).points.len(), 10);
    }
}
