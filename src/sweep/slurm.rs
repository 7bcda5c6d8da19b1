//! Running a sweep on a Slurm cluster: an sbatch array job whose task i runs
//! `runner trial <sweep folder> --index i`, and a job that depends on the array and writes
//! the comparison when every task has ended. Submitting returns at once; `runner sweep status`
//! follows the trials through the files they write. The sweep folder, the config, the data
//! and this executable must be on a filesystem the compute nodes share.
//!
//! Time limits and preemption: with `--time`, the task's process gets SIGINT `--grace` seconds
//! before the limit (`#SBATCH --signal=B:INT@grace`) and stops at its next batch with a
//! checkpoint, marked interrupted; at the limit itself, on preemption and on requeue, Slurm
//! sends SIGTERM, which the trial takes the same way. `--requeue` lets Slurm put a preempted
//! task (or one on a failed node) back in the queue; run again, `runner trial` goes on from the
//! checkpoint, so the trial ends with the history of one that was never stopped. A trial
//! stopped by its time limit is not requeued by Slurm: submitting the sweep again resumes it.

use std::path::Path;
use std::process::Command;

use super::{write_definition, LOGS};
use crate::config::Overrides;
use crate::results::write_atomic;
use crate::{Error, Result};

/// `--launcher slurm` options, named as sbatch names them.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` per trial, such as `2:00:00`.
    pub time: Option<String>,
    /// `--cpus-per-task`: cores per trial (its thread count).
    pub cpus_per_task: usize,
    /// `--gpus` per trial.
    pub gpus: Option<u32>,
    /// At most this many trials at once (`--array=…%K`).
    pub max_parallel: Option<usize>,
    /// Submit pruned trials again, to run to the end.
    pub retry_pruned: bool,
    /// `--requeue`: Slurm may put a preempted task (or one on a failed node) back in the queue.
    pub requeue: bool,
    /// Seconds before the `--time` limit at which the trial is told to stop (default
    /// [`default_grace`]); 0 sends nothing early (Slurm's SIGTERM at the limit still stops it).
    pub grace: Option<u64>,
}

/// The grace by default: 60 s, or half the time limit when that is shorter.
pub fn default_grace(limit_seconds: u64) -> u64 {
    60.min(limit_seconds / 2)
}

/// Seconds in a Slurm time limit: `minutes`, `minutes:seconds`, `hours:minutes:seconds`,
/// `days-hours`, `days-hours:minutes` or `days-hours:minutes:seconds`; `None` for
/// `infinite`/`unlimited` and for anything else (see [`check_options`]).
pub fn time_seconds(time: &str) -> Option<u64> {
    let time = time.trim();
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (days, rest) = match time.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, time),
    };
    let parts: Vec<u64> = rest.split(':').map(number).collect::<Option<_>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86_400 + h * 3600,
        (Some(d), [h, m]) => d * 86_400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86_400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(seconds)
}

