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

    /// Applies one update to every parameter from `grads`.
    pub fn update(&mut self, params: &mut [NamedParam<D>], grads: &mut Gradients<f32, D>) -> Result<(), D::Err> {
        self.step += 1;
        let cfg = AdamConfig {
            lr: self.lr,
            betas: [BETA_1, BETA_2],
            eps: EPSILON / (1.0 - BETA_2.powi(self.step)).sqrt(),
            weight_decay: None,
        };
        for p in params {
            let id = p.tensor.ghost();
            let g = grads.get_or_alloc_mut(&id)?;
            let (m, v) = (self.m.get_or_alloc_mut(&id)?, self.v.get_or_alloc_mut(&id)?);
            cfg.try_update(self.step, &mut p.tensor, m, v, g)?;
        }
        Ok(())
    }
}
