//! The dataset: scan an image folder (one subfolder per class), decode and resize every image
//! once, split it with the seed, and hand out batches. Plain Rust; no dfdx here.

pub mod augment;
pub mod cache;
pub mod decode;
pub mod image_folder;
pub mod labels;
mod orientation;
pub mod quarantine;
pub mod sampling;
pub mod split;

pub use decode::{ColorMode, Interpolation, Resize};
pub use image_folder::{scan, Listing, Sample};
pub use quarantine::{Quarantined, Reason};
pub use split::{epoch_order, split, Split};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache::{Cache, Decoded, Entry, Index, Records, Slot, Stamp, Writer};

use rayon::prelude::*;

use crate::progress::Progress;
use crate::{Error, Result};

/// The decoded images of a dataset, with their labels and files. The pixels stay on disk, in
/// the image cache (or an unnamed temporary file when `data.cache = false`), one fixed-size
/// record of CHW bytes per image; they are read as batches need them, so memory does not grow
/// with the dataset.
#[derive(Clone, Debug)]
pub struct Images {
    /// Class names, sorted; a label is an index into this.
    pub classes: Vec<String>,
    /// Channels, height, width of every image.
    pub shape: [usize; 3],
    /// Class index of each image (with multi-label targets, its first label, or 0).
    pub labels: Vec<usize>,
    /// With multi-label targets, every label of each image (ascending, maybe none).
    pub label_sets: Option<Vec<Vec<usize>>>,
    /// Source file of each image.
    pub paths: Vec<PathBuf>,
    /// Files that are not used, with the reason.
    pub quarantined: Vec<Quarantined>,
    /// The file holding the pixels.
    records: Arc<Records>,
    /// Where each image's pixels are in `records`.
    slots: Vec<Slot>,
}

impl Images {
    /// Images whose pixels are given (CHW bytes, image after image), for tools and tests; they
    /// go to an unnamed temporary file in `dir` like any others.
    pub fn from_pixels(
        classes: Vec<String>,
        shape: [usize; 3],
        pixels: &[u8],
        labels: Vec<usize>,
        paths: Vec<PathBuf>,
        dir: &Path,
    ) -> Result<Images> {
        let n: usize = shape.iter().product();
        assert_eq!(pixels.len(), n * labels.len(), "one image of {shape:?} per label");
        let mut writer = cache::Writer::unnamed(dir, n)?;
        let stamp = Stamp { size: 0, mtime_ns: 0, inode: 0 };
        let slots = pixels.chunks(n).map(|p| writer.pixels(String::new(), stamp, p)).collect::<Result<_>>()?;
        let records = Arc::new(writer.finish()?);
        Ok(Images { classes, shape, labels, label_sets: None, paths, quarantined: Vec::new(), records, slots })
    }

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

    /// The pixels of images `indices`, CHW bytes, one image after another. An error when the
    /// file holding them was truncated or changed since they were written.
    pub fn bytes(&self, indices: &[usize]) -> Result<Vec<u8>> {
        let n = self.image_len();
        let mut out = vec![0; indices.len() * n];
        for (out, &i) in out.chunks_mut(n).zip(indices) {
            self.records.read(self.slots[i], out, &self.paths[i])?;
        }
        Ok(out)
    }

    /// Pixels of images `indices`, scaled to [0, 1], one image after another.
    pub fn batch(&self, indices: &[usize]) -> Result<Vec<f32>> {
        Ok(self.bytes(indices)?.into_iter().map(|p| f32::from(p) / 255.0).collect())
    }

    /// The CRC-32 of every image's pixels, one after another, as if they were one buffer:
    /// combined from the records' own checksums, without reading a pixel.
    pub fn pixels_crc(&self) -> u32 {
        let n = self.image_len() as u64;
        let mut all = crc32fast::Hasher::new();
        for slot in &self.slots {
            all.combine(&crc32fast::Hasher::new_with_initial_len(slot.crc, n));
        }
        all.finalize()
    }

    /// Class indices of images `indices`.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }

