//! `type = "dense"`: a fully connected layer, `activation(x · kernel + bias)`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Activation, Batch, Ctx, Fans, Init, Initializer, Layer, ParamSpec};
use crate::model::onnx::{At, Graph};
use crate::model::Shape;
use crate::ops::Backend;

/// Keras' `Dense(units, activation=...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseConfig {
    /// Number of output units.
    pub units: usize,
    /// Applied to the output (default `linear`).
    #[serde(default)]
    pub activation: Activation,
    /// Add a bias per unit (default true).
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

impl Layer for DenseConfig {
    fn class_name(&self) -> &'static str {
        "Dense"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        if self.units == 0 {
            return Err("`units` must be at least 1".into());
        }
        if let Shape::Image { .. } = input {
            return Err(format!(
                "dense needs a flat input but gets the image {input}; add a `flatten` layer before it"
            ));
        }
        let out = Shape::Flat(self.units);
        self.activation.check(out)?;
        Ok(out)
    }
    fn params(&self, input: Shape) -> Vec<ParamSpec> {
        let (fan_in, fan_out) = (input.len(), self.units);
        let init = Init::Kernel(self.kernel_initializer, Fans { fan_in, fan_out });
        let mut params = vec![ParamSpec::trainable("kernel", vec![fan_in, fan_out], init)];
        if self.use_bias {
            params.push(ParamSpec::trainable("bias", vec![fan_out], Init::Zeros));
        }
        params
    }
    fn macs(&self, input: Shape, output: Shape) -> u64 {
        (input.len() * output.len()) as u64
    }
    fn trainable(&self) -> bool {
        self.trainable
    }
    fn activation(&self) -> Activation {
        self.activation
    }
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        // x · kernel + bias, the kernel stored (inputs, units).
        let weights: Vec<String> = at.weights.iter().map(|w| g.weight(w)).collect();
        let inputs: Vec<&str> = std::iter::once(x).chain(weights.iter().map(String::as_str)).collect();
        let y = g.node(at.name, "Gemm", &inputs, vec![]);
        Ok(self.activation.onnx(g, &y, at.name))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        // A ReLU (the common case) is applied in the layer's own pass.
        let relu = self.activation == Activation::Relu && !ctx.skip_activation;
        let y = crate::ops::dense(x, &ctx.params[0], ctx.params.get(1), self.units, relu, ctx.input_grad);
        match relu {
            true => y,
            false => ctx.activate(self.activation, y),
        }
    }
}
