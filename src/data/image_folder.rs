//! Scanning `root/<class>/<file>`: classes are the sorted subfolder names, files are sorted by
//! path, so the sample order (and with it the split) is the same on every machine.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One image file and its class index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Index into `Listing::classes`.
    pub label: usize,
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
    /// Entries that are not candidates, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Listing {
    /// Number of files per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.samples.iter().for_each(|s| counts[s.label] += 1);
        counts
    }
}

/// Hidden files and operating-system litter that are skipped without a word.
fn is_litter(name: &str) -> bool {
    name.starts_with('.')
        || name.eq_ignore_ascii_case("thumbs.db")
        || name.eq_ignore_ascii_case("desktop.ini")
}

fn sorted_entries(dir: &Path) -> Result<Vec<(PathBuf, String, bool)>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io("reading dataset folder", dir, e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io("reading dataset folder", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_litter(&name) {
            continue;
        }
        let path = entry.path();
        entries.push((path.clone(), name, path.is_dir()));
    }
    entries.sort();
    Ok(entries)
}

/// Lists `root`'s class folders and their files. A missing folder, one with no class
/// subfolders, or a class folder with no files is an error naming the path.
pub fn scan(root: &Path) -> Result<Listing> {
    if !root.is_dir() {
        let what = if root.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(Error::Data(format!(
            "dataset folder `{}` (data.path) {what}; point data.path at a folder with one \
             subfolder of images per class",
            root.display()
        )));
    }
    let mut listing = Listing {
        root: root.to_path_buf(),
        classes: Vec::new(),
        samples: Vec::new(),
        skipped: Vec::new(),
    };
    for (dir, name, is_dir) in sorted_entries(root)? {
        if !is_dir {
            listing
                .skipped
                .push((dir, "not inside a class folder".into()));
            continue;
        }
        let label = listing.classes.len();
        let before = listing.samples.len();
        for (path, _, is_dir) in sorted_entries(&dir)? {
            if is_dir {
                listing
                    .skipped
                    .push((path, "nested folder (classes are one level deep)".into()));
            } else {
                listing.samples.push(Sample { path, label });
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
    Ok(listing)
}
