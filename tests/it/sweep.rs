//! Sweeps: idempotent re-runs, failure isolation and retry, concurrent trials, and a real
//! Slurm cluster on this machine. The expansion into trials (order, size, random draws) is
//! tested beside it, in `src/config/sweep.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{assert_exit, fashion_subset, runner, small_config, stderr};

/// A two-class Fashion-MNIST subset and a sweep file over it in `root`.
fn sweep_files(root: &Path, sweep: &str) -> PathBuf {
    let data = root.join("data");
    fashion_subset(&data, &["trouser", "bag"], 24);
    let config = root.join("sweep.toml");
    std::fs::write(&config, small_config("tiny", &data, &root.join("results"), 3, 1, 2) + sweep).unwrap();
    config
}

fn trial_state(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("trial.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn definition(sweep_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(sweep_dir.join("sweep.json")).unwrap()).unwrap()
}

fn trial_dirs(sweep_dir: &Path) -> Vec<PathBuf> {
    definition(sweep_dir)["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| sweep_dir.join(t["name"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_failing_trial_leaves_the_others_and_is_retried_while_completed_trials_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The second data folder has the same classes, but one holds only unreadable files:
    // `check` cannot know before decoding, so that trial fails while training.
    let broken = root.join("broken");
    fashion_subset(&broken, &["trouser", "bag"], 24);
    for entry in std::fs::read_dir(broken.join("bag")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a png").unwrap();
    }
    let config = sweep_files(
        root,
        &format!("\n[sweep.grid]\n\"data.path\" = [\"{}\", \"{}\"]\n", root.join("data").display(), broken.display()),
    );
    let config = config.to_str().unwrap();
    let out = runner(root, &["sweep", config, "--jobs", "2"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    let sweep_dir = root.join("results/sweeps/tiny");
    let trials = trial_dirs(&sweep_dir);
    assert_eq!(trials.len(), 2);
    assert_eq!(trial_state(&trials[0]), "completed", "{err}");
    assert_eq!(trial_state(&trials[1]), "failed", "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Sweep: 2 trials: 1 completed, 1 not completed:"), "{stdout}");
    assert!(stdout.contains("trial 1:") && stdout.contains("bag"), "the summary gives the reason:\n{stdout}");
    assert!(err.contains("1 of 2 trials did not complete"), "{err}");
    assert!(sweep_dir.join("leaderboard.md").is_file(), "the comparison is written despite the failure");
    let started = std::fs::read_to_string(trials[0].join("manifest.json")).unwrap();

    let status = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap()]);
    assert_exit(&status, 0);
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains("2 trials: 1 completed, 1 failed"), "{report}");
    assert!(report.contains("trial 1 failed:"), "{report}");

    // Mend the data; the next run retries the failed trial and leaves the completed one alone.
    std::fs::remove_dir_all(&broken).unwrap();
    fashion_subset(&broken, &["trouser", "bag"], 24);
    let again = runner(root, &["sweep", config]);
    assert_exit(&again, 0);
    assert_eq!(trial_state(&trials[1]), "completed");
    assert_eq!(std::fs::read_to_string(trials[0].join("manifest.json")).unwrap(), started, "not run twice");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("Sweep: 2 trials: 2 completed (1 skipped as already completed)"), "{stdout}");

    // A third run has nothing to do.
    let third = runner(root, &["sweep", config]);
    assert_exit(&third, 0);
    assert!(String::from_utf8_lossy(&third.stdout).contains("(2 skipped as already completed)"));
}

