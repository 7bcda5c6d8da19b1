//! Warm starts: `[model] weights = "file"` starts training from saved weights instead of
//! random ones. The file is a safetensors file of float32 tensors named `<layer>/<weight>`: a
//! run's `weights.safetensors` or `checkpoints/best.safetensors`, a checkpoint
//! (`checkpoints/last.safetensors`, whose optimizer state is left out: the optimizer starts
//! afresh), or a file converted from Keras. It is read and matched against the model before
//! any image is read, and every tensor that is missing, extra or of the wrong shape is
//! reported in one error at the config's `model.weights`.
//!
//! A run records the file's path and FNV-1a in its manifest; a run resumed before its first
//! checkpoint, or verified, must find the same file there.

use crate::config::{Plan, Seg};
use crate::model::weights::mismatches;
use crate::results::manifest::{InitialWeights, Manifest};
use crate::results::safetensors::{self, Named};
use crate::train::checkpoint::Checkpoint;
use crate::{Error, Result};

/// The weights a run starts from, and what its manifest records about them.
pub struct Initial {
    /// Every weight of the model, matched by name and shape.
    pub weights: Vec<Named>,
    /// The file's path and hash.
    pub record: InitialWeights,
}

/// Reads and checks `model.weights`, when the config sets it.
pub fn load(plan: &Plan) -> Result<Option<Initial>> {
    let Some(path) = &plan.config.model.weights else { return Ok(None) };
    let problem = |message: String| {
        let d = plan.sources.at(&[Seg::Key("model"), Seg::Key("weights")], message);
        Error::Config(plan.sources.render_all(&[d]))
    };
    let shown = path.display();
    let bytes = crate::results::bounded::read(path, &crate::results::bounded::WEIGHTS).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => problem(format!(
            "the weights file `{shown}` does not exist; name a run's weights.safetensors (relative paths are \
             taken from the current folder), or leave model.weights out to start from random weights"
        )),
        _ => problem(format!("the weights file `{shown}` cannot be read: {e}")),
    })?;
    let unreadable = |e: String| problem(format!("`{shown}` is not a weights file runner can read: {e}"));
    let is_checkpoint = safetensors::metadata(&bytes).map_err(unreadable)?.contains_key(Checkpoint::METADATA_KEY);
    let weights = match is_checkpoint {
        true => Checkpoint::from_bytes(&bytes).map_err(unreadable)?.weights,
        false => safetensors::from_bytes(&bytes).map_err(unreadable)?,
    };
    let found: Vec<(&str, &[usize])> = weights.iter().map(|(n, d, _)| (n.as_str(), d.as_slice())).collect();
    let wrong = mismatches(&plan.model, &found);
    if !wrong.is_empty() {
        let n = wrong.len();
        let list: String = wrong.iter().map(|m| format!("\n  - {m}")).collect();
        return Err(problem(format!(
            "the weights in `{shown}` do not fit the model ({n} problem{}):{list}\n  Tensors are matched by \
             name, <layer>/<weight> as in the model summary, and by shape; `runner check` on the config that \
             wrote the file shows its layers",
            if n == 1 { "" } else { "s" }
        )));
    }
    let record = InitialWeights { path: shown.to_string(), fnv1a: format!("{:016x}", crate::hash::fnv1a(&bytes)) };
    Ok(Some(Initial { weights, record }))
}

/// [`load`] for a run going on or trained again: the file must be the one recorded in its
/// manifest.
pub fn load_same(plan: &Plan, manifest: &Manifest) -> Result<Option<Initial>> {
    let initial = load(plan)?;
    match (&initial, &manifest.initial_weights) {
        (Some(now), Some(then)) if now.record.fnv1a != then.fnv1a => Err(Error::Data(format!(
            "the weights file `{}` (model.weights) has changed since the run started from it (FNV-1a {} then, {} \
             now); put the original file back",
            now.record.path, then.fnv1a, now.record.fnv1a
        ))),
        _ => Ok(initial),
    }
}
