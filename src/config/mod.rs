//! Reading and checking an experiment file. `load` reads the file and what it `extends`,
//! applies environment and `--set` overrides (`layering`), and deserialises every section,
//! reporting all problems at once with their position (or override); `validate` checks
//! everything that can be checked before any pixel is read and returns a `Plan`, the only
//! thing the rest of the run sees.

pub mod diagnostic;
pub mod layering;
pub mod reference;
pub mod schema;
pub mod sweep;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

pub use diagnostic::{Diagnostic, Origin, Seg, Source, Sources};
pub use layering::Overrides;
pub use schema::*;
pub use sweep::SweepConfig;

use crate::model::{self, Layer, ModelPlan, Shape};
use crate::{Error, Result};
use layering::{segs, Step};

/// A config that passed every check that needs no data.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The config with every default filled in.
    pub config: Config,
    /// The files it came from and the origin of every value.
    pub sources: Sources,
    /// Layer shapes, inferred from `[data]`.
    pub model: ModelPlan,
}

/// Reads `path` (and what it extends), applies `overrides`, and deserialises the result.
pub fn load(path: &Path, overrides: &Overrides) -> Result<(Config, Sources)> {
    let text = layering::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!("config file `{}` does not exist", path.display())),
        _ => Error::io("reading config file", path, e),
    })?;
    let (table, sources) = layering::resolve(Source { path: path.to_path_buf(), text }, overrides)?;
    let config = deserialize(&table, &sources)?;
    Ok((config, sources))
}

/// Parses a config from one file's text, without overrides (tests, tools).
pub fn parse(source: &Source) -> Result<Config> {
    let (table, sources) = layering::resolve(source.clone(), &Overrides::default())?;
    deserialize(&table, &sources)
}

/// The top-level tables, in order.
const SECTIONS: [&str; 7] = ["experiment", "data", "augment", "model", "train", "output", "sweep"];

/// Deserialises the merged table; on failure, finds every problem (one per section, one per
/// layer) and reports them together.
fn deserialize(table: &Table, sources: &Sources) -> Result<Config> {
    let first = match Config::deserialize(Value::Table(table.clone())) {
        Ok(config) => return Ok(config),
        Err(e) => e.to_string(),
    };
    let mut diags = Vec::new();
    for key in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        let expected = SECTIONS.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
        let message = with_hint(format!("unknown field `{key}`, expected one of {expected}"));
        diags.push(sources.at_key(&[Seg::Key(key)], message));
    }
    for required in ["experiment", "data", "model", "train"] {
        if !table.contains_key(required) {
            diags.push(sources.at(&[], format!("missing table [{required}]; every config needs one")));
        }
    }
    let mut section = |name: &str, check: SectionCheck| {
        if let Some(value) = table.get(name) {
            if let Err((mut steps, message)) = check(value) {
                steps.insert(0, Step::Key(name.to_string()));
                diags.push(located(sources, steps, message));
            }
        }
    };
    section("experiment", check_as::<ExperimentConfig>);
    section("data", check_as::<DataConfig>);
    section("augment", check_as::<crate::data::augment::AugmentConfig>);
    section("train", check_as::<TrainConfig>);
    section("output", check_as::<OutputConfig>);
    section("sweep", check_as::<SweepConfig>);
    diags.extend(model_errors(table.get("model"), sources));
    if diags.is_empty() {
        diags.push(sources.at(&[], first));
    }
    Err(Error::Config(sources.render_all(&diags)))
}

/// Deserialises one section, returning the key path and message of its first problem.
type SectionCheck = fn(&Value) -> std::result::Result<(), (Vec<Step>, String)>;

/// Deserialises `value` as `T`, returning the key path and message of the first problem.
fn check_as<T: DeserializeOwned>(value: &Value) -> std::result::Result<(), (Vec<Step>, String)> {
    serde_path_to_error::deserialize::<_, T>(value.clone()).map(|_| ()).map_err(|e| {
        let steps = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect();
        (steps, e.inner().message().trim().to_string())
    })
}

