//! `type = "leaky_relu"`: Keras' `LeakyReLU(alpha=0.3)` layer, max(0, x) + alpha·min(0, x).

use serde::{Deserialize, Serialize};

use super::activation::leaky_relu;
use super::{Batch, Ctx, Layer};
use crate::model::onnx::{At, Attr, Graph};
use crate::model::Shape;
use crate::ops::Backend;
use dfdx::prelude::Tape;

/// Keras' `LeakyReLU`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakyReluConfig {
    /// Slope for negative inputs (default 0.3, the Keras layer's).
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Keras' `trainable`, accepted on every layer; this one has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

fn default_alpha() -> f32 {
    0.3
}

impl Layer for LeakyReluConfig {
    fn class_name(&self) -> &'static str {
        "LeakyReLU"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        match self.alpha.is_finite() && self.alpha >= 0.0 {
            true => Ok(input),
            false => Err(format!("alpha {} must be 0 or more", self.alpha)),
        }
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        Ok(g.node(at.name, "LeakyRelu", &[x], vec![("alpha", Attr::Float(self.alpha))]))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, _ctx: &Ctx<'_, D>) -> Batch<D, T> {
        leaky_relu(x, self.alpha)
    }
}
