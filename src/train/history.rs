//! Per-epoch metrics, in Keras' names (`loss`, `accuracy`, `val_loss`, `val_accuracy`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::results::bounded;

/// Metrics of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based, as Keras' CSVLogger writes it.
    pub epoch: usize,
    /// Training accuracy, averaged over the epoch's samples.
    pub accuracy: f64,
    /// Training loss, averaged over the epoch's samples.
    pub loss: f64,
    /// Validation accuracy after the epoch.
    pub val_accuracy: f64,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// The learning rate of the epoch's last step (Keras logs the optimizer's rate at the
    /// end of each epoch under this name), so schedules show in the curves.
    #[serde(default)]
    pub learning_rate: f64,
    /// Further metrics by history name (`precision`, `val_f1_score`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl EpochRecord {
    /// Every column but `epoch`, by name, in Keras CSVLogger order (sorted by name).
    pub fn columns(&self) -> BTreeMap<&str, f64> {
        let mut all: BTreeMap<&str, f64> = self.metrics.iter().map(|(k, &v)| (k.as_str(), v)).collect();
        all.extend([
            ("accuracy", self.accuracy),
            ("learning_rate", self.learning_rate),
            ("loss", self.loss),
            ("val_accuracy", self.val_accuracy),
            ("val_loss", self.val_loss),
        ]);
        all
    }
}

/// All epochs so far. Holds no timings, so two runs with the same seed give identical files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per finished epoch.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// Keras `CSVLogger` format: `epoch` and the metrics sorted by name
    /// (`epoch,accuracy,learning_rate,loss,val_accuracy,val_loss` with the default metrics).
    pub fn to_csv(&self) -> String {
        let names: Vec<&str> = self.epochs.first().map(|r| r.columns().into_keys().collect()).unwrap_or_default();
        let names = if names.is_empty() {
            vec!["accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
        } else {
            names
        };
        let header: Vec<String> = std::iter::once("epoch").chain(names.iter().copied()).map(str::to_string).collect();
        let rows = self.epochs.iter().map(|r| {
            let columns = r.columns();
            let values = names.iter().map(|n| columns.get(n).map_or(String::new(), f64::to_string));
            std::iter::once(r.epoch.to_string()).chain(values).collect::<Vec<_>>()
        });
        let table = crate::results::csv_table(std::iter::once(header).chain(rows));
        String::from_utf8(table).expect("names and numbers are UTF-8")
    }

    /// Keras' `History.history` dictionary: one list per metric, plus the epoch numbers.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::Map::new();
        json.insert("epoch".into(), serde_json::json!(self.epochs.iter().map(|r| r.epoch).collect::<Vec<_>>()));
        let names: Vec<String> =
            self.epochs.first().map(|r| r.columns().into_keys().map(str::to_string).collect()).unwrap_or_default();
        for name in names {
            let values: Vec<Option<f64>> =
                self.epochs.iter().map(|r| r.columns().get(name.as_str()).copied()).collect();
            json.insert(name, serde_json::json!(values));
        }
        serde_json::to_string_pretty(&serde_json::Value::Object(json)).expect("plain numbers serialise") + "\n"
    }
}