#[test]
fn jobs_run_trials_at_once_on_a_share_of_the_cores_and_the_end_compares_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config =
        sweep_files(root, "\n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n\"train.batch_size\" = [8, 16]\n");
    // `runner` gives the process 2 threads: 2 jobs get one each.
    let out = runner(root, &[config.to_str().unwrap(), "--jobs", "2"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    // Both first trials start before either ends.
    let first_end = err.find("completed (").expect("a completion line");
    assert!(err[..first_end].contains("trial 0 started") && err[..first_end].contains("trial 1 started"), "{err}");
    let sweep_dir = root.join("results/sweeps/tiny");
    let trials = trial_dirs(&sweep_dir);
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(trial_state(t), "completed");
        let manifest = crate::util::manifest(t);
        assert_eq!(manifest["threads"], 1, "each of 2 jobs gets 1 of the 2 cores");
        let config = std::fs::read_to_string(t.join("config.toml")).unwrap();
        assert!(config.contains("sweep trial"), "the resolved config says the sweep set the value");
        assert!(!config.contains("[sweep"), "a trial's config is a plain experiment");
    }
    let board = std::fs::read_to_string(sweep_dir.join("leaderboard.md")).unwrap();
    assert_eq!(board.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| rank")).count(), 4, "{board}");
    assert!(board.contains("train.batch_size") && board.contains("train.learning_rate"), "{board}");
    for stem in ["compare_accuracy", "sweep_0_train_learning_rate", "sweep_1_train_batch_size"] {
        assert!(sweep_dir.join(format!("{stem}.svg")).is_file(), "{stem}.svg");
        assert!(sweep_dir.join(format!("{stem}.png")).is_file(), "{stem}.png");
    }
    // A trial is the same experiment as a plain run with the same values: the same history.
    let plain = root.join("plain.toml");
    std::fs::write(&plain, small_config("tiny", &root.join("data"), &root.join("results"), 3, 1, 2)).unwrap();
    let out =
        runner(root, &[plain.to_str().unwrap(), "--set", "train.learning_rate=0.001", "--set", "train.batch_size=16"]);
    assert_exit(&out, 0);
    let history = |dir: &Path| std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert_eq!(history(&root.join("results/tiny/run-001")), history(&trials[3]));
    let trial = runner(root, &["trial", sweep_dir.to_str().unwrap(), "--index", "0"]);
    assert_exit(&trial, 0);
    assert!(stderr(&trial).contains("already completed"));

    // A trial whose sweep file changed since is refused instead of run as something else.
    let text = std::fs::read_to_string(&config).unwrap().replace("[8, 16]", "[8, 24]");
    std::fs::write(&config, text).unwrap();
    let trial = runner(root, &["trial", sweep_dir.to_str().unwrap(), "--index", "3"]);
    assert_exit(&trial, 64);
    assert!(stderr(&trial).contains("changed since the sweep was written"), "{}", stderr(&trial));
}

#[test]
fn check_lists_every_trial_and_rejects_a_sweep_whose_trials_do_not_fit_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(root, "\n[sweep.grid]\n\"model.layers[4].units\" = [2, 3]\n");
    let out = runner(root, &["check", config.to_str().unwrap()]);
    assert_exit(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("the last layer has 3 units") && err.contains("(in trial 1 of the sweep)"), "{err}");
    assert!(!root.join("results").exists(), "nothing was written");

    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("[2, 3]", "[2]")).unwrap();
    let out = runner(root, &["check", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("the sweep is valid: 1 trials"), "{report}");
    assert!(report.contains("model.layers[4].units=2"), "{report}");
}

/// A one-node Slurm cluster on this machine, stopped (with the munge daemon, if it started
/// one) when dropped. `start` is the whole recipe: a slurm.conf for this host on free ports,
/// munged as the munge user if none runs, then slurmctld and slurmd, ready once the node is idle.
/// One cluster at a time: the tests that start one wait for each other.
struct Cluster {
    dir: tempfile::TempDir,
    started_munge: bool,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A cluster for the test `what`; none (the test is skipped, saying so) where Slurm is
    /// not installed, which CI must not be.
    fn start_for(what: &str) -> Option<Cluster> {
        let cluster = Cluster::start();
        if cluster.is_none() {
            assert!(std::env::var_os("CI").is_none(), "CI must install Slurm (see .ci/run)");
            eprintln!("note: Slurm is not installed; the {what} was not run");
        }
        cluster
    }

    /// `runner sweep <config> --launcher slurm --max-parallel 2 <extra>` on this cluster, from
    /// `root`, with one-second heartbeats.
    fn submit(&self, root: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["sweep", config.to_str().unwrap(), "--launcher", "slurm", "--max-parallel", "2"];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(&args)
            .current_dir(root)
            .env("SLURM_CONF", self.conf())
            .env("RUNNER_CACHE_DIR", root.join("cache"))
            .env("RUNNER_HEARTBEAT_SECONDS", "1")
            .output()
            .unwrap()
    }

