//! Checkpoints: everything needed to go on training exactly where a run stopped, in one
//! safetensors file written atomically (a torn checkpoint is impossible; a kill loses at most
//! the work since the last one).
//!
//! Tensor names: the weights as in `weights.safetensors` (`<layer>/<weight>`), and Adam's
//! moments as `optimizer/m/<layer>/<weight>` and `optimizer/v/<layer>/<weight>`. The metadata
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
    /// Adam's first and second moments, one pair per weight, in the same order.
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
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
    /// Optimizer updates made so far.
    pub optimizer_step: i32,
    /// Finished epochs.
    pub history: History,
    /// Best epoch so far by `train.checkpoint.monitor`.
    pub best: Monitor,
    /// Early-stopping monitor (when `train.early_stopping` is set).
    pub early: Monitor,
}

const KEY: &str = "runner_checkpoint";

impl Checkpoint {
    /// The safetensors file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let names: Vec<[String; 2]> =
            self.weights.iter().map(|(n, ..)| [format!("optimizer/m/{n}"), format!("optimizer/v/{n}")]).collect();
        let mut tensors: Vec<TensorData> =
            self.weights.iter().map(|(name, dims, values)| TensorData { name, dims, values }).collect();
        for (((_, dims, _), (m, v)), [m_name, v_name]) in self.weights.iter().zip(&self.moments).zip(&names) {
            tensors.push(TensorData { name: m_name, dims, values: m });
            tensors.push(TensorData { name: v_name, dims, values: v });
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
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, dims, values) in safetensors::from_bytes(bytes)? {
            if let Some(n) = name.strip_prefix("optimizer/m/") {
                m.insert(n.to_string(), values);
            } else if let Some(n) = name.strip_prefix("optimizer/v/") {
                v.insert(n.to_string(), values);
            } else {
                weights.push((name, dims, values));
            }
        }
        let moments = weights
            .iter()
            .map(|(n, ..)| match (m.remove(n), v.remove(n)) {
                (Some(m), Some(v)) => Ok((m, v)),
                _ => Err(format!("the checkpoint has no optimizer state for `{n}`")),
            })
            .collect::<Result<_, String>>()?;
        Ok(Checkpoint { state, weights, moments })
    }
}
