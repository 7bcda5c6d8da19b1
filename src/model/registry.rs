//! The list of layer kinds. Adding a kind: write `layers/<kind>.rs` (config struct plus an
//! `impl Layer`) and add one line to the `layer_kinds!` list below; every dispatch `match`,
//! the `type` name in TOML and `LayerConfig::KINDS` come from that line.

use dfdx::prelude::Tape;
use serde::{Deserialize, Serialize};

use super::layers::{
    activation::ActivationConfig, average_pooling2d::AveragePooling2dConfig,
    batch_normalization::BatchNormalizationConfig, conv2d::Conv2dConfig, dense::DenseConfig, dropout::DropoutConfig,
    flatten::FlattenConfig, global_average_pooling2d::GlobalAveragePooling2dConfig, leaky_relu::LeakyReluConfig,
    max_pooling2d::MaxPooling2dConfig, Activation, Batch, Ctx, Layer, ParamSpec,
};
use super::Shape;
use crate::ops::Backend;

macro_rules! layer_kinds {
    ($($variant:ident($config:ty) = $name:literal,)*) => {
        /// One `[[model.layers]]` entry, selected by its `type` key. Each kind's struct denies
        /// unknown keys (a newtype variant, because serde's struct-variant form of an
        /// internally tagged enum silently accepts them: serde issue 2294).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type")]
        pub enum LayerConfig {
            $(
                // Documented by its config struct: a doc comment here would replace that
                // struct's in the JSON Schema and docs/config.md.
                #[allow(missing_docs)]
                #[serde(rename = $name)]
                $variant($config),
            )*
        }

        impl LayerConfig {
            /// Every accepted `type`, in documentation order.
            pub const KINDS: &'static [&'static str] = &[$($name),*];

            /// The `type` of this entry, as written in TOML.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)* }
            }
        }

        impl Layer for LayerConfig {
            fn class_name(&self) -> &'static str {
                match self { $(Self::$variant(l) => l.class_name(),)* }
            }
            fn output_shape(&self, input: Shape) -> Result<Shape, String> {
                match self { $(Self::$variant(l) => l.output_shape(input),)* }
            }
            fn params(&self, input: Shape) -> Vec<ParamSpec> {
                match self { $(Self::$variant(l) => l.params(input),)* }
            }
            fn macs(&self, input: Shape, output: Shape) -> u64 {
                match self { $(Self::$variant(l) => l.macs(input, output),)* }
            }
            fn trainable(&self) -> bool {
                match self { $(Self::$variant(l) => l.trainable(),)* }
            }
            fn activation(&self) -> Activation {
                match self { $(Self::$variant(l) => l.activation(),)* }
            }
            fn max_pool(&self, input: Shape) -> Option<crate::ops::PoolGeom> {
                match self { $(Self::$variant(l) => l.max_pool(input),)* }
            }
            fn forward<D: Backend, T: Tape<f32, D>>(&self, x: Batch<D, T>, ctx: &Ctx<'_, D>) -> Batch<D, T> {
                match self { $(Self::$variant(l) => l.forward(x, ctx),)* }
            }
            fn onnx(&self, g: &mut super::onnx::Graph, x: &str, at: &super::onnx::At<'_>) -> Result<String, String> {
                match self { $(Self::$variant(l) => l.onnx(g, x, at),)* }
            }
        }
    };
}

layer_kinds! {
    Conv2d(Conv2dConfig) = "conv2d",
    MaxPooling2d(MaxPooling2dConfig) = "max_pooling2d",
    AveragePooling2d(AveragePooling2dConfig) = "average_pooling2d",
    GlobalAveragePooling2d(GlobalAveragePooling2dConfig) = "global_average_pooling2d",
    Flatten(FlattenConfig) = "flatten",
    Dense(DenseConfig) = "dense",
    Dropout(DropoutConfig) = "dropout",
    BatchNormalization(BatchNormalizationConfig) = "batch_normalization",
    Activation(ActivationConfig) = "activation",
    LeakyRelu(LeakyReluConfig) = "leaky_relu",
}