    fn start() -> Option<Cluster> {
        if !Path::new("/usr/sbin/slurmctld").exists() {
            return None;
        }
        let one_at_a_time = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout).unwrap();
        let host = host.trim();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Free ports, so a cluster that already runs here is left alone.
        let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (ctl, node) = (port(), port());
        let conf = format!(
            "ClusterName=runnertest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctl}\nSlurmdPort={node}\n\
             SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nCredType=cred/munge\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/filetxt\nJobCompLoc={d}/log/jobcomp.txt\n\
             SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
             ReturnToService=2\nMpiDefault=none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            d = d.display()
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let munge_alive = std::fs::read_to_string("/run/munge/munged.pid")
            .ok()
            .is_some_and(|pid| Path::new(&format!("/proc/{}", pid.trim())).exists());
        if !munge_alive {
            std::fs::create_dir_all("/run/munge").unwrap();
            assert!(Command::new("chown").args(["munge:munge", "/run/munge"]).status().unwrap().success());
            let munged = Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged"]).status().unwrap();
            assert!(munged.success(), "munged did not start");
        }
        let cluster = Cluster { dir, started_munge: !munge_alive, _one_at_a_time: one_at_a_time };
        for daemon in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            let status = Command::new(daemon).env("SLURM_CONF", cluster.conf()).status().unwrap();
            assert!(status.success(), "{daemon} did not start");
        }
        // Ready when the node is idle.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out =
                Command::new("sinfo").args(["-h", "-o", "%t"]).env("SLURM_CONF", cluster.conf()).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                break;
            }
            assert!(Instant::now() < deadline, "the Slurm node never became idle: {out:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
        Some(cluster)
    }

    fn squeue_empty(&self) -> bool {
        let out = Command::new("squeue").arg("-h").env("SLURM_CONF", self.conf()).output().unwrap();
        out.status.success() && out.stdout.is_empty()
    }

    /// Runs a Slurm command (`scancel`, `scontrol`, `squeue`) against this cluster.
    fn command(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new(program).args(args).env("SLURM_CONF", self.conf()).output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs still queued or running (a test that failed half-way) end with the daemons.
        let _ = self.command("scancel", &["--user=root", "--full", "--signal=KILL"]);
        let _ = self.command("scancel", &["--user=root"]);
        let d = self.dir.path();
        let pids: Vec<String> = ["slurmd.pid", "slurmctld.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(d.join(f)).ok())
            .map(|p| p.trim().to_string())
            .collect();
        if self.started_munge {
            if let Ok(pid) = std::fs::read_to_string("/run/munge/munged.pid") {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        for pid in &pids {
            let _ = Command::new("kill").arg(pid).status();
        }
        // Wait for them to go, so the next test (or CI step) starts clean.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_sweep_submitted_to_slurm_runs_every_trial_and_the_comparison_job() {
    let Some(cluster) = Cluster::start_for("Slurm sweep test") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(
        root,
        "\n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n\"model.layers[0].filters\" = [4, 8]\n",
    );
    let submit = |extra: &[&str]| cluster.submit(root, &config, extra);
    let started = Instant::now();
    let out = submit(&[]);
    assert_exit(&out, 0);
    assert!(started.elapsed() < Duration::from_secs(20), "submitting returns at once");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("submitted 4 trials as array job"), "{stdout}");
    let sweep_dir = std::fs::canonicalize(root.join("results/sweeps/tiny")).unwrap();
    let script = std::fs::read_to_string(sweep_dir.join("slurm/trials.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");

    // Wait for the array and the comparison job.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(cluster.squeue_empty() && sweep_dir.join("leaderboard.md").is_file()) {
        assert!(Instant::now() < deadline, "the Slurm jobs did not finish in 5 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }
    let trials = trial_dirs(&sweep_dir);
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(trial_state(t), "completed", "{}", t.display());
        assert!(t.join("history.csv").is_file() && t.join("weights.safetensors").is_file());
    }
    let status = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap()]);
    assert_exit(&status, 0);
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains("4 trials: 4 completed"), "{report}");
    let board = std::fs::read_to_string(sweep_dir.join("leaderboard.md")).unwrap();
    assert_eq!(board.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| rank")).count(), 4, "{board}");
    assert!(sweep_dir.join("sweep_1_model_layers_0__filters.svg").is_file());
    let logs: Vec<_> = std::fs::read_dir(sweep_dir.join("logs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(logs.len(), 5, "a log per array task and one for the comparison job: {logs:?}");

    // Submitting again sends nothing: every trial is completed.
    let again = submit(&[]);
    assert_exit(&again, 0);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to submit"));
    drop(cluster);
}

#[test]
fn pruning_stops_trials_behind_the_median_keeps_them_out_of_reruns_and_retry_finishes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Two learning rates that learn and two so small that nothing moves; four epochs each.
    let config = sweep_files(
        root,
        "\n[sweep]\nprune = { rule = \"median\", after_epochs = 1, min_trials = 2 }\n\
         \n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.003, 1e-7, 1e-8]\n",
    );
    let text = std::fs::read_to_string(&config).unwrap().replace("epochs = 1\n", "epochs = 4\n");
    std::fs::write(&config, text).unwrap();
    let out = runner(root, &["sweep", "sweep.toml", "--jobs", "1", "-q"]);
    assert_exit(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("Sweep: 4 trials: 2 completed, 2 pruned (trials 2, 3;"), "{said}");
    let sweep_dir = root.join("results/sweeps/tiny");
    let trials = trial_dirs(&sweep_dir);
    let states: Vec<String> = trials.iter().map(|d| trial_state(d)).collect();
    assert_eq!(states, ["completed", "completed", "pruned", "pruned"]);
    let epochs = |d: &Path| std::fs::read_to_string(d.join("history.csv")).unwrap().lines().count() - 1;
    assert_eq!(trials.iter().map(|d| epochs(d)).collect::<Vec<_>>(), [4, 4, 1, 1], "pruned after their first epoch");
    assert!(trials[2].join("checkpoints/last.safetensors").is_file(), "a pruned trial keeps its checkpoint");
    let board = std::fs::read_to_string(sweep_dir.join("leaderboard.md")).unwrap();
    assert_eq!(board.matches("| pruned |").count(), 2, "{board}");
    let status = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("2 pruned"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Running the sweep again leaves them; --retry-pruned takes them to the end, unpruned.
    let again = runner(root, &["sweep", "sweep.toml", "-q"]);
    assert_exit(&again, 0);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(4 skipped as already completed or pruned)"));
    assert_eq!(epochs(&trials[2]), 1);
    let retry = runner(root, &["sweep", "sweep.toml", "--retry-pruned", "-q"]);
    assert_exit(&retry, 0);
    assert_eq!(trials.iter().map(|d| trial_state(d)).collect::<Vec<_>>(), ["completed"; 4]);
    assert_eq!(epochs(&trials[2]), 4, "resumed from its checkpoint to the last epoch");
}

// ---------------------------------------------------------------------------------------------
// Heartbeats, SIGTERM and time limits (issue 21)

/// `runner` with `args` in `cwd`, started and not waited for, beating every second.
fn spawn_runner(cwd: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(cwd)
        .env("RAYON_NUM_THREADS", "1")
        .env("RUNNER_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-cache"))
        .env("RUNNER_HEARTBEAT_SECONDS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner starts")
}

fn json_file(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Rows of a run folder's history.csv: its epochs finished.
fn history_rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("history.csv")).map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// Waits (50 ms at a time) until `ready`, failing after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, `INT`) to process `pid`; whether it was there.
fn send(signal: &str, pid: u64) -> bool {
    let mut kill = Command::new("kill");
    kill.arg(format!("-{signal}")).arg(pid.to_string()).stderr(std::process::Stdio::null());
    kill.status().unwrap().success()
}

/// `runner sweep status --json` of `sweep_dir`.
fn status_json(root: &Path, sweep_dir: &Path) -> serde_json::Value {
    let out = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap(), "--json"]);
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// The process id a trial's trial.json names while it runs.
fn trial_pid(trial: &Path) -> u64 {
    json_file(&trial.join("trial.json")).and_then(|v| v["pid"].as_u64()).expect("a running trial's pid")
}

/// Rewrites the host in a trial's trial.json and heartbeat.json, as if the trial had run on
/// another machine (whose processes this one cannot look up: only the heartbeat tells).
fn move_to_another_host(trial: &Path) {
    for name in ["trial.json", "heartbeat.json"] {
        let path = trial.join(name);
        let mut value = json_file(&path).unwrap();
        value["host"] = "node-elsewhere".into();
        let tmp = trial.join(format!(".{name}.moved"));
        std::fs::write(&tmp, value.to_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// The uninterrupted run of the sweep files' experiment for `epochs`, for its history.
fn reference_history(root: &Path, epochs: usize) -> String {
    let plain = root.join("plain.toml");
    std::fs::write(&plain, small_config("tiny", &root.join("data"), &root.join("results"), 3, epochs, 2)).unwrap();
    let out = runner(root, &[plain.to_str().unwrap(), "-q"]);
    assert_exit(&out, 0);
    let runs = root.join("results/tiny");
    let last = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    std::fs::read_to_string(last.join("history.csv")).unwrap()
}

#[test]
fn sigterm_stops_a_local_sweep_with_a_checkpoint_and_running_it_again_gives_the_uninterrupted_history() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Trial 0 trains 60 epochs; trial 1 (2 epochs) never starts before the SIGTERM.
    let config = sweep_files(root, "\n[sweep.grid]\n\"train.epochs\" = [60, 2]\n");
    let config = config.to_str().unwrap();
    let sweep_dir = root.join("results/sweeps/tiny");
    let sweep = spawn_runner(root, &["sweep", config, "--jobs", "1"]);
    wait_for("the sweep is written", Duration::from_secs(60), || sweep_dir.join("sweep.json").is_file());
    let trials = trial_dirs(&sweep_dir);
    wait_for("trial 0 trains", Duration::from_secs(60), || history_rows(&trials[0]) >= 2);

    // A running trial beats a heartbeat in its folder.
    let beat = json_file(&trials[0].join("heartbeat.json")).expect("heartbeat.json");
    assert_eq!(beat["host"], this_host().as_str(), "{beat}");
    assert_eq!(beat["pid"].as_u64(), Some(trial_pid(&trials[0])), "{beat}");
    assert_eq!(beat["interval_seconds"], 1.0, "{beat}");
    assert!(beat["beat"].as_u64().unwrap() >= 1 && beat["epoch"].as_u64().is_some() && beat["time"].is_string());

    // SIGTERM to the sweep (as `kill` or a scheduler sends it) reaches the trial, which stops
    // at its next batch with a checkpoint; both exit 143.
    assert!(send("TERM", u64::from(sweep.id())));
    let out = sweep.wait_with_output().unwrap();
    assert_exit(&out, 143);
    assert!(stderr(&out).contains("sweep interrupted"), "{}", stderr(&out));
    assert_eq!(trial_state(&trials[0]), "interrupted");
    let reason = json_file(&trials[0].join("trial.json")).unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("interrupted by SIGTERM at epoch "), "{reason}");
    let stopped_at = history_rows(&trials[0]);
    assert!(stopped_at < 60, "it stopped early, after {stopped_at} epochs");
    assert!(trials[0].join("checkpoints/last.safetensors").is_file());
    assert!(!trials[1].exists(), "trial 1 never started");

    // Status: per trial state, epoch of all, best so far, host; JSON for scripts.
    let report = status_json(root, &sweep_dir);
    for key in ["sweep", "metric", "goal", "dead_after_intervals", "clock", "trials", "counts", "ended"] {
        assert!(report.get(key).is_some(), "no `{key}` in {report}");
    }
    assert_eq!((report["metric"].as_str(), report["goal"].as_str()), (Some("val_accuracy"), Some("maximize")));
    assert_eq!(report["clock"], "filesystem");
    assert_eq!(report["ended"], false, "a trial is pending");
    let t = &report["trials"][0];
    assert_eq!(
        (t["state"].as_str(), t["epoch"].as_u64(), t["epochs"].as_u64()),
        (Some("interrupted"), Some(stopped_at as u64), Some(60))
    );
    assert_eq!(t["reason"].as_str(), Some(reason.as_str()));
    assert_eq!(t["host"], this_host().as_str());
    assert!(t["best"]["value"].is_f64() && t["best"]["epoch"].as_u64().is_some(), "{t}");
    assert_eq!(t["values"]["train.epochs"], "60");
    assert_eq!(t["heartbeat"]["interval_seconds"], 1.0);
    assert_eq!(report["trials"][1]["state"], "pending");
    assert!(report["trials"][1]["heartbeat"].is_null());
    let table = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for column in ["state", "epoch", "best val_accuracy", "heartbeat", "host"] {
        assert!(table.lines().next().unwrap().contains(column), "no {column} column:\n{table}");
    }
    assert!(
        table.contains(&format!("{stopped_at}/60")) && table.contains("trial 0 interrupted: interrupted by SIGTERM")
    );

    // --watch repeats the table until every trial has ended; one is pending, so Ctrl-C ends it, with exit 0.
    let watch = spawn_runner(root, &["sweep", "status", sweep_dir.to_str().unwrap(), "--watch", "0.2"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(send("INT", u64::from(watch.id())));
    let watched = watch.wait_with_output().unwrap();
    assert_exit(&watched, 0);
    let blocks = String::from_utf8_lossy(&watched.stdout).matches("2 trials: 1 interrupted, 1 pending").count();
    assert!(blocks >= 2, "refreshed: {blocks} blocks");

    // Running the sweep again goes on from the checkpoint and ends with the history of a run
    // that was never stopped.
    let again = runner(root, &["sweep", config, "-q"]);
    assert_exit(&again, 0);
    assert_eq!(trials.iter().map(|t| trial_state(t)).collect::<Vec<_>>(), ["completed", "completed"]);
    let manifest = json_file(&trials[0].join("manifest.json")).unwrap();
    assert_eq!(manifest["resumed_at"].as_array().map(Vec::len), Some(1), "resumed once: {manifest}");
    let history = std::fs::read_to_string(trials[0].join("history.csv")).unwrap();
    assert!(history == reference_history(root, 60), "the resumed trial's history differs from an uninterrupted run's");
    let watched = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap(), "--watch", "--json"]);
    assert_exit(&watched, 0);
    let line: serde_json::Value = serde_json::from_slice(&watched.stdout).expect("one JSON line: it has ended");
    assert_eq!((&line["ended"], &line["counts"]["completed"]), (&true.into(), &2.into()));
}

#[test]
fn a_killed_trial_on_another_host_is_dead_once_its_heartbeat_is_older_than_the_margin_and_then_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(root, "\n[sweep.grid]\n\"train.epochs\" = [60]\n");
    let config = config.to_str().unwrap();
    let sweep_dir = root.join("results/sweeps/tiny");
    let sweep = spawn_runner(root, &["sweep", config]);
    wait_for("the sweep is written", Duration::from_secs(60), || sweep_dir.join("sweep.json").is_file());
    let trial = trial_dirs(&sweep_dir).remove(0);
    wait_for("the trial trains", Duration::from_secs(60), || history_rows(&trial) >= 2);
    assert!(send("KILL", trial_pid(&trial)));
    let out = sweep.wait_with_output().unwrap();
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("crashed (signal 9)"), "{}", stderr(&out));
    assert_eq!(trial_state(&trial), "running", "killed: nothing recorded its end");

    // On another machine its process cannot be looked up: it counts as alive while its
    // heartbeat is fresh, and a rerun leaves it alone.
    move_to_another_host(&trial);
    let moved = Instant::now();
    let report = status_json(root, &sweep_dir);
    let t = &report["trials"][0];
    assert_eq!((t["state"].as_str(), t["host"].as_str()), (Some("running"), Some("node-elsewhere")), "{t}");
    assert!(t["heartbeat"]["age_seconds"].as_f64().unwrap() < 6.0, "{t}");
    let early = runner(root, &["sweep", config, "-q"]);
    if moved.elapsed() < Duration::from_secs(5) {
        assert_exit(&early, 1);
        assert!(stderr(&early).contains("is running; leaving it alone"), "{}", stderr(&early));
        assert_eq!(json_file(&trial.join("trial.json")).unwrap()["host"], "node-elsewhere", "not run again");
    }

    // --watch (not on a terminal: one block after another) ends by itself once the trial is
    // dead, 6 intervals of 1 s after its last beat.
    let watched = runner(root, &["sweep", "status", sweep_dir.to_str().unwrap(), "--watch", "0.5"]);
    assert_exit(&watched, 0);
    assert!(moved.elapsed() >= Duration::from_millis(5900), "dead only after the margin: {:?}", moved.elapsed());
    let text = String::from_utf8_lossy(&watched.stdout).into_owned();
    let (first, last) = (text.find("1 running").expect("seen running"), text.rfind("1 died").expect("seen dead"));
    assert!(first < last && text.contains("every trial has ended"), "{text}");
    assert!(text.contains("trial 0 died: no heartbeat from process"), "{text}");
    let report = status_json(root, &sweep_dir);
    assert_eq!(report["trials"][0]["state"], "died");
    assert!(report["trials"][0]["reason"].as_str().unwrap().contains("on node-elsewhere for"), "{report}");

    // Running the sweep again checks that the counter stands still, then goes on from the
    // checkpoint, to the history of an uninterrupted run.
    let again = runner(root, &["sweep", config, "-q"]);
    assert_exit(&again, 0);
    assert_eq!(trial_state(&trial), "completed");
    let log = std::fs::read_to_string(
        sweep_dir.join("logs").join(format!("{}.log", trial.file_name().unwrap().to_str().unwrap())),
    )
    .unwrap();
    assert!(log.contains("checking that the heartbeat") && log.contains("the earlier attempt is dead"), "{log}");
    assert!(log.contains("resuming"), "{log}");
    let history = std::fs::read_to_string(trial.join("history.csv")).unwrap();
    assert!(history == reference_history(root, 60), "the resumed trial's history differs from an uninterrupted run's");
}

