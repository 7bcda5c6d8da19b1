//! Heartbeats: how a running trial shows that it is alive, to `runner sweep status` and to
//! the next submission, on any machine that shares its folder.
//!
//! A trial's process rewrites `heartbeat.json` in the trial folder every interval, from a
//! thread of its own (so a long batch, data preparation or a slow write of the history does
//! not hold it up), atomically: the host and process id, the Slurm job id when there is one,
//! the epochs finished (the rows of `history.csv`), a counter that goes up by one each beat,
//! the interval and the writer's time. The interval is [`DEFAULT_INTERVAL`] (10 s), or
//! `RUNNER_HEARTBEAT_SECONDS` of the trial's process (tests use 1 s); the file records it, so a
//! reader judges each trial by the interval its writer used.
//!
//! A trial whose `trial.json` says running is **dead** when its heartbeat is older than
//! [`DEAD_AFTER`] (6) of its intervals, 60 s by default, whichever machine ran it, or, on the
//! machine that ran it, as soon as its process is gone. A dead trial is shown as `died` and run
//! again (resumed from its last checkpoint) by the next `runner sweep`, local or Slurm.
//!
//! Clocks: the age of a heartbeat is not the reader's clock minus the writer's, since a
//! compute node's clock may be off from the login node's. The reader creates a scratch file
//! in the sweep folder and takes its modification time as "now" ([`Clock`]); the age is that
//! minus the heartbeat file's modification time. Both times are stamped by the filesystem (on
//! NFS, by the server's clock), so the clocks of the nodes do not enter. Filesystems that stamp
//! files with the writing client's clock instead (some parallel filesystems do) bring the
//! skew between two nodes back in; the margin of 6 intervals absorbs up to 5 intervals of it
//! (and attribute caching of as much), and before a trial is run again because it looks dead,
//! `runner trial` also checks that its counter stands still for one and a half intervals
//! ([`Verdict::Dead`] with `certain: false`): a counter that moved means the trial is alive,
//! whatever the file times say.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::state::{TrialState, TRIAL_STATE};
use crate::results::bounded;
use crate::results::{files, temporary_path, write_atomic};

/// The heartbeat file, in the trial's folder.
pub const HEARTBEAT: &str = "heartbeat.json";
/// Seconds between beats unless `RUNNER_HEARTBEAT_SECONDS` says otherwise.
pub const DEFAULT_INTERVAL: f64 = 10.0;
/// The environment variable that sets the interval, in seconds (fractions allowed).
pub const INTERVAL_VAR: &str = "RUNNER_HEARTBEAT_SECONDS";
/// A running trial whose heartbeat is older than this many of its intervals is dead.
pub const DEAD_AFTER: u32 = 6;

/// `heartbeat.json`: what a running trial's process last said about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// `SLURM_JOB_ID` of its job (an array task's own id), when Slurm started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Epochs finished (rows of `history.csv`).
    pub epoch: usize,
    /// Beats so far: 1 at the start, one more each interval.
    pub beat: u64,
    /// Seconds between beats.
    pub interval_seconds: f64,
    /// The writer's time, UTC (for people; ages are measured as the module says).
    pub time: String,
}

/// The interval between beats: `RUNNER_HEARTBEAT_SECONDS` when it is a positive number, else
/// [`DEFAULT_INTERVAL`].
pub fn interval() -> f64 {
    match std::env::var(INTERVAL_VAR) {
        Err(_) => DEFAULT_INTERVAL,
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.01 => s,
            _ => {
                tracing::warn!(
                    "{INTERVAL_VAR}=`{text}` is not a number of seconds; beating every {DEFAULT_INTERVAL} s"
                );
                DEFAULT_INTERVAL
            }
        },
    }
}

/// The Slurm job this process belongs to, if any.
fn slurm_job() -> Option<String> {
    std::env::var("SLURM_JOB_ID").ok().filter(|j| !j.is_empty())
}

