//! `runner export <run>`: a run's trained network as an ONNX model that onnxruntime runs
//! (`model::onnx` builds the graph; its module comment gives the contract), with the run's
//! classes, config hash and preprocessing in the model's metadata and doc strings. Reads only
//! the run folder (manifest.json, config.toml and a weights file).

use std::path::{Path, PathBuf};

use crate::model::onnx;
use crate::model::Shape;
use crate::results::bounded;
use crate::results::{files, safetensors, write_atomic};
use crate::{Error, Result};

use super::open;

/// Which of a run's weights to export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// `weights.safetensors`: the final weights, the ones `runner predict` and `runner
    /// evaluate` use (the last epoch's, or the best with `restore_best_weights`).
    #[default]
    Last,
    /// `checkpoints/best.safetensors`: the best epoch's by `train.checkpoint.monitor`.
    Best,
}

impl Weights {
    /// `last` or `best`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Weights::Last => "last",
            Weights::Best => "best",
        }
    }

    /// The file in the run folder.
    pub fn file(self) -> &'static str {
        match self {
            Weights::Last => files::WEIGHTS,
            Weights::Best => files::BEST_WEIGHTS,
        }
    }
}

/// The default file name, in the run folder.
pub const DEFAULT_FILE: &str = "model.onnx";

/// What `runner export` wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The ONNX file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// Channels, height and width of one input image.
    pub image: [usize; 3],
    /// `grayscale` or `rgb`.
    pub color_mode: String,
    /// Columns of the output: one per class.
    pub classes: usize,
    /// The weights exported.
    pub weights: Weights,
}

impl Exported {
    /// One line for the terminal: what was written, its input and output.
    pub fn summary(&self) -> String {
        let [c, h, w] = self.image;
        format!(
            "wrote {} ({}): input `{}` float32 [{b}, {c}, {h}, {w}] NCHW ({}, pixels / 255), output `{}` [{b}, {}], {} weights",
            self.path.display(),
            human_size(self.bytes),
            onnx::INPUT,
            self.color_mode,
            onnx::OUTPUT,
            self.classes,
            self.weights.name(),
            b = onnx::BATCH,
        )
    }
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// `runner export <run> [-o FILE] [--weights last|best]`: writes the run's network with the
/// chosen weights as an ONNX model, to `out` or `<run>/model.onnx`, atomically.
pub fn export(run_dir: &Path, out: Option<&Path>, weights: Weights) -> Result<Exported> {
    // `-o` is named relative to where the command runs, before `open` changes directory.
    let out = match out {
        Some(p) => Some(std::path::absolute(p).map_err(|e| Error::io("resolving", p, e))?),
        None => None,
    };
    let (run_dir, manifest, plan) = open(run_dir)?;
    let weights_path = run_dir.join(weights.file());
    let bytes = bounded::read(&weights_path, &bounded::WEIGHTS).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            let run = run_dir.display();
            Error::Usage(match weights {
                Weights::Last => format!(
                    "`{run}` has no {}: the run did not finish (resume it with `runner resume {run}`), \
                     or export the best epoch so far with --weights best",
                    files::WEIGHTS
                ),
                Weights::Best => format!(
                    "`{run}` has no {}: no epoch has finished yet (resume it with `runner resume {run}`)",
                    files::BEST_WEIGHTS
                ),
            })
        }
        _ => Error::io("reading", &weights_path, e),
    })?;
    let tensors =
        safetensors::from_bytes(&bytes).map_err(|e| Error::Data(format!("{}: {e}", weights_path.display())))?;

    let config_path = run_dir.join(files::CONFIG);
    let config_bytes =
        bounded::read(&config_path, &bounded::CONFIG).map_err(|e| Error::io("reading", &config_path, e))?;
    let config_hash = format!("{:016x}", crate::hash::fnv1a(&config_bytes));
    let classes = &manifest.dataset.classes;
    let d = &plan.config.data;
    let color_mode = crate::config::serde_name(d.color_mode);
    let Shape::Image { c, h, w } = plan.model.input else {
        return Err(Error::Data(format!("the model of `{}` does not take images", run_dir.display())));
    };
    let version = env!("CARGO_PKG_VERSION");
    let class_list = serde_json::to_string(classes).expect("strings");
    // How an image of another shape got to the input size in training, so that whoever feeds
    // the model does the same.
    let resize = crate::config::serde_name(d.resize);
    let fit = match d.resize {
        crate::data::Resize::Stretch => format!("resize to {h}x{w} first"),
        crate::data::Resize::Crop => {
            format!("crop the largest centred window of {w}:{h} (width:height) and resize it to {h}x{w} first")
        }
        crate::data::Resize::Pad => {
            format!("resize to fit inside {h}x{w} keeping the aspect ratio and centre it on black first")
        }
    };
    let input_doc = format!(
        "float32 [{b}, {c}, {h}, {w}], NCHW: {b} images of {h}x{w} pixels (height x width), {c} channel{s} \
         ({color_mode}{order}), each 8-bit pixel value divided by 255 (so in [0, 1]), as runner scales them; \
         {fit} (runner uses a triangle filter)",
        b = onnx::BATCH,
        s = if c == 1 { "" } else { "s" },
        order = if c == 3 { ": R, G, B planes" } else { "" },
    );
    let output_doc = format!(
        "float32 [{}, {}]: the probability of each class, rows summing to 1, in the order of the metadata's \
         `classes`: {}",
        onnx::BATCH,
        classes.len(),
        classes.join(", ")
    );
    let name = &plan.config.experiment.name;
    let run_name = run_dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let doc = format!(
        "{name} ({run_name}), trained by runner {version}, {} weights ({}); config.toml FNV-1a {config_hash}. \
         Input `{}`: {input_doc}. Output `{}`: {output_doc}.",
        weights.name(),
        weights.file(),
        onnx::INPUT,
        onnx::OUTPUT,
    );
    let metadata = [
        ("classes", class_list),
        ("config_fnv1a64", config_hash),
        ("runner_version", version.to_string()),
        ("experiment", name.clone()),
        ("run", run_name),
        ("weights", format!("{} ({})", weights.name(), weights.file())),
        ("image_size", format!("[{h}, {w}]")),
        ("color_mode", color_mode.clone()),
        ("resize", resize),
        ("input", onnx::INPUT.to_string()),
        ("input_layout", "NCHW".to_string()),
        ("input_scale", "pixel / 255".to_string()),
        ("output", onnx::OUTPUT.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let about =
        onnx::About { name: name.clone(), producer_version: version.into(), doc, input_doc, output_doc, metadata };
    let model = onnx::model(&plan.model, &tensors, &about)
        .map_err(|e| Error::Usage(format!("cannot export `{}` with {}: {e}", run_dir.display(), weights.file())))?;
    let columns = match plan.model.output() {
        Shape::Flat(1) => 2,
        other => other.len(),
    };
    if columns != classes.len() {
        return Err(Error::Data(format!(
            "the model of `{}` gives {columns} probabilities but the run has {} classes",
            run_dir.display(),
            classes.len()
        )));
    }
    let path = out.unwrap_or_else(|| run_dir.join(DEFAULT_FILE));
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "`{}` is a folder; give -o the file to write, such as `{}`",
            path.display(),
            path.join(DEFAULT_FILE).display()
        )));
    }
    // `-o` may name a folder that does not exist yet, as `runner init -o` may.
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating folder", parent, e))?;
    }
    write_atomic(&path, &model)?;
    Ok(Exported { path, bytes: model.len(), image: [c, h, w], color_mode, classes: columns, weights })
}
