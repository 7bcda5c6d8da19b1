//! Running a sweep on this machine: `--jobs N` child processes at a time, each
//! `runner trial <folder> --index i` with its share of the cores, its output in
//! `logs/<trial>.log`. A trial that fails or crashes is reported and the others go on. Ctrl-C
//! reaches the trials from the terminal; a SIGTERM to the sweep (`kill`, or a scheduler ending a
//! job the sweep runs in) is passed on to them, and each stops with a checkpoint.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::plan::{check_data, plan};
use super::state::{write_definition, Definition, TrialEntry, TrialState, LOGS};
use super::status::{finish, to_run, Finish};
use crate::config::Overrides;
use crate::{Error, Result};

/// How a sweep on this machine ended. The CLI shows it, then `outcome` gives the exit.
pub struct LocalSweep {
    /// The comparison and the trials that did not complete.
    pub finish: Finish,
    /// Trials skipped because an earlier run of the sweep completed them.
    pub skipped: usize,
    /// Trials in the sweep.
    pub total: usize,
    /// Whether Ctrl-C or SIGTERM (or the scheduler's SIGINT) stopped it.
    pub interrupted: bool,
}

impl LocalSweep {
    /// Fails when any trial did not complete, so that the exit code says so.
    pub fn outcome(&self) -> Result<()> {
        let (finish, total) = (&self.finish, self.total);
        if self.interrupted {
            return Err(Error::SweepInterrupted(format!(
                "{} of {total} trials completed; run the sweep again to run the others (completed trials are kept)",
                finish.completed
            )));
        }
        if !finish.unfinished.is_empty() {
            return Err(Error::Train(format!(
                "{} of {total} trials did not complete; run the sweep again to retry them",
                finish.unfinished.len()
            )));
        }
        Ok(())
    }
}

/// `runner sweep <file>` (and `runner <file>` for a sweep file) on this machine: checks every
/// trial, writes `sweep.json`, runs the trials that are not completed `jobs` at a time, then
/// writes the comparison. Pruned trials run again (to the end) only with `retry_pruned`.
pub fn sweep(config_path: &Path, overrides: &Overrides, jobs: usize, retry_pruned: bool) -> Result<LocalSweep> {
    let sweep = plan(config_path, overrides)?;
    // Every trial would stop on a GPU this machine lacks: say so once, before any starts.
    for trial in &sweep.trials {
        crate::pipeline::device::choose(trial.plan.config.experiment.device)?;
    }
    check_data(&sweep)?;
    let definition = write_definition(&sweep)?;
    let cores = cores();
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let jobs = if jobs > cores {
        tracing::warn!("--jobs {jobs} is more than the {cores} cores; running {cores} trials at a time");
        cores
    } else {
        jobs
    };
    let (todo, skipped) = to_run(&sweep.dir, &definition, retry_pruned);
    tracing::info!(
        "sweep of {} trials in {}: {skipped} already completed, {} to run, {jobs} at a time with {} threads each",
        definition.trials.len(),
        sweep.dir.display(),
        todo.len(),
        (cores / jobs).max(1)
    );
    run(&sweep.dir, &definition, &todo, jobs)?;
    let finish = finish(&sweep.dir)?;
    Ok(LocalSweep { finish, skipped, total: definition.trials.len(), interrupted: crate::interrupt::requested() })
}

/// How one trial's process ended.
pub struct Ended {
    /// The trial.
    pub index: usize,
    /// `None` when it completed; otherwise why not.
    pub problem: Option<String>,
}

