//! Files that are not used, and why. Every file under the class folders is either used for
//! training or listed here (and in `quarantine.csv` of the run folder); only hidden files and
//! operating-system litter are skipped without a word.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why a file was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A zero-byte file.
    Empty,
    /// Not an image format we know (a text file, a `.psd`, ...).
    NotAnImage,
    /// An image format recognised but not decoded by this build (TIFF, AVIF, ...).
    Unsupported,
    /// Truncated or damaged image data.
    Corrupt,
    /// Larger than the safety limits (file size, dimensions or decoder memory).
    TooLarge,
    /// The file or folder could not be read (permissions, broken symlink).
    Unreadable,
    /// A folder inside a class folder (classes are one level deep) or a symlinked folder,
    /// which is not followed.
    Folder,
    /// A file directly in the dataset folder, outside any class folder.
    NoClass,
}

impl Reason {
    /// Every reason (the cache stores a reason as its index here).
    pub const ALL: [Reason; 8] = [
        Reason::Empty,
        Reason::NotAnImage,
        Reason::Unsupported,
        Reason::Corrupt,
        Reason::TooLarge,
        Reason::Unreadable,
        Reason::Folder,
        Reason::NoClass,
    ];

    /// The name written in `quarantine.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Empty => "empty_file",
            Reason::NotAnImage => "not_an_image",
            Reason::Unsupported => "unsupported_format",
            Reason::Corrupt => "corrupt_image",
            Reason::TooLarge => "too_large",
            Reason::Unreadable => "unreadable",
            Reason::Folder => "folder_not_followed",
            Reason::NoClass => "outside_class_folders",
        }
    }
}

/// One file or folder that is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The path, under the dataset folder.
    pub path: PathBuf,
    /// The kind of problem.
    pub reason: Reason,
    /// The specific message (decoder error, size, ...).
    pub detail: String,
}

impl Quarantined {
    /// A new entry.
    pub fn new(path: PathBuf, reason: Reason, detail: impl Into<String>) -> Self {
        Quarantined { path, reason, detail: detail.into() }
    }
}

/// `quarantine.csv`: `path,reason,detail`, one row per entry, in path order; RFC 4180
/// quoting, and each path as its bytes, as in `split.csv`.
pub fn to_csv(entries: &[Quarantined]) -> Vec<u8> {
    let mut entries: Vec<&Quarantined> = entries.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let header = [&b"path"[..], b"reason", b"detail"];
    let rows = entries.iter().map(|q| [q.path.as_os_str().as_bytes(), q.reason.name().as_bytes(), q.detail.as_bytes()]);
    crate::results::csv_table(std::iter::once(header).chain(rows))
}

/// One line for the log: `3 files quarantined: 1 corrupt_image, 2 empty_file`.
pub fn summary(entries: &[Quarantined]) -> Option<String> {
    if entries.is_empty() {
        return None;
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    entries.iter().for_each(|q| *counts.entry(q.reason.name()).or_default() += 1);
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let n = entries.len();
    Some(format!("{n} file{} quarantined: {}", if n == 1 { "" } else { "s" }, parts.join(", ")))
}
