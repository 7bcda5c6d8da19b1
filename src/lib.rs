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
//! Modules sit on floors and import only from floors below their own (docs/architecture.md
//! draws them; a test fails on an import that points up or sideways): foundations (`error`,
//! `seed`, `interrupt`, `hash`, `results`, `progress`), then `ops` and `data`, `model`, `config`, `train`,
//! `plots`, `report` and `compare`, the commands on one experiment (`pipeline`), `sweep`, and
//! `cli` on top. Only `model`, `ops`, `train` and `pipeline::device` name dfdx; everything
//! else is plain Rust.

#![warn(missing_docs)]

pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod hash;
pub mod interrupt;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod plots;
pub mod progress;
pub mod report;
pub mod results;
pub mod seed;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
