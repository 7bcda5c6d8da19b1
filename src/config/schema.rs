//! The config file, one struct per TOML table, Keras' names for every key. Every struct denies
//! unknown keys; defaults are Keras' where Keras has one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::decode::{Interpolation, Resize};
use crate::data::ColorMode;
use crate::model::LayerConfig;

/// A whole experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[experiment]`: name, seed, device.
    pub experiment: ExperimentConfig,
    /// `[data]`: the image folder and how to read and split it.
    pub data: DataConfig,
    /// `[augment]`: random changes to training images (Keras `ImageDataGenerator` arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<crate::data::augment::AugmentConfig>,
    /// `[model]`: the layer list.
    pub model: ModelConfig,
    /// `[train]`: optimizer, loss, epochs, batch size.
    pub train: TrainConfig,
    /// `[output]`: where results go.
    #[serde(default)]
    pub output: OutputConfig,
    /// `[sweep]`: the values to vary between trials; makes the file a sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<super::SweepConfig>,
}

/// `[experiment]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Names the folder `results/<name>/`.
    pub name: String,
    /// The one seed all randomness derives from (split, shuffle, initial weights).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `"cpu"` (default), `"cuda"` (the first GPU), `"cuda:N"` (GPU N) or `"auto"` (the
    /// first GPU when this build has CUDA and the machine a GPU, else the CPU). CUDA needs a
    /// build with `--features cuda`.
    #[serde(default)]
    pub device: DeviceKind,
}

fn default_seed() -> u64 {
    42
}

/// Where training runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceKind {
    /// All CPU cores.
    #[default]
    Cpu,
    /// NVIDIA GPU number N (`"cuda"` is `"cuda:0"`).
    Cuda(usize),
    /// The first GPU if there is one (and the build has CUDA), else the CPU.
    Auto,
}

impl TryFrom<String> for DeviceKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda(0)),
            "auto" => Ok(DeviceKind::Auto),
            other => other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceKind::Cuda).ok_or_else(|| {
                format!("unknown device `{other}`, expected `cpu`, `cuda`, `cuda:N` (such as `cuda:1`) or `auto`")
            }),
        }
    }
}

impl From<DeviceKind> for String {
    fn from(d: DeviceKind) -> String {
        match d {
            DeviceKind::Cpu => "cpu".into(),
            DeviceKind::Cuda(n) => format!("cuda:{n}"),
            DeviceKind::Auto => "auto".into(),
        }
    }
}

impl schemars::JsonSchema for DeviceKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceKind".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`cpu`, `cuda`, `cuda:N` or `auto`.",
            "type": "string",
            "pattern": "^(cpu|auto|cuda(:[0-9]+)?)$"
        })
    }
}

