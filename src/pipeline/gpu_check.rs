//! `runner gpu-check`: every op the networks use, on a GPU and on the CPU, compared on the
//! same random inputs (`train::gpu_check` has the cases and the tolerances).

use crate::config::DeviceKind;
use crate::ops::Backend;
use crate::train::gpu_check::{against_cpu, Report};
use crate::{Error, Result};

use super::device::{in_pool, run_on_named, OnDevice};

/// Compares every op on `device` (`cuda`, `cuda:N`, or `cpu` for a self-check of the
/// comparison) with the CPU, on inputs drawn from `seed`.
pub fn gpu_check(device: &str, seed: u64) -> Result<Report> {
    let kind = DeviceKind::try_from(device.to_string()).map_err(|e| Error::Usage(format!("--device: {e}")))?;
    in_pool(|| run_on_named(kind, seed, AgainstCpu { seed }))
}

/// The comparison, as a job for any device.
struct AgainstCpu {
    seed: u64,
}

impl OnDevice for AgainstCpu {
    type Output = Report;

    fn run<D: Backend>(self, dev: D) -> Result<Report> {
        Ok(against_cpu(&dev, self.seed))
    }
}
