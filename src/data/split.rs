//! The seeded train/validation split and the per-epoch order of the training samples.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rand::seq::SliceRandom;

use crate::seed::{self, Stream};

/// Indices of the samples in each split, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Samples used for training.
    pub train: Vec<usize>,
    /// Samples held out to measure generalisation each epoch.
    pub val: Vec<usize>,
    /// Samples held out until training is over; never used for training or model selection.
    pub test: Vec<usize>,
}

impl Split {
    /// The split a sample belongs to, by index.
    pub fn name_of(&self, index: usize) -> &'static str {
        if self.val.binary_search(&index).is_ok() {
            "validation"
        } else if self.test.binary_search(&index).is_ok() {
            "test"
        } else {
            "train"
        }
    }
}

/// Holds out `val_fraction` and `test_fraction` of the samples (of each class when
/// `stratify`), chosen with the `Split` stream of `seed`. A group of at least two samples keeps
/// at least one for training and, when `val_fraction > 0`, one for validation.
pub fn split(
    labels: &[usize],
    n_classes: usize,
    val_fraction: f64,
    test_fraction: f64,
    stratify: bool,
    seed: u64,
) -> Split {
    let groups: Vec<Vec<usize>> = if stratify {
        (0..n_classes).map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect()).collect()
    } else {
        vec![(0..labels.len()).collect()]
    };
    let mut s = Split { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    for (g, mut members) in groups.into_iter().enumerate() {
        members.shuffle(&mut seed::rng(seed, Stream::Split, &[g as u64]));
        let n = members.len();
        let spare = n.saturating_sub(1);
        let mut n_val = (n as f64 * val_fraction).round() as usize;
        if val_fraction > 0.0 && n >= 2 {
            n_val = n_val.max(1);
        }
        let n_val = n_val.min(spare);
        let n_test = ((n as f64 * test_fraction).round() as usize).min(spare - n_val);
        s.val.extend_from_slice(&members[..n_val]);
        s.test.extend_from_slice(&members[n_val..n_val + n_test]);
        s.train.extend_from_slice(&members[n_val + n_test..]);
    }
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
}

/// The order of `train` in `epoch` (0-based), from the `Shuffle` stream keyed by the epoch.
pub fn epoch_order(train: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = train.to_vec();
    order.shuffle(&mut seed::rng(seed, Stream::Shuffle, &[epoch as u64]));
    order
}

/// K-fold cross-validation's split for fold `fold` of `folds`: the test split held out first
/// as [`split`] holds it out without validation (the same in every fold), then the rest dealt into `folds` folds (each class's
/// images shuffled with the `Folds` stream and dealt in turn, continuing from class to class,
/// so folds differ in size by at most one image and keep the class balance when `stratify`);
/// fold `fold` validates, the others train.
pub fn fold_split(
    labels: &[usize],
    n_classes: usize,
    test_fraction: f64,
    stratify: bool,
    seed: u64,
    (fold, folds): (usize, usize),
) -> Split {
    let held = split(labels, n_classes, 0.0, test_fraction, stratify, seed);
    let groups: Vec<Vec<usize>> = if stratify {
        (0..n_classes).map(|c| held.train.iter().copied().filter(|&i| labels[i] == c).collect()).collect()
    } else {
        vec![held.train.clone()]
    };
    let mut s = Split { train: Vec::new(), val: Vec::new(), test: held.test };
    let mut dealt = 0;
    for (g, mut members) in groups.into_iter().enumerate() {
        members.shuffle(&mut seed::rng(seed, Stream::Folds, &[g as u64]));
        for i in members {
            if dealt % folds == fold {
                s.val.push(i);
            } else {
                s.train.push(i);
            }
            dealt += 1;
        }
    }
    s.train.sort_unstable();
    s.val.sort_unstable();
    s
}

