//! Per-epoch metrics, in Keras' names (`loss`, `accuracy`, `val_loss`, `val_accuracy`).

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
}

/// All epochs so far. Holds no timings, so two runs with the same seed give identical files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per finished epoch.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// Keras `CSVLogger` format: `epoch,accuracy,loss,val_accuracy,val_loss`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch,accuracy,loss,val_accuracy,val_loss\n");
        for r in &self.epochs {
            out += &format!("{},{},{},{},{}\n", r.epoch, r.accuracy, r.loss, r.val_accuracy, r.val_loss);
        }
        out
    }

    /// Keras' `History.history` dictionary: one list per metric, plus the epoch numbers.
    pub fn to_json(&self) -> String {
        let column = |f: fn(&EpochRecord) -> f64| self.epochs.iter().map(f).collect::<Vec<_>>();
        let json = serde_json::json!({
            "epoch": self.epochs.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            "accuracy": column(|r| r.accuracy),
            "loss": column(|r| r.loss),
            "val_accuracy": column(|r| r.val_accuracy),
            "val_loss": column(|r| r.val_loss),
        });
        serde_json::to_string_pretty(&json).expect("plain numbers serialise") + "\n"
    }
}
