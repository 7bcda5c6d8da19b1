//! `type = "conv2d"`: 2-D convolution, Keras' `Conv2D(filters, kernel_size, strides, padding,
//! dilation_rate, activation, use_bias, kernel_initializer)`. The kernel is stored as
//! `(filters, channels, kh, kw)`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{expect_image, Activation, Batch, Ctx, Fans, Init, Initializer, Layer, Padding, Pair, ParamSpec};
use crate::model::onnx::{self, At, Attr, Graph};
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
    /// Spacing between the kernel's taps (default 1); strides must be 1 when it is not.
    #[serde(default = "one")]
    pub dilation_rate: Pair,
    /// Applied to the output (default `linear`).
    #[serde(default)]
    pub activation: Activation,
    /// Add a bias per filter (default true).
    #[serde(default = "super::yes")]
    pub use_bias: bool,
    /// How the kernel starts (default `glorot_uniform`).
    #[serde(default)]
    pub kernel_initializer: Initializer,
    /// Keras' `trainable`: false freezes the kernel and bias: no optimizer step (nor weight decay) and no
    /// optimizer state for them, counted as non-trainable in the summary (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

fn one() -> Pair {
    Pair([1, 1])
}

impl Conv2dConfig {
    /// `filters` filters of `kernel_size`, every other key at its default.
    pub fn new(filters: usize, kernel_size: [usize; 2]) -> Self {
        Conv2dConfig {
            filters,
            kernel_size: Pair(kernel_size),
            strides: one(),
            padding: Padding::Valid,
            dilation_rate: one(),
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            trainable: true,
        }
    }

    /// The geometry of this convolution on `input`, or why it does not fit.
    pub fn geometry(&self, input: Shape) -> Result<ConvGeom, String> {
        let (c, h, w) = expect_image(input, "conv2d")?;
        if self.filters == 0 {
            return Err("`filters` must be at least 1".into());
        }
        let [kh, kw] = self.kernel_size.0;
        let [sh, sw] = self.strides.0;
        let [dh, dw] = self.dilation_rate.0;
        if (dh, dw) != (1, 1) && (sh, sw) != (1, 1) {
            return Err(format!(
                "dilation_rate {} needs strides 1 (Keras allows one or the other), not {}",
                self.dilation_rate, self.strides
            ));
        }
        // A dilated kernel covers (k - 1)·d + 1 pixels.
        let fit = |size, k: usize, d: usize, s| self.padding.output(size, (k - 1) * d + 1, s);
        match (fit(h, kh, dh, sh), fit(w, kw, dw, sw)) {
            (Some((oh, pad_top)), Some((ow, pad_left))) => {
                let winograd = false;
                Ok(ConvGeom { c, h, w, f: self.filters, kh, kw, sh, sw, dh, dw, oh, ow, pad_top, pad_left, winograd })
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
        let fans = Fans { fan_in: g.c * area, fan_out: g.f * area };
        let mut params = vec![ParamSpec::trainable(
            "kernel",
            vec![g.f, g.c, g.kh, g.kw],
            Init::Kernel(self.kernel_initializer, fans),
        )];
        if self.use_bias {
            params.push(ParamSpec::trainable("bias", vec![g.f], Init::Zeros));
        }
        params
    }
    fn macs(&self, input: Shape, output: Shape) -> u64 {
        let [kh, kw] = self.kernel_size.0;
        let c = match input {
            Shape::Image { c, .. } => c,
            Shape::Flat(_) => 0,
        };
        (output.len() * c * kh * kw) as u64
    }
    fn trainable(&self) -> bool {
        self.trainable
    }
    fn activation(&self) -> Activation {
        self.activation
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        let c = self.geometry(at.input)?;
        let [top, bottom] = onnx::pads(c.h, c.oh, c.sh, (c.kh - 1) * c.dh + 1, c.pad_top);
        let [left, right] = onnx::pads(c.w, c.ow, c.sw, (c.kw - 1) * c.dw + 1, c.pad_left);
        // The kernel is stored (filters, channels, kh, kw), ONNX's weight layout.
        let weights: Vec<String> = at.weights.iter().map(|w| g.weight(w)).collect();
        let inputs: Vec<&str> = std::iter::once(x).chain(weights.iter().map(String::as_str)).collect();
        let attributes = vec![
            ("kernel_shape", Attr::ints(&[c.kh, c.kw])),
            ("strides", Attr::ints(&[c.sh, c.sw])),
            ("dilations", Attr::ints(&[c.dh, c.dw])),
            ("pads", Attr::ints(&[top, left, bottom, right])),
        ];
        let y = g.node(at.name, "Conv", &inputs, attributes);
        Ok(self.activation.onnx(g, &y, at.name))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let g = self.geometry(ctx.input).expect("shape checked at compile time");
        let g = ConvGeom { winograd: ctx.conv_algorithm.winograd(&g), ..g };
        // A ReLU (the common case) and a max pooling right after are folded into the
        // convolution's own pass.
        let relu = self.activation == Activation::Relu && !ctx.skip_activation;
        // With the activation done inside (or none to do), a pooling can follow it there.
        let activated = relu || self.activation == Activation::Linear;
        let max_pool = ctx.next_max_pool.filter(|_| activated);
        ctx.fused_next.set(max_pool.is_some());
        let epilogue = ops::Epilogue { relu, max_pool };
        let y = ops::conv2d(x, &ctx.params[0], ctx.params.get(1), g, epilogue, ctx.input_grad);
        match activated {
            true => y,
            false => ctx.activate(self.activation, y),
        }
    }
}
