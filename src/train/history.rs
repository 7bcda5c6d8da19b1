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
    /// (`epoch,accuracy,loss,val_accuracy,val_loss` with the default metrics).
    pub fn to_csv(&self) -> String {
        let names: Vec<&str> = self.epochs.first().map(|r| r.columns().into_keys().collect()).unwrap_or_default();
        let names = if names.is_empty() { vec!["accuracy", "loss", "val_accuracy", "val_loss"] } else { names };
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
