//! Warnings about one peer, rate-limited: a peer that sends garbage in a loop must not fill
//! the log (30 000 lines in 5 s, issue 14). Each uid and kind of warning may write `BURST`
//! lines per `WINDOW`; past that lines are counted, and one line says how many were left out
//! when the window ends (at the next warning of that kind, or at the next sweep).

use std::collections::HashMap;
use std::time::Duration;

/// Lines per uid and kind in one window.
pub const BURST: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    start: Duration,
    written: u32,
    suppressed: u64,
}

/// The windows of the peers warned about lately.
#[derive(Debug, Default)]
pub struct PeerLog {
    windows: HashMap<(u32, &'static str), Window>,
}

/// What to do with one warning.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Write the warning.
    pub write: bool,
    /// First write a line saying this many warnings about the peer were left out.
    pub suppressed: u64,
}

impl PeerLog {
    /// Counts a warning of `kind` about `uid` at `now`.
    pub fn warn(&mut self, uid: u32, kind: &'static str, now: Duration) -> Verdict {
        let window = self.windows.entry((uid, kind)).or_insert(Window {
            start: now,
            written: 0,
            suppressed: 0,
        });
        let mut suppressed = 0;
        if now.saturating_sub(window.start) >= WINDOW {
            suppressed = std::mem::take(&mut window.suppressed);
            window.start = now;
            window.written = 0;
        }
        if window.written < BURST {
            window.written += 1;
            Verdict { write: true, suppressed }
        } else {
            window.suppressed += 1;
            Verdict { write: false, suppressed }
        }
    }

    /// When the first window with warnings left out ends, for a timer to write its summary.
    pub fn next_summary(&self) -> Option<Duration> {
        self.windows.values().filter(|w| w.suppressed > 0).map(|w| w.start + WINDOW).min()
    }

    /// Ends the windows past `WINDOW`: each `(uid, kind, count)` with warnings left out is
    /// returned for a summary line, and quiet peers are forgotten.
    pub fn sweep(&mut self, now: Duration) -> Vec<(u32, &'static str, u64)> {
        let mut summaries = Vec::new();
        self.windows.retain(|&(uid, kind), window| {
            if now.saturating_sub(window.start) < WINDOW {
                return true;
            }
            if window.suppressed > 0 {
                summaries.push((uid, kind, window.suppressed));
            }
            false
        });
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_flood_writes_a_burst_then_one_summary_per_window() {
        let mut log = PeerLog::default();
        let written = (0..30_000).filter(|_| log.warn(7, "protocol", S).write).count();
        assert_eq!(written, BURST as usize);
        assert!(log.warn(8, "protocol", S).write, "another uid is not silenced");
        assert!(log.warn(7, "idle", S).write, "nor another kind");
        let next = log.warn(7, "protocol", S + WINDOW);
        assert_eq!(next, Verdict { write: true, suppressed: 30_000 - u64::from(BURST) });
    }

    #[test]
    fn a_sweep_summarises_and_forgets() {
        let mut log = PeerLog::default();
        for _ in 0..15 {
            log.warn(7, "protocol", S);
        }
        log.warn(8, "protocol", S);
        assert!(log.sweep(S + S).is_empty(), "windows still open");
        assert_eq!(log.sweep(S + WINDOW), vec![(7, "protocol", 5)]);
        assert!(log.windows.is_empty());
    }
}