/// Rows of the trial's `history.csv`: the epochs it has finished.
fn epochs_done(dir: &Path) -> usize {
    crate::train::history::Table::read(&dir.join(files::HISTORY_CSV)).map_or(0, |t| t.rows.len())
}

fn beat(dir: &Path, n: u64, interval: f64) -> crate::Result<()> {
    let heartbeat = Heartbeat {
        host: crate::results::manifest::hostname(),
        pid: std::process::id(),
        job: slurm_job(),
        epoch: epochs_done(dir),
        beat: n,
        interval_seconds: interval,
        time: crate::results::manifest::now_utc(),
    };
    let json = serde_json::to_string_pretty(&heartbeat).expect("plain data") + "\n";
    write_atomic(&dir.join(HEARTBEAT), json.as_bytes())
}

/// A running heartbeat; it stops when dropped.
pub struct Beating {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Writes the first beat into the trial folder `dir` now, then one every [`interval`] from a
/// thread of its own, until the returned value is dropped. A beat that cannot be written is
/// warned about (once) and the next one tried.
pub fn start(dir: &Path) -> Beating {
    let every = interval();
    if let Err(e) = beat(dir, 1, every) {
        tracing::warn!("cannot write the trial's heartbeat: {e}");
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let dir = dir.to_path_buf();
    let thread = std::thread::Builder::new().name("heartbeat".into()).spawn(move || {
        let mut warned = false;
        for n in 2.. {
            match stopped.recv_timeout(Duration::from_secs_f64(every)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
            if let Err(e) = beat(&dir, n, every) {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!("cannot write the trial's heartbeat: {e}");
                }
            }
        }
    });
    Beating { stop: Some(stop), thread: thread.ok() }
}

impl Drop for Beating {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// "Now" as the filesystem of a folder tells it: the modification time of a scratch file
/// created there, or this machine's clock when the folder cannot be written.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    now: SystemTime,
    /// Whether `now` came from the filesystem (else from this machine's clock).
    pub filesystem: bool,
}

impl Clock {
    /// Reads the clock of the filesystem that holds `dir`.
    pub fn of(dir: &Path) -> Clock {
        use std::io::Write;
        let probe = temporary_path(&dir.join(".clock"));
        let stamped = (|| {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(b"now\n")?;
            f.sync_all()?;
            f.metadata()?.modified()
        })();
        let _ = std::fs::remove_file(&probe);
        match stamped {
            Ok(now) => Clock { now, filesystem: true },
            Err(_) => Clock { now: SystemTime::now(), filesystem: false },
        }
    }

    /// Seconds since the last modification of the file at `path` (opened first, so that a
    /// network filesystem looks again), never negative; `None` when it cannot be read.
    pub fn age(&self, path: &Path) -> Option<f64> {
        let modified = std::fs::File::open(path).and_then(|f| f.metadata()).and_then(|m| m.modified()).ok()?;
        Some(self.now.duration_since(modified).map_or(0.0, |d| d.as_secs_f64()))
    }

    /// `"filesystem"` or `"local"`: where "now" came from.
    pub fn source(&self) -> &'static str {
        if self.filesystem {
            "filesystem"
        } else {
            "local"
        }
    }
}

/// A trial folder's heartbeat as a reader finds it.
#[derive(Clone, Debug, Default)]
pub struct Pulse {
    /// `heartbeat.json`, when there is one.
    pub heartbeat: Option<Heartbeat>,
    /// Its age in seconds (see [`Clock`]).
    pub age: Option<f64>,
    /// The age of `trial.json`, which a trial writes as it starts: the sign of life of a
    /// running trial that has not beaten yet (or was started by a runner without heartbeats).
    pub state_age: Option<f64>,
}

impl Pulse {
    /// Reads the heartbeat of the trial folder `dir`.
    pub fn read(dir: &Path, clock: &Clock) -> Pulse {
        let path = dir.join(HEARTBEAT);
        let heartbeat = bounded::read(&path, &bounded::RUN_FILE).ok().and_then(|t| serde_json::from_slice(&t).ok());
        let age = heartbeat.as_ref().and(clock.age(&path));
        Pulse { heartbeat, age, state_age: clock.age(&dir.join(TRIAL_STATE)) }
    }