/// A diagnostic at `steps`; an unknown key points at the key itself, with a suggestion.
fn located(sources: &Sources, mut steps: Vec<Step>, message: String) -> Diagnostic {
    let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()).map(str::to_string);
    let message = with_hint(message);
    match unknown {
        Some(key) => {
            if steps.last() != Some(&Step::Key(key.clone())) {
                steps.push(Step::Key(key));
            }
            sources.at_key(&segs(&steps), message)
        }
        None => sources.at(&segs(&steps), message),
    }
}

/// `message` plus "did you mean …?" when a close name exists.
fn with_hint(message: String) -> String {
    match diagnostic::suggestion(&message) {
        Some(hint) => format!("{message}; {hint}"),
        None => message,
    }
}

/// Problems in `[model]`: unknown keys, a missing layer list, and one per layer that does not
/// deserialise (serde reports those at the start of the array: an internally tagged enum
/// loses positions, so each layer is checked on its own).
fn model_errors(model: Option<&Value>, sources: &Sources) -> Vec<Diagnostic> {
    let Some(model) = model.and_then(Value::as_table) else { return Vec::new() };
    let mut diags = Vec::new();
    for key in model.keys().filter(|k| !["layers", "weights"].contains(&k.as_str())) {
        diags.push(located(
            sources,
            vec![Step::Key("model".into()), Step::Key(key.clone())],
            format!("unknown field `{key}`, expected `layers` or `weights`"),
        ));
    }
    if let Some(Err((_, message))) = model.get("weights").map(check_as::<std::path::PathBuf>) {
        let steps = vec![Step::Key("model".into()), Step::Key("weights".into())];
        diags.push(located(sources, steps, format!("{message}, such as \"results/base/run-001/weights.safetensors\"")));
    }
    let Some(layers) = model.get("layers").and_then(Value::as_array) else {
        diags.push(sources.at(&[Seg::Key("model")], "missing `layers`: add [[model.layers]] entries".to_string()));
        return diags;
    };
    for (i, layer) in layers.iter().enumerate() {
        if let Err(e) = crate::model::LayerConfig::deserialize(layer.clone()) {
            let message = e.message().trim().to_string();
            // Point at the key itself where the message names it: an unknown key, or the key
            // holding an unknown name (`type = "conv3d"`, `activation = "rellu"`).
            let quoted = |prefix: &str| message.strip_prefix(prefix).and_then(|m| m.split('`').next());
            let kind = layer.get("type").and_then(|t| t.as_str()).unwrap_or("?");
            let mut steps = vec![Step::Key("model".into()), Step::Key("layers".into()), Step::Index(i)];
            let message = format!("layer {} (`{kind}`): {}", i + 1, with_hint(message.clone()));
            let diag = match quoted("unknown field `") {
                Some(key) => {
                    steps.push(Step::Key(key.to_string()));
                    sources.at_key(&segs(&steps), message)
                }
                None => {
                    let value = quoted("unknown variant `");
                    let key = value.and_then(|v| layer.as_table()?.iter().find(|(_, x)| x.as_str() == Some(v)));
                    steps.extend(key.map(|(k, _)| Step::Key(k.clone())));
                    sources.at(&segs(&steps), message)
                }
            };
            diags.push(diag);
        }
    }
    diags
}

