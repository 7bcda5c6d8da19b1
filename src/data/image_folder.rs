//! Scanning `root/<class>/<file>`: classes are the sorted subfolder names, files are sorted by
//! path, so the sample order (and with it the split) is the same on every machine.
//!
//! Symlinked folders are not followed (as in Keras), so a link loop cannot trap the scan;
//! symlinked files are read. Entries that cannot be used are quarantined, not fatal.

use std::fs::FileType;
use std::path::{Path, PathBuf};

use super::quarantine::{Quarantined, Reason};
use crate::{Error, Result};

/// One image file and its class index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Index into `Listing::classes`; with multi-label targets, the first of `labels` (0
    /// when there is none), for pictures that show one class per image.
    pub label: usize,
    /// With multi-label targets (`Listing::multi_label`), every label of the image, ascending
    /// (maybe none); else just `label`.
    pub labels: Vec<usize>,
}

/// What a scan found, before any file is decoded.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names (subfolder names), sorted.
    pub classes: Vec<String>,
    /// Candidate image files, sorted by class then path.
    pub samples: Vec<Sample>,
    /// Entries that will not be used, with the reason.
    pub quarantined: Vec<Quarantined>,
    /// Whether an image may have several labels, or none (from a labels file).
    pub multi_label: bool,
}

impl Listing {
    /// `sample`'s path relative to the dataset folder (how the cache names files).
    pub fn relative_name(&self, sample: &Sample) -> String {
        sample.path.strip_prefix(&self.root).unwrap_or(&sample.path).to_string_lossy().into_owned()
    }

    /// Number of files per class (per label, with multi-label targets), in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.samples.iter().flat_map(|s| &s.labels).for_each(|&l| counts[l] += 1);
        counts
    }
}

/// Hidden files and operating-system litter, skipped without a word.
fn is_litter(name: &str) -> bool {
    name.starts_with('.') || ["thumbs.db", "desktop.ini", "__macosx"].iter().any(|l| name.eq_ignore_ascii_case(l))
}

/// Entries of `dir`, sorted by name, without litter.
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, String, FileType)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_litter(&name) {
            entries.push((entry.path(), name, entry.file_type()?));
        }
    }
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(entries)
}

/// Lists `root`'s class folders and their files. A missing folder, one with no class
/// subfolders, or a class folder with no files is an error naming the path.
pub fn scan(root: &Path) -> Result<Listing> {
    if !root.is_dir() {
        let what = if root.exists() { "is not a folder" } else { "does not exist" };
        return Err(Error::Data(format!(
            "dataset folder `{}` (data.path) {what}; point data.path at a folder with one \
             subfolder of images per class",
            root.display()
        )));
    }
    let entries = sorted_entries(root).map_err(|e| Error::io("reading dataset folder", root, e))?;
    // Listing a large folder on a network filesystem takes a while: say how far it got.
    let progress = crate::progress::Progress::unbounded("scanning").unit("files");
    let mut listing = Listing {
        root: root.to_path_buf(),
        classes: Vec::new(),
        samples: Vec::new(),
        quarantined: Vec::new(),
        multi_label: false,
    };
    for (dir, name, kind) in entries {
        if kind.is_symlink() && dir.is_dir() {
            listing.quarantined.push(Quarantined::new(dir, Reason::Folder, "symlinked folder, not followed"));
            continue;
        }
        if !kind.is_dir() {
            listing.quarantined.push(Quarantined::new(dir, Reason::NoClass, "not inside a class folder"));
            continue;
        }
        let files = sorted_entries(&dir).map_err(|e| {
            Error::Data(format!(
                "class folder `{}` cannot be read: {e}; fix its permissions or remove it",
                dir.display()
            ))
        })?;
        progress.inc(files.len() as u64);
        let label = listing.classes.len();
        let before = listing.samples.len();
        for (path, _, kind) in files {
            if kind.is_dir() || kind.is_symlink() && path.is_dir() {
                listing.quarantined.push(Quarantined::new(
                    path,
                    Reason::Folder,
                    "folder inside a class folder (classes are one level deep)",
                ));
            } else {
                listing.samples.push(Sample { path, label, labels: vec![label] });
            }
        }
        if listing.samples.len() == before {
            return Err(Error::Data(format!(
                "class folder `{}` is empty; put images in it or remove it",
                dir.display()
            )));
        }
        listing.classes.push(name);
    }
    if listing.classes.is_empty() {
        return Err(Error::Data(format!(
            "dataset folder `{}` (data.path) has no class subfolders; expected one folder of \
             images per class, such as `{}/cats/` and `{}/dogs/`",
            root.display(),
            root.display(),
            root.display()
        )));
    }
    progress.finish();
    Ok(listing)
}

/// One listing of folders that are already split (`train`, then validation and test), under
/// `root`, their common parent: the classes are the first folder's, and every class of the
/// others must be one of them. With each sample, the index of the folder it came from; an
/// error names the folder (by index too) whose class the training folder lacks.
pub fn combine(root: &Path, parts: Vec<Listing>) -> std::result::Result<(Listing, Vec<usize>), (usize, String)> {
    let mut parts = parts.into_iter();
    let first = parts.next().expect("a training folder");
    let mut origin = vec![0; first.samples.len()];
    let train_root = first.root.clone();
    let mut out = Listing { root: root.to_path_buf(), ..first };
    for (part, listing) in (1..).zip(parts) {
        for (label, class) in listing.classes.iter().enumerate() {
            let Ok(to) = out.classes.binary_search(class) else {
                return Err((
                    part,
                    format!(
                        "`{}` has a class `{class}` that the training folder `{}` has not; every class \
                         must have training images (the training classes are {})",
                        listing.root.display(),
                        train_root.display(),
                        out.classes.join(", ")
                    ),
                ));
            };
            let samples = listing.samples.iter().filter(|s| s.label == label);
            out.samples.extend(samples.map(|s| Sample { path: s.path.clone(), label: to, labels: vec![to] }));
            origin.resize(out.samples.len(), part);
        }
        out.quarantined.extend(listing.quarantined);
    }
    Ok((out, origin))
}