/// `[data]`, like Keras' `image_dataset_from_directory`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder with one subfolder per class (relative paths are taken from the current
    /// directory), split with the seed; or, with `labels`, a folder of images named in a CSV
    /// file. Leave it out when `train_path` names folders that are already split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A folder of training images already split from the others (one subfolder per class),
    /// instead of `path`. With `validation_path` no split is drawn; without it, validation
    /// images are drawn from this folder by `validation_split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_path: Option<PathBuf>,
    /// The validation images, one subfolder per class (every class must be one of
    /// `train_path`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_path: Option<PathBuf>,
    /// The test images, one subfolder per class, evaluated once after training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    /// Labels from a CSV file for a flat folder of images (`path`), as Keras'
    /// `flow_from_dataframe` reads them: `labels = "labels.csv"` (columns `filename` and
    /// `class`), or `{ file = "labels.csv", x_col = "image", y_col = "label" }`. Several
    /// labels per image (multi-label: a sigmoid unit per label and `binary_crossentropy`) come
    /// from `separator = " "` (labels in one cell) or `y_col = ["a", "b"]` (a 0/1 column per
    /// label). A relative file name is taken from the current directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelsConfig>,
    /// `[height, width]` every image is resized to (Keras default `[256, 256]`).
    #[serde(default = "default_image_size")]
    pub image_size: [usize; 2],
    /// `"rgb"` (default) or `"grayscale"`.
    #[serde(default)]
    pub color_mode: ColorMode,
    /// How images are resized to `image_size`: `"bilinear"` (default, antialiased), `"nearest"`
    /// or `"area"`.
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = "bilinear"))]
    pub interpolation: Interpolation,
    /// What happens to an image whose aspect ratio is not `image_size`'s: `"stretch"` (default,
    /// as Keras: resized to the size, distorting it), `"crop"` (the largest centred window of
    /// the size's aspect ratio, then resized: Keras' `crop_to_aspect_ratio`) or `"pad"`
    /// (resized to fit inside, then centred on black: `pad_to_aspect_ratio`). `runner predict`
    /// resizes the same way. Left out of resolved configs when `"stretch"`, so configs from
    /// before the key keep their sweep trial names.
    #[serde(default, skip_serializing_if = "Resize::is_default")]
    #[schemars(extend("default" = "stretch"))]
    pub resize: Resize,
    /// Fraction of each class held out for validation (default 0.2).
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// Fraction of each class held out as a test set, evaluated once after training
    /// (default 0: no test set).
    #[serde(default)]
    pub test_split: f64,
    /// Reuse the split of an earlier run: the path of its `split.csv` (instead of drawing one
    /// from the seed). Every used file must be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_file: Option<PathBuf>,
    /// Split each class separately so every split keeps the class balance (default true).
    #[serde(default = "yes")]
    pub stratify: bool,
    /// Keep decoded, resized images in the on-disk cache so later runs skip decoding (default true).
    #[serde(default = "yes")]
    pub cache: bool,
    /// K-fold cross-validation: the config becomes `folds` trials, run like a sweep, trial i
    /// validating on fold i and training on the others (the test split, `test_split`, is held
    /// out first and is the same in every trial). Folds are drawn from the seed, of each class
    /// when `stratify`. The sweep's leaderboard gives each metric's mean and standard
    /// deviation over the folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// The fold this run validates on (0-based), out of `folds`; set by the cross-validation
    /// trials, or by hand to run one fold alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    /// Rebalance the classes of the training split, drawn again every epoch from the seed:
    /// `"oversample"` keeps every image and repeats randomly chosen ones of the smaller classes
    /// until each class has as many as the largest; `"undersample"` takes as many randomly
    /// chosen images of each class as the smallest has. Validation and test are untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<crate::data::sampling::Sampling>,
}

impl DataConfig {
    /// Whether an image may have several labels (a labels file with multi-label targets).
    pub fn multi_label(&self) -> bool {
        self.labels.as_ref().is_some_and(LabelsConfig::multi_label)
    }

    /// Whether the split keeps each class's share: `stratify`, except for multi-label
    /// targets, whose images have no one class to stratify by (their split is at random).
    pub fn stratified(&self) -> bool {
        self.stratify && !self.multi_label()
    }

    /// The folder that holds every image of the dataset: `path`, or the deepest folder that
    /// holds `train_path`, `validation_path` and `test_path` (how the cache and the manifest
    /// name the dataset).
    pub fn root(&self) -> PathBuf {
        if let Some(path) = &self.path {
            return path.clone();
        }
        let folders: Vec<PathBuf> = [&self.train_path, &self.validation_path, &self.test_path]
            .into_iter()
            .flatten()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let Some(first) = folders.first() else { return PathBuf::new() };
        let mut root = first.clone();
        while !folders.iter().all(|f| f.starts_with(&root)) && root.pop() {}
        root
    }
}

/// `data.labels`: the CSV file naming each image's class; a file name alone is the file with
/// the default columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct LabelsConfig {
    /// The CSV file (a header row, then one row per image).
    pub file: PathBuf,
    /// The column with each image's file name, relative to `data.path` (default `filename`).
    pub x_col: String,
    /// The column with each image's class (default `class`); for multi-label targets, a list
    /// of columns, one per label, each 1 (the image has the label) or 0.
    pub y_col: YCol,
    /// Several labels in one `y_col` cell, separated by this (such as `" "` for
    /// `"haze primary"`): multi-label targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
}

