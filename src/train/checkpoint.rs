//! Checkpoints: everything needed to go on training exactly where a run stopped, in one
//! safetensors file written atomically (a torn checkpoint is impossible; a kill loses at most
//! the work since the last one).
//!
//! Tensor names: the weights as in `weights.safetensors` (`<layer>/<weight>`), and the
//! optimizer's state as `optimizer/<slot>/<layer>/<weight>` (Adam's `m` and `v`, SGD's
//! `velocity`, RMSprop's `momentum`, `square_avg` and `grad_avg`) for the trainable weights
//! only (moving averages and frozen layers have no optimizer state). The metadata
//! key `runner_checkpoint` holds JSON: the position (`epoch` finished epochs, `step` batches
//! into the next one with the running sums of that epoch), the optimizer step count, the
//! history so far, and the best-epoch and early-stopping monitors.
//!
//! Random positions need no state of their own: every random stream is keyed by
//! (seed, epoch, sample or step), so the position above is the whole of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::monitor::Monitor;
use super::History;
use crate::results::safetensors::{self, Named, TensorData};

/// Where training stands, plus the weights and optimizer state there.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Position, history and monitors.
    pub state: State,
    /// Weights: (name, dims, values), in network order.
    pub weights: Vec<Named>,
    /// The optimizer's state: (slot name, one buffer per weight in the same order; empty for a
    /// weight without optimizer state, which the file then does not hold).
    pub slots: Vec<(String, Vec<Vec<f32>>)>,
}

/// The JSON part of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Epochs finished.
    pub epoch: usize,
    /// Batches done of epoch `epoch` (0 at an epoch boundary; more after a Ctrl-C).
    pub step: usize,
    /// Running sums of the unfinished epoch: loss × samples, correct, samples.
    pub partial: (f64, usize, usize),
    /// Metric counts of the unfinished epoch.
    #[serde(default)]
    pub counter: Option<super::metrics::Counter>,
    /// Optimizer updates made so far.
    pub optimizer_step: i32,
    /// Finished epochs.
    pub history: History,
    /// Best epoch so far by `train.checkpoint.monitor`.
    pub best: Monitor,
    /// Early-stopping monitor (when `train.early_stopping` is set).
    pub early: Monitor,
    /// `reduce_on_plateau` state (when that schedule is set).
    #[serde(default)]
    pub plateau: super::schedule::Plateau,
}

const KEY: &str = "runner_checkpoint";

impl Checkpoint {
    /// The metadata key that marks a safetensors file as a checkpoint (its value is the JSON
    /// state).
    pub const METADATA_KEY: &'static str = KEY;

    /// The safetensors file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let names: Vec<Vec<String>> = self
            .slots
            .iter()
            .map(|(slot, _)| self.weights.iter().map(|(n, ..)| format!("optimizer/{slot}/{n}")).collect())
            .collect();
        let mut tensors: Vec<TensorData> =
            self.weights.iter().map(|(name, dims, values)| TensorData { name, dims, values }).collect();
        for ((_, buffers), names) in self.slots.iter().zip(&names) {
            for (((_, dims, _), values), name) in self.weights.iter().zip(buffers).zip(names) {
                if !values.is_empty() {
                    tensors.push(TensorData { name, dims, values });
                }
            }
        }
        let metadata = BTreeMap::from([
            ("format".to_string(), "runner checkpoint".to_string()),
            (KEY.to_string(), serde_json::to_string(&self.state).expect("plain data")),
        ]);
        safetensors::to_bytes(&tensors, &metadata)
    }

    /// Reads a file written by [`Checkpoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, String> {
        let metadata = safetensors::metadata(bytes)?;
        let json = metadata.get(KEY).ok_or("not a runner checkpoint (no runner_checkpoint metadata)")?;
        let state: State = serde_json::from_str(json).map_err(|e| format!("bad checkpoint metadata: {e}"))?;
        let mut weights = Vec::new();
        // Slot name → weight name → values, slots in file order.
        let mut slots: Vec<(String, BTreeMap<String, Vec<f32>>)> = Vec::new();
        for (name, dims, values) in safetensors::from_bytes(bytes)? {
            match name.strip_prefix("optimizer/").and_then(|rest| rest.split_once('/')) {
                Some((slot, weight)) => {
                    if slots.last().is_none_or(|(s, _)| s != slot) {
                        slots.push((slot.to_string(), BTreeMap::new()));
                    }
                    slots.last_mut().expect("pushed").1.insert(weight.to_string(), values);
                }
                None => weights.push((name, dims, values)),
            }
        }
        // A weight without optimizer state gets an empty buffer; the optimizer checks that
        // every trainable one has its own.
        let slots = slots
            .into_iter()
            .map(|(slot, mut by_weight)| {
                (slot, weights.iter().map(|(n, ..)| by_weight.remove(n).unwrap_or_default()).collect())
            })
            .collect();
        Ok(Checkpoint { state, weights, slots })
    }
}
