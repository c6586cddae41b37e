//! What `fakenotify-ctl feed` prints, and when: the first change in a directory goes out at
//! once, later ones within the window are folded into one line at its end, so a file being
//! written costs a line per window, not one per `write`. Pure: times come in as arguments.

use std::collections::HashMap;
use std::time::Duration;

/// Directories with a line held back, at most; past it everything held is dropped and the
/// caller prints an overflow line (a catch-up is cheaper than unbounded memory).
pub const MAX_HELD: usize = 16_384;

/// What one directory's pending line names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    /// Nothing waits; the entry only remembers when the last line went out.
    Nothing,
    /// One name changed since the last line.
    Name(Vec<u8>),
    /// Several names, or the directory itself: the line names the directory only.
    Directory,
}

#[derive(Debug)]
struct DirState {
    last_sent: Duration,
    held: Held,
}

/// A line to print: the directory and, when one name alone changed, that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub dir: Vec<u8>,
    pub name: Option<Vec<u8>>,
}

/// What [`Coalescer::note`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    /// Print this line now.
    Send(Change),
    /// Held for the end of the window.
    Held,
    /// Too many directories held: everything held was dropped; print an overflow line.
    Overflow,
}

pub struct Coalescer {
    window: Duration,
    dirs: HashMap<Vec<u8>, DirState>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Coalescer {
        Coalescer { window, dirs: HashMap::new() }
    }

    /// A change of `name` (empty: the directory itself) in `dir` at `now`.
    pub fn note(&mut self, dir: &[u8], name: &[u8], now: Duration) -> Noted {
        let window = self.window;
        if let Some(state) = self.dirs.get_mut(dir) {
            if now.saturating_sub(state.last_sent) >= window && state.held == Held::Nothing {
                state.last_sent = now;
                return Noted::Send(change(dir, name));
            }
            state.held = match &state.held {
                Held::Nothing if !name.is_empty() => Held::Name(name.to_vec()),
                Held::Name(held) if held == name => Held::Name(held.clone()),
                _ => Held::Directory,
            };
            return Noted::Held;
        }
        if self.dirs.len() >= MAX_HELD {
            self.dirs.clear();
            return Noted::Overflow;
        }
        self.dirs.insert(dir.to_vec(), DirState { last_sent: now, held: Held::Nothing });
        Noted::Send(change(dir, name))
    }

    /// The lines whose window ended by `now`; directories quiet for a window are forgotten.
    pub fn due(&mut self, now: Duration) -> Vec<Change> {
        let window = self.window;
        let mut out = Vec::new();
        self.dirs.retain(|dir, state| {
            if now.saturating_sub(state.last_sent) < window {
                return true;
            }
            match std::mem::replace(&mut state.held, Held::Nothing) {
                Held::Nothing => false,
                held => {
                    let name = match held {
                        Held::Name(name) => Some(name),
                        _ => None,
                    };
                    out.push(Change { dir: dir.clone(), name });
                    state.last_sent = now;
                    true
                }
            }
        });
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        out
    }

    /// When [`Coalescer::due`] next has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.dirs.values().map(|s| s.last_sent + self.window).min()
    }
}

fn change(dir: &[u8], name: &[u8]) -> Change {
    Change { dir: dir.to_vec(), name: (!name.is_empty()).then(|| name.to_vec()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_change_goes_out_at_once_and_the_rest_at_the_window_end() {
        let mut c = Coalescer::new(ms(100));
        let sent = c.note(b"/d", b"a", ms(1000));
        assert_eq!(sent, Noted::Send(Change { dir: b"/d".to_vec(), name: Some(b"a".to_vec()) }));
        for t in 1..50 {
            assert_eq!(c.note(b"/d", b"a", ms(1000 + t)), Noted::Held);
        }
        assert!(c.due(ms(1099)).is_empty());
        assert_eq!(c.next_deadline(), Some(ms(1100)));
        let due = c.due(ms(1100));
        assert_eq!(due, vec![Change { dir: b"/d".to_vec(), name: Some(b"a".to_vec()) }]);
        // Quiet for a window: forgotten.
        assert!(c.due(ms(1300)).is_empty());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn two_names_in_one_window_make_a_line_for_the_directory() {
        let mut c = Coalescer::new(ms(100));
        c.note(b"/d", b"a", ms(0));
        c.note(b"/d", b"a", ms(10));
        c.note(b"/d", b"b", ms(20));
        assert_eq!(c.due(ms(100)), vec![Change { dir: b"/d".to_vec(), name: None }]);
    }

    #[test]
    fn a_writer_costs_a_line_per_window() {
        let mut c = Coalescer::new(ms(100));
        let mut lines = 0;
        for t in 0..10_000u64 {
            if matches!(c.note(b"/d", b"big", ms(t)), Noted::Send(_)) {
                lines += 1;
            }
            lines += c.due(ms(t)).len();
        }
        assert!((95..=105).contains(&lines), "{lines} lines for 10 s of writes");
    }

    #[test]
    fn directories_are_independent() {
        let mut c = Coalescer::new(ms(100));
        assert!(matches!(c.note(b"/a", b"x", ms(0)), Noted::Send(_)));
        assert!(matches!(c.note(b"/b", b"x", ms(1)), Noted::Send(_)));
        assert!(matches!(c.note(b"/a", b"", ms(150)), Noted::Send(Change { name: None, .. })));
    }

    #[test]
    fn too_many_directories_overflow_and_start_over() {
        let mut c = Coalescer::new(ms(100));
        for i in 0..MAX_HELD {
            assert!(matches!(c.note(format!("/{i}").as_bytes(), b"", ms(0)), Noted::Send(_)));
        }
        assert_eq!(c.note(b"/one-more", b"", ms(0)), Noted::Overflow);
        assert_eq!(c.next_deadline(), None);
    }
}