/// Checks `config` completely (all problems at once) and infers the model's shapes.
pub fn validate(config: Config, sources: impl Into<Sources>) -> Result<Plan> {
    use Seg::Key;
    let sources = sources.into();
    let mut diags = Vec::new();
    let mut err = |path: &[Seg], msg: String| diags.push(sources.at(path, msg));

    let name = &config.experiment.name;
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        err(
            &[Key("experiment"), Key("name")],
            format!("experiment name {name:?} must be a plain folder name (no slashes, not starting with a dot)"),
        );
    }
    #[cfg(not(feature = "cuda"))]
    if let DeviceKind::Cuda(_) = config.experiment.device {
        err(
            &[Key("experiment"), Key("device")],
            "this runner was built without CUDA; rebuild with \
             `cargo build --release --features cuda` or set device = \"cpu\""
                .into(),
        );
    }
    let d = &config.data;
    let data_key = |key: &'static str| [Key("data"), Key(key)];
    let explicit = |key: &str| sources.origins.contains_key(&format!("data.{key}"));
    match (&d.path, &d.train_path) {
        (None, None) => err(
            &[Key("data")],
            "[data] needs `path` (a folder with one subfolder of images per class) or `train_path` \
             (with `validation_path`) for folders that are already split"
                .into(),
        ),
        (Some(_), Some(_)) => err(
            &data_key("train_path"),
            "set `path` (split with the seed) or `train_path` (already split), not both".into(),
        ),
        _ => {}
    }
    for key in ["validation_path", "test_path"] {
        let set = if key == "validation_path" { d.validation_path.is_some() } else { d.test_path.is_some() };
        if set && d.train_path.is_none() {
            err(&data_key(key), format!("{key} needs `train_path` for the training images (instead of `path`)"));
        }
    }
    if d.validation_path.is_some() && explicit("validation_split") {
        err(
            &data_key("validation_split"),
            "validation_split does not apply: validation_path is the validation set; remove one of them".into(),
        );
    }
    if d.test_path.is_some() && explicit("test_split") {
        err(&data_key("test_split"), "test_split does not apply: test_path is the test set; remove one of them".into());
    }
    if d.train_path.is_some() && d.split_file.is_some() {
        err(&data_key("split_file"), "split_file does not apply to folders that are already split (train_path)".into());
    }
    match (d.folds, d.fold) {
        (Some(k), _) if k < 2 => err(&data_key("folds"), format!("folds {k} must be at least 2")),
        (Some(k), Some(f)) if f >= k => {
            err(&data_key("fold"), format!("fold {f} is not one of the {k} folds; folds are numbered 0 to {}", k - 1))
        }
        (None, Some(_)) => err(&data_key("fold"), "fold needs `folds`, the number of folds".into()),
        (Some(_), _) => {
            // A validation_split next to folds is left alone (the log says it does not
            // apply), so that `--set data.folds=5` cross-validates a config as it stands.
            for (key, conflict) in
                [("validation_path", d.validation_path.is_some()), ("split_file", d.split_file.is_some())]
            {
                if conflict {
                    err(
                        &data_key(key),
                        format!("{key} does not apply with folds: each fold in turn is the validation set"),
                    );
                }
            }
        }
        (None, None) => {}
    }
    if d.labels.is_some() && d.train_path.is_some() {
        err(
            &data_key("labels"),
            "labels names the images of one folder (`path`), not of train_path; put them in one folder".into(),
        );
    }
    let [h, w] = config.data.image_size;
    if !(1..=8192).contains(&h) || !(1..=8192).contains(&w) {
        err(&[Key("data"), Key("image_size")], format!("image_size [{h}, {w}] must be between 1 and 8192 pixels"));
    }
    let split = config.data.validation_split;
    if config.data.validation_path.is_none() && config.data.folds.is_none() && !(split > 0.0 && split < 1.0) {
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
    } else if config.data.folds.is_none()
        && config.data.validation_path.is_none()
        && split > 0.0
        && split < 1.0
        && split + test >= 1.0
    {
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
    let in_range = |v: Option<f64>, lo: f64, hi: f64| v.is_none_or(|v| v.is_finite() && v >= lo && v < hi);
    let t = |key: &'static str| [Key("train"), Key(key)];
    use Optimizer::*;
    for (key, value, applies, range) in [
        ("beta_1", train.beta_1, [Adam, Adamw].as_slice(), (0.0, 1.0)),
        ("beta_2", train.beta_2, &[Adam, Adamw], (0.0, 1.0)),
        ("epsilon", train.epsilon, &[Adam, Adamw, Rmsprop], (f64::MIN_POSITIVE, f64::INFINITY)),
        ("momentum", train.momentum, &[Sgd, Rmsprop], (0.0, 1.0)),
        ("rho", train.rho, &[Rmsprop], (0.0, 1.0)),
        ("weight_decay", train.weight_decay, &[Adam, Adamw, Sgd, Rmsprop], (0.0, f64::INFINITY)),
        ("clipnorm", train.clipnorm, &[Adam, Adamw, Sgd, Rmsprop], (f64::MIN_POSITIVE, f64::INFINITY)),
        ("global_clipnorm", train.global_clipnorm, &[Adam, Adamw, Sgd, Rmsprop], (f64::MIN_POSITIVE, f64::INFINITY)),
    ] {
        if value.is_some() && !applies.contains(&train.optimizer) {
            let names: Vec<String> = applies.iter().map(|o| format!("\"{}\"", serde_name(*o))).collect();
            err(
                &t(key),
                format!("{key} applies to optimizer {}, not \"{}\"", names.join(" or "), serde_name(train.optimizer)),
            );
        } else if !in_range(value, range.0, range.1) {
            let (lo, hi) = range;
            let hi = if hi.is_infinite() { String::new() } else { format!(" and below {hi}") };
            let lo = if lo == f64::MIN_POSITIVE { "above 0".to_string() } else { format!("{lo} or more") };
            err(&t(key), format!("{key} {} must be {lo}{hi}", value.unwrap_or_default()));
        }
    }
    if train.nesterov && train.optimizer != Sgd {
        err(&t("nesterov"), format!("nesterov applies to optimizer \"sgd\", not \"{}\"", serde_name(train.optimizer)));
    }
    if train.centered && train.optimizer != Rmsprop {
        err(
            &t("centered"),
            format!("centered applies to optimizer \"rmsprop\", not \"{}\"", serde_name(train.optimizer)),
        );
    }
    if train.clipnorm.is_some() && train.global_clipnorm.is_some() {
        err(&t("global_clipnorm"), "set clipnorm or global_clipnorm, not both".into());
    }
    if !(0.0..1.0).contains(&train.label_smoothing) {
        err(
            &t("label_smoothing"),
            format!("label_smoothing {} must be from 0 up to, not including, 1 (such as 0.1)", train.label_smoothing),
        );
    }
    let columns = history_columns(&train.metrics);
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    if train.metrics.contains(&Metric::TopKAccuracy) {
        if train.top_k == 0 {
            err(&t("top_k"), "top_k must be at least 1".into());
        }
        if train.loss == Loss::BinaryCrossentropy {
            err(
                &t("metrics"),
                "top_k_accuracy needs several output classes; with binary_crossentropy it is always 1".into(),
            );
        }
    }
    let schedule = |key: &'static str| [Key("train"), Key("lr_schedule"), Key(key)];
    match &train.lr_schedule {
        Some(LrSchedule::StepDecay(s)) => {
            if s.every == 0 {
                err(&schedule("every"), "every must be at least 1 epoch".into());
            }
            if !(s.factor > 0.0 && s.factor <= 1.0) {
                err(&schedule("factor"), format!("factor {} must be above 0 and at most 1", s.factor));
            }
        }
        Some(LrSchedule::Exponential(s)) => {
            if s.decay_steps == 0 {
                err(&schedule("decay_steps"), "decay_steps must be at least 1".into());
            }
            if !(s.decay_rate > 0.0 && s.decay_rate.is_finite()) {
                err(&schedule("decay_rate"), format!("decay_rate {} must be a positive number", s.decay_rate));
            }
        }
        Some(LrSchedule::Cosine(s)) => {
            if !(0.0..=1.0).contains(&s.alpha) {
                err(&schedule("alpha"), format!("alpha {} must be a fraction from 0 to 1", s.alpha));
            }
            if s.warmup_epochs >= train.epochs {
                err(
                    &schedule("warmup_epochs"),
                    format!("warmup_epochs {} must be fewer than the {} epochs", s.warmup_epochs, train.epochs),
                );
            }
        }
        Some(LrSchedule::ReduceOnPlateau(s)) => {
            if !columns.contains(&s.monitor.as_str()) {
                err(
                    &schedule("monitor"),
                    format!("monitor `{}` is not a history column; use one of {}", s.monitor, columns.join(", ")),
                );
            }
            if !(s.factor > 0.0 && s.factor < 1.0) {
                err(&schedule("factor"), format!("factor {} must be between 0 and 1 (such as 0.1)", s.factor));
            }
            if !(s.min_lr >= 0.0 && s.min_lr.is_finite()) {
                err(&schedule("min_lr"), format!("min_lr {} must be 0 or more", s.min_lr));
            }
        }
        Some(LrSchedule::Constant(_)) | None => {}
    }
    let unknown_column = |m: &str| format!("monitor `{m}` is not a history column; use one of {}", columns.join(", "));
    if !columns.contains(&train.checkpoint.monitor.as_str()) {
        err(&[Key("train"), Key("checkpoint"), Key("monitor")], unknown_column(&train.checkpoint.monitor));
    }
    if let Some(early) = &train.early_stopping {
        if !columns.contains(&early.monitor.as_str()) {
            err(&[Key("train"), Key("early_stopping"), Key("monitor")], unknown_column(&early.monitor));
        }
        if !(early.min_delta.is_finite() && early.min_delta >= 0.0) {
            err(
                &[Key("train"), Key("early_stopping"), Key("min_delta")],
                format!("min_delta {} must be 0 or more", early.min_delta),
            );
        }
    }

    if config.model.weights.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        err(
            &[Key("model"), Key("weights")],
            "weights is empty; name a safetensors file, or leave the key out to start from random weights".into(),
        );
    }
    let layers = &config.model.layers;
    let input = Shape::Image { c: config.data.color_mode.channels(), h, w };
    let model = if layers.is_empty() {
        err(&[Key("model")], "the model has no layers; add [[model.layers]] entries".into());
        None
    } else {
        match model::plan(layers, input) {
            Ok(plan) => Some(ModelPlan { conv_algorithm: config.train.conv_algorithm, ..plan }),
            Err(e) => {
                // Name the layer that produced the input it could not take.
                let from = match e.index.checked_sub(1) {
                    Some(prev) if e.message.contains("input") => {
                        let line = sources.line(&layer_path(prev)).map(|l| format!(", line {l}")).unwrap_or_default();
                        format!(" (its input is the output of layer {} (`{}`{line}))", prev + 1, layers[prev].kind())
                    }
                    _ => String::new(),
                };
                err(
                    &layer_path(e.index),
                    format!("layer {} (`{}`): {}{from}", e.index + 1, layers[e.index].kind(), e.message),
                );
                None
            }
        }
    };
    let multi_label = config.data.multi_label();
    if let Some(plan) = &model {
        if let Some(message) = head_problem(plan, train.loss, multi_label) {
            err(&layer_path(layers.len() - 1), message);
        }
    }
    if multi_label {
        let why = "images with several labels (data.labels)";
        if train.class_weight.is_some() {
            err(&t("class_weight"), format!("class_weight weighs one class per image; it does not apply to {why}"));
        }
        if config.data.sampling.is_some() {
            err(&data_key("sampling"), format!("sampling rebalances one class per image; it does not apply to {why}"));
        }
        if train.metrics.contains(&Metric::TopKAccuracy) {
            err(&t("metrics"), format!("top_k_accuracy ranks one true class; it does not apply to {why}"));
        }
    }
    match (diags.is_empty(), model) {
        (true, Some(model)) => Ok(Plan { config, sources, model }),
        _ => Err(Error::Config(sources.render_all(&diags))),
    }
}