/// Checks `--time` and `--grace` before anything is written: a time Slurm would refuse, a
/// grace without a time limit, or one that leaves no time to train.
pub fn check_options(options: &SlurmOptions) -> Result<()> {
    let unlimited = |t: &str| matches!(t.trim().to_ascii_lowercase().as_str(), "infinite" | "unlimited");
    let limit = match &options.time {
        None => None,
        Some(t) if unlimited(t) => None,
        Some(t) => Some(time_seconds(t).filter(|&s| s > 0).ok_or_else(|| {
            Error::Usage(format!(
                "--time `{t}` is not a Slurm time limit; write minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
            ))
        })?),
    };
    match (options.grace, limit) {
        (Some(g), None) if g > 0 => {
            Err(Error::Usage("--grace is the time before the --time limit; give --time with it".into()))
        }
        (Some(g), Some(limit)) if g >= limit => Err(Error::Usage(format!(
            "--grace {g} leaves no time to train within --time {} ({limit} s); give less",
            options.time.as_deref().unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// The `--signal` grace in seconds, when the trials get one.
fn grace_seconds(options: &SlurmOptions) -> Option<u64> {
    let limit = time_seconds(options.time.as_deref()?)?;
    Some(options.grace.unwrap_or_else(|| default_grace(limit))).filter(|&g| g > 0)
}

/// What was submitted.
pub struct Submitted {
    /// The array job's id (none when every trial was already completed).
    pub array_job: Option<String>,
    /// The comparison job's id.
    pub compare_job: Option<String>,
    /// The trial indices sent.
    pub trials: Vec<usize>,
    /// The sweep folder.
    pub dir: std::path::PathBuf,
}

/// Checks every trial, writes `sweep.json` and the sbatch scripts into the sweep folder, and
/// submits the trials that are not completed (or running) plus the comparison job.
pub fn submit(config_path: &Path, overrides: &Overrides, options: &SlurmOptions) -> Result<Submitted> {
    check_options(options)?;
    let sweep = super::plan(config_path, overrides)?;
    super::check_data(&sweep)?;
    let definition = write_definition(&sweep)?;
    let dir = std::fs::canonicalize(&sweep.dir).map_err(|e| Error::io("opening sweep folder", &sweep.dir, e))?;
    let (todo, _) = super::to_run(&dir, &definition, options.retry_pruned);
    if todo.is_empty() {
        tracing::info!("every trial of {} is completed or running; nothing to submit", dir.display());
        return Ok(Submitted { array_job: None, compare_job: None, trials: todo, dir });
    }
    let exe =
        std::env::current_exe().map_err(|e| Error::io("finding the runner executable", Path::new("runner"), e))?;
    let slurm_dir = dir.join("slurm");
    std::fs::create_dir_all(&slurm_dir).map_err(|e| Error::io("creating folder", &slurm_dir, e))?;
    let name = sweep.trials.first().map_or("sweep".into(), |t| t.plan.config.experiment.name.clone());
    let trials_script = slurm_dir.join("trials.sbatch");
    write_atomic(&trials_script, trials_sbatch(&exe, &dir, &definition.cwd, &name, &todo, options).as_bytes())?;
    let compare_script = slurm_dir.join("compare.sbatch");
    write_atomic(&compare_script, compare_sbatch(&exe, &dir, &definition.cwd, &name, options).as_bytes())?;

    let array_job = sbatch(&[trials_script.as_os_str()])?;
    let dependency = format!("--dependency=afterany:{array_job}");
    let compare_job = sbatch(&[dependency.as_ref(), compare_script.as_os_str()])?;
    let line = format!(
        "{} array job {array_job} (trials {}), comparison job {compare_job}\n",
        crate::results::manifest::now_utc(),
        ranges(&todo)
    );
    let log = slurm_dir.join("submissions.log");
    let before = crate::results::bounded::read_to_string(&log, &crate::results::bounded::RUN_FILE).unwrap_or_default();
    write_atomic(&log, (before + &line).as_bytes())?;
    Ok(Submitted { array_job: Some(array_job), compare_job: Some(compare_job), trials: todo, dir })
}

/// Runs `sbatch --parsable <args>` and returns the job id.
fn sbatch(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(
            "`sbatch` is not on PATH; --launcher slurm needs Slurm's client commands (or use --launcher local)".into(),
        ),
        _ => Error::io("running sbatch for", Path::new(args.last().copied().unwrap_or_default()), e),
    })?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "sbatch refused the job ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Usage(format!("sbatch printed `{}` instead of a job id", text.trim())));
    }
    Ok(id)
}

/// The array job: task i runs trial i.
pub fn trials_sbatch(exe: &Path, dir: &Path, cwd: &Path, name: &str, todo: &[usize], options: &SlurmOptions) -> String {
    let limit = options.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    let mut s = header(&format!("{name}-sweep"), cwd, options);
    s += &format!("#SBATCH --array={}{limit}\n", ranges(todo));
    s += &format!("#SBATCH --output={}\n", quote(&dir.join(LOGS).join("slurm-%A_%a.log")));
    s += &format!("#SBATCH --cpus-per-task={}\n", options.cpus_per_task.max(1));
    if let Some(gpus) = options.gpus {
        s += &format!("#SBATCH --gpus={gpus}\n");
    }
    if let Some(grace) = grace_seconds(options) {
        // Ctrl-C `grace` seconds before the time limit: the trial stops at a batch boundary,
        // with a checkpoint, and says so. (Slurm looks at time limits every half minute or so,
        // so the signal may come a little later.)
        s += &format!("#SBATCH --signal=B:INT@{grace}\n");
    }
    if options.requeue {
        // Preempted (SIGTERM, then requeued) or its node lost: the task runs again and goes on
        // from the checkpoint; its log keeps every attempt.
        s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
    }
    s += "\n# Each trial uses the cores Slurm gave it.\nexport RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    s += &format!("exec {} trial {} --index \"$SLURM_ARRAY_TASK_ID\"\n", quote(exe), quote(dir));
    s
}

/// The comparison job, run once the array has ended (however its tasks ended).
pub fn compare_sbatch(exe: &Path, dir: &Path, cwd: &Path, name: &str, options: &SlurmOptions) -> String {
    let options = SlurmOptions { gpus: None, time: None, cpus_per_task: 1, ..options.clone() };
    let mut s = header(&format!("{name}-compare"), cwd, &options);
    s += &format!("#SBATCH --output={}\n", quote(&dir.join(LOGS).join("slurm-compare-%j.log")));
    s += &format!("\nexec {} sweep compare {}\n", quote(exe), quote(dir));
    s
}

fn header(job_name: &str, cwd: &Path, options: &SlurmOptions) -> String {
    let mut s =
        String::from("#!/bin/bash\n# Written by runner; submitted with sbatch. Edit the sweep file, not this.\n");
    s += &format!("#SBATCH --job-name={}\n", job_name.replace(|c: char| c.is_whitespace(), "_"));
    s += &format!("#SBATCH --chdir={}\n", quote(cwd));
    if let Some(p) = &options.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &options.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    s
}

/// Single-quoted for the shell.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// `0-3,5,7-9`: sorted indices as Slurm array ranges.
pub fn ranges(indices: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        while i + 1 < indices.len() && indices[i + 1] == indices[i] + 1 {
            i += 1;
        }
        out.push(if indices[i] == start { start.to_string() } else { format!("{start}-{}", indices[i]) });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_limits_read_in_seconds() {
        for (text, seconds) in [
            ("1", 60),
            ("90", 5400),
            ("1:30", 90),
            ("2:00:00", 7200),
            ("1-0", 86_400),
            ("1-2:30", 95_400),
            ("0-0:0:45", 45),
        ] {
            assert_eq!(time_seconds(text), Some(seconds), "{text}");
        }
        for bad in ["", "abc", "1:2:3:4", "-5", "1h", "1-"] {
            assert_eq!(time_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_grace_signal_scales_with_short_limits_and_requeue_resumes_from_the_checkpoint() {
        let script = |time: Option<&str>, grace: Option<u64>, requeue: bool| {
            let options = SlurmOptions { time: time.map(String::from), grace, requeue, ..SlurmOptions::default() };
            check_options(&options).map(|()| {
                trials_sbatch(Path::new("/bin/runner"), Path::new("/s"), Path::new("/"), "x", &[0, 1], &options)
            })
        };
        let long = script(Some("2:00:00"), None, false).unwrap();
        assert!(long.contains("#SBATCH --time=2:00:00\n"), "{long}");
        assert!(long.contains("#SBATCH --signal=B:INT@60\n") && !long.contains("--requeue"), "{long}");
        let short = script(Some("1"), None, true).unwrap();
        assert!(short.contains("#SBATCH --signal=B:INT@30\n"), "half of a minute: {short}");
        assert!(short.contains("#SBATCH --requeue\n#SBATCH --open-mode=append\n"), "{short}");
        assert!(script(Some("1"), Some(55), false).unwrap().contains("#SBATCH --signal=B:INT@55\n"));
        assert!(!script(Some("1"), Some(0), false).unwrap().contains("--signal"), "0: nothing early");
        assert!(!script(None, None, false).unwrap().contains("--signal"));
        assert!(!script(Some("unlimited"), None, false).unwrap().contains("--signal"));
        for (time, grace, why) in [
            (Some("1"), Some(60), "leaves no time"),
            (None, Some(30), "give --time"),
            (Some("soon"), None, "not a Slurm time limit"),
        ] {
            let e = script(time, grace, false).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
