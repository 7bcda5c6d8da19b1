//! A compiled layer list: the checked plan plus its parameters as dfdx tensors.

use std::ops::Range;

use dfdx::prelude::*;
use rand::Rng;

use super::layers::{Batch, Ctx, Init, Layer, Param};
use super::ModelPlan;
use crate::ops::Backend;

/// A named trainable tensor.
#[derive(Clone, Debug)]
pub struct NamedParam<D: Backend> {
    /// `<layer name>/<weight name>`, e.g. `conv2d_1/kernel` (Keras' naming).
    pub name: String,
    /// Logical shape, row-major.
    pub dims: Vec<usize>,
    /// The values, flat.
    pub tensor: Param<D>,
}

/// The runtime model.
#[derive(Clone, Debug)]
pub struct Network<D: Backend> {
    /// The checked layer plan this network was built from.
    pub plan: ModelPlan,
    /// All parameters, layer by layer.
    pub params: Vec<NamedParam<D>>,
    ranges: Vec<Range<usize>>,
}

impl<D: Backend> Network<D> {
    /// Builds the network with initial weights drawn from `rng` (layer by layer, in order).
    pub fn new(plan: ModelPlan, dev: &D, rng: &mut impl Rng) -> Self {
        let mut params = Vec::new();
        let mut ranges = Vec::new();
        for layer in &plan.layers {
            let start = params.len();
            for spec in &layer.params {
                let n: usize = spec.dims.iter().product();
                let values: Vec<f32> = match spec.init {
                    Init::Zeros => vec![0.0; n],
                    Init::GlorotUniform { fan_in, fan_out } => {
                        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                        (0..n).map(|_| rng.gen_range(-limit..limit)).collect()
                    }
                };
                params.push(NamedParam {
                    name: format!("{}/{}", layer.name, spec.name),
                    dims: spec.dims.clone(),
                    tensor: dev.tensor_from_vec(values, (n,)),
                });
            }
            ranges.push(start..params.len());
        }
        Network { plan, params, ranges }
    }

    /// The weights on the host, as (name, dims, values), in network order.
    pub fn weights(&self) -> Vec<crate::results::safetensors::Named> {
        self.params.iter().map(|p| (p.name.clone(), p.dims.clone(), p.tensor.as_vec())).collect()
    }

    /// Replaces every weight with the one of the same name and shape in `weights` (from a
    /// weights file or checkpoint); says which is missing or misshapen otherwise.
    pub fn load_weights(&mut self, dev: &D, weights: &[crate::results::safetensors::Named]) -> Result<(), String> {
        for p in &mut self.params {
            let (_, dims, values) = weights
                .iter()
                .find(|(name, ..)| *name == p.name)
                .ok_or_else(|| format!("it has no tensor `{}`, which this model needs", p.name))?;
            if *dims != p.dims || values.len() != p.dims.iter().product::<usize>() {
                return Err(format!("`{}` has shape {dims:?}, but this model needs {:?}", p.name, p.dims));
            }
            p.tensor = dev.tensor_from_vec(values.clone(), (values.len(),));
        }
        Ok(())
    }

    /// Runs the layers on a batch `(batch, features)`. With `logits == true` the last layer's
    /// activation is left to the loss (stable sigmoid/softmax cross-entropy).
    pub fn forward<T: Tape<f32, D>>(&self, x: Batch<D, T>, logits: bool) -> Batch<D, T> {
        let tensors: Vec<Param<D>> = self.params.iter().map(|p| p.tensor.clone()).collect();
        let last = self.plan.layers.len().saturating_sub(1);
        self.plan.layers.iter().zip(&self.ranges).enumerate().fold(x, |x, (i, (layer, range))| {
            let ctx = Ctx {
                input: layer.input,
                params: &tensors[range.clone()],
                skip_activation: logits && i == last,
                input_grad: i > 0,
            };
            layer.config.forward(x, &ctx)
        })
    }
}
