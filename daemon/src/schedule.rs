//! The earliest-deadline schedule of polled objects, behind one timerfd.
//!
//! Deadlines are monotonic-clock durations. First deadlines are spread over the interval with a
//! golden-ratio sequence (`pacing` stretches the interval when a budget needs it), so many directories added at once are polled evenly, not in one burst.
//! Removed objects are not searched for in the heap: their entries carry a generation and are
//! skipped when they come up.
//!
//! Polls coalesce: when the timer fires, an object due within its slack (1/32 of its interval,
//! at most `MAX_SLACK`) is polled with the ones due now, as the kernel's timer slack does. Its
//! next deadline counts from this earlier poll, so no change waits longer than an interval;
//! the worker and the loop wake once for the group instead of once each, and the
//! members stay together from round to round.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Identifies one scheduled object; `generation` tells a stale heap entry from a live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub object: usize,
    pub generation: u64,
}

#[derive(Default)]
pub struct PollSchedule {
    heap: BinaryHeap<Reverse<(Duration, Slot)>>,
    spread: u64,
}

/// The most a poll is brought forward to join others.
pub const MAX_SLACK: Duration = Duration::from_millis(50);

/// How early a poll at `interval` may run to join others.
pub fn slack(interval: Duration) -> Duration {
    (interval / 32).min(MAX_SLACK)
}

/// 2^64 / golden ratio: consecutive multiples land evenly spread over [0, 2^64).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl PollSchedule {
    /// The next point in [0, 1) of a sequence that spreads evenly however many are taken.
    pub fn spread_fraction(&mut self) -> f64 {
        self.spread = self.spread.wrapping_add(GOLDEN);
        (self.spread >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn at(&mut self, slot: Slot, deadline: Duration) {
        self.heap.push(Reverse((deadline, slot)));
    }

    /// The earliest deadline, stale entries included (they cost one spurious wake-up at most).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns the next entry due at or before `horizon`, with its deadline.
    pub fn pop_due(&mut self, horizon: Duration) -> Option<(Duration, Slot)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _))) if *deadline <= horizon => {
                self.heap.pop().map(|Reverse(entry)| entry)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(object: usize) -> Slot {
        Slot { object, generation: 0 }
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let mut s = PollSchedule::default();
        s.at(slot(1), Duration::from_millis(300));
        s.at(slot(2), Duration::from_millis(100));
        s.at(slot(3), Duration::from_millis(200));
        assert_eq!(s.next_deadline(), Some(Duration::from_millis(100)));
        assert_eq!(s.pop_due(Duration::from_millis(50)), None);
        assert_eq!(
            s.pop_due(Duration::from_millis(250)),
            Some((Duration::from_millis(100), slot(2)))
        );
        assert_eq!(
            s.pop_due(Duration::from_millis(250)),
            Some((Duration::from_millis(200), slot(3)))
        );
        assert_eq!(s.pop_due(Duration::from_millis(250)), None);
        assert_eq!(s.heap.len(), 1);
    }

    #[test]
    fn slack_is_a_thirty_second_of_the_interval_up_to_fifty_ms() {
        assert_eq!(slack(Duration::from_millis(320)), Duration::from_millis(10));
        assert_eq!(slack(Duration::from_secs(1)), Duration::from_micros(31_250));
        assert_eq!(slack(Duration::from_secs(5)), MAX_SLACK);
        assert_eq!(slack(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn first_polls_are_spread_over_the_interval() {
        let mut s = PollSchedule::default();
        let interval = Duration::from_secs(5);
        for i in 0..10_000 {
            let fraction = s.spread_fraction();
            s.at(slot(i), interval.mul_f64(fraction));
        }
        // Every tenth of the interval gets close to a tenth of the objects.
        let mut buckets = [0usize; 10];
        while let Some(Reverse((deadline, _))) = s.heap.pop() {
            assert!(deadline < interval);
            buckets[(deadline.as_secs_f64() / 0.5) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!((900..=1100).contains(n), "bucket {i} holds {n} of 10000");
        }
    }
}
