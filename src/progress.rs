//! Signs of life during long work: scanning folders, decoding images, a validation pass,
//! `runner evaluate` and `predict`. What a person sees depends on where the output goes:
//!
//! - **A terminal** (stderr is a TTY): a bar drawn by `indicatif` with the count, the total,
//!   the rate and the time left, cleared when the work ends (a counter when the total is not
//!   known in advance).
//! - **A log** (a pipe, a file, Slurm's output, CI): a plain line every few seconds, such as
//!   `decoding images: 12,000/25,000 (48%), 410 img/s, ETA 32 s`, through `tracing` like any
//!   other information, and a closing line with the time taken. Work that ends within the
//!   first interval writes nothing, so short runs stay as terse as before. The interval is
//!   [`DEFAULT_INTERVAL`] seconds unless `RUNNER_PROGRESS_SECONDS` says otherwise (tests set
//!   it to 0: a line at every update).
//!
//! Both are information: `--quiet`, which lowers the log level to warnings, silences both.
//!
//! Counting is an atomic add, so rayon's workers call [`Progress::inc`] as they finish each
//! item; the one that finds a line due writes it, the others go on (a `try_lock`, never a
//! wait). The decisions that depend on time ([`Pacer`]) and the text of a line ([`line`]) are
//! pure functions of the elapsed time, tested with made-up times.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds between lines in a log unless `RUNNER_PROGRESS_SECONDS` says otherwise.
pub const DEFAULT_INTERVAL: f64 = 5.0;
/// The environment variable that sets the interval between lines in a log, in seconds
/// (fractions allowed; 0 writes a line at every update).
pub const INTERVAL_VAR: &str = "RUNNER_PROGRESS_SECONDS";

/// The interval between lines in a log: `RUNNER_PROGRESS_SECONDS` when it is a number of
/// seconds, else [`DEFAULT_INTERVAL`].
pub fn interval() -> Duration {
    let secs = match std::env::var(INTERVAL_VAR) {
        Err(_) => DEFAULT_INTERVAL,
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => s,
            _ => {
                tracing::warn!(
                    "{INTERVAL_VAR}=`{text}` is not a number of seconds; progress every {DEFAULT_INTERVAL} s"
                );
                DEFAULT_INTERVAL
            }
        },
    };
    Duration::from_secs_f64(secs)
}

/// The progress of one piece of work, shown as its environment allows (see the module doc).
pub struct Progress {
    what: String,
    unit: &'static str,
    /// `None` when the total is not known in advance (a scan).
    total: Option<u64>,
    done: AtomicU64,
    start: Instant,
    shown: Shown,
}

/// How a [`Progress`] shows itself.
enum Shown {
    /// `--quiet`: nothing.
    Hidden,
    /// A terminal: an `indicatif` bar.
    Bar(indicatif::ProgressBar),
    /// A log: lines when due.
    Lines(Mutex<Pacer>),
}

impl Progress {
    /// Starts showing `what` (`"decoding images"`), `total` items long, counted in images.
    pub fn new(what: &str, total: u64) -> Progress {
        Progress::start(what, Some(total))
    }

    /// Starts showing `what` when the total is not known in advance: a running count.
    pub fn unbounded(what: &str) -> Progress {
        Progress::start(what, None)
    }

    /// The short name of what is counted in the rate (`img` by default: `410 img/s`).
    pub fn unit(mut self, unit: &'static str) -> Progress {
        self.unit = unit;
        if let Shown::Bar(bar) = &self.shown {
            bar.set_style(bar_style(self.total.is_some(), unit));
        }
        self
    }

    fn start(what: &str, total: Option<u64>) -> Progress {
        let shown = if !tracing::enabled!(tracing::Level::INFO) {
            Shown::Hidden
        } else if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::no_length(),
            };
            bar.set_style(bar_style(total.is_some(), "img"));
            bar.set_message(what.to_string());
            Shown::Bar(bar)
        } else {
            Shown::Lines(Mutex::new(Pacer::new(interval())))
        };
        Progress { what: what.to_string(), unit: "img", total, done: AtomicU64::new(0), start: Instant::now(), shown }
    }

    /// Counts `n` more items done; from any thread.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.inc(n),
            Shown::Lines(pacer) => {
                // Another worker is writing a line: this update is in the next one.
                let Ok(mut pacer) = pacer.try_lock() else { return };
                let elapsed = self.start.elapsed();
                if pacer.due(elapsed) {
                    tracing::info!("{}", line(&self.what, self.unit, done, self.total, elapsed));
                }
            }
        }
    }

    /// Ends the work: clears the bar, or closes the lines of a log with the time taken (when
    /// the work was long enough to have written any).
    pub fn finish(self) {
        match &self.shown {
            Shown::Hidden => {}
            Shown::Bar(bar) => bar.finish_and_clear(),
            Shown::Lines(pacer) => {
                let pacer = pacer.lock().unwrap_or_else(|e| e.into_inner());
                if pacer.lines > 0 {
                    let done = self.done.load(Ordering::Relaxed);
                    tracing::info!("{}", closing(&self.what, self.unit, done, self.start.elapsed()));
                }
            }
        }
    }
}

fn bar_style(bounded: bool, unit: &'static str) -> indicatif::ProgressStyle {
    let template = if bounded {
        "{msg}: [{bar:30}] {human_pos}/{human_len} ({percent}%), {rate}, ETA {left}"
    } else {
        "{spinner} {msg}: {human_pos} so far, {rate}"
    };
    indicatif::ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        .progress_chars("=> ")
        .with_key("rate", move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate(s.pos(), s.elapsed(), unit));
        })
        .with_key("left", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&eta(s.pos(), s.len(), s.elapsed()));
        })
}