/// Path of `model.layers[index]`.
fn layer_path(index: usize) -> [Seg<'static>; 3] {
    [Seg::Key("model"), Seg::Key("layers"), Seg::Index(index)]
}

/// Whether the last layer fits the loss (and multi-label targets), before knowing the class
/// count.
fn head_problem(plan: &ModelPlan, loss: Loss, multi_label: bool) -> Option<String> {
    let last = plan.layers.last()?;
    let (units, activation) = (last.output, last.config.activation());
    use crate::model::layers::Activation::*;
    if multi_label {
        return match (loss, units, activation) {
            (Loss::BinaryCrossentropy, Shape::Flat(_), Sigmoid) => None,
            _ => Some(format!(
                "images with several labels (data.labels) need loss = \"binary_crossentropy\" and a last layer \
                 with one unit per label and activation = \"sigmoid\", but this one gives {units} with activation = \
                 \"{}\" and the loss is {}",
                serde_name(activation),
                serde_name(loss)
            )),
        };
    }
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

/// Checks the last layer, and the classes `train.class_weight` names, against the classes
/// found in the dataset folder.
pub fn check_classes(plan: &Plan, classes: &[String]) -> Result<()> {
    if let Some(ClassWeight::Table(table)) = &plan.config.train.class_weight {
        let unknown: Vec<&String> = table.keys().filter(|k| !classes.contains(k)).collect();
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|k| format!("`{k}`")).collect();
            let d = plan.sources.at(
                &[Seg::Key("train"), Seg::Key("class_weight")],
                format!(
                    "class_weight names {} but the classes are {}; use the class folder names",
                    names.join(", "),
                    classes.join(", ")
                ),
            );
            return Err(Error::Config(plan.sources.render_all(&[d])));
        }
    }
    let n = classes.len();
    let layers = plan.config.model.layers.len();
    let multi_label = plan.config.data.multi_label();
    let message = match (plan.config.train.loss, plan.model.output()) {
        (_, Shape::Flat(units)) if multi_label && units != n => format!(
            "the last layer has {units} units but the labels file has {n} labels ({}); set units = {n}",
            classes.join(", ")
        ),
        _ if multi_label => return Ok(()),
        (Loss::BinaryCrossentropy, _) if n != 2 => format!(
            "binary_crossentropy needs exactly 2 classes, but `{}` has {n} ({}); use \
             categorical_crossentropy with a softmax layer of {n} units",
            plan.config.data.root().display(),
            classes.join(", ")
        ),
        (Loss::BinaryCrossentropy, _) => return Ok(()),
        (_, Shape::Flat(units)) if units != n => format!(
            "the last layer has {units} units but `{}` has {n} classes ({}); set units = {n}",
            plan.config.data.root().display(),
            classes.join(", ")
        ),
        _ => return Ok(()),
    };
    let d = plan.sources.at(&layer_path(layers - 1), message);
    Err(Error::Config(plan.sources.render_all(&[d])))
}

/// The TOML spelling of a unit enum value.
pub fn serde_name<T: serde::Serialize>(value: T) -> String {
    toml::Value::try_from(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The history columns a run with `metrics` writes, which a monitor, an early stop or a sweep
/// can name: validation first, as Keras orders its logs.
pub fn history_columns(metrics: &[Metric]) -> Vec<String> {
    let mut out: Vec<String> = ["val_loss", "val_accuracy", "loss", "accuracy"].map(String::from).to_vec();
    for m in metrics.iter().filter(|&&m| m != Metric::Accuracy) {
        let name = serde_name(*m);
        out.push(format!("val_{name}"));
        out.push(name);
    }
    out
}