    /// The targets of images `indices`, one row of `classes.len()` values per image: 1 for
    /// every label it has (with multi-label targets) or for its class, 0 elsewhere.
    pub fn targets_of(&self, indices: &[usize]) -> Vec<f32> {
        let k = self.classes.len();
        let mut out = vec![0.0; indices.len() * k];
        for (row, &i) in out.chunks_mut(k).zip(indices) {
            match &self.label_sets {
                Some(sets) => sets[i].iter().for_each(|&l| row[l] = 1.0),
                None => row[self.labels[i]] = 1.0,
            }
        }
        out
    }

    /// Whether an image may have several labels (or none).
    pub fn multi_label(&self) -> bool {
        self.label_sets.is_some()
    }

    /// Every label of image `i`: its class, or its labels with multi-label targets.
    pub fn labels_at(&self, i: usize) -> &[usize] {
        match &self.label_sets {
            Some(sets) => &sets[i],
            None => std::slice::from_ref(&self.labels[i]),
        }
    }

    /// The class names of image `i`, joined by spaces (several, or none, with multi-label
    /// targets).
    pub fn class_names(&self, i: usize) -> String {
        self.labels_at(i).iter().map(|&l| self.classes[l].as_str()).collect::<Vec<_>>().join(" ")
    }
}

/// Every preprocessing choice that changes the decoded pixels, and the decoder that made them
/// (the cache is kept per setting, and rebuilt when the decoder changes). `data.resize` is
/// named only when it is not the default, so that caches written before it existed, which
/// all stretched, keep their key and are not decoded again.
fn cache_settings([h, w]: [usize; 2], mode: ColorMode, interpolation: Interpolation, fit: Resize) -> String {
    let resize = if fit.is_default() { String::new() } else { format!(" resize={fit:?}") };
    format!(
        "size={h}x{w} color_mode={mode:?} interpolation={interpolation:?}{resize} exif=applied decoder={} v2",
        decode::PIXELS_VERSION
    )
}

