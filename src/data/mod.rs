//! The dataset: scan an image folder (one subfolder per class), decode and resize every image
//! once, split it with the seed, and hand out batches. Plain Rust; no dfdx here.

pub mod augment;
pub mod cache;
pub mod decode;
pub mod image_folder;
mod orientation;
pub mod quarantine;
pub mod split;

pub use decode::ColorMode;
pub use image_folder::{scan, Listing, Sample};
pub use quarantine::{Quarantined, Reason};
pub use split::{epoch_order, split, Split};

use std::path::{Path, PathBuf};

use cache::{Cache, Decoded, Stamp};

use rayon::prelude::*;

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
    /// Files that are not used, with the reason.
    pub quarantined: Vec<Quarantined>,
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
        indices.iter().flat_map(|&i| &self.pixels[i * n..(i + 1) * n]).map(|&p| f32::from(p) / 255.0).collect()
    }

    /// Class indices of images `indices`.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }
}

/// Every preprocessing choice that changes the decoded pixels (the cache is kept per setting).
fn cache_settings([h, w]: [usize; 2], mode: ColorMode) -> String {
    format!("size={h}x{w} color_mode={mode:?} resize=triangle exif=applied v1")
}

/// The files of `listing` known to be unusable without decoding anything: the scan's own
/// findings, empty files, and the verdicts the cache holds for unchanged files.
pub fn known_quarantine(
    listing: &Listing,
    image_size: [usize; 2],
    mode: ColorMode,
    cache_dir: Option<&Path>,
) -> Vec<Quarantined> {
    let cache = cache_dir.map(|dir| Cache::open(dir, &listing.root, &cache_settings(image_size, mode)));
    let mut known = listing.quarantined.clone();
    for s in &listing.samples {
        let name = listing.relative_name(s);
        match Stamp::of(&s.path) {
            Err(e) => known.push(Quarantined::new(s.path.clone(), Reason::Unreadable, e.to_string())),
            Ok(stamp) if stamp.size == 0 => {
                known.push(Quarantined::new(s.path.clone(), Reason::Empty, "the file is empty (0 bytes)"))
            }
            Ok(stamp) => {
                if let Some(Err((reason, detail))) = cache.as_ref().and_then(|c| c.get(&name, stamp)) {
                    known.push(Quarantined::new(s.path.clone(), *reason, detail.clone()));
                }
            }
        }
    }
    known
}

/// How images were obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Files decoded now.
    pub decoded: usize,
    /// Files taken from the cache without decoding.
    pub from_cache: usize,
}

/// Decodes every listed file (in parallel, order kept), taking unchanged files from `cache`
/// when one is given. Files that cannot be used are quarantined; a class left with no usable
/// image is an error.
pub fn load(
    listing: Listing,
    image_size: [usize; 2],
    mode: ColorMode,
    cache_dir: Option<&Path>,
) -> Result<(Images, LoadStats)> {
    let [h, w] = image_size;
    let mut cache = cache_dir.map(|dir| Cache::open(dir, &listing.root, &cache_settings(image_size, mode)));
    let stamps: Vec<_> = listing.samples.par_iter().map(|s| Stamp::of(&s.path)).collect();
    // Each file's result, and whether it came from the cache.
    let results: Vec<(Decoded, bool)> = listing
        .samples
        .par_iter()
        .zip(&stamps)
        .map(|(s, stamp)| {
            let stamp = match stamp {
                Ok(stamp) => stamp,
                Err(e) => return (Err((Reason::Unreadable, e.to_string())), false),
            };
            match cache.as_ref().and_then(|c| c.get(&listing.relative_name(s), *stamp)) {
                Some(hit) => (hit.clone(), true),
                None => (decode::decode(&s.path, image_size, mode), false),
            }
        })
        .collect();
    let from_cache = results.iter().filter(|(_, hit)| *hit).count();
    let stats = LoadStats { decoded: results.len() - from_cache, from_cache };
    if let Some(cache) = cache.as_mut() {
        let names: Vec<String> = listing.samples.iter().map(|s| listing.relative_name(s)).collect();
        for ((name, stamp), (result, hit)) in names.iter().zip(&stamps).zip(&results) {
            if let (Ok(stamp), false) = (stamp, hit) {
                cache.insert(name.clone(), *stamp, result.clone());
            }
        }
        cache.retain(&names.iter().map(String::as_str).collect());
        if let Err(e) = cache.save() {
            tracing::warn!("could not save the image cache: {e}");
        }
    }

    let mut images = Images {
        shape: [mode.channels(), h, w],
        pixels: Vec::with_capacity(listing.samples.len() * mode.channels() * h * w),
        labels: Vec::new(),
        paths: Vec::new(),
        quarantined: listing.quarantined,
        classes: listing.classes,
    };
    for (sample, (result, _)) in listing.samples.into_iter().zip(results) {
        match result {
            Ok(pixels) => {
                images.pixels.extend_from_slice(&pixels);
                images.labels.push(sample.label);
                images.paths.push(sample.path);
            }
            Err((reason, detail)) => {
                tracing::warn!("quarantined {}: {}: {detail}", sample.path.display(), reason.name());
                images.quarantined.push(Quarantined::new(sample.path, reason, detail));
            }
        }
    }
    for (label, class) in images.classes.iter().enumerate() {
        if !images.labels.contains(&label) {
            return Err(Error::Data(format!(
                "class `{class}` in `{}` has no usable image; every file in it was quarantined \
                 (see the warnings above)",
                listing.root.display()
            )));
        }
    }
    Ok((images, stats))
}
