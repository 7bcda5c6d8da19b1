//! One file per layer kind: its config (the TOML keys, Keras names), shape rule, parameters
//! and forward pass. The list of kinds lives in `model::registry`.

pub mod activation;
pub mod average_pooling2d;
pub mod batch_normalization;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod global_average_pooling2d;
pub mod leaky_relu;
pub mod max_pooling2d;

use std::cell::RefCell;
use std::fmt;

use dfdx::prelude::{Tape, Tensor};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Shape;
use crate::ops::Backend;

pub use activation::Activation;

/// A batch of activations, `(batch, features)`.
pub type Batch<D, T> = Tensor<(usize, usize), f32, D, T>;
/// A parameter tensor, stored flat; layers give it its shape.
pub type Param<D> = Tensor<(usize,), f32, D>;

/// What a layer kind tells the model compiler. Adding a kind means one new file implementing
/// this trait and one line in `model::registry`.
pub trait Layer {
    /// Keras class name, shown in the model summary (`Conv2D`).
    fn class_name(&self) -> &'static str;
    /// The output shape for `input`, or why this layer cannot take it.
    fn output_shape(&self, input: Shape) -> Result<Shape, String>;
    /// Trainable tensors, in the order the forward pass expects them.
    fn params(&self, _input: Shape) -> Vec<ParamSpec> {
        Vec::new()
    }
    /// Multiply-accumulates per image in the forward pass (what dominates the cost).
    fn macs(&self, _input: Shape, _output: Shape) -> u64 {
        0
    }
    /// Keras' `trainable`: false freezes the layer's weights (the optimizer leaves them
    /// alone). Only layers with weights say so; the others accept the key and ignore it.
    fn trainable(&self) -> bool {
        true
    }
    /// The activation applied last (used to fuse the output activation into the loss).
    fn activation(&self) -> Activation {
        Activation::Linear
    }
    /// For a max pooling: its window on `input`, so that the layer before it may fold it into
    /// its own pass (see [`Ctx::next_max_pool`]).
    fn max_pool(&self, _input: Shape) -> Option<crate::ops::PoolGeom> {
        None
    }
    /// The forward pass on a batch.
    fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T>;
    /// The layer as ONNX nodes in `g` (evaluation form: dropout off, batch normalisation with
    /// its moving averages), reading the value `x` (NCHW for an image, `[N, features]` for a
    /// vector) and the weights in `at`; returns the name of its output value, or why it
    /// cannot be exported (`model::onnx` names the layer).
    fn onnx(
        &self,
        g: &mut crate::model::onnx::Graph,
        x: &str,
        at: &crate::model::onnx::At<'_>,
    ) -> Result<String, String>;
}

/// Everything a layer's forward pass may need beyond its input.
pub struct Ctx<'a, D: Backend> {
    /// Input shape per sample.
    pub input: Shape,
    /// This layer's parameters, in `Layer::params` order.
    pub params: &'a [Param<D>],
    /// Skip this layer's activation: the loss applies it in a numerically stable form.
    pub skip_activation: bool,
    /// Whether the gradient with respect to the input is needed (false for the first layer).
    pub input_grad: bool,
    /// Set in training: dropout drops and batch normalisation uses the batch's statistics.
    pub training: Option<Training>,
    /// Position of the layer in the model (keys its random streams).
    pub layer: usize,
    /// The window of a max pooling that directly follows this layer. A layer that folds it
    /// into its own pass sets `fused_next`, and the pooling layer is then not run.
    pub next_max_pool: Option<crate::ops::PoolGeom>,
    /// Set by a layer that folded the next one in.
    pub fused_next: std::cell::Cell<bool>,
    /// How convolutions are computed on the CPU (`train.conv_algorithm`).
    pub conv_algorithm: crate::ops::ConvAlgorithm,
    /// New values for non-trainable state (batch normalisation's moving averages), as
    /// (index into `params`, values on the device); the trainer stores them after the step.
    pub updates: &'a RefCell<Vec<(usize, Param<D>)>>,
}

/// Where in training a forward pass happens: keys dropout masks, so they depend only on
/// (seed, epoch, step, layer) and a resumed run draws the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Training {
    /// `experiment.seed`.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based step within the epoch.
    pub step: usize,
}

impl<D: Backend> Ctx<'_, D> {
    /// Applies `activation` unless the loss has taken it over.
    pub fn activate<T: Tape<f32, D>>(&self, activation: Activation, x: Batch<D, T>) -> Batch<D, T> {
        if self.skip_activation {
            x
        } else {
            activation.apply(x)
        }
    }
}

/// A tensor a layer asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Keras weight name within the layer (`kernel`, `bias`, `moving_mean`).
    pub name: &'static str,
    /// Logical shape (row-major).
    pub dims: Vec<usize>,
    /// How its initial values are drawn.
    pub init: Init,
    /// Changed by the optimizer (false for state such as batch normalisation's moving averages,
    /// and for every weight of a frozen layer).
    pub trainable: bool,
}

impl ParamSpec {
    /// A trainable tensor.
    pub fn trainable(name: &'static str, dims: Vec<usize>, init: Init) -> Self {
        ParamSpec { name, dims, init, trainable: true }
    }
    /// State the layer updates itself.
    pub fn state(name: &'static str, dims: Vec<usize>, init: Init) -> Self {
        ParamSpec { name, dims, init, trainable: false }
    }
}