/// Whether process `pid` has SIGINT pending, or has caught one already (runner's handler then
/// restores the default, which takes SIGINT out of the caught set).
fn sigint_arrived(pid: u64) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return true };
    let mask = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let int = 1 << (2 - 1);
    (mask("SigPnd:").unwrap_or(0) | mask("ShdPnd:").unwrap_or(0)) & int != 0 || mask("SigCgt:").unwrap_or(0) & int == 0
}

#[test]
fn slurm_time_limits_stop_trials_cleanly_resubmitting_finishes_them_and_killed_tasks_are_dead_then_requeued() {
    let Some(cluster) = Cluster::start_for("Slurm time-limit test") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(root, "\n[sweep.grid]\n\"train.epochs\" = [150, 120]\n");
    let submit = |extra: &[&str]| cluster.submit(root, &config, extra);
    // A one-minute limit whose early SIGINT is due 5 s after a task starts.
    let out = submit(&["--time", "1", "--grace", "55", "--requeue"]);
    assert_exit(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let array = said.split("array job ").nth(1).and_then(|s| s.split(';').next()).expect("an array job id").to_string();
    let sweep_dir = std::fs::canonicalize(root.join("results/sweeps/tiny")).unwrap();
    let script = std::fs::read_to_string(sweep_dir.join("slurm/trials.sbatch")).unwrap();
    for line in ["#SBATCH --time=1\n", "#SBATCH --signal=B:INT@55\n", "#SBATCH --requeue\n"] {
        assert!(script.contains(line), "{line}{script}");
    }
    let trials = trial_dirs(&sweep_dir);
    let epoch = |t: &Path| json_file(&t.join("heartbeat.json")).and_then(|b| b["epoch"].as_u64()).unwrap_or(0);
    let state_of = |report: &serde_json::Value, i: usize| report["trials"][i]["state"].as_str().unwrap().to_string();

    // Slurm looks at time limits every 30 s from slurmctld's start, so trial 0 is held still
    // (SIGSTOP, as Slurm's own suspend does) from its first epoch until the signal is there.
    wait_for("trial 0 trains", Duration::from_secs(60), || epoch(&trials[0]) >= 1);
    let pid0 = trial_pid(&trials[0]);
    assert!(send("STOP", pid0));

    // Trial 1 is killed (SIGKILL, as the OOM killer or a lost node would) after its first epoch.
    wait_for("trial 1 trains", Duration::from_secs(60), || epoch(&trials[1]) >= 1);
    let killed = cluster.command("scancel", &["--batch", "--signal=KILL", &format!("{array}_1")]);
    assert!(killed.status.success(), "{killed:?}");
    wait_for("trial 1's process ends", Duration::from_secs(30), || {
        !Path::new(&format!("/proc/{}", trial_pid(&trials[1]))).exists()
    });
    // On this machine its process is known to be gone at once; on another, once its heartbeat
    // is older than 6 intervals.
    let report = status_json(root, &sweep_dir);
    assert_eq!(state_of(&report, 1), "died", "{report}");
    assert!(report["trials"][1]["reason"].as_str().unwrap().ends_with("is gone"), "{report}");
    move_to_another_host(&trials[1]);
    let moved = Instant::now();
    assert_eq!(state_of(&status_json(root, &sweep_dir), 1), "running");
    wait_for("trial 1 shows dead", Duration::from_secs(30), || state_of(&status_json(root, &sweep_dir), 1) == "died");
    assert!(moved.elapsed() >= Duration::from_millis(5900), "{:?}", moved.elapsed());
    let report = status_json(root, &sweep_dir);
    assert!(report["trials"][1]["reason"].as_str().unwrap().contains("no heartbeat"), "{report}");

    // --requeue: Slurm runs the task again (the test skips Slurm's delay before it does) and
    // it goes on from its checkpoint.
    let task1 = format!("{array}_1");
    assert!(cluster.command("scontrol", &["requeue", &task1]).status.success());
    assert!(cluster.command("scontrol", &["update", &format!("JobId={task1}"), "StartTime=now"]).status.success());

    // Trial 0: the time limit's early SIGINT arrives; let go, it stops at its next batch with
    // a checkpoint, interrupted. (Slurm may send SIGCONT with it, and the trial be done already.)
    // Due 5 s after the task started, sent at slurmctld's next 30 s check: well within 100 s
    // of now even when the machine is busy with the other tests.
    wait_for("Slurm's early SIGINT", Duration::from_secs(100), || sigint_arrived(pid0));
    send("CONT", pid0);
    wait_for("trial 0 stops", Duration::from_secs(30), || trial_state(&trials[0]) == "interrupted");
    let reason = json_file(&trials[0].join("trial.json")).unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("interrupted by SIGINT (Ctrl-C) at epoch"), "{reason}");
    assert!(history_rows(&trials[0]) < 150);

    let log1 = sweep_dir.join("logs").join(format!("slurm-{array}_1.log"));
    wait_for("the requeued trial 1 ends", Duration::from_secs(60), || {
        ["completed", "interrupted"].contains(&trial_state(&trials[1]).as_str())
    });
    let text = std::fs::read_to_string(&log1).unwrap();
    assert!(text.contains("Slurm started this job again") && text.contains("resuming"), "{text}");

    // Submitting again (without the limit) finishes what is left, from the checkpoints.
    wait_for("the array ends", Duration::from_secs(60), || {
        String::from_utf8_lossy(&cluster.command("squeue", &["-h", "-j", &array]).stdout).trim().is_empty()
    });
    let out = submit(&[]);
    assert_exit(&out, 0);
    wait_for("the resubmitted trials end", Duration::from_secs(120), || {
        cluster.squeue_empty() && trials.iter().all(|t| trial_state(t) == "completed")
    });
    let history = std::fs::read_to_string(trials[0].join("history.csv")).unwrap();
    assert!(history == reference_history(root, 150), "trial 0's history differs from an uninterrupted run's");
    assert_eq!(history_rows(&trials[1]), 120);
    let report = status_json(root, &sweep_dir);
    assert_eq!((&report["ended"], &report["counts"]["completed"]), (&true.into(), &2.into()), "{report}");
    drop(cluster);
}

