//! Activation functions, used inline (`activation = "relu"` on conv2d/dense) or as a layer
//! (`type = "activation"`, Keras' `Activation("relu")`).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer};
use crate::model::Shape;
use crate::ops::Backend;

/// Activation names, as Keras spells them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity (Keras' default for `Dense` and `Conv2D`).
    #[default]
    Linear,
    /// max(0, x).
    Relu,
    /// x for x > 0, else 0.2·x (Keras' `leaky_relu` function; the `leaky_relu` layer takes an alpha).
    LeakyRelu,
    /// x for x > 0, else e^x - 1.
    Elu,
    /// x·Φ(x), with the exact normal CDF (Keras' default, `approximate=False`).
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// 1 / (1 + e^-x); with one unit and `binary_crossentropy` the loss takes it over.
    Sigmoid,
    /// Normalised exponentials over the features; with `categorical_crossentropy` the loss takes it over.
    Softmax,
}

impl Activation {
    /// Applies the function to a batch.
    pub fn apply<D: Backend, T: Tape<f32, D>>(self, x: Batch<D, T>) -> Batch<D, T> {
        match self {
            Activation::Linear => x,
            Activation::Relu => x.relu(),
            Activation::LeakyRelu => leaky_relu(x, 0.2),
            Activation::Elu => elu(x, 1.0),
            Activation::Gelu => crate::ops::gelu::gelu(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softmax => x.softmax::<Axis<1>>(),
        }
    }

    /// Checks that the activation makes sense on `input` (softmax only over a feature vector).
    pub fn check(self, input: Shape) -> Result<(), String> {
        match (self, input) {
            (Activation::Softmax, Shape::Image { .. }) => Err(format!(
                "softmax over an image {input} is not supported; flatten first and use it on a dense layer"
            )),
            _ => Ok(()),
        }
    }
}

/// max(0, x) + alpha·min(0, x).
pub fn leaky_relu<D: Backend, T: Tape<f32, D>>(x: Batch<D, T>, alpha: f32) -> Batch<D, T> {
    x.prelu(alpha)
}

/// x for x > 0, else alpha·(e^x - 1), composed from dfdx ops so it runs on any device.
pub fn elu<D: Backend, T: Tape<f32, D>>(x: Batch<D, T>, alpha: f32) -> Batch<D, T> {
    let negative = x.retaped::<T>().negate().relu().negate(); // min(x, 0)
    x.relu() + (negative.exp() - 1.0) * alpha
}

/// `type = "activation"`: applies `activation` to its input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationConfig {
    /// The function to apply.
    pub activation: Activation,
}

impl Layer for ActivationConfig {
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        self.activation.check(input)?;
        Ok(input)
    }
    fn activation(&self) -> Activation {
        self.activation
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        ctx.activate(self.activation, x)
    }
}
