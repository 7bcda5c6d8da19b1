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
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(t.join("manifest.json")).unwrap()).unwrap();
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
struct Cluster {
    dir: tempfile::TempDir,
    started_munge: bool,
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn start() -> Option<Cluster> {
        if !Path::new("/usr/sbin/slurmctld").exists() {
            return None;
        }
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
        let cluster = Cluster { dir, started_munge: !munge_alive };
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
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
    let Some(cluster) = Cluster::start() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install Slurm (see .ci/run)");
        eprintln!("note: Slurm is not installed; the Slurm sweep test was not run");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = sweep_files(
        root,
        "\n[sweep.grid]\n\"train.learning_rate\" = [0.01, 0.001]\n\"model.layers[0].filters\" = [4, 8]\n",
    );
    let submit = |extra: &[&str]| {
        let mut args = vec!["sweep", config.to_str().unwrap(), "--launcher", "slurm", "--max-parallel", "2"];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(&args)
            .current_dir(root)
            .env("SLURM_CONF", cluster.conf())
            .env("RUNNER_CACHE_DIR", root.join("cache"))
            .output()
            .unwrap()
    };
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
    assert!(String::from_utf8_lossy(&status.stdout).contains("2 pruned"), "{}", String::from_utf8_lossy(&status.stdout));

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
