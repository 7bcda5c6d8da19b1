//! A flat folder of images labelled by a CSV file, as Keras' `flow_from_dataframe` reads a
//! data frame: a header row, then one row per image with its file name (relative to the
//! folder) in column `x_col` and its class in `y_col`. The classes are the distinct labels,
//! sorted, as Keras sorts them. A listed file that is not there is quarantined, like an
//! unreadable image; files of the folder that the CSV does not name are not used.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::image_folder::{Listing, Sample};
use super::quarantine::{Quarantined, Reason};

/// Which columns of the labels file hold what.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    /// The file name column.
    pub x: &'a str,
    /// The class column, or one 0/1 column per label (multi-label).
    pub y: &'a [String],
    /// Splits one class column into several labels (multi-label).
    pub separator: Option<&'a str>,
}

impl Columns<'_> {
    fn multi_label(&self) -> bool {
        self.separator.is_some() || self.y.len() > 1
    }
}

/// The listing `csv` (the bytes of `csv_name`) gives for the images under `root`; an error
/// names the line and what to change. With multi-label targets the classes are the label
/// columns in their order, or the distinct labels of the separated cells, sorted.
pub fn listing(root: &Path, csv: &[u8], csv_name: &Path, columns: Columns) -> Result<Listing, String> {
    let at = |line: u64, why: String| format!("{} line {line}: {why}", csv_name.display());
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let header = reader.headers().map_err(|e| at(1, e.to_string()))?.clone();
    let column = |name: &str, key: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            let names: Vec<String> = header.iter().map(|h| format!("`{h}`")).collect();
            at(1, format!("no column `{name}` (data.labels {key}); the header has {}", names.join(", ")))
        })
    };
    let x = column(columns.x, "x_col")?;
    let ys = columns.y.iter().map(|y| column(y, "y_col")).collect::<Result<Vec<_>, _>>()?;
    let per_column = columns.y.len() > 1;
    let mut rows: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut lines: HashMap<PathBuf, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            at(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let file = cell(x);
        if file.is_empty() {
            return Err(at(line, format!("no file name in column `{}`", columns.x)));
        }
        let labels: Vec<String> = if per_column {
            let mut on = Vec::new();
            for (&i, name) in ys.iter().zip(columns.y) {
                match cell(i) {
                    "1" | "1.0" | "true" | "True" => on.push(name.clone()),
                    "0" | "0.0" | "false" | "False" | "-1" => {}
                    other => {
                        return Err(at(
                            line,
                            format!("`{file}` has `{other}` in label column `{name}`; write 1 (has the label) or 0"),
                        ))
                    }
                }
            }
            on
        } else {
            let value = cell(ys[0]);
            match columns.separator {
                Some(sep) => {
                    let mut set: Vec<String> =
                        value.split(sep).map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
                    set.sort();
                    set.dedup();
                    set
                }
                None if value.is_empty() => {
                    return Err(at(
                        line,
                        format!("`{file}` has no label in column `{}`; give it one or remove the row", columns.y[0]),
                    ))
                }
                None => vec![value.to_string()],
            }
        };
        let path = root.join(file);
        if let Some(first) = lines.insert(path.clone(), line) {
            return Err(at(line, format!("`{file}` is listed again (first on line {first}); list each image once")));
        }
        rows.push((path, labels));
    }
    if rows.is_empty() {
        return Err(at(1, "no images are listed; add one row per image".into()));
    }
    let classes: Vec<String> = if per_column {
        columns.y.to_vec()
    } else {
        rows.iter().flat_map(|(_, l)| l.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
    };
    if classes.is_empty() {
        return Err(at(1, format!("no image has a label in column `{}`", columns.y[0])));
    }
    let mut listing = Listing {
        root: root.to_path_buf(),
        classes,
        samples: Vec::new(),
        quarantined: Vec::new(),
        multi_label: columns.multi_label(),
    };
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, names) in rows {
        if path.is_file() {
            let mut labels: Vec<usize> =
                names.iter().map(|n| listing.classes.iter().position(|c| c == n).expect("a class")).collect();
            labels.sort_unstable();
            listing.samples.push(Sample { path, label: labels.first().copied().unwrap_or(0), labels });
        } else {
            let detail = format!("listed in {} but not a file", csv_name.display());
            listing.quarantined.push(Quarantined::new(path, Reason::Unreadable, detail));
        }
    }
    // One class per image: sorted by class, then path, as a scan of class folders lists them.
    if !listing.multi_label {
        listing.samples.sort_by_key(|s| s.label);
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        dir
    }

    #[test]
    fn classes_are_the_sorted_labels_and_missing_files_are_quarantined() {
        let dir = folder(&["a.png", "b.png", "c.png"]);
        let csv = b"id,filename,class\n1,c.png,dog\n2,a.png,cat\n3,gone.png,cat\n4,\"b.png\",dog\n";
        let y = ["class".to_string()];
        let l = listing(dir.path(), csv, Path::new("labels.csv"), Columns { x: "filename", y: &y, separator: None })
            .unwrap();
        assert_eq!(l.classes, ["cat", "dog"]);
        let names: Vec<(String, usize)> =
            l.samples.iter().map(|s| (s.path.file_name().unwrap().to_string_lossy().into(), s.label)).collect();
        assert_eq!(names, [("a.png".into(), 0), ("b.png".into(), 1), ("c.png".into(), 1)]);
        assert_eq!(l.quarantined.len(), 1);
        assert!(l.quarantined[0].path.ends_with("gone.png"));
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_columns() {
        let dir = folder(&["a.png"]);
        let read = |csv: &str, x: &str, y: &str| {
            let y = [y.to_string()];
            let columns = Columns { x, y: &y, separator: None };
            listing(dir.path(), csv.as_bytes(), Path::new("l.csv"), columns).unwrap_err()
        };
        assert_eq!(
            read("file,label\na.png,cat\n", "filename", "label"),
            "l.csv line 1: no column `filename` (data.labels x_col); the header has `file`, `label`"
        );
        assert_eq!(
            read("filename,class\na.png,\n", "filename", "class"),
            "l.csv line 2: `a.png` has no label in column `class`; give it one or remove the row"
        );
        assert_eq!(
            read("filename,class\na.png,cat\na.png,dog\n", "filename", "class"),
            "l.csv line 3: `a.png` is listed again (first on line 2); list each image once"
        );
        assert!(read("filename,class\n", "filename", "class").contains("no images are listed"));
        assert!(read("filename,class\na.png,cat,extra\n", "filename", "class").starts_with("l.csv line 2:"));
    }

    #[test]
    fn multi_label_targets_come_from_separated_cells_or_from_one_column_per_label() {
        let dir = folder(&["a.png", "b.png", "c.png"]);
        let y = ["tags".to_string()];
        let csv = b"filename,tags\nb.png,haze primary\na.png,primary\nc.png,\n";
        let l = listing(dir.path(), csv, Path::new("l.csv"), Columns { x: "filename", y: &y, separator: Some(" ") })
            .unwrap();
        assert!(l.multi_label);
        assert_eq!(l.classes, ["haze", "primary"]);
        let sets: Vec<Vec<usize>> = l.samples.iter().map(|s| s.labels.clone()).collect();
        assert_eq!(sets, [vec![1], vec![0, 1], vec![]], "a.png, b.png, c.png (no label)");
        assert_eq!(l.counts(), [1, 2]);

        let y = ["smiling".to_string(), "glasses".to_string()];
        let csv = b"filename,glasses,smiling\na.png,1,0\nb.png,1,1\n";
        let l =
            listing(dir.path(), csv, Path::new("l.csv"), Columns { x: "filename", y: &y, separator: None }).unwrap();
        assert_eq!(l.classes, ["smiling", "glasses"], "the columns in the order given");
        let sets: Vec<Vec<usize>> = l.samples.iter().map(|s| s.labels.clone()).collect();
        assert_eq!(sets, [vec![1], vec![0, 1]]);
        let bad = listing(
            dir.path(),
            b"filename,glasses,smiling\na.png,yes,0\n",
            Path::new("l.csv"),
            Columns { x: "filename", y: &y, separator: None },
        );
        assert_eq!(
            bad.unwrap_err(),
            "l.csv line 2: `a.png` has `yes` in label column `glasses`; write 1 (has the label) or 0"
        );
    }
}
