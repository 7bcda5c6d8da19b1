//! Activation functions, used inline (`activation = "relu"` on conv2d/dense) or as a layer
//! (`type = "activation"`, Keras' `Activation("relu")`).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Batch, Ctx, Layer};
use crate::model::onnx::{At, Attr, Graph};
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
            Activation::LeakyRelu => leaky_relu(x, LEAKY_RELU_ALPHA),
            Activation::Elu => elu(x, 1.0),
            Activation::Gelu => crate::ops::gelu::gelu(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softmax => x.softmax::<Axis<1>>(),
        }
    }

    /// The function as ONNX nodes on the value `x`, named in `scope` (the layer's name);
    /// returns the output value (`x` itself for `linear`). GELU is not an operator at opset
    /// 17, so it is written out: x · (1 + erf(x / √2)) · 0.5.
    pub fn onnx(self, g: &mut Graph, x: &str, scope: &str) -> String {
        match self {
            Activation::Linear => x.to_string(),
            Activation::Relu => g.node(scope, "Relu", &[x], vec![]),
            Activation::LeakyRelu => g.node(scope, "LeakyRelu", &[x], vec![("alpha", Attr::Float(LEAKY_RELU_ALPHA))]),
            Activation::Elu => g.node(scope, "Elu", &[x], vec![("alpha", Attr::Float(1.0))]),
            Activation::Gelu => {
                let (sqrt_2, one, half) =
                    (g.scalar("sqrt_2", std::f32::consts::SQRT_2), g.scalar("one", 1.0), g.scalar("half", 0.5));
                let scaled = g.node(scope, "Div", &[x, &sqrt_2], vec![]);
                let erf = g.node(scope, "Erf", &[&scaled], vec![]);
                let sum = g.node(scope, "Add", &[&erf, &one], vec![]);
                let product = g.node(scope, "Mul", &[x, &sum], vec![]);
                g.node(scope, "Mul", &[&product, &half], vec![])
            }
            Activation::Tanh => g.node(scope, "Tanh", &[x], vec![]),
            Activation::Sigmoid => g.node(scope, "Sigmoid", &[x], vec![]),
            Activation::Softmax => g.node(scope, "Softmax", &[x], vec![("axis", Attr::Int(1))]),
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

/// The slope of `activation = "leaky_relu"` for negative inputs (Keras' `leaky_relu` function).
pub const LEAKY_RELU_ALPHA: f32 = 0.2;

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
    /// Keras' `trainable`, accepted on every layer; this one has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
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
    fn onnx(&self, g: &mut Graph, x: &str, at: &At<'_>) -> Result<String, String> {
        Ok(self.activation.onnx(g, x, at.name))
    }
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
        ctx.activate(self.activation, x)
    }
}