    /// The heartbeat of the attempt `state` describes: none when the file is from an earlier
    /// attempt (another host or process).
    fn of_attempt(&self, state: &TrialState) -> Option<(&Heartbeat, f64)> {
        let TrialState::Running { host, pid } = state else { return None };
        let h = self.heartbeat.as_ref().filter(|h| h.host == *host && h.pid == *pid)?;
        Some((h, self.age?))
    }
}

/// Whether a trial that says it is running still is.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not running, or running with a fresh heartbeat.
    Alive,
    /// Gone: why. `certain` when its own machine says its process is gone; otherwise it is
    /// judged by the age of its heartbeat, which [`confirm`] checks by the counter.
    Dead {
        /// Why, for people.
        why: String,
        /// Whether no doubt is left (the process is gone from this machine).
        certain: bool,
    },
}

/// The verdict on a trial in `state` with heartbeat `pulse`: dead when its heartbeat (or,
/// before the first beat, its `trial.json`) is older than [`DEAD_AFTER`] intervals, or when it
/// ran on this machine and its process is gone.
pub fn verdict(state: &TrialState, pulse: &Pulse) -> Verdict {
    let TrialState::Running { host, pid } = state else { return Verdict::Alive };
    if state.died() {
        return Verdict::Dead { why: format!("process {pid} on {host} is gone"), certain: true };
    }
    let limit = |every: f64| f64::from(DEAD_AFTER) * every;
    let why = match pulse.of_attempt(state) {
        Some((h, age)) if age > limit(h.interval_seconds) => format!(
            "no heartbeat from process {pid} on {host} for {} (more than {DEAD_AFTER} intervals of {})",
            seconds(age),
            seconds(h.interval_seconds)
        ),
        Some(_) => return Verdict::Alive,
        None => match pulse.state_age {
            Some(age) if age > limit(interval()) => format!(
                "process {pid} on {host} started {} ago and has not beaten a heartbeat (more than {DEAD_AFTER} \
                 intervals of {})",
                seconds(age),
                seconds(interval())
            ),
            _ => return Verdict::Alive,
        },
    };
    Verdict::Dead { why, certain: false }
}

