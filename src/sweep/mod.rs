//! Sweeps: one config file with a `[sweep]` table becomes many trials, each a normal run
//! folder under the sweep's folder `<output.dir>/sweeps/<experiment.name>/`.
//!
//! ```text
//! sweep file ──space::expand──► trial values ──config (as overrides)──► one Plan per trial
//!    ──► sweep.json (the trials, by index) ──► `runner trial <folder> --index i` per trial
//!        (local child processes, or Slurm array tasks) ──► trial-<hash>/ run folders
//!    ──► finish: leaderboard, overlaid curves, metric against each swept key
//! ```
//!
//! A trial's folder is named by a hash of its resolved config, so a trial is never run twice:
//! running a sweep again skips completed trials and runs the others again. A trial records its
//! own state in `trial.json` inside its folder, so the state of a sweep is read from files
//! (on a cluster, from the shared filesystem) and not from a scheduler's accounting. Every
//! trial runs in its own process, so one that crashes cannot take the others down; while it
//! runs it beats a heartbeat in its folder, so one whose process died anywhere (killed, its
//! node lost) is seen as dead and goes on from its checkpoint when the sweep runs again.

pub mod heartbeat;
pub mod local;
pub mod plan;
pub mod prune;
pub mod slurm;
pub mod state;
pub mod status;
pub mod trial;

pub use plan::{check_data, check_report, declared, plan, Sweep, Trial};
pub use state::{write_definition, Definition, TrialEntry, TrialState, DEFINITION, LOGS, TRIAL_STATE};
pub use status::{finish, standings, status, status_report, to_run, Finish, Report, Standing};
pub use trial::run_trial;
