//! Per-epoch metrics, in Keras' names (`loss`, `accuracy`, `val_loss`, `val_accuracy`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
        let mut out = format!("epoch,{}\n", names.join(","));
        for r in &self.epochs {
            let columns = r.columns();
            let values: Vec<String> =
                names.iter().map(|n| columns.get(n).map_or(String::new(), f64::to_string)).collect();
            out += &format!("{},{}\n", r.epoch, values.join(","));
        }
        out
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
