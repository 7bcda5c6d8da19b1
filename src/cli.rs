//! The command line: `runner <config.toml>` (or `runner run <config.toml>`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::Result;

/// Train a convolutional network described by a TOML file.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Experiment file to run (same as `runner run <CONFIG>`).
    pub config: Option<PathBuf>,
    /// Only print warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
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
    Check {
        /// Experiment file.
        config: PathBuf,
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

impl Cli {
    /// Carries out the command.
    pub fn execute(self) -> Result<()> {
        let overrides = crate::config::Overrides::with_env(self.sets);
        let overrides = &overrides;
        match self.command {
            Some(Command::Compare { runs, out, metric }) => {
                let c = crate::compare::compare(&runs, out.as_deref(), &metric)?;
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
            Some(Command::Check { config }) => crate::run::check(&config, overrides).map(|report| print!("{report}")),
            Some(Command::Data { config }) => crate::run::data_report(&config, overrides, false).map(|_| ()),
            Some(Command::Augment { config }) => crate::run::data_report(&config, overrides, true).map(|_| ()),
            Some(Command::Run { config }) => crate::run::run(&config, overrides).map(|_| ()),
            None => {
                let config = self.config.ok_or_else(|| {
                    crate::Error::Usage("missing experiment file; usage: runner <CONFIG.toml> (see --help)".into())
                })?;
                crate::run::run(&config, overrides).map(|_| ())
            }
        }
    }
}
