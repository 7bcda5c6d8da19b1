//! Reading and checking an experiment file. `load` parses with `toml` (so type errors and
//! unknown keys come with line and column), `validate` checks everything that can be checked
//! before any pixel is read and returns a `Plan`, the only thing the rest of the run sees.

pub mod diagnostic;
pub mod schema;

use std::path::Path;

pub use diagnostic::{Diagnostic, Seg, Source};
pub use schema::*;

use crate::model::{self, Layer, ModelPlan, Shape};
use crate::{Error, Result};

/// A config that passed every check that needs no data.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The config with every default filled in.
    pub config: Config,
    /// The file it came from.
    pub source: Source,
    /// Layer shapes, inferred from `[data]`.
    pub model: ModelPlan,
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<(Config, Source)> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!("config file `{}` does not exist", path.display())),
        _ => Error::io("reading config file", path, e),
    })?;
    let source = Source { path: path.to_path_buf(), text };
    let config = parse(&source)?;
    Ok((config, source))
}

/// Parses a config from its text.
pub fn parse(source: &Source) -> Result<Config> {
    toml::from_str(&source.text).map_err(|e| {
        // Errors inside `[[model.layers]]` are reported by serde at the start of the array (an
        // internally tagged enum loses positions), so each layer is checked on its own to point
        // at the right one, and at the offending key where there is one.
        let layer_diags = layer_errors(source);
        let diags = if layer_diags.is_empty() {
            vec![Diagnostic { span: e.span(), message: e.message().trim().to_string() }]
        } else {
            layer_diags
        };
        Error::Config(source.render_all(&diags))
    })
}

/// One diagnostic per `[[model.layers]]` entry that does not deserialise.
fn layer_errors(source: &Source) -> Vec<Diagnostic> {
    use serde::Deserialize;
    let Ok(doc) = source.text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(layers) = doc.get("model").and_then(|m| m.get("layers")).and_then(|l| l.as_array()) else {
        return Vec::new();
    };
    let mut diags = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        if let Err(e) = crate::model::LayerConfig::deserialize(layer.clone()) {
            let message = e.message().trim().to_string();
            // Point at the key itself where the message names it: an unknown key, or the key
            // holding an unknown name (`type = "conv3d"`, `activation = "rellu"`).
            let quoted = |prefix: &str| message.strip_prefix(prefix).and_then(|m| m.split('`').next());
            let key = quoted("unknown field `").or_else(|| {
                let value = quoted("unknown variant `")?;
                layer.as_table()?.iter().find(|(_, v)| v.as_str() == Some(value)).map(|(k, _)| k.as_str())
            });
            let mut path = layer_path(i).to_vec();
            path.extend(key.map(Seg::Key));
            let kind = layer.get("type").and_then(|t| t.as_str()).unwrap_or("?");
            diags.push(source.at(&path, format!("layer {} (`{kind}`): {message}", i + 1)));
        }
    }
    diags
}

