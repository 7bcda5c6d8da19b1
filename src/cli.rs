//! The command line: `runner <config.toml>` (or `runner run <config.toml>`), which trains one
//! experiment or, for a file with a `[sweep]` table, runs its sweep.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::Result;

/// Train a convolutional network described by a TOML file.
#[derive(Debug, Parser)]
#[command(version, about, override_usage = "runner [OPTIONS] <CONFIG>\n       runner [OPTIONS] <COMMAND>")]
pub struct Cli {
    /// Experiment file to run (same as `runner run <CONFIG>`).
    pub config: Option<PathBuf>,
    /// For a sweep file: how many trials run at once (the cores are divided between them).
    #[arg(short, long, default_value_t = 1)]
    pub jobs: usize,
    /// Print only warnings and errors: no progress bars, no per-epoch lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print debug detail: where each value of the config came from, the matrix kernel
    /// and threads, the image cache, every checkpoint written.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Override a config value, with TOML value syntax: `--set train.epochs=5`,
    /// `--set model.layers[2].filters=64`, `--set data.image_size=[64,64]`. Repeatable; wins
    /// over the file and over `RUNNER_<SECTION>__<KEY>` environment variables.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub sets: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the experiment described by CONFIG and write its run folder.
    Run {
        /// Experiment file.
        config: PathBuf,
        /// For a sweep file: how many trials run at once (the cores are divided between them).
        #[arg(short, long, default_value_t = 1)]
        jobs: usize,
    },
    /// Run the sweep declared in CONFIG's [sweep] table: each trial becomes a run folder under
    /// `<output.dir>/sweeps/<experiment.name>/`, named by a hash of its config. Completed trials
    /// are skipped; the others run (again). The comparison of all trials is written at the end.
    Sweep {
        #[command(subcommand)]
        action: Option<SweepAction>,
        /// Sweep file.
        config: Option<PathBuf>,
        #[command(flatten)]
        launch: Launch,
    },
    /// Measure how fast CONFIG's model trains and predicts here: images per second for a
    /// training step (forward, backward, optimizer) and for inference, on random data of the
    /// config's shapes (`RAYON_NUM_THREADS` sets the threads).
    Bench {
        /// Experiment file.
        config: PathBuf,
        /// Images per step (default: the config's batch_size).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed steps of each kind, after two warm-up steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Run the products on this kernel instead of the fastest this CPU has, to compare
        /// them (the AVX2 one gives the same numbers as the AVX-512 one; `gemm` is the
        /// portable fallback).
        #[arg(long, value_parser = crate::ops::Kernel::NAMES)]
        kernel: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a GPU against the CPU, op by op, forward and backward.
    ///
    /// Runs every op the networks use (convolution in each geometry and epilogue, pooling,
    /// dense, batch normalisation, dropout, activations, losses, steps of each optimizer) on
    /// both devices on the same seeded random inputs, and prints each output's largest error
    /// relative to its scale against the output's tolerance. Exit 0 when every output is within
    /// tolerance, 1 when one is not, 69 when there is no usable GPU (or no CUDA in this build).
    #[command(name = "gpu-check")]
    GpuCheck {
        /// The device to check: `cuda`, `cuda:N`, or `cpu` (the CPU against itself: a check
        /// of the comparison, which says nothing about a GPU).
        #[arg(long, default_value = "cuda:0")]
        device: String,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Find a learning rate for CONFIG (fastai's lr_find) and print the command that uses it.
    ///
    /// Trains a fresh network (as a run would start it) on the training split for at most
    /// --steps steps, the rate growing
    /// exponentially from --start-lr to --end-lr, stopping when the smoothed loss passes 4
    /// times its best. Writes the curve (lr_find.png/.svg, lr_find.csv) and the suggestion
    /// (lr_find.json: fastai's `valley`) to `<output.dir>/<experiment>/lr-find-NNN/` and
    /// prints the command that trains with it. Seeded: the same config gives the same files.
    /// A sweep file is refused (find a rate for one of its experiments).
    #[command(name = "lr-find")]
    LrFind {
        /// Experiment file.
        config: PathBuf,
        /// The rate of the first step.
        #[arg(long, default_value_t = crate::train::lr_find::START_LR)]
        start_lr: f64,
        /// The rate the steps grow towards (the last step reaches just under it).
        #[arg(long, default_value_t = crate::train::lr_find::END_LR)]
        end_lr: f64,
        /// Optimizer steps at most (each one batch of train.batch_size), at least 6.
        #[arg(long, default_value_t = crate::train::lr_find::STEPS)]
        steps: usize,
    },
    /// Go on with an interrupted, failed or killed run from its last checkpoint, in its folder;
    /// the final history is the one an uninterrupted run would have written.
    Resume {
        /// The run folder.
        run: PathBuf,
    },
    /// Prove a run reproducible: train its recorded config again on the same images, split
    /// and seed in a scratch folder and compare history, weights and plots byte for byte.
    /// Exit 0 when identical; otherwise name the first difference and what differs in the
    /// environment, exit 1. Works for sweep trials too.
    Verify {
        /// The run folder (or a sweep's trial folder).
        run: PathBuf,
        /// Verify only the first N epochs (their history rows, and the best weights when the
        /// best epoch is among them), for long runs.
        #[arg(long, value_name = "N")]
        epochs: Option<usize>,
        /// Keep the rerun's folder (its path is printed) to look at the differences.
        #[arg(long)]
        keep: bool,
    },
    /// Evaluate a finished run's weights again on its validation and test splits.
    Evaluate {
        /// The run folder.
        run: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Classify images with a finished run's weights: class and probabilities per image.
    Predict {
        /// The run folder.
        run: PathBuf,
        /// Images, or folders searched for images.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a finished run's network as an ONNX model (opset 17) that onnxruntime runs:
    /// input `image`, float32 [N, C, H, W] with pixels / 255; output `probabilities` [N, classes].
    /// Class names, image size, colour mode and the config's hash go into its metadata.
    Export {
        /// The run folder.
        run: PathBuf,
        /// The ONNX file to write (default: `<run>/model.onnx`).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// `last`: weights.safetensors, what `runner predict` uses; `best`: the best epoch's
        /// (checkpoints/best.safetensors).
        #[arg(long, value_enum, default_value_t = WeightsChoice::Last)]
        weights: WeightsChoice,
    },
    /// Run one trial of a sweep by index, in its folder (what local sweeps and Slurm array
    /// tasks run). A completed trial is left as it is; an interrupted or dead one goes on from
    /// its checkpoint; one whose earlier attempt is alive (its heartbeat is fresh) is refused.
    Trial {
        /// The sweep folder (holding sweep.json).
        dir: PathBuf,
        /// The trial's index (the Slurm array task id).
        #[arg(long)]
        index: usize,
    },
    /// Check CONFIG, load its dataset (quarantining bad files, filling the image cache), and
    /// write sample images per class, class counts, the split and the quarantine list to
    /// `<output.dir>/<experiment>/data/`, without training.
    Data {
        /// Experiment file.
        config: PathBuf,
    },
    /// Check CONFIG completely without training or decoding images: report the dataset's
    /// classes, file counts and split sizes, and the model's shapes, parameters and costs.
    /// Without the dataset, the model's part is still shown, then the data problem.
    Check {
        /// Experiment file.
        config: PathBuf,
    },
    /// Write a commented, runnable experiment file for a folder of images (one subfolder per
    /// class): classes, image size and colour mode from a sample of the images, the tutorial
    /// CNN scaled to that size, the last layer and loss for the class count.
    Init {
        /// The image folder.
        folder: PathBuf,
        /// Where to write the experiment file (default experiments/<folder name>.toml).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script: `runner completions bash > ~/.local/share/bash-completion/completions/runner`
    /// (zsh: into a folder of $fpath as `_runner`; fish: ~/.config/fish/completions/runner.fish).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Overlay the curves of several runs and rank them in a leaderboard (leaderboard.md,
    /// leaderboard.csv) whose columns are the config keys that differ between them.
    Compare {
        /// Run folders, or folders holding runs (such as `results/` or `results/baseline/`).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output folder (default: the next `results/comparisons/compare-NNN`).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// History column to rank by; lower is better when its name contains "loss".
        #[arg(long, default_value = "val_accuracy")]
        metric: String,
    },
    /// List the runs under a results folder: experiment, run, status, best validation accuracy, start.
    Ls {
        /// Results folder.
        #[arg(default_value = "results")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of config files (for editor completion and checking), or with
    /// --markdown the config reference.
    Schema {
        /// Print the Markdown reference instead (docs/config.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Preview CONFIG's [augment] settings: a few training images next to the augmented
    /// variants training will see, written to `<output.dir>/<experiment>/data/augmentations.png/.svg`.
    Augment {
        /// Experiment file.
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SweepAction {
    /// Each trial's state (pending, running, died, completed, failed, interrupted, pruned),
    /// epoch, best metric so far, heartbeat age and host, read from the files the trials write.
    /// A running trial whose heartbeat is older than 6 of its intervals is shown as died.
    Status {
        /// The sweep folder.
        dir: PathBuf,
        /// Show it again every SECONDS (default 2) until no trial is pending or running;
        /// Ctrl-C ends it (exit 0).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
        /// Print JSON for scripts (its shape is in README's "Sweeps"); with --watch, one line
        /// per refresh.
        #[arg(long)]
        json: bool,
    },
    /// Write the comparison of the trials so far (leaderboard, curves, metric against each
    /// swept key) into the sweep folder.
    Compare {
        /// The sweep folder.
        dir: PathBuf,
    },
}

/// Where and how a sweep's trials run.
#[derive(Debug, clap::Args)]
struct Launch {
    /// `local` (child processes on this machine) or `slurm` (an sbatch array job; returns at once).
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    launcher: Launcher,
    /// Local: how many trials run at once (the cores are divided between them).
    #[arg(short, long, default_value_t = 1)]
    jobs: usize,
    /// Slurm: partition to submit to.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm: time limit per trial, such as 2:00:00 (the trial stops cleanly --grace seconds
    /// before, with a checkpoint; submitting again goes on from it).
    #[arg(long)]
    time: Option<String>,
    /// Slurm: seconds before the --time limit at which the trial is told to stop (default 60,
    /// or half the limit when that is shorter; 0: only Slurm's SIGTERM at the limit).
    #[arg(long, value_name = "SECONDS")]
    grace: Option<u64>,
    /// Slurm: let Slurm requeue a preempted task (or one on a failed node); it goes on from
    /// its checkpoint.
    #[arg(long)]
    requeue: bool,
    /// Slurm: cores per trial (its thread count).
    #[arg(long, default_value_t = 1)]
    cpus_per_task: usize,
    /// Slurm: GPUs per trial.
    #[arg(long)]
    gpus: Option<u32>,
    /// Slurm: at most this many trials at once.
    #[arg(long)]
    max_parallel: Option<usize>,
    /// Run pruned trials again, from their checkpoints to the last epoch, without pruning.
    #[arg(long)]
    retry_pruned: bool,
}

/// Which weights `runner export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WeightsChoice {
    Last,
    Best,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Launcher {
    Local,
    Slurm,
}

/// Trains the experiment in `config`, or runs its sweep when it declares one.
fn run_or_sweep(config: &std::path::Path, overrides: &crate::config::Overrides, jobs: usize) -> Result<()> {
    if crate::sweep::declared(config, overrides)? {
        local_sweep(config, overrides, jobs, false)
    } else {
        crate::pipeline::run(config, overrides).map(|_| ())
    }
}

/// Runs a sweep on this machine and shows how it ended: the leaderboard, then one line per
/// trial that did not complete.
fn local_sweep(
    config: &std::path::Path,
    overrides: &crate::config::Overrides,
    jobs: usize,
    retry_pruned: bool,
) -> Result<()> {
    let done = crate::sweep::local::sweep(config, overrides, jobs, retry_pruned)?;
    print_finish(&done.finish, done.skipped);
    done.outcome()
}

/// The leaderboard (when any trial has a history) and the count of trials by outcome.
fn print_finish(finish: &crate::sweep::Finish, skipped: usize) {
    if let Some(board) = &finish.leaderboard {
        print!("{board}");
    }
    println!("{}", finish.summary(skipped));
}

/// `runner sweep status`: the table (or JSON) once, or with `watch` again every so many
/// seconds until no trial is pending or running: on a terminal in place of the last one,
/// otherwise one block (or JSON line) after another. Ctrl-C ends watching with exit 0.
fn sweep_status(dir: &std::path::Path, watch: Option<f64>, json: bool) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let Some(every) = watch else {
        let report = crate::sweep::status(dir)?;
        match json {
            true => println!("{}", serde_json::to_string_pretty(&report).expect("plain data")),
            false => print!("{}", report.table()),
        }
        return Ok(());
    };
    if !(every > 0.0 && every <= 86_400.0) {
        return Err(crate::Error::Usage(format!("--watch {every}: give a number of seconds above 0, a day at most")));
    }
    let _ctrl_c = crate::interrupt::Guard::install();
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    loop {
        let report = crate::sweep::status(dir)?;
        let text = match json {
            true => serde_json::to_string(&report).expect("plain data") + "\n",
            false => {
                let head = format!("{} at {}", dir.display(), crate::results::manifest::now_utc());
                let tail = match report.ended {
                    true => "every trial has ended".to_string(),
                    false => format!("every {every} s until every trial has ended; Ctrl-C stops watching"),
                };
                format!("{head}\n{}{tail}\n", report.table())
            }
        };
        // On a terminal the screen is cleared first (cursor home, erase), so the table stays in place.
        let clear = if terminal && !json { "\x1b[H\x1b[2J" } else { "" };
        let separator = if !terminal && !json { "\n" } else { "" };
        let _ = write!(out, "{clear}{text}{separator}");
        let _ = out.flush();
        if report.ended {
            return Ok(());
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(every);
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            if crate::interrupt::requested() {
                return Ok(());
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(100)));
        }
        if crate::interrupt::requested() {
            return Ok(());
        }
    }
}

/// What `runner init` wrote, and what to run next.
fn print_init(written: &crate::pipeline::init::Written, quiet: bool) {
    let thousands = crate::model::summary::thousands;
    let plan = &written.plan;
    let d = &plan.config.data;
    let images: usize = written.classes.iter().map(|(_, n)| n).sum();
    let [h, w] = d.image_size;
    let color = crate::config::serde_name(d.color_mode);
    let path = written.path.display();
    println!(
        "wrote {path}: {} classes ({} images), {w}x{h} {color}, {} parameters",
        written.classes.len(),
        thousands(images),
        thousands(plan.model.param_count())
    );
    if quiet {
        return;
    }
    let arg = crate::pipeline::init::shell_word(&written.path.display().to_string());
    println!("next: runner check {arg}    (the model and data, without training)");
    println!(
        "      runner {arg}          (train; results in {})",
        plan.config.output.dir.join(&plan.config.experiment.name).display()
    );
}

impl Launch {
    /// Whether no launcher option was given.
    fn is_default(&self) -> bool {
        self.launcher == Launcher::Local
            && self.jobs == 1
            && self.partition.is_none()
            && self.time.is_none()
            && self.grace.is_none()
            && !self.requeue
            && self.cpus_per_task == 1
            && self.gpus.is_none()
            && self.max_parallel.is_none()
            && !self.retry_pruned
    }

    fn run(self, config: &std::path::Path, overrides: &crate::config::Overrides) -> Result<()> {
        match self.launcher {
            Launcher::Local => {
                let slurm_only = self.partition.is_some()
                    || self.time.is_some()
                    || self.gpus.is_some()
                    || self.max_parallel.is_some()
                    || self.grace.is_some()
                    || self.requeue
                    || self.cpus_per_task != 1;
                if slurm_only {
                    return Err(crate::Error::Usage(
                        "--partition, --time, --grace, --requeue, --cpus-per-task, --gpus and --max-parallel are for \
                         --launcher slurm"
                            .into(),
                    ));
                }
                local_sweep(config, overrides, self.jobs, self.retry_pruned)
            }
            Launcher::Slurm => {
                let options = crate::sweep::slurm::SlurmOptions {
                    partition: self.partition,
                    time: self.time,
                    cpus_per_task: self.cpus_per_task,
                    gpus: self.gpus,
                    max_parallel: self.max_parallel,
                    retry_pruned: self.retry_pruned,
                    requeue: self.requeue,
                    grace: self.grace,
                };
                let s = crate::sweep::slurm::submit(config, overrides, &options)?;
                match (&s.array_job, &s.compare_job) {
                    (Some(array), Some(compare)) => println!(
                        "submitted {} trials as array job {array}; job {compare} writes the comparison when they end.\n\
                         Follow them with: runner sweep status {}",
                        s.trials.len(),
                        s.dir.display()
                    ),
                    _ => println!("nothing to submit: every trial in {} is completed or running", s.dir.display()),
                }
                Ok(())
            }
        }
    }
}

/// `RUNNER_KERNEL=avx2` (or `avx512`, `gemm`) runs every product of this process on that
/// kernel instead of the fastest the CPU has; sweep trials inherit it. It shows that a run
/// gives the same bytes on the AVX2 kernel as on the AVX-512 one, on one machine.
fn pin_kernel() -> Result<()> {
    let Some(name) = std::env::var_os("RUNNER_KERNEL") else { return Ok(()) };
    let name = name.to_string_lossy();
    let kernel = crate::ops::Kernel::named(&name).ok_or_else(|| {
        crate::Error::Usage(format!(
            "RUNNER_KERNEL=`{name}` names no kernel; use one of {}, or unset it",
            crate::ops::Kernel::NAMES.join(", ")
        ))
    })?;
    kernel.choose().map_err(|e| crate::Error::Usage(format!("RUNNER_KERNEL={name}: {e}")))
}

impl Cli {
    /// Carries out the command.
    pub fn execute(self) -> Result<()> {
        // Global flags (-q, -v, --set) may stand before or after a command; what belongs to
        // `runner <CONFIG>` alone may not be mixed with a command.
        if self.command.is_some() && (self.config.is_some() || self.jobs != 1) {
            return Err(crate::Error::Usage(
                "an experiment file or --jobs before a command does not go with it; use `runner <CONFIG> [--jobs N]` \
                 or `runner <COMMAND> ...` (see --help)"
                    .into(),
            ));
        }
        if let Some(Command::Sweep { action: Some(_), config, launch }) = &self.command {
            if config.is_some() || !launch.is_default() {
                return Err(crate::Error::Usage(
                    "`runner sweep status` and `runner sweep compare` take only the sweep folder; launcher options \
                     go with `runner sweep <CONFIG>`"
                        .into(),
                ));
            }
        }
        pin_kernel()?;
        let quiet = self.quiet;
        let overrides = crate::config::Overrides::with_env(self.sets);
        let overrides = &overrides;
        match self.command {
            Some(Command::Compare { runs, out, metric }) => {
                let c = crate::compare::compare(&runs, out.as_deref(), &metric, !metric.contains("loss"))?;
                print!("{}", c.leaderboard);
                tracing::info!("wrote the comparison to {}", c.dir.display());
                Ok(())
            }
            Some(Command::Ls { dir }) => crate::compare::ls(&dir).map(|listing| print!("{listing}")),
            Some(Command::Schema { markdown }) => {
                use crate::config::reference;
                match markdown {
                    true => print!("{}", reference::markdown()),
                    false => println!("{}", serde_json::to_string_pretty(&reference::schema()).expect("JSON")),
                }
                Ok(())
            }
            Some(Command::Check { config }) => {
                if crate::sweep::declared(&config, overrides)? {
                    let sweep = crate::sweep::plan(&config, overrides)?;
                    print!("{}", crate::sweep::check_report(&sweep));
                    crate::sweep::check_data(&sweep)
                } else {
                    let checked = crate::pipeline::check(&config, overrides)?;
                    print!("{}", checked.report);
                    checked.data_problem.map_or(Ok(()), Err)
                }
            }
            Some(Command::Init { folder, out, force }) => {
                let written = crate::pipeline::init::init(&folder, out.as_deref(), force)?;
                print_init(&written, quiet);
                Ok(())
            }
            Some(Command::Completions { shell }) => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "runner", &mut std::io::stdout());
                Ok(())
            }
            Some(Command::Data { config }) => crate::pipeline::data_report(&config, overrides, false).map(|_| ()),
            Some(Command::Augment { config }) => crate::pipeline::data_report(&config, overrides, true).map(|_| ()),
            Some(Command::Run { config, jobs }) => run_or_sweep(&config, overrides, jobs),
            Some(Command::Sweep { action: Some(SweepAction::Status { dir, watch, json }), .. }) => {
                sweep_status(&dir, watch, json)
            }
            Some(Command::Sweep { action: Some(SweepAction::Compare { dir }), .. }) => {
                print_finish(&crate::sweep::finish(&dir)?, 0);
                Ok(())
            }
            Some(Command::Sweep { action: None, config, launch }) => {
                let config = config.ok_or_else(|| {
                    crate::Error::Usage("missing sweep file; usage: runner sweep <CONFIG.toml> (see --help)".into())
                })?;
                launch.run(&config, overrides)
            }
            Some(Command::Verify { run, epochs, keep }) => {
                let v = crate::pipeline::verify::verify(&run, epochs, keep)?;
                let (pictures, others): (Vec<&String>, Vec<&String>) =
                    v.files.iter().partition(|f| f.ends_with(".png") || f.ends_with(".svg"));
                let others: Vec<&str> = others.iter().map(|f| f.as_str()).collect();
                let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let what = match (v.full, pictures.len()) {
                    (true, 0) => others.join(", "),
                    (true, n) => format!("{} and {}", others.join(", "), plural(n, "picture")),
                    (false, _) => {
                        format!("the first {} of {}", plural(v.epochs, "row"), others.join(" and the best epoch's "))
                    }
                };
                let epochs = plural(v.epochs, "epoch");
                println!("identical: {} retrained for {epochs}: {what}, byte for byte", v.run.display());
                Ok(())
            }
            Some(Command::Resume { run }) => crate::pipeline::resume(&run).map(|_| ()),
            Some(Command::LrFind { config, start_lr, end_lr, steps }) => {
                let range = crate::train::lr_find::Range { start_lr, end_lr, steps };
                let found = crate::pipeline::lr_find::lr_find(&config, overrides, range)?;
                let report = crate::pipeline::lr_find::report(&found);
                match found.suggestion {
                    Some(_) => {
                        print!("{report}");
                        Ok(())
                    }
                    None => Err(crate::Error::Train(report.trim_end().to_string())),
                }
            }
            Some(Command::Bench { config, batch, steps, kernel, json }) => {
                if let Some(kernel) = kernel.as_deref().and_then(crate::ops::Kernel::named) {
                    kernel.choose().map_err(crate::Error::Usage)?;
                }
                let t = crate::pipeline::bench::bench(&config, overrides, batch, steps)?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&t).expect("plain data")),
                    false => print!("{}", crate::pipeline::bench::report(&config.display().to_string(), &t)),
                }
                Ok(())
            }
            Some(Command::GpuCheck { device, seed, json }) => {
                if !overrides.sets.is_empty() {
                    return Err(crate::Error::Usage("`runner gpu-check` reads no config; it takes no --set".into()));
                }
                let report = crate::pipeline::gpu_check::gpu_check(&device, seed)?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&report).expect("plain data")),
                    false => print!("{}", report.table()),
                }
                let failed = report.failures().count();
                match failed {
                    0 => Ok(()),
                    n => Err(crate::Error::NotReproduced(format!(
                        "gpu-check: {n} of {} outputs on {} differ from the {}'s beyond their tolerance",
                        report.rows.len(),
                        report.tested,
                        report.reference
                    ))),
                }
            }
            Some(Command::Evaluate { run, json }) => {
                let metrics = crate::pipeline::predict::evaluate(&run)?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&metrics).expect("plain data")),
                    false => print!("{}", crate::pipeline::predict::metrics_table(&metrics)),
                }
                Ok(())
            }
            Some(Command::Predict { run, images, json }) => {
                let predictions = crate::pipeline::predict::predict(&run, &images)?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&predictions).expect("plain data")),
                    false => print!("{}", crate::pipeline::predict::predictions_table(&predictions)),
                }
                Ok(())
            }
            Some(Command::Export { run, out, weights }) => {
                use crate::pipeline::export::{export, Weights};
                let weights = match weights {
                    WeightsChoice::Last => Weights::Last,
                    WeightsChoice::Best => Weights::Best,
                };
                println!("{}", export(&run, out.as_deref(), weights)?.summary());
                Ok(())
            }
            Some(Command::Trial { dir, index }) => {
                if !overrides.sets.is_empty() {
                    return Err(crate::Error::Usage(
                        "a trial runs with the overrides its sweep was started with; give --set to `runner sweep`"
                            .into(),
                    ));
                }
                crate::sweep::run_trial(&dir, index)
            }
            None => {
                let config = self.config.ok_or_else(|| {
                    crate::Error::Usage("missing experiment file; usage: runner <CONFIG.toml> (see --help)".into())
                })?;
                run_or_sweep(&config, overrides, self.jobs)
            }
        }
    }
}
