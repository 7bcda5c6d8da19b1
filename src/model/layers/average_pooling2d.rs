//! `type = "average_pooling2d"`: the mean of each window, per channel (Keras'
//! `AveragePooling2D(pool_size=(2, 2), strides=None, padding="valid")`; with `"same"` padding
//! a window at the border averages only the pixels inside the image, as TensorFlow does).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer, PoolWindow};
use crate::model::onnx::{self, At, Attr, Graph};
use crate::model::Shape;
use crate::ops::{self, Backend};

/// Keras' `AveragePooling2D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct AveragePooling2dConfig(pub PoolWindow);

impl Layer for AveragePooling2dConfig {
    fn class_name(&self) -> &'static str {
        "AveragePooling2D"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let g = self.0.geometry(input, "average_pooling2d")?;
        Ok(Shape::Image { c: g.c, h: g.oh, w: g.ow })
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        let geometry = self.0.geometry(at.input, "average_pooling2d")?;
        // A window at the border averages only the pixels inside the image, as `forward` does.
        let mut attributes = onnx::pool_attributes(&geometry);
        attributes.push(("count_include_pad", Attr::Int(0)));
        Ok(g.node(at.name, "AveragePool", &[x], attributes))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let g = self.0.geometry(ctx.input, "average_pooling2d").expect("shape checked at compile time");
        ops::avg_pool2d(x, g)
    }
}