/// How initial values are drawn, with the fans they depend on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// A kernel initialiser with its fans.
    Kernel(Initializer, Fans),
    /// All zeros, Keras' default for biases.
    Zeros,
    /// All ones (batch normalisation's scale and moving variance).
    Ones,
}

/// Inputs feeding one output unit and outputs fed by one input unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fans {
    /// Inputs per output unit.
    pub fan_in: usize,
    /// Outputs per input unit.
    pub fan_out: usize,
}

/// Kernel initialisers, Keras' names and formulas (`kernel_initializer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// Uniform in ±sqrt(6 / (fan_in + fan_out)) (Keras' default).
    #[default]
    GlorotUniform,
    /// Normal with stddev sqrt(2 / (fan_in + fan_out)), truncated at two deviations.
    GlorotNormal,
    /// Uniform in ±sqrt(6 / fan_in), for ReLU networks.
    HeUniform,
    /// Normal with stddev sqrt(2 / fan_in), truncated at two deviations.
    HeNormal,
    /// All zeros.
    Zeros,
}

/// Padding mode of convolution and pooling (Keras: `"valid"` or `"same"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding: windows lie inside the input.
    #[default]
    Valid,
    /// Output size `ceil(input / stride)`, zero padding split as TensorFlow does (extra at the end).
    Same,
}

impl Padding {
    /// Output length and padding before the first element along one axis, or None when the
    /// window does not fit.
    pub fn output(self, input: usize, window: usize, stride: usize) -> Option<(usize, usize)> {
        match self {
            Padding::Valid if input >= window => Some(((input - window) / stride + 1, 0)),
            Padding::Valid => None,
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + window).saturating_sub(input);
                Some((out, total / 2))
            }
        }
    }
}

/// The window of a pooling layer, Keras' `pool_size`, `strides` and `padding`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolWindow {
    /// Window size (default `[2, 2]`).
    #[serde(default = "two")]
    pub pool_size: Pair,
    /// Step between windows (default: the pool size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strides: Option<Pair>,
    /// `"valid"` (default) or `"same"`.
    #[serde(default)]
    pub padding: Padding,
    /// Keras' `trainable`, accepted on every layer; a pooling has no weights, so it changes
    /// nothing (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    #[schemars(extend("default" = true))]
    pub trainable: bool,
}

fn two() -> Pair {
    Pair([2, 2])
}

impl PoolWindow {
    /// The geometry of this pooling on `input`, or why it does not fit (`kind` names the layer).
    pub fn geometry(&self, input: Shape, kind: &str) -> Result<crate::ops::PoolGeom, String> {
        let (c, h, w) = expect_image(input, kind)?;
        let [ph, pw] = self.pool_size.0;
        let [sh, sw] = self.strides.unwrap_or(self.pool_size).0;
        let fit = |size, k, s| self.padding.output(size, k, s);
        match (fit(h, ph, sh), fit(w, pw, sw)) {
            (Some((oh, pad_top)), Some((ow, pad_left))) => {
                Ok(crate::ops::PoolGeom { c, h, w, ph, pw, sh, sw, oh, ow, pad_top, pad_left })
            }
            _ => Err(format!(
                "pool {} does not fit the input {h}x{w}: too many poolings for this image size; \
                 remove one, use a larger image_size, or padding = \"same\"",
                self.pool_size
            )),
        }
    }
}

/// A size given as one integer or as `[height, width]`, like Keras' `kernel_size=3` or `(3, 3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub [usize; 2]);

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.0[0], self.0[1])
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairVisitor;
        impl<'de> Visitor<'de> for PairVisitor {
            type Value = Pair;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer or a list of two, like 3 or [3, 3]")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pair, E> {
                let n = positive(v).ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                Ok(Pair([n, n]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pair, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
                let mut out = [0; 2];
                for (i, slot) in out.iter_mut().enumerate() {
                    let v: i64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                    *slot = positive(v).ok_or_else(|| de::Error::invalid_value(de::Unexpected::Signed(v), &self))?;
                }
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Pair(out))
            }
        }
        d.deserialize_any(PairVisitor)
    }
}

/// Serde default for flags that are on unless turned off (`use_bias`, `trainable`).
pub(crate) fn yes() -> bool {
    true
}

/// Whether a flag is at its default `true`: `trainable` is written out only when false, so
/// the resolved config of a model without frozen layers reads as before.
pub(crate) fn is_true(flag: &bool) -> bool {
    *flag
}

fn positive(v: i64) -> Option<usize> {
    usize::try_from(v).ok().filter(|&n| n > 0)
}

/// The image shape a layer needs, or the error Keras users expect for a flat input.
pub(crate) fn expect_image(input: Shape, what: &str) -> Result<(usize, usize, usize), String> {
    match input {
        Shape::Image { c, h, w } => Ok((c, h, w)),
        Shape::Flat(_) => Err(format!(
            "{what} needs an image input (height, width, channels) but gets the flat vector {input}; \
             move it before the `flatten` layer"
        )),
    }
}

impl schemars::JsonSchema for Pair {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pair".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One positive integer, or [height, width].",
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "array", "items": { "type": "integer", "minimum": 1 }, "minItems": 2, "maxItems": 2 }
            ]
        })
    }
}
