//! Running a sweep on a Slurm cluster: an sbatch array job whose task i runs
//! `runner trial <sweep folder> --index i`, and a job that depends on the array and writes
//! the comparison when every task has ended. Submitting returns at once; `runner sweep status`
//! follows the trials through the files they write. The sweep folder, the config, the data
//! and this executable must be on a filesystem the compute nodes share.

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
    let before = std::fs::read_to_string(&log).unwrap_or_default();
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
    if options.time.is_some() {
        // Ctrl-C a minute before the time limit: the trial stops at a batch boundary and says so.
        s += "#SBATCH --signal=B:INT@60\n";
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
