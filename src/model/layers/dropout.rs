//! `type = "dropout"`: Keras' `Dropout(rate)`. In training each value is zeroed with
//! probability `rate` and the rest scaled by 1/(1 - rate); in evaluation it does nothing. The
//! mask comes from the `Dropout` stream keyed by (epoch, step, layer), so it is the same
//! whatever the thread count and after a resume.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer};
use crate::model::onnx::{At, Graph};
use crate::model::Shape;
use crate::ops::Backend;
use crate::seed::{self, Stream};

/// Keras' `Dropout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropoutConfig {
    /// Fraction of values dropped in training, from 0 up to (not including) 1.
    pub rate: f64,
    /// Keras' `trainable`, accepted on every layer; this one has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

impl Layer for DropoutConfig {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        match (0.0..1.0).contains(&self.rate) {
            true => Ok(input),
            false => Err(format!("rate {} must be from 0 up to, not including, 1 (such as 0.5)", self.rate)),
        }
    }
    fn onnx(&self, _g: &mut Graph, x: &str, _at: &At<'_>) -> Result<String, String> {
        // Evaluation: nothing is dropped.
        Ok(x.to_string())
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let Some(at) = ctx.training.filter(|_| self.rate > 0.0) else { return x };
        let shape = *x.shape();
        let keys = [at.epoch as u64, at.step as u64, ctx.layer as u64];
        let mut rng = seed::rng(at.seed, Stream::Dropout, &keys);
        let scale = (1.0 / (1.0 - self.rate)) as f32;
        // Made on the device: on the CPU one draw of `rng` per value, on a GPU by a kernel
        // keyed by one draw.
        let mask = crate::ops::dropout_mask(x.device(), shape, self.rate, scale, &mut rng);
        x * mask
    }
}