/// `y_col`: one class column, or one 0/1 column per label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum YCol {
    /// The column holding each image's class (or labels, with a separator).
    One(String),
    /// One column per label.
    Each(Vec<String>),
}

impl LabelsConfig {
    /// Whether an image may have several labels (or none): a separator, or a column per label.
    pub fn multi_label(&self) -> bool {
        self.separator.is_some() || matches!(self.y_col, YCol::Each(_))
    }
}

/// `data.labels` written as a table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsTable {
    file: PathBuf,
    #[serde(default = "default_x_col")]
    x_col: String,
    #[serde(default = "default_y_col")]
    y_col: YCol,
    #[serde(default)]
    separator: Option<String>,
}

impl TryFrom<toml::Value> for LabelsConfig {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let labels = match value {
            toml::Value::String(file) => {
                LabelsConfig { file: file.into(), x_col: default_x_col(), y_col: default_y_col(), separator: None }
            }
            table @ toml::Value::Table(_) => {
                let t = LabelsTable::deserialize(table).map_err(|e| {
                    let message = e.message().trim().to_string();
                    match message.starts_with("data did not match any variant") {
                        true => "y_col is a column name, or a list of column names (one 0/1 column per label)".into(),
                        false => message,
                    }
                })?;
                LabelsConfig { file: t.file, x_col: t.x_col, y_col: t.y_col, separator: t.separator }
            }
            other => {
                return Err(format!(
                    "found {other}; labels is a CSV file name, such as \"labels.csv\", or a table \
                     {{ file = \"labels.csv\", x_col = \"filename\", y_col = \"class\" }}"
                ))
            }
        };
        match (&labels.y_col, &labels.separator) {
            (YCol::Each(columns), _) if columns.is_empty() => Err("y_col lists no columns; name one per label".into()),
            (YCol::Each(_), Some(_)) => {
                Err("separator splits one y_col column into labels; with a list of y_col columns leave it out".into())
            }
            (_, Some(sep)) if sep.is_empty() => {
                Err("separator is empty; use the text between labels, such as \" \"".into())
            }
            _ => Ok(labels),
        }
    }
}

impl schemars::JsonSchema for LabelsConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LabelsConfig".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A CSV file name, or a table with `file`, `x_col` (default `filename`), `y_col` (default `class`; a list of 0/1 columns for multi-label targets) and `separator` (several labels in one cell).",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "file": { "type": "string" },
                        "x_col": { "type": "string" },
                        "y_col": { "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] },
                        "separator": { "type": "string" }
                    },
                    "required": ["file"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

fn default_x_col() -> String {
    "filename".into()
}
fn default_y_col() -> YCol {
    YCol::One("class".into())
}

fn default_image_size() -> [usize; 2] {
    [256, 256]
}
fn default_validation_split() -> f64 {
    0.2
}
fn yes() -> bool {
    true
}

/// `[model]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `[[model.layers]]`, in order; shapes are inferred from `[data]`.
    pub layers: Vec<LayerConfig>,
    /// Start training from these weights instead of random ones (a warm start): a safetensors
    /// file such as a run's `weights.safetensors`, its `checkpoints/best.safetensors` or
    /// `checkpoints/last.safetensors`, or a file converted from Keras. Tensors are matched by
    /// name, `<layer>/<weight>` (`conv2d/kernel`, `dense_1/bias`,
    /// `batch_normalization/moving_mean`), and shape, float32 only; every tensor of the model
    /// must be there and nothing else. Relative paths are taken from the current directory, as
    /// for `data.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
}

