//! `type = "max_pooling2d"`: the largest value of each window, per channel
//! (Keras' `MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid")`).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer, PoolWindow};
use crate::model::onnx::{self, At, Graph};
use crate::model::Shape;
use crate::ops::{self, Backend};

/// Keras' `MaxPooling2D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct MaxPooling2dConfig(pub PoolWindow);

impl Layer for MaxPooling2dConfig {
    fn class_name(&self) -> &'static str {
        "MaxPooling2D"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let g = self.0.geometry(input, "max_pooling2d")?;
        Ok(Shape::Image { c: g.c, h: g.oh, w: g.ow })
    }
    fn max_pool(&self, input: Shape) -> Option<ops::PoolGeom> {
        self.0.geometry(input, "max_pooling2d").ok()
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        let geometry = self.0.geometry(at.input, "max_pooling2d")?;
        // ONNX's padded cells never win either.
        Ok(g.node(at.name, "MaxPool", &[x], onnx::pool_attributes(&geometry)))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let g = self.0.geometry(ctx.input, "max_pooling2d").expect("shape checked at compile time");
        ops::max_pool2d(x, g)
    }
}
