//! `type = "dense"`: a fully connected layer, `activation(x · kernel + bias)`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Activation, Batch, Ctx, Fans, Init, Initializer, Layer, ParamSpec};
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
    fn activation(&self) -> Activation {
        self.activation
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        let (batch, fan_in) = *x.shape();
        let units = self.units;
        // Parameters are re-taped so their gradients land under their own ids (a bias that is
        // broadcast without its own tape silently loses its gradient).
        let kernel = ctx.params[0].retaped::<T>().reshape_like(&(fan_in, units));
        let y = x.matmul(kernel);
        let y = match ctx.params.get(1) {
            Some(bias) => y + bias.retaped::<T>().broadcast_like::<_, Axis<0>>(&(batch, units)),
            None => y,
        };
        ctx.activate(self.activation, y)
    }
}
