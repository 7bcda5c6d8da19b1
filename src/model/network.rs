//! A compiled layer list: the checked plan plus its parameters as dfdx tensors.

use std::ops::Range;

use dfdx::prelude::*;
use rand::Rng;

use std::cell::RefCell;

use super::layers::{Batch, Ctx, Fans, Init, Initializer, Layer, Param, Training};
use super::ModelPlan;
use crate::ops::Backend;

/// New values of non-trainable state after a training batch: a parameter's index and its
/// values, on the device (batch normalisation's moving averages).
pub type StateUpdates<D> = Vec<(usize, Param<D>)>;

/// A named trainable tensor.
#[derive(Clone, Debug)]
pub struct NamedParam<D: Backend> {
    /// `<layer name>/<weight name>`, e.g. `conv2d_1/kernel` (Keras' naming).
    pub name: String,
    /// Logical shape, row-major.
    pub dims: Vec<usize>,
    /// The values, flat.
    pub tensor: Param<D>,
    /// Changed by the optimizer (false for state a layer updates itself, and for the weights
    /// of a frozen layer).
    pub trainable: bool,
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
                params.push(NamedParam {
                    name: format!("{}/{}", layer.name, spec.name),
                    dims: spec.dims.clone(),
                    tensor: dev.tensor_from_vec(initial_values(spec.init, n, rng), (n,)),
                    trainable: spec.trainable,
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

    /// Runs the layers on a batch `(batch, features)` for evaluation (no dropout, batch
    /// normalisation with its moving averages). With `logits == true` the last layer's
    /// activation is left to the loss (stable sigmoid/softmax cross-entropy).
    pub fn forward<T: Tape<f32, D>>(&self, x: Batch<D, T>, logits: bool) -> Batch<D, T> {
        self.run(x, logits, None).0
    }

    /// The logits of `rows` images given as scaled pixels, one row after another, computed
    /// without a tape and copied to the host: what a command that only classifies needs.
    pub fn logits(&self, dev: &D, x: Vec<f32>, rows: usize) -> Vec<f32> {
        let features = x.len() / rows.max(1);
        self.forward(dev.tensor_from_vec(x, (rows, features)), true).as_vec()
    }

    /// Runs the layers on a training batch (logits out): dropout drops, batch normalisation
    /// uses the batch's statistics. Returns the new values of non-trainable state, for
    /// [`Network::set_state`] after the optimizer step.
    pub fn forward_train<T: Tape<f32, D>>(&self, x: Batch<D, T>, at: Training) -> (Batch<D, T>, StateUpdates<D>) {
        self.run(x, true, Some(at))
    }

    fn run<T: Tape<f32, D>>(
        &self,
        x: Batch<D, T>,
        logits: bool,
        training: Option<Training>,
    ) -> (Batch<D, T>, StateUpdates<D>) {
        let tensors: Vec<Param<D>> = self.params.iter().map(|p| p.tensor.clone()).collect();
        let last = self.plan.layers.len().saturating_sub(1);
        let mut updates = Vec::new();
        let (mut y, mut i) = (x, 0);
        while let Some((layer, range)) = self.plan.layers.get(i).zip(self.ranges.get(i)) {
            let cell = RefCell::new(Vec::new());
            let next = self.plan.layers.get(i + 1);
            let fused_next = {
                let ctx = Ctx {
                    input: layer.input,
                    params: &tensors[range.clone()],
                    skip_activation: logits && i == last,
                    input_grad: i > 0,
                    training,
                    layer: i,
                    next_max_pool: next.and_then(|next| next.config.max_pool(next.input)),
                    fused_next: Default::default(),
                    conv_algorithm: self.plan.conv_algorithm,
                    updates: &cell,
                };
                y = layer.config.forward(y, &ctx);
                ctx.fused_next.get()
            };
            updates.extend(cell.into_inner().into_iter().map(|(p, v)| (range.start + p, v)));
            // A pooling folded into this layer has been done already.
            let step = if fused_next { 2 } else { 1 };
            i += step;
        }
        (y, updates)
    }

    /// Stores new values of non-trainable state (from [`Network::forward_train`]).
    pub fn set_state(&mut self, updates: StateUpdates<D>) {
        for (i, values) in updates {
            self.params[i].tensor = values;
        }
    }
}

/// `n` initial values for `init`, Keras' formulas.
pub fn initial_values(init: Init, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    match init {
        Init::Zeros | Init::Kernel(Initializer::Zeros, _) => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Kernel(kind, Fans { fan_in, fan_out }) => {
            let (fan_in, fan_out) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
            match kind {
                Initializer::GlorotUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), n, rng),
                Initializer::HeUniform => uniform((6.0 / fan_in).sqrt(), n, rng),
                Initializer::GlorotNormal => truncated_normal((2.0 / (fan_in + fan_out)).sqrt(), n, rng),
                Initializer::HeNormal => truncated_normal((2.0 / fan_in).sqrt(), n, rng),
                Initializer::Zeros => vec![0.0; n],
            }
        }
    }
}

fn uniform(limit: f64, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let limit = limit as f32;
    (0..n).map(|_| rng.gen_range(-limit..limit)).collect()
}

/// Keras' `VarianceScaling(distribution="truncated_normal")`: normal draws beyond two
/// deviations are drawn again, and the deviation is divided by 0.8796 (the deviation of a
/// unit normal truncated there) so the result has the intended `stddev`.
fn truncated_normal(stddev: f64, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let sigma = stddev / 0.879_625_661_034_239_8;
    (0..n)
        .map(|_| loop {
            // Box-Muller; one of the pair is enough.
            let (u, v): (f64, f64) = (rng.gen_range(f64::MIN_POSITIVE..1.0), rng.gen());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            if z.abs() <= 2.0 {
                break (z * sigma) as f32;
            }
        })
        .collect()
}
