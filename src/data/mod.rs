//! The dataset: scan an image folder (one subfolder per class), decode and resize every image
//! once, split it with the seed, and hand out batches. Plain Rust; no dfdx here.

pub mod decode;
pub mod image_folder;
pub mod split;

pub use image_folder::{scan, Listing, Sample};
pub use split::{epoch_order, split, Split};

use std::path::PathBuf;

use rayon::prelude::*;

use crate::config::ColorMode;
use crate::{Error, Result};

/// Decoded images held in memory as bytes (a quarter of the size of floats), CHW per image.
#[derive(Clone, Debug)]
pub struct Images {
    /// Class names, sorted; a label is an index into this.
    pub classes: Vec<String>,
    /// Channels, height, width of every image.
    pub shape: [usize; 3],
    /// All pixels, image after image.
    pub pixels: Vec<u8>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// Source file of each image.
    pub paths: Vec<PathBuf>,
    /// Files that could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of images `indices`, scaled to [0, 1], one image after another.
    pub fn batch(&self, indices: &[usize]) -> Vec<f32> {
        let n = self.image_len();
        indices
            .iter()
            .flat_map(|&i| &self.pixels[i * n..(i + 1) * n])
            .map(|&p| f32::from(p) / 255.0)
            .collect()
    }

    /// Class indices of images `indices`.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }
}

/// Decodes every listed file in parallel (order kept). Files that fail are skipped and listed;
/// a class left with no usable image is an error.
pub fn load(listing: Listing, image_size: [usize; 2], mode: ColorMode) -> Result<Images> {
    let decoded: Vec<_> = listing
        .samples
        .par_iter()
        .map(|s| decode::decode(&s.path, image_size, mode))
        .collect();
    let [h, w] = image_size;
    let mut images = Images {
        shape: [mode.channels(), h, w],
        pixels: Vec::with_capacity(listing.samples.len() * mode.channels() * h * w),
        labels: Vec::new(),
        paths: Vec::new(),
        skipped: listing.skipped,
        classes: listing.classes,
    };
    for (sample, result) in listing.samples.into_iter().zip(decoded) {
        match result {
            Ok(pixels) => {
                images.pixels.extend_from_slice(&pixels);
                images.labels.push(sample.label);
                images.paths.push(sample.path);
            }
            Err(reason) => {
                tracing::warn!("skipping {}: {reason}", sample.path.display());
                images.skipped.push((sample.path, reason));
            }
        }
    }
    for (label, class) in images.classes.iter().enumerate() {
        if !images.labels.contains(&label) {
            return Err(Error::Data(format!(
                "class `{class}` in `{}` has no usable image; every file in it was skipped \
                 (see the warnings above)",
                listing.root.display()
            )));
        }
    }
    Ok(images)
}
