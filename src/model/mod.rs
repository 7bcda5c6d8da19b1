//! The model: a layer list from the config, checked by shape inference (`plan`), then
//! compiled into a `Network` of runtime-shaped dfdx tensors.

pub mod layers;
pub mod network;
pub mod onnx;
pub mod registry;
pub mod shape;
pub mod summary;
pub mod weights;

pub use layers::Layer;
pub use network::Network;
pub use registry::LayerConfig;
pub use shape::Shape;

use layers::ParamSpec;

/// One layer after shape inference.
#[derive(Clone, Debug)]
pub struct LayerPlan {
    /// Keras-style unique name (`conv2d`, `conv2d_1`, ...), used in the summary and weights.
    pub name: String,
    /// The layer as configured.
    pub config: LayerConfig,
    /// Shape it receives.
    pub input: Shape,
    /// Shape it produces.
    pub output: Shape,
    /// Its tensors (trainable, frozen, or state such as moving averages).
    pub params: Vec<ParamSpec>,
}

/// A layer list whose shapes all fit together.
#[derive(Clone, Debug)]
pub struct ModelPlan {
    /// Shape of one input image.
    pub input: Shape,
    /// Layers in order.
    pub layers: Vec<LayerPlan>,
    /// How convolutions are computed on the CPU (`train.conv_algorithm`).
    pub conv_algorithm: crate::ops::ConvAlgorithm,
}

impl ModelPlan {
    /// Number of trainable values.
    pub fn param_count(&self) -> usize {
        self.layers.iter().flat_map(|l| &l.params).map(|p| p.dims.iter().product::<usize>()).sum()
    }

    /// The convolutions the CPU computes with Winograd's algorithm under `conv_algorithm`, by
    /// name.
    pub fn winograd_layers(&self) -> Vec<String> {
        let winograd = |l: &&LayerPlan| match &l.config {
            LayerConfig::Conv2d(conv) => conv.geometry(l.input).is_ok_and(|g| self.conv_algorithm.winograd(&g)),
            _ => false,
        };
        self.layers.iter().filter(winograd).map(|l| l.name.clone()).collect()
    }

    /// Shape of the network's output.
    pub fn output(&self) -> Shape {
        self.layers.last().map_or(self.input, |l| l.output)
    }
}

/// A problem with one layer (0-based index into `model.layers`).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerError {
    /// Index into `model.layers`.
    pub index: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Infers every layer's shapes from the input shape, Keras `build()` style: layers name only
/// their outputs. Stops at the first layer that does not fit, since later shapes are unknown.
pub fn plan(layers: &[LayerConfig], input: Shape) -> Result<ModelPlan, LayerError> {
    let mut shape = input;
    let mut planned = Vec::with_capacity(layers.len());
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for (index, config) in layers.iter().enumerate() {
        let output = config.output_shape(shape).map_err(|message| LayerError { index, message })?;
        let n = seen.entry(config.kind()).or_default();
        let name = if *n == 0 { config.kind().to_string() } else { format!("{}_{n}", config.kind()) };
        *n += 1;
        // A frozen layer's weights are all non-trainable, as Keras counts them.
        let frozen = !config.trainable();
        let params = config.params(shape).into_iter().map(|p| ParamSpec { trainable: p.trainable && !frozen, ..p });
        planned.push(LayerPlan { name, config: config.clone(), input: shape, output, params: params.collect() });
        shape = output;
    }
    Ok(ModelPlan { input, layers: planned, conv_algorithm: Default::default() })
}