/// A `history.csv` read back (any run's, or a trial's still being written), as its header and
/// rows of fields exactly as written: the one reader of the file, for comparisons, pruning,
/// heartbeats and verification alike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Column names: `epoch`, then the metrics.
    pub header: Vec<String>,
    /// One row of fields per finished epoch.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Reads `path` (RFC 4180; at most [`bounded::RUN_FILE`] bytes). A missing or unreadable
    /// file is an I/O error; a malformed one is `InvalidData` naming the line.
    pub fn read(path: &Path) -> std::io::Result<Table> {
        let bytes = bounded::read(path, &bounded::RUN_FILE)?;
        Table::parse(&bytes).map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))
    }

    /// Parses the text of a history file.
    pub fn parse(bytes: &[u8]) -> Result<Table, String> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
        let mut records = reader.records();
        let line = |e: &csv::Error| e.position().map_or(String::new(), |p| format!("line {}: ", p.line()));
        let header = match records.next() {
            Some(Ok(r)) => r.iter().map(str::to_string).collect(),
            Some(Err(e)) => return Err(format!("{}{e}", line(&e))),
            None => Vec::new(),
        };
        let rows = records
            .map(|r| r.map(|r| r.iter().map(str::to_string).collect()).map_err(|e| format!("{}{e}", line(&e))))
            .collect::<Result<_, _>>()?;
        Ok(Table { header, rows })
    }

    /// Column `name`, one value per row; a field that is empty or not a number reads as NaN.
    /// `None` when there is no such column.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let at = self.header.iter().position(|h| h == name)?;
        Some(self.rows.iter().map(|r| r.get(at).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)).collect())
    }

    /// Every column as numbers, by name; an error names the first field that is not one
    /// (line numbers as in the file, the header being line 1).
    pub fn numbers(&self) -> Result<BTreeMap<String, Vec<f64>>, String> {
        let mut columns: BTreeMap<String, Vec<f64>> = self.header.iter().map(|h| (h.clone(), Vec::new())).collect();
        for (n, row) in self.rows.iter().enumerate() {
            for (h, v) in self.header.iter().zip(row) {
                let v = v.parse().map_err(|_| format!("line {}: `{v}` is not a number", n + 2))?;
                columns.get_mut(h).expect("a header name").push(v);
            }
        }
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, values: [f64; 4]) -> EpochRecord {
        let [accuracy, loss, val_accuracy, val_loss] = values;
        EpochRecord { epoch, accuracy, loss, val_accuracy, val_loss, learning_rate: 1e-3, metrics: BTreeMap::new() }
    }

    /// Two epochs with values that print with many digits, and a precision column.
    fn history() -> History {
        let mut epochs = vec![record(0, [0.5, 0.1 + 0.2, 1.0 / 3.0, 2.5e-7]), record(1, [0.75, 0.25, 0.625, 1e20])];
        for (r, p) in epochs.iter_mut().zip([0.125, 2.0 / 3.0]) {
            r.metrics.insert("precision".into(), p);
            r.metrics.insert("val_precision".into(), p / 2.0);
        }
        History { epochs }
    }

    #[test]
    fn csv_has_epoch_then_the_columns_sorted_by_name_and_reads_back_exactly() {
        let h = history();
        let csv = h.to_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("epoch,accuracy,learning_rate,loss,precision,val_accuracy,val_loss,val_precision")
        );
        assert_eq!(lines.next(), Some("0,0.5,0.001,0.30000000000000004,0.125,0.3333333333333333,0.00000025,0.0625"));
        for (line, r) in csv.lines().skip(1).zip(&h.epochs) {
            let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
            let columns = r.columns();
            let want: Vec<f64> = [r.epoch as f64].into_iter().chain(columns.values().copied()).collect();
            assert_eq!(fields, want, "{line}");
        }
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.ends_with('\n'));
    }

    #[test]
    fn the_table_reads_back_what_to_csv_wrote_column_by_column() {
        let mut h = history();
        let t = Table::parse(h.to_csv().as_bytes()).unwrap();
        assert_eq!(t.header.len(), 8);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.column("val_precision"), Some(vec![0.0625, 1.0 / 3.0]));
        assert_eq!(t.numbers().unwrap()["loss"], [0.1 + 0.2, 0.25]);
        assert_eq!(t.column("nothing"), None);
        h.epochs[1].metrics.remove("precision");
        let t = Table::parse(h.to_csv().as_bytes()).unwrap();
        assert!(t.column("precision").unwrap()[1].is_nan(), "an empty field");
        assert_eq!(t.numbers().unwrap_err(), "line 3: `` is not a number");
    }

    #[test]
    fn the_table_reads_quoted_fields_and_names_the_line_of_a_broken_one() {
        let t = Table::parse(b"epoch,\"a,b\",\"say \"\"hi\"\"\"\n0,1,2\n").unwrap();
        assert_eq!(t.header, ["epoch", "a,b", "say \"hi\""]);
        assert_eq!(t.column("a,b"), Some(vec![1.0]));
        assert_eq!(Table::parse(b"").unwrap(), Table::default());
        let err = Table::parse(b"epoch,loss\n0,1\n1,\xff\n").unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
    }

    #[test]
    fn csv_of_no_epochs_is_the_default_header() {
        assert_eq!(History::default().to_csv(), "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n");
    }

    #[test]
    fn csv_leaves_a_column_empty_where_an_epoch_lacks_it() {
        let mut h = history();
        h.epochs[1].metrics.remove("precision");
        assert!(h.to_csv().lines().nth(2).unwrap().starts_with("1,0.75,0.001,0.25,,0.625,"), "{}", h.to_csv());
    }

    #[test]
    fn json_has_one_list_per_column_and_reads_back_exactly() {
        let h = history();
        let json: serde_json::Value = serde_json::from_str(&h.to_json()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["accuracy", "epoch", "learning_rate", "loss", "precision", "val_accuracy", "val_loss", "val_precision"]
        );
        assert_eq!(json["epoch"], serde_json::json!([0, 1]));
        for r in &h.epochs {
            for (name, value) in r.columns() {
                assert_eq!(json[name][r.epoch].as_f64(), Some(value), "{name} at epoch {}", r.epoch);
            }
        }
        // A NaN loss (JSON has no NaN) is written as null.
        let nan = History { epochs: vec![record(0, [0.5, f64::NAN, 0.5, 1.0])] };
        let json: serde_json::Value = serde_json::from_str(&nan.to_json()).unwrap();
        assert_eq!(json["loss"], serde_json::json!([null]));
        assert_eq!(History::default().to_json(), "{\n  \"epoch\": []\n}\n");
    }
}
