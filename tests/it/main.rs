//! The one integration-test binary (dfdx links once). Modules by area.

mod augment;
mod cli;
mod config;
mod data;
mod datasets;
mod export;
mod floors;
mod golden;
mod imbalance;
mod init;
mod keras_parity;
mod layering;
mod layers;
mod lr_find;
mod model;
mod ops;
mod optim;
mod per_class;
mod pipeline;
mod report;
mod sweep;
mod tensorboard;
mod training;
mod util;
mod verify;
mod warm_start;