/// The cores to share out: `RAYON_NUM_THREADS` when set, else all the machine has.
pub fn cores() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `todo` (trial indices of the sweep in `dir`), `jobs` at a time, each with
/// `cores / jobs` threads. Ctrl-C or SIGTERM stops starting trials; the running ones stop at
/// their next batch (they get the same Ctrl-C; a SIGTERM is passed on) and are reported
/// interrupted.
pub fn run(dir: &Path, definition: &Definition, todo: &[usize], jobs: usize) -> Result<Vec<Ended>> {
    let exe =
        std::env::current_exe().map_err(|e| Error::io("finding the runner executable", Path::new("runner"), e))?;
    let threads = (cores() / jobs).max(1);
    let queue: Mutex<VecDeque<&TrialEntry>> = Mutex::new(todo.iter().map(|&i| &definition.trials[i]).collect());
    let total = todo.len();
    let (tx, rx) = mpsc::channel::<(Option<Ended>, &TrialEntry)>();
    let guard = crate::interrupt::Guard::install();
    let started = Instant::now();
    let mut ended = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(total) {
            let (tx, queue, exe) = (tx.clone(), &queue, &exe);
            scope.spawn(move || loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(entry) = next.filter(|_| !crate::interrupt::requested()) else { break };
                let _ = tx.send((None, entry));
                let problem = run_one(exe, dir, entry, threads);
                let _ = tx.send((Some(Ended { index: entry.index, problem }), entry));
            });
        }
        drop(tx);
        let mut running = 0usize;
        for (event, entry) in rx {
            match event {
                None => {
                    running += 1;
                    tracing::info!("trial {} started ({}): {}", entry.index, entry.name, values(entry));
                }
                Some(end) => {
                    running -= 1;
                    let done = ended.len() + 1;
                    let progress =
                        format!("[{done}/{total}, {running} running, {:.0}s]", started.elapsed().as_secs_f64());
                    match &end.problem {
                        None => tracing::info!("{progress} trial {} completed ({})", end.index, entry.name),
                        Some(why) => tracing::warn!("{progress} trial {} did not complete: {why}", end.index),
                    }
                    ended.push(end);
                }
            }
        }
    });
    drop(guard);
    Ok(ended)
}

fn values(entry: &TrialEntry) -> String {
    entry.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Runs one trial's process; `None` when it completed, else why not.
fn run_one(exe: &Path, dir: &Path, entry: &TrialEntry, threads: usize) -> Option<String> {
    let log_path = dir.join(LOGS).join(format!("{}.log", entry.name));
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot write its log {}: {e}", log_path.display())),
    };
    let status = log.try_clone().and_then(|err| {
        Command::new(exe)
            .arg("trial")
            .arg(dir)
            .arg("--index")
            .arg(entry.index.to_string())
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .and_then(wait_passing_on_sigterm)
    });
    let shown = log_path.display();
    match status {
        Err(e) => Some(format!("cannot start `{} trial`: {e}", exe.display())),
        Ok(s) if s.success() => None,
        Ok(s) => {
            // The trial's own record says why; failing that, the log's last error line.
            let state = TrialState::of(&dir.join(&entry.name));
            Some(match state {
                TrialState::Failed { reason } | TrialState::Interrupted { reason } => {
                    format!("{} (log: {shown})", reason.lines().next().unwrap_or(""))
                }
                _ => {
                    let text = crate::results::bounded::read_to_string(&log_path, &crate::results::bounded::RUN_FILE)
                        .unwrap_or_default();
                    let last = text.lines().rev().find(|l| l.starts_with("error")).map(str::to_string);
                    let how = match s.code() {
                        Some(code) => format!("exited with code {code}"),
                        None => format!("crashed ({})", signal_name(&s)),
                    };
                    format!("{how}{} (log: {shown})", last.map(|l| format!(": {l}")).unwrap_or_default())
                }
            })
        }
    }
}

/// Waits for a trial's process. A SIGTERM that this process caught is sent on to it, once, so
/// that it stops at its next batch with a checkpoint instead of running on (Ctrl-C at a
/// terminal reaches the whole process group, so it needs no passing on; sending it again would
/// be a second Ctrl-C, which kills).
fn wait_passing_on_sigterm(mut child: Child) -> std::io::Result<ExitStatus> {
    let mut passed_on = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !passed_on && crate::interrupt::by_sigterm() {
            passed_on = true;
            #[cfg(unix)]
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signals our own child, which has not been reaped (try_wait said so).
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal_name(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    status.to_string()
}