/// `split.csv`: a header, then every used file with its class and split (`path,class,split`),
/// in file order. Written with RFC 4180 quoting, and a path as its bytes, so any name the scan
/// accepts (commas, quotes, line breaks, names that are not UTF-8) reads back the same.
pub fn to_csv(paths: &[PathBuf], class_names: impl Fn(usize) -> String, split: &Split) -> Vec<u8> {
    let header = [&b"path"[..], b"class", b"split"].map(<[u8]>::to_vec);
    let rows = paths
        .iter()
        .enumerate()
        .map(|(i, path)| [path.as_os_str().as_bytes().to_vec(), class_names(i).into_bytes(), split.name_of(i).into()]);
    crate::results::csv_table(std::iter::once(header).chain(rows))
}

/// The split recorded in a `split.csv` (as [`to_csv`] writes it) for the files `paths` of the
/// dataset folder `root`. Every path must be listed; rows may come in any order, and rows for
/// files no longer used are ignored. A row naming a file outside `root` (an absolute path
/// elsewhere, or one whose `..` climbs out) is refused: a split file says how a folder's own
/// images are split. Errors name the row by its line in the file.
pub fn from_csv(csv: &[u8], root: &Path, paths: &[PathBuf]) -> Result<Split, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(csv);
    let mut recorded: HashMap<PathBuf, &'static str> = HashMap::new();
    let root = normal(root);
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("line {line}: {e}")),
        }
        if std::mem::take(&mut first) {
            continue; // the header
        }
        let fields: Vec<&[u8]> = record.iter().collect();
        let [path, _class, split] = fields[..] else {
            return Err(format!("line {line}: expected path,class,split"));
        };
        let path = PathBuf::from(OsStr::from_bytes(path));
        let Some(&split) = ["train", "validation", "test"].iter().find(|s| s.as_bytes() == split) else {
            let split = String::from_utf8_lossy(split);
            return Err(format!("line {line}: unknown split `{split}` (train, validation or test)"));
        };
        let normal_path = normal(&path);
        if !normal_path.starts_with(&root) {
            return Err(format!(
                "line {line}: `{}` is outside the dataset folder `{}`; a split file may name only the folder's own images",
                path.display(),
                root.display()
            ));
        }
        recorded.insert(normal_path, split);
    }
    if first {
        return Err("the file is empty; expected the header `path,class,split`".into());
    }
    let mut s = Split { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    let mut missing = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match recorded.get(&normal(path)).copied() {
            Some("train") => s.train.push(i),
            Some("validation") => s.val.push(i),
            Some(_) => s.test.push(i),
            None => missing.push(path.display().to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} used file(s) are not in it, such as `{}`; the folder changed since that run",
            missing.len(),
            missing[0]
        ));
    }
    Ok(s)
}

