//! `runner bench <config>`: how fast the config's model trains and predicts on this machine,
//! on random data of the config's shapes; `train::bench` does the timing.

use std::path::Path;

use crate::config::{Overrides, Plan};
use crate::ops::Backend;
use crate::train::bench::{measure, Throughput};
use crate::{Error, Result};

use super::device::{in_pool, run_on, OnDevice};

/// Times `steps` training steps and `steps` inference batches of the config at `config_path`
/// (after `warmup` of each), with `batch` images per step (default: the config's).
pub fn bench(config_path: &Path, overrides: &Overrides, batch: Option<usize>, steps: usize) -> Result<Throughput> {
    let plan = super::plan(config_path, overrides)?;
    let batch = batch.unwrap_or(plan.config.train.batch_size);
    if batch == 0 || steps == 0 {
        return Err(Error::Usage("--batch and --steps must be at least 1".into()));
    }
    in_pool(|| run_on(&plan, Measure { plan: &plan, batch, steps }))
}

/// The timing, as a job for any device.
struct Measure<'a> {
    plan: &'a Plan,
    batch: usize,
    steps: usize,
}

impl OnDevice for Measure<'_> {
    type Output = Throughput;

    fn run<D: Backend>(self, dev: D) -> Result<Throughput> {
        measure(&dev, self.plan, self.batch, self.steps)
    }
}

/// The report for the terminal.
pub fn report(name: &str, t: &Throughput) -> String {
    let memory = t.peak_memory_mib.map_or("-".into(), |m| format!("{m:.0} MiB"));
    format!(
        "{name}: on {}, batch {}, {} threads, {} kernels (random data, median of the timed steps)\n\
         training:  {:>9.1} images/s  ({:.1} ms per step: forward, backward, optimizer)\n\
         inference: {:>9.1} images/s  ({:.1} ms per batch)\n\
         peak memory: {memory}\n",
        t.device,
        t.batch,
        t.threads,
        t.kernels,
        t.train_images_per_second,
        t.train_step_seconds * 1e3,
        t.inference_images_per_second,
        t.inference_step_seconds * 1e3,
    )
}