/// The files of `listing` known to be unusable without decoding anything: the scan's own
/// findings, empty files, and the verdicts the cache's index holds for unchanged files (read
/// from the index alone, not a pixel).
pub fn known_quarantine(
    listing: &Listing,
    image_size: [usize; 2],
    mode: ColorMode,
    interpolation: Interpolation,
    fit: Resize,
    cache_dir: Option<&Path>,
) -> Vec<Quarantined> {
    let record_len = mode.channels() * image_size[0] * image_size[1];
    let settings = cache_settings(image_size, mode, interpolation, fit);
    let index =
        cache_dir.and_then(|dir| Cache::new(dir, &listing.root, &settings).open(record_len)).map(|(_, index)| index);
    let mut known = listing.quarantined.clone();
    for s in &listing.samples {
        let name = listing.relative_name(s);
        match Stamp::of(&s.path) {
            Err(e) => known.push(Quarantined::new(s.path.clone(), Reason::Unreadable, e.to_string())),
            Ok(stamp) if stamp.size == 0 => {
                known.push(Quarantined::new(s.path.clone(), Reason::Empty, "the file is empty (0 bytes)"))
            }
            Ok(stamp) => {
                if let Some(Entry::Quarantined(reason, detail)) = index.as_ref().and_then(|i| i.get(&name, stamp)) {
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

/// What became of one listed file: where its pixels are, or why it is not used.
type Outcome = std::result::Result<Slot, (Reason, String)>;

/// The listed files, each with its name in the cache and its stamp (or why it has none).
struct Files<'a> {
    listing: &'a Listing,
    names: Vec<String>,
    stamps: Vec<std::result::Result<Stamp, String>>,
    record_len: usize,
}

impl Files<'_> {
    /// What `index` says of every file, when it knows every file that has a stamp.
    fn known_to(&self, index: &Index) -> Option<(Vec<Outcome>, LoadStats)> {
        let mut from_cache = 0;
        let outcomes = self.names.iter().zip(&self.stamps).map(|(name, stamp)| match stamp {
            Err(e) => Some(Err((Reason::Unreadable, e.clone()))),
            Ok(stamp) => {
                from_cache += 1;
                match index.get(name, *stamp)? {
                    Entry::Pixels(slot) => Some(Ok(*slot)),
                    Entry::Quarantined(reason, detail) => Some(Err((*reason, detail.clone()))),
                }
            }
        });
        let outcomes = outcomes.collect::<Option<Vec<_>>>()?;
        Some((outcomes, LoadStats { decoded: self.names.len() - from_cache, from_cache }))
    }

    /// Writes every file's pixels or verdict to `writer`, in order: copied from `previous`
    /// where it has the file unchanged, else decoded with `decode`, in parallel chunks of a
    /// few images per thread, so memory holds a chunk, never the dataset.
    fn fill(
        &self,
        mut writer: Writer,
        previous: Option<&(Records, Index)>,
        decode: impl Fn(&Path) -> Decoded + Sync,
    ) -> Result<(Records, Vec<Outcome>, LoadStats)> {
        let samples = &self.listing.samples;
        let known = |i: usize| match &self.stamps[i] {
            Ok(stamp) => previous.and_then(|(_, index)| index.get(&self.names[i], *stamp)),
            Err(_) => None,
        };
        let to_decode = (0..samples.len()).filter(|&i| self.stamps[i].is_ok() && known(i).is_none()).count();
        let progress = Progress::new("decoding images", to_decode as u64);
        let chunk = 4 * rayon::current_num_threads().max(1);
        let mut outcomes = Vec::with_capacity(samples.len());
        let mut from_cache = 0;
        for start in (0..samples.len()).step_by(chunk) {
            let results: Vec<(Decoded, bool)> = (start..(start + chunk).min(samples.len()))
                .into_par_iter()
                .map(|i| {
                    let path = &samples[i].path;
                    match (&self.stamps[i], known(i)) {
                        (Err(e), _) => return (Err((Reason::Unreadable, e.clone())), false),
                        (Ok(_), Some(Entry::Quarantined(reason, detail))) => {
                            return (Err((*reason, detail.clone())), true)
                        }
                        (Ok(_), Some(Entry::Pixels(slot))) => {
                            let mut pixels = vec![0; self.record_len];
                            match previous.map(|(records, _)| records.read(*slot, &mut pixels, path)) {
                                Some(Ok(())) => return (Ok(pixels), true),
                                Some(Err(e)) => tracing::warn!("decoding {} again: {e}", path.display()),
                                None => {}
                            }
                        }
                        (Ok(_), None) => {}
                    }
                    let decoded = decode(path);
                    progress.inc(1);
                    (decoded, false)
                })
                .collect();
            for (i, (decoded, hit)) in (start..).zip(results) {
                from_cache += usize::from(hit);
                let name = self.names[i].clone();
                outcomes.push(match (decoded, &self.stamps[i]) {
                    (Ok(pixels), Ok(stamp)) => Ok(writer.pixels(name, *stamp, &pixels)?),
                    (Err((reason, detail)), Ok(stamp)) => {
                        writer.quarantined(name, *stamp, reason, detail.clone());
                        Err((reason, detail))
                    }
                    (_, Err(e)) => Err((Reason::Unreadable, e.clone())),
                });
            }
        }
        progress.finish();
        let stats = LoadStats { decoded: samples.len() - from_cache, from_cache };
        Ok((writer.finish()?, outcomes, stats))
    }

    /// Fills the cache `cache` unless it already holds every file: under its lock, so that of
    /// several runners starting at once one decodes and the others wait and then read what it
    /// wrote. A cache folder that cannot be written gives an unnamed temporary file instead.
    fn cached(
        &self,
        cache: &Cache,
        decode: impl Fn(&Path) -> Decoded + Sync,
    ) -> Result<(Records, Vec<Outcome>, LoadStats)> {
        if let Some((records, index)) = cache.open(self.record_len) {
            if let Some((outcomes, stats)) = self.known_to(&index) {
                return Ok((records, outcomes, stats));
            }
        }
        let unwritable = |e: Error| {
            tracing::warn!("cannot write the image cache ({e}); the images go to a temporary file instead");
            Writer::unnamed(&std::env::temp_dir(), self.record_len)
        };
        let _lock = match cache.lock(&self.listing.root) {
            Ok(lock) => lock,
            Err(e) => return self.fill(unwritable(e)?, None, decode),
        };
        // What is there now: another runner may have filled it while this one waited.
        let previous = cache.open(self.record_len);
        if let Some((outcomes, stats)) = previous.as_ref().and_then(|(_, index)| self.known_to(index)) {
            let (records, _) = previous.expect("just read");
            return Ok((records, outcomes, stats));
        }
        let writer = cache.writer(self.record_len).or_else(unwritable)?;
        self.fill(writer, previous.as_ref(), decode)
    }
}

/// Decodes every listed file (in parallel, order kept) into a file of pixel records, which the
/// returned [`Images`] read from: the image cache in `cache_dir` when one is given (unchanged
/// files are taken from it, and runners sharing it decode each file once), else an unnamed
/// temporary file in the cache folder. Files that cannot be used are quarantined; a class left
/// with no usable image is an error.
pub fn load(
    listing: Listing,
    image_size: [usize; 2],
    mode: ColorMode,
    interpolation: Interpolation,
    fit: Resize,
    cache_dir: Option<&Path>,
) -> Result<(Images, LoadStats)> {
    let [h, w] = image_size;
    let shape = [mode.channels(), h, w];
    let files = Files {
        listing: &listing,
        names: listing.samples.iter().map(|s| listing.relative_name(s)).collect(),
        stamps: listing.samples.par_iter().map(|s| Stamp::of(&s.path).map_err(|e| e.to_string())).collect(),
        record_len: shape.iter().product(),
    };
    let decode = |path: &Path| decode::decode(path, image_size, mode, interpolation, fit);
    let (records, outcomes, stats) = match cache_dir {
        Some(dir) => files
            .cached(&Cache::new(dir, &listing.root, &cache_settings(image_size, mode, interpolation, fit)), decode)?,
        None => files.fill(Writer::unnamed(&cache::default_dir(), files.record_len)?, None, decode)?,
    };
    drop(files);

    let multi_label = listing.multi_label;
    let mut images = Images {
        shape,
        labels: Vec::new(),
        label_sets: multi_label.then(Vec::new),
        paths: Vec::new(),
        quarantined: listing.quarantined,
        classes: listing.classes,
        records: Arc::new(records),
        slots: Vec::new(),
    };
    for (sample, outcome) in listing.samples.into_iter().zip(outcomes) {
        match outcome {
            Ok(slot) => {
                images.slots.push(slot);
                images.labels.push(sample.label);
                if let Some(sets) = &mut images.label_sets {
                    sets.push(sample.labels);
                }
                images.paths.push(sample.path);
            }
            Err((reason, detail)) => {
                tracing::warn!("quarantined {}: {}: {detail}", sample.path.display(), reason.name());
                images.quarantined.push(Quarantined::new(sample.path, reason, detail));
            }
        }
    }
    for (label, class) in images.classes.iter().enumerate() {
        let used = match &images.label_sets {
            Some(sets) => sets.iter().any(|set| set.contains(&label)),
            None => images.labels.contains(&label),
        };
        if !used {
            return Err(Error::Data(format!(
                "class `{class}` in `{}` has no usable image; every file in it was quarantined \
                 (see the warnings above)",
                listing.root.display()
            )));
        }
    }
    Ok((images, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `data.resize` gets its own cache file, and the default keeps the key it had before
    /// the setting existed, so existing caches are still read.
    #[test]
    fn the_cache_key_changes_with_the_resize_mode_and_keeps_the_default_s() {
        let key = |fit| cache_settings([28, 40], ColorMode::Rgb, Interpolation::Bilinear, fit);
        assert_eq!(
            key(Resize::Stretch),
            format!(
                "size=28x40 color_mode=Rgb interpolation=Bilinear exif=applied decoder={} v2",
                decode::PIXELS_VERSION
            )
        );
        let keys = [key(Resize::Stretch), key(Resize::Crop), key(Resize::Pad)];
        let files: Vec<_> =
            keys.iter().map(|k| Cache::new(Path::new("/cache"), Path::new("/data"), k).file().to_path_buf()).collect();
        assert!(files[0] != files[1] && files[1] != files[2] && files[0] != files[2], "{files:?}");
    }
}
