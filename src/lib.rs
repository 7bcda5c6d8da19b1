//! `runner` turns one TOML file into a trained convolutional network and a results folder.
//!
//! ```text
//! TOML ──config::load──► Config ──config::validate──► Plan (shapes checked, nothing read yet)
//!   ├─► data: scan folder → seeded stratified split → decode + resize → batches
//!   ├─► model: layer list → shape inference → Network (runtime-shaped dfdx tensors)
//!   └─► train: epochs → History ──► results: run folder (config, history, plots, weights)
//! sweep: [sweep] → one Plan per trial → `runner trial` processes (local or Slurm) → compare
//! ```
//!
//! Only `model`, `ops` and `train` touch dfdx; everything else is plain Rust.

pub mod bench;
pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod interrupt;
pub mod model;
pub mod ops;
pub mod plots;
pub mod predict;
pub mod report;
pub mod results;
pub mod run;
pub mod seed;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
