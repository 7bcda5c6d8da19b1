//! Adam with Keras' defaults and Keras' exact update rule.
//!
//! Keras: `p -= lr·sqrt(1-β2ᵗ)/(1-β1ᵗ) · m / (sqrt(v) + ε)` with ε = 1e-7.
//! dfdx's kernel computes `p -= lr · m̂ / (sqrt(v̂) + ε')`; the two are equal when
//! `ε' = ε / sqrt(1-β2ᵗ)`, so each step passes that ε' to dfdx's (device-generic) kernel.

use dfdx::prelude::*;

use crate::model::network::NamedParam;
use crate::ops::Backend;

/// Optimizer state: step count and both moments of every parameter.
pub struct Adam<D: Backend> {
    lr: f64,
    step: i32,
    m: Gradients<f32, D>,
    v: Gradients<f32, D>,
}

const BETA_1: f64 = 0.9;
const BETA_2: f64 = 0.999;
const EPSILON: f64 = 1e-7;

impl<D: Backend> Adam<D> {
    /// Keras' `Adam(learning_rate=lr)`.
    pub fn new(lr: f64) -> Self {
        Adam { lr, step: 0, m: Gradients::leaky(), v: Gradients::leaky() }
    }

    /// Adam at update `step` with the moments `moments` (one (m, v) pair per parameter, as
    /// [`Adam::state`] gives them), to go on from a checkpoint.
    pub fn restore(
        lr: f64,
        step: i32,
        params: &[NamedParam<D>],
        moments: &[(Vec<f32>, Vec<f32>)],
    ) -> Result<Self, D::Err> {
        let mut adam = Adam::new(lr);
        adam.step = step;
        for (p, (m, v)) in params.iter().zip(moments) {
            D::add_grad(&mut adam.m, &p.tensor, m)?;
            D::add_grad(&mut adam.v, &p.tensor, v)?;
        }
        Ok(adam)
    }

    /// The update count and each parameter's (m, v), on the host.
    pub fn state(&self, params: &[NamedParam<D>]) -> (i32, Vec<(Vec<f32>, Vec<f32>)>) {
        let moments = params
            .iter()
            .map(|p| match self.step {
                n if n > 0 && p.trainable => (self.m.get(&p.tensor).as_vec(), self.v.get(&p.tensor).as_vec()),
                _ => (vec![0.0; p.tensor.shape().0], vec![0.0; p.tensor.shape().0]),
            })
            .collect();
        (self.step, moments)
    }

    /// Applies one update to every parameter from `grads`.
    pub fn update(&mut self, params: &mut [NamedParam<D>], grads: &mut Gradients<f32, D>) -> Result<(), D::Err> {
        self.step += 1;
        let cfg = AdamConfig {
            lr: self.lr,
            betas: [BETA_1, BETA_2],
            eps: EPSILON / (1.0 - BETA_2.powi(self.step)).sqrt(),
            weight_decay: None,
        };
        for p in params.iter_mut().filter(|p| p.trainable) {
            let id = p.tensor.ghost();
            let g = grads.get_or_alloc_mut(&id)?;
            let (m, v) = (self.m.get_or_alloc_mut(&id)?, self.v.get_or_alloc_mut(&id)?);
            cfg.try_update(self.step, &mut p.tensor, m, v, g)?;
        }
        Ok(())
    }
}