/// Checks `config` completely (all problems at once) and infers the model's shapes.
pub fn validate(config: Config, source: Source) -> Result<Plan> {
    use Seg::Key;
    let mut diags = Vec::new();
    let mut err = |path: &[Seg], msg: String| diags.push(source.at(path, msg));

    let name = &config.experiment.name;
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        err(
            &[Key("experiment"), Key("name")],
            format!("experiment name {name:?} must be a plain folder name (no slashes, not starting with a dot)"),
        );
    }
    #[cfg(not(feature = "cuda"))]
    if config.experiment.device == DeviceKind::Cuda {
        err(
            &[Key("experiment"), Key("device")],
            "this runner was built without CUDA; rebuild with \
             `cargo build --release --features cuda` or set device = \"cpu\""
                .into(),
        );
    }
    let [h, w] = config.data.image_size;
    if !(1..=8192).contains(&h) || !(1..=8192).contains(&w) {
        err(&[Key("data"), Key("image_size")], format!("image_size [{h}, {w}] must be between 1 and 8192 pixels"));
    }
    let split = config.data.validation_split;
    if !(split > 0.0 && split < 1.0) {
        err(
            &[Key("data"), Key("validation_split")],
            format!("validation_split {split} must be a fraction strictly between 0 and 1, such as 0.2"),
        );
    }
    let test = config.data.test_split;
    if !(0.0..1.0).contains(&test) {
        err(
            &[Key("data"), Key("test_split")],
            format!("test_split {test} must be a fraction from 0 (no test set) up to, not including, 1"),
        );
    } else if split > 0.0 && split < 1.0 && split + test >= 1.0 {
        err(
            &[Key("data"), Key("test_split")],
            format!(
                "validation_split {split} and test_split {test} leave nothing to train on; their sum must be below 1"
            ),
        );
    }
    if let Some(augment) = &config.augment {
        for (key, message) in augment.problems() {
            err(&[Key("augment"), Key(key)], message);
        }
    }
    let train = &config.train;
    if !(train.learning_rate > 0.0 && train.learning_rate.is_finite()) {
        err(
            &[Key("train"), Key("learning_rate")],
            format!("learning_rate {} must be a positive number", train.learning_rate),
        );
    }
    if train.epochs == 0 {
        err(&[Key("train"), Key("epochs")], "epochs must be at least 1".into());
    }
    if train.batch_size == 0 {
        err(&[Key("train"), Key("batch_size")], "batch_size must be at least 1".into());
    }

    let layers = &config.model.layers;
    let input = Shape::Image { c: config.data.color_mode.channels(), h, w };
    let model = if layers.is_empty() {
        err(&[Key("model")], "the model has no layers; add [[model.layers]] entries".into());
        None
    } else {
        match model::plan(layers, input) {
            Ok(plan) => Some(plan),
            Err(e) => {
                err(
                    &layer_path(e.index),
                    format!("layer {} (`{}`): {}", e.index + 1, layers[e.index].kind(), e.message),
                );
                None
            }
        }
    };
    if let Some(plan) = &model {
        if let Some(message) = head_problem(plan, train.loss) {
            err(&layer_path(layers.len() - 1), message);
        }
    }
    match (diags.is_empty(), model) {
        (true, Some(model)) => Ok(Plan { config, source, model }),
        _ => Err(Error::Config(source.render_all(&diags))),
    }
}

/// Path of `model.layers[index]`.
fn layer_path(index: usize) -> [Seg<'static>; 3] {
    [Seg::Key("model"), Seg::Key("layers"), Seg::Index(index)]
}

/// Whether the last layer fits the loss, before knowing the class count.
fn head_problem(plan: &ModelPlan, loss: Loss) -> Option<String> {
    let last = plan.layers.last()?;
    let (units, activation) = (last.output, last.config.activation());
    use crate::model::layers::Activation::*;
    match (loss, units, activation) {
        (Loss::BinaryCrossentropy, Shape::Flat(1), Sigmoid) => None,
        (Loss::BinaryCrossentropy, ..) => Some(format!(
            "binary_crossentropy needs a last layer with 1 unit and activation = \"sigmoid\", \
             but this one gives {units} with activation = \"{}\"",
            serde_name(activation)
        )),
        (_, Shape::Flat(n), Softmax) if n >= 2 => None,
        _ => Some(format!(
            "{} needs a last layer with one unit per class and activation = \"softmax\", \
             but this one gives {units} with activation = \"{}\"",
            serde_name(loss),
            serde_name(activation)
        )),
    }
}

/// Checks the last layer against the classes found in the dataset folder.
pub fn check_classes(plan: &Plan, classes: &[String]) -> Result<()> {
    let n = classes.len();
    let layers = plan.config.model.layers.len();
    let message = match (plan.config.train.loss, plan.model.output()) {
        (Loss::BinaryCrossentropy, _) if n != 2 => format!(
            "binary_crossentropy needs exactly 2 classes, but `{}` has {n} ({}); use \
             categorical_crossentropy with a softmax layer of {n} units",
            plan.config.data.path.display(),
            classes.join(", ")
        ),
        (Loss::BinaryCrossentropy, _) => return Ok(()),
        (_, Shape::Flat(units)) if units != n => format!(
            "the last layer has {units} units but `{}` has {n} classes ({}); set units = {n}",
            plan.config.data.path.display(),
            classes.join(", ")
        ),
        _ => return Ok(()),
    };
    let d = plan.source.at(&layer_path(layers - 1), message);
    Err(Error::Config(plan.source.render_all(&[d])))
}

/// The TOML spelling of a unit enum value.
pub fn serde_name<T: serde::Serialize>(value: T) -> String {
    toml::Value::try_from(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