/// `7 s`, `2.5 s`, `3 min`, `2.0 h`: a duration for people.
pub fn seconds(s: f64) -> String {
    match s {
        s if s < 10.0 && s.fract() != 0.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// Checks a death judged by the age of a heartbeat against the counter: reads the heartbeat
/// of the trial folder `dir` again after one and a half of its intervals. `true` when the
/// counter did not move (dead after all); `false` when it moved or another attempt took over
/// (alive, whatever the file times said).
pub fn confirm(dir: &Path, before: &Pulse) -> bool {
    let every = before.heartbeat.as_ref().map_or_else(interval, |h| h.interval_seconds);
    let wait = Duration::from_secs_f64((1.5 * every).min(120.0));
    tracing::info!("checking that the heartbeat in {} has stopped ({} s)", dir.display(), wait.as_secs_f64());
    std::thread::sleep(wait);
    let read = |p: PathBuf| {
        bounded::read(&p, &bounded::RUN_FILE).ok().and_then(|t| serde_json::from_slice::<Heartbeat>(&t).ok())
    };
    let now = read(dir.join(HEARTBEAT));
    let state = TrialState::of(dir);
    now == before.heartbeat && matches!(state, TrialState::Running { .. })
}

/// Whether this process is a later run of the same Slurm job as the attempt in `pulse` (a
/// requeued array task): Slurm ended that attempt before starting this one.
pub fn same_job_again(pulse: &Pulse) -> bool {
    matches!((slurm_job(), pulse.heartbeat.as_ref().and_then(|h| h.job.as_ref())), (Some(mine), Some(theirs)) if mine == *theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(host: &str, pid: u32) -> TrialState {
        TrialState::Running { host: host.into(), pid }
    }

    fn pulse(host: &str, pid: u32, age: f64, interval: f64) -> Pulse {
        let heartbeat = Heartbeat {
            host: host.into(),
            pid,
            job: None,
            epoch: 3,
            beat: 12,
            interval_seconds: interval,
            time: "2026-01-01T00:00:00Z".into(),
        };
        Pulse { heartbeat: Some(heartbeat), age: Some(age), state_age: Some(100.0) }
    }

    #[test]
    fn a_trial_on_another_host_is_dead_once_its_heartbeat_is_older_than_six_of_its_intervals() {
        let state = running("node-elsewhere", 4242);
        assert_eq!(verdict(&state, &pulse("node-elsewhere", 4242, 5.9, 1.0)), Verdict::Alive);
        let Verdict::Dead { why, certain } = verdict(&state, &pulse("node-elsewhere", 4242, 6.1, 1.0)) else {
            panic!("a heartbeat 6.1 intervals old is dead")
        };
        assert!(!certain && why.contains("no heartbeat") && why.contains("6 intervals of 1 s"), "{why}");
        // The writer's interval counts, not the reader's.
        assert_eq!(verdict(&state, &pulse("node-elsewhere", 4242, 50.0, 10.0)), Verdict::Alive);
    }

    #[test]
    fn a_heartbeat_of_an_earlier_attempt_does_not_count_for_the_running_one() {
        // The trial started again as process 7 and has not beaten yet: trial.json's age counts.
        let mut p = pulse("node-elsewhere", 4242, 1e6, 1.0);
        p.state_age = Some(0.5);
        assert_eq!(verdict(&running("node-elsewhere", 7), &p), Verdict::Alive);
        p.state_age = Some(1e6);
        assert!(matches!(verdict(&running("node-elsewhere", 7), &p), Verdict::Dead { .. }));
    }

    #[test]
    fn ended_trials_are_never_dead_and_a_gone_process_on_this_host_is_certainly_dead() {
        for state in [TrialState::Completed, TrialState::Pending, TrialState::Failed { reason: "x".into() }] {
            assert_eq!(verdict(&state, &pulse("h", 1, 1e9, 1.0)), Verdict::Alive);
        }
        let here = crate::results::manifest::hostname();
        // Process ids are below 2^22 on Linux: this one does not exist.
        let gone = running(&here, 4_194_304 + 17);
        assert!(matches!(verdict(&gone, &Pulse::default()), Verdict::Dead { certain: true, .. }));
        let me = running(&here, std::process::id());
        assert_eq!(verdict(&me, &pulse(&here, std::process::id(), 0.0, 1.0)), Verdict::Alive);
    }

    #[test]
    fn the_clock_of_a_folder_is_its_filesystems_and_beats_count_the_finished_epochs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join(files::HISTORY_CSV), "epoch,loss\n0,1.0\n1,0.5\n").unwrap();
        beat(dir, 5, 2.0).unwrap();
        let clock = Clock::of(dir);
        assert!(clock.filesystem);
        let names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "the probe is removed: {names:?}");
        let p = Pulse::read(dir, &clock);
        let h = p.heartbeat.unwrap();
        assert_eq!((h.epoch, h.beat, h.interval_seconds, h.pid), (2, 5, 2.0, std::process::id()));
        assert!(p.age.unwrap() < 5.0, "{:?}", p.age);
        assert_eq!(p.state_age, None, "no trial.json");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(seconds(2.5), "2.5 s");
        assert_eq!(seconds(6.0), "6 s");
        assert_eq!(seconds(61.2), "61 s");
        assert_eq!(seconds(600.0), "10 min");
        assert_eq!(seconds(9000.0), "2.5 h");
    }
}