#[test]
fn folds_make_one_trial_per_fold_and_the_leaderboard_gives_each_metrics_mean_and_deviation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(root, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("validation_split = 0.25\n", "folds = 3\n");
    std::fs::write(&config, &text).unwrap();
    let out = runner(root, &[config.to_str().unwrap()]);
    assert_exit(&out, 0);
    let sweep_dir = root.join("results/sweeps/tiny");
    let trials = trial_dirs(&sweep_dir);
    assert_eq!(trials.len(), 3);
    let validation = |trial: &Path| -> Vec<String> {
        let split = std::fs::read_to_string(trial.join("split.csv")).unwrap();
        split.lines().filter(|l| l.ends_with(",validation")).map(str::to_string).collect()
    };
    let mut all: Vec<String> = trials.iter().flat_map(|t| validation(t)).collect();
    assert_eq!(all.len(), 48, "each of the 48 images validates once");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 48, "in exactly one fold");
    for (f, t) in trials.iter().enumerate() {
        assert_eq!(trial_state(t), "completed");
        assert!(std::fs::read_to_string(t.join("config.toml")).unwrap().contains(&format!("fold = {f}")));
    }
    let board = std::fs::read_to_string(sweep_dir.join("leaderboard.md")).unwrap();
    let section = board.split_once("## Cross-validation").expect("a cross-validation section").1;
    let row = section.lines().find(|l| l.starts_with("| 1 |")).expect("one row");
    assert!(row.starts_with("| 1 | 3 | "), "rank 1, 3 folds: {row}");
    // The mean and deviation of val_accuracy over the trials' best epochs.
    let best: Vec<f64> = trials
        .iter()
        .map(|t| crate::util::history_column(t, "val_accuracy").into_iter().fold(f64::MIN, f64::max))
        .collect();
    let mean = best.iter().sum::<f64>() / 3.0;
    let sd = (best.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!(row.contains(&format!("| {mean:.4} ± {sd:.4} |")), "{row} for {best:?}");
    let csv = std::fs::read_to_string(sweep_dir.join("cross_validation.csv")).unwrap();
    assert!(csv.starts_with("rank,folds,val_accuracy mean,val_accuracy sd,"), "{csv}");
    let report = std::fs::read_to_string(sweep_dir.join("report.html")).unwrap();
    assert!(report.contains("<h2>Cross-validation</h2>"));

    // One fold alone is a plain run, with that trial's validation images.
    let out = runner(root, &[config.to_str().unwrap(), "--set", "data.fold=1"]);
    assert_exit(&out, 0);
    assert_eq!(validation(&root.join("results/tiny/run-001")), validation(&trials[1]));

    // Folds of every point of a grid: 2 learning rates x 2 folds, two rows of means.
    let grid = text.replace("folds = 3", "folds = 2") + "\n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n";
    std::fs::write(root.join("grid.toml"), grid.replace("name = \"tiny\"", "name = \"grid\"")).unwrap();
    let out = runner(root, &["grid.toml"]);
    assert_exit(&out, 0);
    let board = std::fs::read_to_string(root.join("results/sweeps/grid/leaderboard.md")).unwrap();
    let section = board.split_once("## Cross-validation").unwrap().1;
    assert_eq!(section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| rank")).count(), 2, "{section}");
    assert!(section.contains("| train.learning_rate | folds |"), "{section}");

    // A config as it stands, validation_split and all, is cross-validated from the command line.
    let plain = root.join("plain.toml");
    std::fs::write(&plain, small_config("plainfolds", &root.join("data"), &root.join("results"), 3, 1, 2)).unwrap();
    let out = runner(root, &[plain.to_str().unwrap(), "--set", "data.folds=2"]);
    assert_exit(&out, 0);
    let trials = trial_dirs(&root.join("results/sweeps/plainfolds"));
    assert_eq!(trials.len(), 2);
    let name = trials[0].file_name().unwrap().to_str().unwrap();
    let log = std::fs::read_to_string(root.join(format!("results/sweeps/plainfolds/logs/{name}.log"))).unwrap();
    assert!(log.contains("fold 0 of 2 validates: validation_split (0.25) does not apply with data.folds"), "{log}");

    // One fold is no cross-validation.
    std::fs::write(root.join("one.toml"), text.replace("folds = 3", "folds = 1")).unwrap();
    let out = runner(root, &["check", "one.toml"]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("folds 1 must be at least 2"));
}
