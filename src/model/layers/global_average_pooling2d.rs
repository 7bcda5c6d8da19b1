//! `type = "global_average_pooling2d"`: the mean of each channel over the image, Keras'
//! `GlobalAveragePooling2D()`: an image (c, h, w) becomes a vector of c values.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{expect_image, Batch, Ctx, Layer};
use crate::model::onnx::{At, Attr, Graph};
use crate::model::Shape;
use crate::ops::Backend;

/// Keras' `GlobalAveragePooling2D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePooling2dConfig {
    /// Keras' `trainable`, accepted on every layer; this one has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

impl Layer for GlobalAveragePooling2dConfig {
    fn class_name(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let (c, ..) = expect_image(input, "global_average_pooling2d")?;
        Ok(Shape::Flat(c))
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        let pooled = g.node(at.name, "GlobalAveragePool", &[x], vec![]);
        Ok(g.node(at.name, "Flatten", &[&pooled], vec![("axis", Attr::Int(1))]))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let (c, h, w) = expect_image(ctx.input, "global_average_pooling2d").expect("shape checked at compile time");
        let batch = x.shape().0;
        x.reshape_like(&(batch, c, h * w)).mean::<(usize, usize), Axis<2>>()
    }
}
