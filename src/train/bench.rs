//! Timing training steps and inference batches on random data of a plan's shapes (nothing
//! is read from disk), like `caffe time`: the measurement behind `runner bench`. A training
//! step is forward, backward and the optimizer update; inference is a forward pass without a
//! tape. Each figure is the median of the timed steps, after warm-up steps.

use std::time::{Duration, Instant};

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};

use crate::config::Plan;
use crate::model::layers::Training;
use crate::model::{Network, Shape};
use crate::ops::Backend;
use crate::train::{loss, optimizer::Optimizer};
use crate::{Error, Result};

/// Throughput of one config.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// The device that computed (`cpu` or `cuda`).
    pub device: &'static str,
    /// Images per step.
    pub batch: usize,
    /// Worker threads.
    pub threads: usize,
    /// Which matrix-multiply kernels the convolutions use on this CPU.
    pub kernels: &'static str,
    /// Median seconds per training step.
    pub train_step_seconds: f64,
    /// Training images per second.
    pub train_images_per_second: f64,
    /// Median seconds per inference batch.
    pub inference_step_seconds: f64,
    /// Inference images per second.
    pub inference_images_per_second: f64,
    /// Peak resident memory of the process, MiB (Linux), after the benchmark.
    pub peak_memory_mib: Option<f64>,
}

/// Times `steps` training steps and `steps` inference batches of `batch` images of `plan` on
/// `dev`, after two of each to warm up. Each timed step ends when the device has finished its
/// work (a GPU computes asynchronously): a training step once its updated weights can be
/// read, an inference batch once its output has been read.
pub fn measure<D: Backend>(dev: &D, plan: &Plan, batch: usize, steps: usize) -> Result<Throughput> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.config.experiment.seed);
    let mut net = Network::new(plan.model.clone(), dev, &mut rng);
    let mut optimizer = Optimizer::new(&plan.config.train);
    let input_len = plan.model.input.len();
    let x: Vec<f32> = (0..batch * input_len).map(|_| rng.gen_range(0.0..1.0)).collect();
    let classes = match plan.model.output() {
        Shape::Flat(1) => 2,
        other => other.len(),
    };
    let labels: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
    let train = &plan.config.train;
    let failed = |e| Error::Train(format!("optimizer step failed: {e:?}"));
    let warmup = 2;

    let mut train_times = Vec::new();
    for step in 0..warmup + steps {
        let started = Instant::now();
        let input = dev.tensor_from_vec(x.clone(), (batch, input_len));
        let at = Training { seed: plan.config.experiment.seed, epoch: 0, step };
        let (logits, updates) = net.forward_train(input.traced(Gradients::leaky()), at);
        let loss = loss::loss(train.loss, logits, &labels, train.label_smoothing, None);
        let mut grads = loss.try_backward().map_err(|e| Error::Train(format!("the backward pass failed: {e:?}")))?;
        optimizer.update(&mut net.params, &mut grads, train.learning_rate).map_err(failed)?;
        net.set_state(updates);
        wait(&net);
        if step >= warmup {
            train_times.push(started.elapsed());
        }
    }
    let mut inference_times = Vec::new();
    for step in 0..warmup + steps {
        let started = Instant::now();
        let y = net.forward(dev.tensor_from_vec(x.clone(), (batch, input_len)), false);
        std::hint::black_box(y.as_vec());
        if step >= warmup {
            inference_times.push(started.elapsed());
        }
    }
    let (train_step, inference_step) = (median(&mut train_times), median(&mut inference_times));
    Ok(Throughput {
        device: D::NAME,
        batch,
        threads: rayon::current_num_threads(),
        kernels: crate::ops::Kernel::best().describe(),
        train_step_seconds: train_step,
        train_images_per_second: batch as f64 / train_step,
        inference_step_seconds: inference_step,
        inference_images_per_second: batch as f64 / inference_step,
        peak_memory_mib: peak_memory_mib(),
    })
}

/// Waits until the device has done the work queued for `net` (a GPU computes asynchronously):
/// reading a weight back to the host waits for it. The last weight is usually the output
/// layer's bias, a few values.
fn wait<D: Backend>(net: &Network<D>) {
    if let Some(p) = net.params.last() {
        std::hint::black_box(p.tensor.as_vec());
    }
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// `VmHWM` of this process, in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}