/// When a log is due its next line: every `interval`, the first one an interval after the
/// start (so work shorter than that writes nothing).
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Duration,
    /// Lines written so far.
    pub lines: u64,
}

impl Pacer {
    /// A pacer for lines every `interval`.
    pub fn new(interval: Duration) -> Pacer {
        Pacer { interval, next: interval, lines: 0 }
    }

    /// Whether a line is due `elapsed` after the start; if so, counts it and sets the next.
    pub fn due(&mut self, elapsed: Duration) -> bool {
        if elapsed < self.next {
            return false;
        }
        self.lines += 1;
        // The next line an interval after this one, not after the one missed: a slow item
        // does not bring a burst of lines after it.
        self.next = elapsed + self.interval;
        true
    }
}

/// One line of a log: `decoding images: 12,000/25,000 (48%), 410 img/s, ETA 32 s`, or
/// `scanning: 12,000 so far, 4,100 files/s` when the total is not known.
pub fn line(what: &str, unit: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    match total {
        Some(total) => {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            format!(
                "{what}: {}/{} ({percent}%), {}, ETA {}",
                count(done),
                count(total),
                rate(done, elapsed, unit),
                eta(done, Some(total), elapsed)
            )
        }
        None => format!("{what}: {} so far, {}", count(done), rate(done, elapsed, unit)),
    }
}

/// The last line of a log that showed progress: `decoding images: 25,000 in 1 min 01 s
/// (410 img/s)`.
pub fn closing(what: &str, unit: &str, done: u64, elapsed: Duration) -> String {
    format!("{what}: {} in {} ({})", count(done), duration(elapsed.as_secs_f64()), rate(done, elapsed, unit))
}

/// A count with thousands separators: `12,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Items per second: `410 img/s`, `2.5 img/s` below ten.
pub fn rate(done: u64, elapsed: Duration, unit: &str) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return format!("- {unit}/s");
    }
    let r = done as f64 / secs;
    if r < 10.0 {
        format!("{r:.1} {unit}/s")
    } else {
        format!("{} {unit}/s", count(r.round() as u64))
    }
}

/// The time left at the rate so far: `32 s`, `4 min 05 s`; `-` before anything is done or
/// when the total is not known.
pub fn eta(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    match total {
        Some(total) if done > 0 => {
            let left = total.saturating_sub(done) as f64 * elapsed.as_secs_f64() / done as f64;
            duration(left)
        }
        _ => "-".to_string(),
    }
}

/// A duration for people: `32 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    let mut out = String::new();
    if s < 60 {
        let _ = write!(out, "{s} s");
    } else if s < 3600 {
        let _ = write!(out, "{} min {:02} s", s / 60, s % 60);
    } else {
        let _ = write!(out, "{} h {:02} min", s / 3600, (s % 3600) / 60);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_line_gives_counts_percent_rate_and_time_left() {
        assert_eq!(
            line("decoding images", "img", 12_000, Some(25_000), secs(29.25)),
            "decoding images: 12,000/25,000 (48%), 410 img/s, ETA 32 s"
        );
        assert_eq!(
            line("scanning", "files", 1_234_567, None, secs(2.0)),
            "scanning: 1,234,567 so far, 617,284 files/s"
        );
        assert_eq!(line("validation", "img", 3, Some(8), secs(2.0)), "validation: 3/8 (37%), 1.5 img/s, ETA 3 s");
        assert_eq!(line("x", "img", 0, Some(8), Duration::ZERO), "x: 0/8 (0%), - img/s, ETA -");
        assert_eq!(line("x", "img", 0, Some(0), secs(1.0)), "x: 0/0 (100%), 0.0 img/s, ETA -");
    }

    #[test]
    fn the_closing_line_gives_the_time_taken() {
        assert_eq!(
            closing("decoding images", "img", 25_000, secs(61.0)),
            "decoding images: 25,000 in 1 min 01 s (410 img/s)"
        );
    }

    #[test]
    fn counts_durations_and_time_left_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(25_000_000), "25,000,000");
        assert_eq!(duration(0.4), "0 s");
        assert_eq!(duration(59.4), "59 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
        assert_eq!(eta(10, Some(100), secs(5.0)), "45 s");
        assert_eq!(eta(100, Some(100), secs(5.0)), "0 s");
        assert_eq!(eta(10, None, secs(5.0)), "-");
    }

    #[test]
    fn a_pacer_is_silent_for_the_first_interval_then_writes_one_line_per_interval() {
        let mut p = Pacer::new(secs(5.0));
        assert!(!p.due(secs(0.0)));
        assert!(!p.due(secs(4.9)));
        assert!(p.due(secs(5.0)));
        assert!(!p.due(secs(9.9)));
        // A slow item: one line when it ends, the next an interval later.
        assert!(p.due(secs(17.0)));
        assert!(!p.due(secs(21.9)));
        assert!(p.due(secs(22.0)));
        assert_eq!(p.lines, 3);
    }

    #[test]
    fn a_zero_interval_writes_at_every_update() {
        let mut p = Pacer::new(Duration::ZERO);
        assert!(p.due(Duration::ZERO));
        assert!(p.due(Duration::ZERO));
        assert_eq!(p.lines, 2);
    }
}
