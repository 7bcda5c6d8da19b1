//! The optimizers, on dfdx's device-generic update kernels, with Keras' names and defaults.
//!
//! - `adam`/`adamw`: Keras' update `p -= lr·sqrt(1-β2ᵗ)/(1-β1ᵗ) · m / (sqrt(v) + ε)`. dfdx's
//!   kernel computes `p -= lr · m̂ / (sqrt(v̂) + ε')`; the two are equal when
//!   `ε' = ε / sqrt(1-β2ᵗ)`, so each step passes that ε' to it.
//! - `sgd`: Keras' `v = μ·v - lr·g; p += v` (Nesterov: `p += μ·v - lr·g`), kept as
//!   `v = μ·v + lr·g; p -= v` so that, as in Keras, a scheduled rate weighs each gradient by
//!   the rate of its own step (the `velocity` slot is Keras' velocity negated).
//! - `rmsprop`: `s = ρ·s + (1-ρ)·g²; p -= lr·g / sqrt(s + ε)` (centered: `s - ḡ²`), momentum
//!   as for SGD; Keras 3's formula.
//! - Weight decay is decoupled for all of them: `p -= lr·wd·p` alongside the update.
//! - Gradient clipping (`clipnorm` per weight, `global_clipnorm` over all) happens first.
//!
//! State lives in slots (Adam's `m` and `v`, SGD's `velocity`, RMSprop's `momentum`,
//! `square_avg`, `grad_avg`), one buffer per trainable weight, saved in checkpoints. Weights
//! that are not trainable (batch normalisation's moving averages, a frozen layer's weights)
//! have none, as in Keras: the optimizer never touches them, not even to decay them.

use dfdx::prelude::*;

use crate::config::{Optimizer as Kind, TrainConfig};
use crate::model::network::NamedParam;
use crate::ops::Backend;

/// An optimizer and its state.
pub struct Optimizer<D: Backend> {
    settings: TrainConfig,
    step: i32,
    slots: Vec<Gradients<f32, D>>,
}

/// Keras' default epsilon.
const EPSILON: f64 = 1e-7;

impl<D: Backend> Optimizer<D> {
    /// The optimizer `train` asks for, before its first step.
    pub fn new(train: &TrainConfig) -> Self {
        let slots = (0..Self::slot_names_of(train.optimizer).len()).map(|_| Gradients::leaky()).collect();
        Optimizer { settings: train.clone(), step: 0, slots }
    }

