//! `type = "flatten"`: an image becomes a feature vector (channel-major order, NCHW).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer};
use crate::model::Shape;
use crate::ops::Backend;

/// Takes no keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

impl Layer for FlattenConfig {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        Ok(Shape::Flat(input.len()))
    }
    /// Activations are already stored as `(batch, features)` rows, so this is free.
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, _ctx: &Ctx<'_, D>) -> Batch<D, T> {
        x
    }
}
