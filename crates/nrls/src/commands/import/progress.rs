//! Progress of a long load: a bar with rate and ETA on a terminal, a plain
//! line every few seconds otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports `done` out of an optional `total` on stderr.
pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    unit: &'static str,
    started: Instant,
    last: Instant,
    terminal: bool,
    every: Duration,
    quiet: bool,
}

impl Progress {
    /// `total` is in the same unit as the `done` passed to [`Progress::update`]
    /// (bytes of a file, or pointers), when it is known.
    pub fn new(label: &'static str, total: Option<u64>, unit: &'static str, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            label,
            total,
            unit,
            started: now,
            last: now,
            terminal,
            every: if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            },
            quiet,
        }
    }

    /// `done` units processed, `count` items (lines) so far.
    pub fn update(&mut self, done: u64, count: u64) {
        if self.quiet || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        self.draw(done, count);
    }

    fn draw(&self, done: u64, count: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = count as f64 / seconds;
        let (percent, eta) = match self.total {
            Some(total) if total > 0 && done > 0 => {
                let fraction = (done as f64 / total as f64).min(1.0);
                let eta = seconds * (1.0 - fraction) / fraction;
                (Some(fraction * 100.0), Some(eta))
            }
            _ => (None, None),
        };
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let width = 30usize;
            let filled = percent.map_or(0, |p| ((p / 100.0) * width as f64) as usize);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled.min(width));
            let _ = write!(
                err,
                "\r{} [{bar}] {:>5.1}% {count} {} {rate:>9.0}/s ETA {:<8}",
                self.label,
                percent.unwrap_or(0.0),
                self.unit,
                eta.map_or("?".to_owned(), format_duration),
            );
        } else {
            let _ = writeln!(
                err,
                "{}: {count} {}, {rate:.0}/s{}{}",
                self.label,
                self.unit,
                percent.map_or(String::new(), |p| format!(", {p:.1}%")),
                eta.map_or(String::new(), |e| format!(", ETA {}", format_duration(e))),
            );
        }
        let _ = err.flush();
    }

    /// Ends the bar's line on a terminal.
    pub fn finish(&self) {
        if self.terminal && !self.quiet {
            eprintln!();
        }
    }
}

fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