    fn slot_names_of(kind: Kind) -> &'static [&'static str] {
        match kind {
            Kind::Adam | Kind::Adamw => &["m", "v"],
            Kind::Sgd => &["velocity"],
            Kind::Rmsprop => &["momentum", "square_avg", "grad_avg"],
        }
    }

    /// Names of this optimizer's state slots, in checkpoint order.
    pub fn slot_names(&self) -> &'static [&'static str] {
        Self::slot_names_of(self.settings.optimizer)
    }

    /// The optimizer at update `step` with `slots` (per slot, one buffer per parameter, as
    /// [`Optimizer::state`] gives them: empty for those that are not trainable), to go on from
    /// a checkpoint. Says which buffer is missing or misshapen otherwise.
    pub fn restore(
        train: &TrainConfig,
        step: i32,
        params: &[NamedParam<D>],
        slots: &[Vec<Vec<f32>>],
    ) -> Result<Self, String> {
        let mut opt = Optimizer::new(train);
        opt.step = step;
        let names = Self::slot_names_of(train.optimizer);
        for (i, (store, slot)) in opt.slots.iter_mut().zip(names).enumerate() {
            for (j, p) in params.iter().enumerate().filter(|(_, p)| p.trainable) {
                let v = slots.get(i).and_then(|buffers| buffers.get(j)).map_or(&[][..], Vec::as_slice);
                if v.len() != p.tensor.shape().0 {
                    return Err(format!(
                        "optimizer `{slot}` buffer for `{}` has {} values, not {}",
                        p.name,
                        v.len(),
                        p.tensor.shape().0
                    ));
                }
                D::add_grad(store, &p.tensor, v).map_err(|e| format!("optimizer state: {e:?}"))?;
            }
        }
        Ok(opt)
    }

    /// The update count and every slot's buffers (one per parameter, zeros before the first
    /// step, empty for a parameter that is not trainable), on the host: copied down from a GPU
    /// once per checkpoint, never in a training step.
    pub fn state(&self, params: &[NamedParam<D>]) -> (i32, Vec<Vec<Vec<f32>>>) {
        let slots = self
            .slots
            .iter()
            .map(|store| {
                params
                    .iter()
                    .map(|p| match (p.trainable, self.step > 0) {
                        (false, _) => Vec::new(),
                        (true, true) => store.get(&p.tensor).as_vec(),
                        (true, false) => vec![0.0; p.tensor.shape().0],
                    })
                    .collect()
            })
            .collect();
        (self.step, slots)
    }

    /// Applies one update with learning rate `lr` to every trainable parameter from `grads`.
    pub fn update(
        &mut self,
        params: &mut [NamedParam<D>],
        grads: &mut Gradients<f32, D>,
        lr: f64,
    ) -> Result<(), D::Err> {
        self.step += 1;
        let s = &self.settings;
        // Clipping first, as Keras does. The norms are measured where the gradients are (on a
        // GPU, one value per weight comes down to be compared).
        for p in params.iter().filter(|p| p.trainable) {
            grads.try_alloc_for(&p.tensor)?;
        }
        if let Some(c) = s.clipnorm {
            for p in params.iter().filter(|p| p.trainable) {
                let n = D::grad_sum_squares(grads, &p.tensor)?.sqrt();
                if n > c {
                    D::scale_grad(grads, &p.tensor, (c / n) as f32)?;
                }
            }
        }
        if let Some(c) = s.global_clipnorm {
            let mut total = 0.0;
            for p in params.iter().filter(|p| p.trainable) {
                total += D::grad_sum_squares(grads, &p.tensor)?;
            }
            let total = total.sqrt();
            if total > c {
                for p in params.iter().filter(|p| p.trainable) {
                    D::scale_grad(grads, &p.tensor, (c / total) as f32)?;
                }
            }
        }
        let decay = match (s.optimizer, s.weight_decay) {
            (_, Some(wd)) => Some(WeightDecay::Decoupled(wd)),
            (Kind::Adamw, None) => Some(WeightDecay::Decoupled(0.004)),
            _ => None,
        };
        let momentum = s.momentum.filter(|&m| m > 0.0);
        for p in params.iter_mut().filter(|p| p.trainable) {
            let id = p.tensor.ghost();
            let g = grads.get_or_alloc_mut(&id)?;
            match s.optimizer {
                Kind::Adam | Kind::Adamw => {
                    let beta_2 = s.beta_2.unwrap_or(0.999);
                    let cfg = AdamConfig {
                        lr,
                        betas: [s.beta_1.unwrap_or(0.9), beta_2],
                        eps: s.epsilon.unwrap_or(EPSILON) / (1.0 - beta_2.powi(self.step)).sqrt(),
                        weight_decay: decay,
                    };
                    let [m, v] = &mut self.slots[..] else { unreachable!("adam has two slots") };
                    cfg.try_update(self.step, &mut p.tensor, m.get_or_alloc_mut(&id)?, v.get_or_alloc_mut(&id)?, g)?;
                }
                Kind::Sgd if momentum.is_some() => {
                    // Keras' velocity holds lr·g summed with decay, so a scheduled learning rate
                    // weighs each gradient by the rate of its own step. dfdx's kernel keeps
                    // `v = μ·v + g` and multiplies the whole of it by today's rate; given lr·g
                    // and a rate of 1 it keeps `v = μ·v + lr·g` (Keras' velocity, negated) and
                    // steps `p -= v` (Nesterov: `p -= lr·g + μ·v`), which is Keras' update.
                    let m = momentum.expect("matched");
                    let momentum = Some(if s.nesterov { Momentum::Nesterov(m) } else { Momentum::Classic(m) });
                    let weight_decay = decay.map(|d| match d {
                        WeightDecay::Decoupled(wd) => WeightDecay::Decoupled(wd * lr),
                        l2 => l2,
                    });
                    let cfg = SgdConfig { lr: 1.0, momentum, weight_decay };
                    D::scale_grad(grads, &p.tensor, lr as f32)?;
                    let g = grads.get_or_alloc_mut(&id)?;
                    cfg.try_update(&mut p.tensor, self.slots[0].get_or_alloc_mut(&id)?, g)?;
                }
                Kind::Sgd => {
                    let cfg = SgdConfig { lr, momentum: None, weight_decay: decay };
                    cfg.try_update(&mut p.tensor, self.slots[0].get_or_alloc_mut(&id)?, g)?;
                }
                Kind::Rmsprop => {
                    let cfg = RMSpropConfig {
                        lr,
                        alpha: s.rho.unwrap_or(0.9),
                        eps: s.epsilon.unwrap_or(EPSILON),
                        momentum,
                        centered: s.centered,
                        weight_decay: decay,
                    };
                    let [m, sq, avg] = &mut self.slots[..] else { unreachable!("rmsprop has three slots") };
                    let (m, sq, avg) =
                        (m.get_or_alloc_mut(&id)?, sq.get_or_alloc_mut(&id)?, avg.get_or_alloc_mut(&id)?);
                    cfg.try_update(&mut p.tensor, m, sq, avg, g)?;
                }
            }
        }
        Ok(())
    }
}
