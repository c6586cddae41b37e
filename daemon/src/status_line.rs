//! The one-line `STATUS=` the daemon gives its service manager (`systemctl status` shows it):
//! what it serves and how busy its polls are, sent when that changed and at most every few
//! seconds.

use std::time::Duration;

/// The least time between two `STATUS=` lines.
pub const EVERY: Duration = Duration::from_secs(5);

/// What the last line said, and when.
#[derive(Debug, Default)]
pub struct StatusLine {
    sent_at: Option<Duration>,
    polls_then: u64,
    text: String,
}

/// What the daemon serves now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Serving {
    pub instances: usize,
    pub watches: usize,
    pub polled: usize,
    /// Polls made since start.
    pub polls: u64,
}

impl StatusLine {
    /// Whether a line may be sent at `now` (time since start): none went out for [`EVERY`].
    pub fn may_send(&self, now: Duration) -> bool {
        self.sent_at.is_none_or(|at| now.saturating_sub(at) >= EVERY)
    }

    /// The line to send at `now`, if one may be sent and it says something new.
    pub fn due(&mut self, now: Duration, serving: Serving) -> Option<String> {
        if !self.may_send(now) {
            return None;
        }
        let since = self.sent_at.map(|at| now.saturating_sub(at));
        let rate = match since {
            Some(since) => {
                serving.polls.saturating_sub(self.polls_then) as f64 / since.as_secs_f64()
            }
            None => 0.0,
        };
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let text = format!(
            "{}, {} ({} polled), {rate:.0} polls/s",
            plural(serving.instances, "instance", "instances"),
            plural(serving.watches, "watch", "watches"),
            serving.polled,
        );
        self.sent_at = Some(now);
        self.polls_then = serving.polls;
        if text == self.text {
            return None;
        }
        self.text = text.clone();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(instances: usize, polls: u64) -> Serving {
        Serving { instances, watches: 2 * instances, polled: instances, polls }
    }

    #[test]
    fn a_line_says_what_is_served_and_the_poll_rate() {
        let mut line = StatusLine::default();
        let first = line.due(Duration::ZERO, serving(1, 0)).expect("the first line");
        assert_eq!(first, "1 instance, 2 watches (1 polled), 0 polls/s");
        assert_eq!(line.due(Duration::from_secs(1), serving(2, 10)), None, "too soon");
        let later = line.due(Duration::from_secs(10), serving(2, 100)).expect("a change");
        assert_eq!(later, "2 instances, 4 watches (2 polled), 10 polls/s");
        assert_eq!(line.due(Duration::from_secs(20), serving(2, 200)), None, "nothing new");
    }
}
