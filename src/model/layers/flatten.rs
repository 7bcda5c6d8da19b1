//! `type = "flatten"`: an image becomes a feature vector (channel-major order, NCHW).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer};
use crate::model::onnx::{At, Attr, Graph};
use crate::model::Shape;
use crate::ops::Backend;

/// Takes no keys but `trainable`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {
    /// Keras' `trainable`, accepted on every layer; this one has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

impl Layer for FlattenConfig {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        Ok(Shape::Flat(input.len()))
    }
    /// Activations are already stored as `(batch, features)` rows, so this is free.
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        // Channel-major (NCHW), the order of the rows the next layer was trained on.
        Ok(g.node(at.name, "Flatten", &[x], vec![("axis", Attr::Int(1))]))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, _ctx: &Ctx<'_, D>) -> Batch<D, T> {
        x
    }
}