/// `[train]`, like Keras' `compile()` and `fit()` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// `"adam"` (default), `"adamw"`, `"sgd"` or `"rmsprop"`, tuned by the keys below.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Step size (default 0.001); a `lr_schedule` changes it as training goes.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Adam/AdamW: decay of the first moment (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    /// Adam/AdamW: decay of the second moment (default 0.999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f64>,
    /// Adam/AdamW/RMSprop: added for numerical stability (default 1e-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// SGD/RMSprop: momentum (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// SGD: Nesterov momentum (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub nesterov: bool,
    /// RMSprop: decay of the squared-gradient average (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// RMSprop: normalise by the variance instead of the second moment (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub centered: bool,
    /// Decoupled weight decay, `w -= learning_rate · weight_decay · w` each step (default:
    /// 0.004 for adamw, none for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Scale each weight's gradient down to this norm when it is longer (Keras `clipnorm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f64>,
    /// Scale all gradients together down to this total norm when longer (Keras `global_clipnorm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_clipnorm: Option<f64>,
    /// `binary_crossentropy`, `categorical_crossentropy` or `sparse_categorical_crossentropy`.
    pub loss: Loss,
    /// Soften the targets: 1 becomes 1 - s + s/classes and 0 becomes s/classes (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("default" = 0.0))]
    pub label_smoothing: f64,
    /// Weigh each training image's loss by its class (Keras' `fit(class_weight=...)`):
    /// `"balanced"` gives class c the weight n / (classes · n_c) over the training split
    /// (scikit-learn's `compute_class_weight`), or a table names the weight of each class,
    /// `{ cat = 1.0, dog = 2.5 }` (classes left out weigh 1). The training loss is the mean
    /// of the weighted losses, as Keras reports it; validation and test losses are unweighted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeight>,
    /// Metrics reported each epoch besides the loss, for training and validation (default
    /// `["accuracy"]`, which is always reported): `precision`, `recall`, `f1_score`,
    /// `top_k_accuracy`, `auc`, `pr_auc`.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    /// The k of `top_k_accuracy` (default 5).
    #[serde(default = "five")]
    pub top_k: usize,
    /// Passes over the training split.
    pub epochs: usize,
    /// Samples per step (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `[train.lr_schedule]`: how the learning rate changes during training (default constant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_schedule: Option<LrSchedule>,
    /// `[train.early_stopping]`: stop when a metric stops improving (Keras `EarlyStopping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// `[train.checkpoint]`: which epoch's weights are the best ones (Keras `ModelCheckpoint`).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// How the CPU computes 3×3 stride-1 convolutions: `"auto"` (default: Winograd's
    /// F(2×2, 3×3), which does 16 multiplications where the direct product does 36, on layers
    /// with at least 64 channels and 64 filters and outputs at least 16 wide, where it was
    /// measured faster; direct on the others), `"direct"` or `"winograd"` (on every 3×3
    /// stride-1 layer). Results differ between them by float32 rounding; each is reproducible
    /// bit for bit. A GPU ignores it (cuDNN chooses).
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = "auto"))]
    pub conv_algorithm: crate::ops::ConvAlgorithm,
}

/// `train.class_weight`: `"balanced"`, or a table of class name → weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Value", into = "toml::Value")]
pub enum ClassWeight {
    /// n / (classes · n_c) for class c, over the training split.
    Balanced,
    /// The weight of each named class; the others weigh 1.
    Table(indexmap::IndexMap<String, f64>),
}

impl TryFrom<toml::Value> for ClassWeight {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let expected =
            "class_weight must be \"balanced\" or a table of class = weight, such as { cat = 1.0, dog = 2.5 }";
        match value {
            toml::Value::String(s) if s == "balanced" => Ok(ClassWeight::Balanced),
            toml::Value::Table(table) => {
                let mut weights = indexmap::IndexMap::new();
                for (class, weight) in table {
                    let w = match weight {
                        toml::Value::Float(w) => w,
                        toml::Value::Integer(w) => w as f64,
                        other => return Err(format!("the weight of class `{class}` is {other}; {expected}")),
                    };
                    if !(w.is_finite() && w >= 0.0) {
                        return Err(format!("the weight of class `{class}` is {w}; weights must be 0 or more"));
                    }
                    weights.insert(class, w);
                }
                Ok(ClassWeight::Table(weights))
            }
            other => Err(format!("found {other}; {expected}")),
        }
    }
}

