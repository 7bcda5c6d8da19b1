//! `type = "batch_normalization"`: Keras' `BatchNormalization(momentum=0.99, epsilon=0.001)`,
//! per channel for images and per feature for vectors. Training normalises with the batch's
//! mean and (biased) variance and moves the averages towards them; evaluation uses the moving
//! averages. Weights: `gamma`, `beta` (trained), `moving_mean`, `moving_variance` (state, saved
//! with the weights). A frozen layer (`trainable = false`) runs as in evaluation in training
//! too, as Keras 3 does, so that fine-tuning does not move statistics learnt on other data.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Init, Layer, ParamSpec};
use crate::model::onnx::{At, Attr, Graph};
use crate::model::Shape;
use crate::ops::Backend;

/// Keras' `BatchNormalization`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalizationConfig {
    /// Weight of the old moving average in each update (default 0.99).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Added to the variance before the square root (default 0.001).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Keras' `trainable`: false freezes `gamma` and `beta` (no optimizer step, no optimizer
    /// state, counted as non-trainable) and, as in Keras 3, runs the layer in inference mode
    /// in training too: it normalises with the moving averages and leaves them as they are
    /// (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

fn default_momentum() -> f64 {
    0.99
}
fn default_epsilon() -> f64 {
    1e-3
}

/// Channels and values per channel of `input`.
fn groups(input: Shape) -> (usize, usize) {
    match input {
        Shape::Image { c, h, w } => (c, h * w),
        Shape::Flat(n) => (n, 1),
    }
}

impl Layer for BatchNormalizationConfig {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum {} must be from 0 up to, not including, 1", self.momentum));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(format!("epsilon {} must be a positive number", self.epsilon));
        }
        Ok(input)
    }
    fn params(&self, input: Shape) -> Vec<ParamSpec> {
        let (c, _) = groups(input);
        vec![
            ParamSpec::trainable("gamma", vec![c], Init::Ones),
            ParamSpec::trainable("beta", vec![c], Init::Zeros),
            ParamSpec::state("moving_mean", vec![c], Init::Zeros),
            ParamSpec::state("moving_variance", vec![c], Init::Ones),
        ]
    }
    fn trainable(&self) -> bool {
        self.trainable
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        // The evaluation form, per channel (axis 1, for an image or a vector alike):
        // (x - moving_mean) / sqrt(moving_variance + epsilon) · gamma + beta. ONNX takes the
        // tensors in the order of `params`: scale, bias, mean, variance.
        let weights: Vec<String> = at.weights.iter().map(|w| g.weight(w)).collect();
        let inputs: Vec<&str> = std::iter::once(x).chain(weights.iter().map(String::as_str)).collect();
        Ok(g.node(at.name, "BatchNormalization", &inputs, vec![("epsilon", Attr::Float(self.epsilon as f32))]))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let (c, n) = groups(ctx.input);
        let batch = x.shape().0;
        let shape = (batch, c, n);
        let x = x.reshape_like(&shape);
        let eps = self.epsilon as f32;
        let [gamma, beta, moving_mean, moving_var] = [0, 1, 2, 3].map(|i| &ctx.params[i]);
        // Frozen, the layer is in inference mode in training too (Keras 3).
        let normalised = match ctx.training.filter(|_| self.trainable) {
            Some(_) => {
                let mean = x.retaped::<T>().mean::<(usize,), Axes2<0, 2>>();
                let var = x.retaped::<T>().var::<(usize,), Axes2<0, 2>>();
                // The moving averages move towards this batch's statistics, `old·m + new·(1 - m)`
                // per channel, on the device (the same float operations, in the same order, as
                // a host loop would make).
                let m = self.momentum as f32;
                let blend =
                    |old: &Tensor<(usize,), f32, D>, new: Tensor<(usize,), f32, D>| old.clone() * m + new * (1.0 - m);
                let (batch_mean, batch_var) = (mean.retaped::<NoneTape>(), var.retaped::<NoneTape>());
                let mut updates = ctx.updates.borrow_mut();
                updates.push((2, blend(moving_mean, batch_mean)));
                updates.push((3, blend(moving_var, batch_var)));
                let std = (var + eps).sqrt().broadcast_like::<_, Axes2<0, 2>>(&shape);
                (x - mean.broadcast_like::<_, Axes2<0, 2>>(&shape)) / std
            }
            None => {
                let mean = moving_mean.clone().broadcast_like::<_, Axes2<0, 2>>(&shape);
                let std = (moving_var.clone() + eps).sqrt().broadcast_like::<_, Axes2<0, 2>>(&shape);
                (x - mean) / std
            }
        };
        let scaled = normalised * gamma.retaped::<T>().broadcast_like::<_, Axes2<0, 2>>(&shape)
            + beta.retaped::<T>().broadcast_like::<_, Axes2<0, 2>>(&shape);
        scaled.reshape_like(&(batch, c * n))
    }
}
