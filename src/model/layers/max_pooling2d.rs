//! `type = "max_pooling2d"`: the largest value of each window, per channel
//! (Keras' `MaxPooling2D(pool_size=(2, 2), strides=None, padding="valid")`).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{expect_image, Batch, Ctx, Layer, Padding, Pair};
use crate::model::Shape;
use crate::ops::{self, Backend, PoolGeom};

/// Keras' `MaxPooling2D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxPooling2dConfig {
    /// Window size (default `[2, 2]`).
    #[serde(default = "two")]
    pub pool_size: Pair,
    /// Step between windows (default: the pool size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strides: Option<Pair>,
    /// `"valid"` (default) or `"same"`.
    #[serde(default)]
    pub padding: Padding,
}

fn two() -> Pair {
    Pair([2, 2])
}

impl MaxPooling2dConfig {
    /// The geometry of this pooling on `input`, or why it does not fit.
    pub fn geometry(&self, input: Shape) -> Result<PoolGeom, String> {
        let (c, h, w) = expect_image(input, "max_pooling2d")?;
        let [ph, pw] = self.pool_size.0;
        let [sh, sw] = self.strides.unwrap_or(self.pool_size).0;
        let fit = |size, k, s| self.padding.output(size, k, s);
        match (fit(h, ph, sh), fit(w, pw, sw)) {
            (Some((oh, pad_top)), Some((ow, pad_left))) => {
                Ok(PoolGeom { c, h, w, ph, pw, sh, sw, oh, ow, pad_top, pad_left })
            }
            _ => Err(format!(
                "pool {} does not fit the input {h}x{w}: too many poolings for this image size; \
                 remove one, use a larger image_size, or padding = \"same\"",
                self.pool_size
            )),
        }
    }
}

impl Layer for MaxPooling2dConfig {
    fn class_name(&self) -> &'static str {
        "MaxPooling2D"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let g = self.geometry(input)?;
        Ok(Shape::Image { c: g.c, h: g.oh, w: g.ow })
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let g = self.geometry(ctx.input).expect("shape checked at compile time");
        ops::max_pool2d(x, g)
    }
}