impl From<ClassWeight> for toml::Value {
    fn from(c: ClassWeight) -> toml::Value {
        match c {
            ClassWeight::Balanced => toml::Value::String("balanced".into()),
            ClassWeight::Table(t) => {
                toml::Value::Table(t.into_iter().map(|(k, v)| (k, toml::Value::Float(v))).collect())
            }
        }
    }
}

impl schemars::JsonSchema for ClassWeight {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClassWeight".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`\"balanced\"` or a table of class name = weight.",
            "oneOf": [
                { "const": "balanced" },
                { "type": "object", "additionalProperties": { "type": "number", "minimum": 0 } }
            ]
        })
    }
}

/// `[train.lr_schedule]`, selected by its `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The learning rate throughout.
    Constant(ConstantSchedule),
    /// Multiplied by `factor` every `every` epochs.
    StepDecay(StepDecay),
    /// Keras `ExponentialDecay`: `lr · decay_rate^(step / decay_steps)` over optimizer steps.
    Exponential(ExponentialDecay),
    /// Keras `CosineDecay` over the whole run, after a linear warm-up.
    Cosine(CosineDecay),
    /// Keras `ReduceLROnPlateau`: multiplied by `factor` when a metric stops improving.
    ReduceOnPlateau(ReduceOnPlateau),
}

/// `type = "constant"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstantSchedule {}

/// `type = "step_decay"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDecay {
    /// Epochs between reductions.
    pub every: usize,
    /// Multiplier at each reduction (default 0.5).
    #[serde(default = "half")]
    pub factor: f64,
}

fn half() -> f64 {
    0.5
}

/// `type = "exponential"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExponentialDecay {
    /// Multiplier per `decay_steps` optimizer steps.
    pub decay_rate: f64,
    /// Optimizer steps per multiplication.
    pub decay_steps: usize,
    /// Multiply in whole steps instead of continuously (default false).
    #[serde(default)]
    pub staircase: bool,
}

/// `type = "cosine"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineDecay {
    /// Epochs of linear warm-up from near 0 to the learning rate (default 0).
    #[serde(default)]
    pub warmup_epochs: usize,
    /// Final rate as a fraction of the learning rate (default 0).
    #[serde(default)]
    pub alpha: f64,
}

/// `type = "reduce_on_plateau"`, Keras' `ReduceLROnPlateau` arguments and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceOnPlateau {
    /// History column to watch (default `val_loss`).
    #[serde(default = "default_monitor")]
    pub monitor: String,
    /// `"auto"` (default), `"min"` or `"max"`.
    #[serde(default)]
    pub mode: Mode,
    /// Multiplier at each reduction (default 0.1).
    #[serde(default = "tenth")]
    pub factor: f64,
    /// Epochs without improvement before reducing (default 10).
    #[serde(default = "ten")]
    pub patience: usize,
    /// The least change that counts as an improvement (default 0.0001).
    #[serde(default = "small_delta")]
    pub min_delta: f64,
    /// Epochs to wait after a reduction before counting again (default 0).
    #[serde(default)]
    pub cooldown: usize,
    /// The rate never goes below this (default 0).
    #[serde(default)]
    pub min_lr: f64,
}

fn tenth() -> f64 {
    0.1
}
fn ten() -> usize {
    10
}
fn small_delta() -> f64 {
    1e-4
}