/// `path` made absolute (from the current folder), with `.` left out and each `..` taking
/// away the component before it, without asking the filesystem (the files of a split need not
/// exist, and a symlinked dataset folder stays where it is named): `/d/a/../b` is `/d/b`. So
/// `data/x/a.png` and `./data/x/a.png` are one file, and `data/x/../y.png` is outside `data/x`.
fn normal(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // `/..` is `/`.
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Labels of `sizes[c]` samples of each class `c`, class by class.
    fn labels(sizes: &[usize]) -> Vec<usize> {
        sizes.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c, n)).collect()
    }

    fn sizes(s: &Split) -> (usize, usize, usize) {
        (s.train.len(), s.val.len(), s.test.len())
    }

    #[test]
    fn one_seed_gives_one_split_and_another_seed_another() {
        let labels = labels(&[60, 40]);
        for stratify in [true, false] {
            let a = split(&labels, 2, 0.25, 0.1, stratify, 42);
            assert_eq!(a, split(&labels, 2, 0.25, 0.1, stratify, 42), "stratify {stratify}");
            let b = split(&labels, 2, 0.25, 0.1, stratify, 43);
            assert_eq!(sizes(&a), sizes(&b));
            assert_ne!(a.val, b.val, "stratify {stratify}: seed 43 holds out other samples");
        }
    }

    #[test]
    fn stratified_splits_keep_each_class_proportion_within_one_sample() {
        let counts = [200, 100, 70, 7];
        let labels = labels(&counts);
        let s = split(&labels, counts.len(), 0.2, 0.1, true, 7);
        for (class, &n) in counts.iter().enumerate() {
            let of_class = |idx: &[usize]| idx.iter().filter(|&&i| labels[i] == class).count() as f64;
            let (val, test) = (of_class(&s.val), of_class(&s.test));
            assert!((val - n as f64 * 0.2).abs() <= 1.0, "class {class}: {val} of {n} in validation");
            assert!((test - n as f64 * 0.1).abs() <= 1.0, "class {class}: {test} of {n} in test");
        }
    }

    #[test]
    fn sizes_are_the_fractions_rounded_to_the_nearest_sample() {
        assert_eq!(sizes(&split(&[0; 100], 1, 0.2, 0.15, false, 1)), (65, 20, 15));
        // 0.125 · 10 = 1.25 rounds down, 0.25 · 10 = 2.5 rounds up.
        assert_eq!(sizes(&split(&[0; 10], 1, 0.125, 0.25, false, 1)), (6, 1, 3));
        assert_eq!(sizes(&split(&[0; 10], 1, 0.0, 0.0, false, 1)), (10, 0, 0));
        // Stratified: each class rounds on its own (0.3 · 5 = 1.5 and 0.3 · 15 = 4.5 both round up).
        assert_eq!(sizes(&split(&labels(&[5, 15]), 2, 0.3, 0.0, true, 1)), (13, 7, 0));
    }

    #[test]
    fn small_groups_keep_one_sample_for_training_and_one_for_validation() {
        // 0.2 · 2 rounds to 0, yet each class of two gives one to validation.
        assert_eq!(sizes(&split(&[0, 0, 1, 1], 2, 0.2, 0.2, true, 1)), (2, 2, 0));
        // Fractions that would take everything leave one sample to train on.
        assert_eq!(sizes(&split(&[0; 10], 1, 0.6, 0.6, false, 1)), (1, 6, 3));
        assert_eq!(sizes(&split(&[0], 1, 0.5, 0.5, false, 1)), (1, 0, 0));
        // No validation asked for: none taken, even from a small group.
        assert_eq!(sizes(&split(&[0, 0], 1, 0.0, 0.0, false, 1)), (2, 0, 0));
    }

    #[test]
    fn every_index_is_in_exactly_one_ascending_split_and_name_of_agrees() {
        let labels = labels(&[13, 8, 1]);
        for stratify in [true, false] {
            for (v, t) in [(0.0, 0.0), (0.2, 0.1), (0.5, 0.5)] {
                let s = split(&labels, 3, v, t, stratify, 5);
                let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..labels.len()).collect::<Vec<_>>(), "{v} {t} stratify {stratify}");
                for (name, part) in [("train", &s.train), ("validation", &s.val), ("test", &s.test)] {
                    assert!(part.windows(2).all(|w| w[0] < w[1]), "{name} is ascending: {part:?}");
                    assert!(part.iter().all(|&i| s.name_of(i) == name), "{name}: {part:?}");
                }
            }
        }
    }

    #[test]
    fn epoch_order_is_a_permutation_that_depends_on_seed_and_epoch() {
        let train: Vec<usize> = (0..50).map(|i| i * 3).collect();
        let order = epoch_order(&train, 1, 0);
        assert_eq!(order, epoch_order(&train, 1, 0));
        assert_ne!(order, train, "shuffled");
        assert_ne!(order, epoch_order(&train, 1, 1), "another epoch, another order");
        assert_ne!(order, epoch_order(&train, 2, 0), "another seed, another order");
        let mut sorted = order;
        sorted.sort_unstable();
        assert_eq!(sorted, train);
    }

    #[test]
    fn folds_cover_the_non_test_images_once_keep_the_test_split_and_the_class_balance() {
        let labels = labels(&[50, 20, 7]);
        let plain = split(&labels, 3, 0.0, 0.1, true, 9);
        let folds: Vec<Split> = (0..5).map(|f| fold_split(&labels, 3, 0.1, true, 9, (f, 5))).collect();
        let mut validated: Vec<usize> = folds.iter().flat_map(|s| s.val.clone()).collect();
        validated.sort_unstable();
        let mut rest: Vec<usize> = plain.train.iter().chain(&plain.val).copied().collect();
        rest.sort_unstable();
        assert_eq!(validated, rest, "every non-test image validates in exactly one fold");
        for s in &folds {
            assert_eq!(s.test, plain.test, "the test split as split() holds it out");
            assert_eq!(s.train.len() + s.val.len(), rest.len());
            assert!(s.val.iter().all(|i| s.train.binary_search(i).is_err()));
            let of = |c: usize| s.val.iter().filter(|&&i| labels[i] == c).count();
            assert!((of(0) as i64 - 9).abs() <= 1 && (of(1) as i64 - 4).abs() <= 1, "{} {}", of(0), of(1));
        }
        let sizes: Vec<usize> = folds.iter().map(|s| s.val.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert_eq!(folds[2], fold_split(&labels, 3, 0.1, true, 9, (2, 5)), "seeded");
        assert_ne!(folds[2].val, fold_split(&labels, 3, 0.1, true, 10, (2, 5)).val, "another seed, other folds");
    }

    /// `split.csv` as a run writes it, every file of class `cat`.
    fn split_csv(paths: &[PathBuf], s: &Split) -> Vec<u8> {
        to_csv(paths, |_| "cat".to_string(), s)
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn from_csv_reads_back_a_written_split_with_commas_quotes_line_breaks_and_any_bytes_in_paths() {
        let mut paths = paths(&[
            "d/cat/a.png",
            "d/cat/b,c.png",
            "d/dog/say \"hi\", dog.png",
            "d/dög/naïve ünïcödé.png",
            "d/dog/two\nlines.png",
        ]);
        paths.push(PathBuf::from(OsStr::from_bytes(b"d/dog/latin-1 \xe9t\xe9.png")));
        let written = Split { train: vec![0, 3, 5], val: vec![1, 4], test: vec![2] };
        let csv = split_csv(&paths, &written);
        assert!(csv.starts_with(b"path,class,split\nd/cat/a.png,cat,train\n\"d/cat/b,c.png\",cat,validation\n"));
        assert_eq!(from_csv(&csv, Path::new("d"), &paths), Ok(written.clone()));
        // Rows in another order, and rows for files no longer used, change nothing.
        let mut reversed = paths.clone();
        reversed.reverse();
        let flipped = Split { train: vec![0, 2, 5], val: vec![1, 4], test: vec![3] };
        let mut csv = split_csv(&reversed, &flipped);
        csv.extend_from_slice(b"d/cat/gone.png,cat,test\n./d/cat/../cat/a.png,cat,train\n");
        assert_eq!(from_csv(&csv, Path::new("./d/"), &paths), Ok(written));
    }

    #[test]
    fn from_csv_refuses_a_path_outside_the_dataset_folder_naming_the_line() {
        let paths = paths(&["d/cat/a.png"]);
        for outside in ["/etc/passwd", "d/../x.png", "d/cat/../../d2/cat/a.png", "dd/cat/a.png"] {
            let csv = format!("path,class,split\nd/cat/a.png,cat,train\n{outside},cat,test\n");
            let err = from_csv(csv.as_bytes(), Path::new("d"), &paths).unwrap_err();
            assert!(err.starts_with(&format!("line 3: `{outside}` is outside the dataset folder `")), "{err}");
        }
    }

    #[test]
    fn from_csv_rejects_unknown_splits_short_lines_broken_quotes_and_missing_files() {
        let paths = paths(&["a.png", "b.png"]);
        let read = |csv: &str| from_csv(csv.as_bytes(), Path::new("."), &paths).unwrap_err();
        assert_eq!(
            read("path,class,split\na.png,cat,training\nb.png,cat,train\n"),
            "line 2: unknown split `training` (train, validation or test)"
        );
        assert_eq!(read("path,class,split\na.png,cat,train\nb.png\n"), "line 3: expected path,class,split");
        assert!(
            read("path,class,split\na.png,cat,train\n").starts_with("1 used file(s) are not in it, such as `b.png`")
        );
        assert!(read("").starts_with("the file is empty"));
    }
}
