//! `type = "conv2d"`: 2-D convolution, Keras' `Conv2D(filters, kernel_size, strides, padding,
//! activation)`. The kernel is stored as `(filters, channels, kh, kw)`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{expect_image, Activation, Batch, Ctx, Init, Layer, Padding, Pair, ParamSpec};
use crate::model::Shape;
use crate::ops::{self, Backend, ConvGeom};

/// Keras' `Conv2D`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Number of output channels.
    pub filters: usize,
    /// Window size: `3` or `[3, 3]`.
    pub kernel_size: Pair,
    /// Step between windows (default 1).
    #[serde(default = "one")]
    pub strides: Pair,
    /// `"valid"` (default) or `"same"`.
    #[serde(default)]
    pub padding: Padding,
    /// Applied to the output (default `linear`).
    #[serde(default)]
    pub activation: Activation,
}

fn one() -> Pair {
    Pair([1, 1])
}

impl Conv2dConfig {
    /// The geometry of this convolution on `input`, or why it does not fit.
    pub fn geometry(&self, input: Shape) -> Result<ConvGeom, String> {
        let (c, h, w) = expect_image(input, "conv2d")?;
        if self.filters == 0 {
            return Err("`filters` must be at least 1".into());
        }
        let [kh, kw] = self.kernel_size.0;
        let [sh, sw] = self.strides.0;
        let fit = |size, k, s| self.padding.output(size, k, s);
        match (fit(h, kh, sh), fit(w, kw, sw)) {
            (Some((oh, pad_top)), Some((ow, pad_left))) => {
                Ok(ConvGeom { c, h, w, f: self.filters, kh, kw, sh, sw, oh, ow, pad_top, pad_left })
            }
            _ => Err(format!(
                "kernel {} does not fit the input {h}x{w} with padding \"valid\"; use a smaller \
                 kernel, padding = \"same\", or remove a pooling layer before it",
                self.kernel_size
            )),
        }
    }
}

impl Layer for Conv2dConfig {
    fn class_name(&self) -> &'static str {
        "Conv2D"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let g = self.geometry(input)?;
        Ok(Shape::Image { c: g.f, h: g.oh, w: g.ow })
    }
    fn params(&self, input: Shape) -> Vec<ParamSpec> {
        let g = self.geometry(input).expect("shape checked before params");
        let area = g.kh * g.kw;
        vec![
            ParamSpec {
                name: "kernel",
                dims: vec![g.f, g.c, g.kh, g.kw],
                init: Init::GlorotUniform { fan_in: g.c * area, fan_out: g.f * area },
            },
            ParamSpec { name: "bias", dims: vec![g.f], init: Init::Zeros },
        ]
    }
    fn macs(&self, input: Shape, output: Shape) -> u64 {
        let [kh, kw] = self.kernel_size.0;
        let c = match input {
            Shape::Image { c, .. } => c,
            Shape::Flat(_) => 0,
        };
        (output.len() * c * kh * kw) as u64
    }
    fn activation(&self) -> Activation {
        self.activation
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let g = self.geometry(ctx.input).expect("shape checked at compile time");
        let y = ops::conv2d(x, &ctx.params[0], &ctx.params[1], g, ctx.input_grad);
        ctx.activate(self.activation, y)
    }
}