/// `[train.early_stopping]`, Keras' `EarlyStopping` arguments and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// History column to watch: `val_loss` (default), `val_accuracy`, `loss` or `accuracy`.
    #[serde(default = "default_monitor")]
    pub monitor: String,
    /// `"auto"` (default: lower is better for losses), `"min"` or `"max"`.
    #[serde(default)]
    pub mode: Mode,
    /// Epochs without improvement before stopping (default 0).
    #[serde(default)]
    pub patience: usize,
    /// The least change that counts as an improvement (default 0).
    #[serde(default)]
    pub min_delta: f64,
    /// End with the best epoch's weights instead of the last epoch's (default false).
    #[serde(default)]
    pub restore_best_weights: bool,
}

/// `[train.checkpoint]`: after every epoch the run folder gets `checkpoints/last.safetensors`
/// (weights, optimizer state, position), and `checkpoints/best.safetensors` when the
/// monitored value improved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// History column that picks the best epoch: `val_loss` (default), `val_accuracy`, `loss`
    /// or `accuracy`. The test split is evaluated with the best epoch's weights.
    #[serde(default = "default_monitor")]
    pub monitor: String,
    /// `"auto"` (default: lower is better for losses), `"min"` or `"max"`.
    #[serde(default)]
    pub mode: Mode,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { monitor: default_monitor(), mode: Mode::Auto }
    }
}

fn default_monitor() -> String {
    "val_loss".into()
}

/// Whether higher or lower is better for a monitored value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lower for anything named like a loss, higher otherwise.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

fn default_learning_rate() -> f64 {
    1e-3
}
/// For keys added after configs were first written: resolved configs leave them out at their
/// default, so that older configs keep their sweep trial names.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
fn five() -> usize {
    5
}
fn default_metrics() -> Vec<Metric> {
    vec![Metric::Accuracy]
}
fn default_batch_size() -> usize {
    32
}

/// Optimizers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Adam (Keras' update and defaults).
    #[default]
    Adam,
    /// Adam with decoupled weight decay (default weight_decay 0.004, as Keras).
    Adamw,
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd,
    /// RMSprop (epsilon inside the square root, as Keras 3).
    Rmsprop,
}

/// Losses. Both categorical forms take the class index from the folder; they differ in Keras
/// only in how labels are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Two classes, one sigmoid output unit.
    BinaryCrossentropy,
    /// N classes, N softmax output units.
    CategoricalCrossentropy,
    /// Same as `categorical_crossentropy` here.
    SparseCategoricalCrossentropy,
}

/// Metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of samples whose predicted class is right.
    Accuracy,
    /// Of the samples predicted as a class, the fraction that are (two classes: of the
    /// second class; more: the mean over classes).
    Precision,
    /// Of the samples of a class, the fraction predicted as it (averaged as precision).
    Recall,
    /// Harmonic mean of precision and recall, per class, then averaged as precision.
    F1Score,
    /// The true class is among the `top_k` highest outputs.
    TopKAccuracy,
    /// Area under the ROC curve, exact over every threshold (two classes: of the second
    /// class; more: the mean over classes, each against the rest).
    Auc,
    /// Average precision, the step-wise area under the precision-recall curve (averaged as
    /// `auc`).
    PrAuc,
}

/// `[output]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Results root (default `results`); runs go to `<dir>/<experiment.name>/run-NNN/`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Plot formats to write (default both).
    #[serde(default = "default_plot_formats")]
    pub plot_formats: Vec<PlotFormat>,
    /// Write TensorBoard event files into the run's `tensorboard/` folder as it trains
    /// (default false): every history column per epoch, in `train/` and `validation/` with
    /// the tags of Keras' TensorBoard callback (`epoch_loss`, `epoch_accuracy`, ...), and the
    /// model summary as text. `tensorboard --logdir results` shows runs and sweeps side by side.
    #[serde(default)]
    pub tensorboard: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: default_dir(), plot_formats: default_plot_formats(), tensorboard: false }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("results")
}
fn default_plot_formats() -> Vec<PlotFormat> {
    vec![PlotFormat::Png, PlotFormat::Svg]
}

/// Plot file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlotFormat {
    /// Raster image.
    Png,
    /// Vector image.
    Svg,
}
