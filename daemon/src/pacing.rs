//! Gentle polling: how often each polled object may be polled, so that the file server sees a
//! level load under the user's cap.
//!
//! The objects of one policy on one device form a budget group with `max_ops` filesystem
//! operations per second. When what the group needs at its intervals (its demand) is more, every
//! interval of the group stretches by the same factor, so the load stays level rather than
//! bursting; a leaky bucket per group holds back the polls that would still go over (the first
//! round after many watches are added, a burst of changes). Idle backoff (`max_poll_interval`)
//! polls a directory that keeps finding nothing less and less often, and at its interval again
//! from its first change.

use std::collections::HashMap;
use std::time::Duration;

use crate::scan::ScanCounters;
use crate::watch::Pace;
use crate::watch::{Source, WatchedObject};

/// Unchanged polls before the backoff starts doubling the interval.
pub const IDLE_GRACE: u32 = 3;

/// How far ahead of its budget a group may run: polls due within this much of one another go
/// out together (one wake-up), and the rate holds over any window longer than this.
pub const BURST: Duration = Duration::from_millis(50);

/// How often the demand of every group is summed again (objects come, go, change size).
const REFRESH: Duration = Duration::from_secs(1);

/// The interval after `idle_polls` polls that found nothing: `interval` during the grace
/// polls, then doubling each poll, up to `max` (no backoff without a `max` above `interval`).
pub fn backoff_interval(interval: Duration, max: Option<Duration>, idle_polls: u32) -> Duration {
    let Some(max) = max.filter(|max| *max > interval) else { return interval };
    let doublings = idle_polls.saturating_sub(IDLE_GRACE).min(31);
    interval.saturating_mul(1 << doublings).min(max)
}

/// A budget group: the objects of one policy (`None`: the default) on one device.
pub type GroupKey = (Option<usize>, u64);

#[derive(Clone, Copy, Debug, Default)]
struct Group {
    max_ops: u32,
    /// Operations per second the group's objects need at their own (backed-off) intervals.
    demand: f64,
    /// Leaky bucket: the time by which the budget has paid for every poll allowed so far.
    paid_until: Duration,
    /// Polls held back for their turn since the policies were last set.
    held: u64,
}

impl Group {
    fn rate(&self) -> f64 {
        f64::from(self.max_ops.max(1))
    }

    /// What every interval of the group is multiplied by: 1 within budget.
    fn stretch(&self) -> f64 {
        (self.demand / self.rate()).max(1.0)
    }

    fn seconds_of(&self, ops: f64) -> Duration {
        Duration::from_secs_f64((ops / self.rate()).clamp(0.0, 1e6))
    }
}

/// What `status` shows of one policy's groups.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyPace {
    /// Operations per second its objects need, over all devices.
    pub demand: f64,
    /// The largest stretch of its groups (1.0: within budget everywhere).
    pub stretch: f64,
    pub held: u64,
}

#[derive(Default)]
pub struct Pacing {
    groups: HashMap<GroupKey, Group>,
    refreshed: Option<Duration>,
}

fn key(object: &WatchedObject) -> GroupKey {
    (object.governance.policy, object.id.0)
}

fn pace_of(object: &WatchedObject) -> Option<&Pace> {
    match &object.source {
        Source::Polled(state) => Some(&state.pace),
        Source::Kernel { .. } => None,
    }
}

/// Operations per second `object` needs at its current (backed-off) interval.
fn demand_of(object: &WatchedObject, pace: &Pace) -> f64 {
    let g = &object.governance;
    let interval = backoff_interval(g.interval, g.max_interval, pace.idle_polls);
    pace.cost / interval.as_secs_f64().max(1e-3)
}

impl Pacing {
    /// Forgets every group: policies changed, so groups and budgets are new.
    pub fn reset(&mut self) {
        self.groups.clear();
        self.refreshed = None;
    }

    fn group(&mut self, object: &WatchedObject) -> &mut Group {
        let group = self.groups.entry(key(object)).or_default();
        group.max_ops = object.governance.max_ops;
        group
    }

    /// Sums the demand of every group again, at most once per [`REFRESH`].
    pub fn refresh<'a>(&mut self, now: Duration, objects: impl Iterator<Item = &'a WatchedObject>) {
        if self.refreshed.is_some_and(|at| now.saturating_sub(at) < REFRESH) {
            return;
        }
        self.refreshed = Some(now);
        for group in self.groups.values_mut() {
            group.demand = 0.0;
        }
        for object in objects {
            if let Some(pace) = pace_of(object) {
                let demand = demand_of(object, pace);
                self.group(object).demand += demand;
            }
        }
    }

    /// The first poll of a new object: `fraction` of its (stretched) interval from `now`, the
    /// fraction coming from the schedule's even spread.
    pub fn first_poll(&mut self, object: &WatchedObject, now: Duration, fraction: f64) -> Duration {
        let Some(pace) = pace_of(object) else { return now };
        let demand = demand_of(object, pace);
        let group = self.group(object);
        group.demand += demand;
        now + object.governance.interval.mul_f64(fraction * group.stretch())
    }

    /// Whether the poll of `object` due now must wait for its group's budget; if so, until when.
    /// A poll that waited once is not held again.
    pub fn hold(&mut self, object: &mut WatchedObject, now: Duration) -> Option<Duration> {
        let max_ops = object.governance.max_ops;
        let group = self.groups.entry(key(object)).or_default();
        group.max_ops = max_ops;
        let Source::Polled(state) = &mut object.source else { return None };
        if std::mem::take(&mut state.pace.reserved) {
            return None;
        }
        let cost = group.seconds_of(state.pace.cost);
        if group.paid_until <= now + BURST {
            group.paid_until = group.paid_until.max(now) + cost;
            return None;
        }
        let turn = group.paid_until - BURST;
        group.paid_until += cost;
        group.held += 1;
        state.pace.reserved = true;
        Some(turn)
    }

    /// Charges to `object`'s group what a poll outside the schedule made, one no budget held
    /// back: a first listing, which may be the largest poll the object ever gets. The group's
    /// next polls wait for it as for their own.
    pub fn charge(&mut self, object: &WatchedObject, spent: &ScanCounters, now: Duration) {
        let group = self.groups.entry(key(object)).or_default();
        group.max_ops = object.governance.max_ops;
        let cost = group.seconds_of(spent.ops() as f64);
        group.paid_until = group.paid_until.max(now) + cost;
    }

    /// Accounts a finished poll that made `spent` and returns the object's next deadline.
    pub fn after_poll(
        &mut self,
        object: &mut WatchedObject,
        spent: &ScanCounters,
        finished: Duration,
    ) -> Duration {
        let g = object.governance;
        let group = self.groups.entry(key(object)).or_default();
        group.max_ops = g.max_ops;
        let Source::Polled(state) = &mut object.source else { return finished + g.interval };
        let pace = &mut state.pace;
        let ops = spent.ops() as f64;
        // The bucket was charged the estimate; settle the difference.
        let extra = group.seconds_of((ops - pace.cost).abs());
        group.paid_until = if ops >= pace.cost {
            group.paid_until + extra
        } else {
            group.paid_until.saturating_sub(extra)
        };
        pace.cost = 0.75 * pace.cost + 0.25 * ops;
        pace.idle_polls = if spent.changes == 0 { pace.idle_polls.saturating_add(1) } else { 0 };
        let interval = backoff_interval(g.interval, g.max_interval, pace.idle_polls);
        finished + interval.mul_f64(group.stretch())
    }

    /// The pacing figures of policy `policy` (`None`: the default) for `status`.
    pub fn policy(&self, policy: Option<usize>) -> PolicyPace {
        let mut out = PolicyPace { stretch: 1.0, ..PolicyPace::default() };
        for group in self.groups.iter().filter(|((p, _), _)| *p == policy).map(|(_, g)| g) {
            out.demand += group.demand;
            out.stretch = out.stretch.max(group.stretch());
            out.held += group.held;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::policy::Governance;
    use crate::schedule::{PollSchedule, Slot};
    use crate::watch::PollState;

    const MS: Duration = Duration::from_millis(1);

    fn object(
        policy: Option<usize>,
        interval: Duration,
        max_ops: u32,
        max: Option<Duration>,
    ) -> WatchedObject {
        let fd = rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
            .expect("open / for a stand-in fd");
        WatchedObject {
            id: (1, 2),
            is_dir: true,
            path: "/test".into(),
            governance: Governance {
                policy,
                interval,
                mode: Mode::Poll,
                force_sync: false,
                listing: crate::config::Listing::Auto,
                max_ops,
                max_interval: max,
            },
            subscribers: Vec::new(),
            source: Source::Polled(PollState {
                fd,
                scan: None,
                dispatched: None,
                misses: 0,
                missing_since: None,
                parent: None,
                generation: 1,
                pace: Pace::estimate(0, false),
                ancestry: Vec::new(),
            }),
        }
    }

    fn spent(statx: u64, changes: u64) -> ScanCounters {
        ScanCounters { statx, changes, ..ScanCounters::default() }
    }

    #[test]
    fn backoff_doubles_after_the_grace_polls_up_to_the_bound() {
        let s = Duration::from_secs;
        let steps: Vec<Duration> =
            (0..10).map(|idle| backoff_interval(s(1), Some(s(20)), idle)).collect();
        assert_eq!(steps, [s(1), s(1), s(1), s(1), s(2), s(4), s(8), s(16), s(20), s(20)]);
        assert_eq!(backoff_interval(s(5), None, 100), s(5));
        assert_eq!(backoff_interval(s(5), Some(s(2)), 100), s(5), "a bound below the interval");
        assert_eq!(backoff_interval(s(1), Some(s(3600)), u32::MAX), s(3600));
    }

    #[test]
    fn a_change_brings_the_interval_back() {
        let mut pacing = Pacing::default();
        let mut o = object(None, Duration::from_secs(1), 2000, Some(Duration::from_secs(60)));
        let mut now = Duration::ZERO;
        for _ in 0..8 {
            now = pacing.after_poll(&mut o, &spent(1, 0), now);
        }
        let next = pacing.after_poll(&mut o, &spent(1, 0), now);
        assert_eq!(next - now, Duration::from_secs(60), "backed off to the bound");
        let next = pacing.after_poll(&mut o, &spent(2, 1), now);
        assert_eq!(next - now, Duration::from_secs(1), "back to the interval at a change");
    }

    #[test]
    fn over_budget_every_interval_stretches_by_the_same_factor() {
        let mut pacing = Pacing::default();
        let mut objects: Vec<WatchedObject> =
            (0..1000).map(|_| object(Some(0), Duration::from_secs(1), 200, None)).collect();
        pacing.refresh(Duration::ZERO, objects.iter());
        let status = pacing.policy(Some(0));
        assert!((status.demand - 1000.0).abs() < 1e-6, "{status:?}");
        assert!((status.stretch - 5.0).abs() < 1e-6, "{status:?}");
        for o in &mut objects {
            let next = pacing.after_poll(o, &spent(1, 0), Duration::from_secs(10));
            assert_eq!(next, Duration::from_secs(15));
        }
        // Within budget nothing stretches, and another policy's groups are apart.
        let mut small = object(Some(1), Duration::from_secs(1), 2000, None);
        assert_eq!(pacing.after_poll(&mut small, &spent(1, 0), MS), MS + Duration::from_secs(1));
        assert_eq!(pacing.policy(Some(1)).stretch, 1.0);
    }

    /// The server's loop in simulated time: pop what is due, let the budget hold it back or
    /// poll it (one statx), reschedule. Returns the polls per object and the poll times.
    fn simulate(objects: &mut [WatchedObject], seconds: u64) -> (Vec<u32>, Vec<Duration>) {
        let mut pacing = Pacing::default();
        let mut schedule = PollSchedule::default();
        for (id, o) in objects.iter().enumerate() {
            let first = pacing.first_poll(o, Duration::ZERO, schedule.spread_fraction());
            schedule.at(Slot { object: id, generation: 1 }, first);
        }
        let mut polls = vec![0u32; objects.len()];
        let mut times = Vec::new();
        let end = Duration::from_secs(seconds);
        while let Some(now) = schedule.next_deadline().filter(|d| *d < end) {
            pacing.refresh(now, objects.iter());
            while let Some((_, slot)) = schedule.pop_due(now) {
                let o = &mut objects[slot.object];
                if let Some(later) = pacing.hold(o, now) {
                    assert!(later > now, "held to a later time");
                    schedule.at(slot, later);
                    continue;
                }
                polls[slot.object] += 1;
                times.push(now);
                let next = pacing.after_poll(o, &spent(1, 0), now);
                schedule.at(slot, next);
            }
        }
        (polls, times)
    }

    #[test]
    fn the_budget_holds_over_every_second_and_every_object_is_polled() {
        let mut objects: Vec<WatchedObject> =
            (0..1000).map(|_| object(Some(0), Duration::from_secs(1), 200, None)).collect();
        let (polls, times) = simulate(&mut objects, 20);
        // 1000 directories at 1 s need 1000 statx/s: with 200/s each is polled every ~5 s.
        assert!(polls.iter().all(|&n| (3..=5).contains(&n)), "{:?}", &polls[..20]);
        let mut per_window = [0u32; 40];
        for t in &times {
            per_window[(t.as_millis() / 500) as usize] += 1;
        }
        // Over every half second, at most half of 200/s and the burst allowance.
        let bound = 100 + (BURST.as_secs_f64() * 200.0).ceil() as u32;
        assert!(per_window.iter().all(|&n| n <= bound), "{per_window:?}");
        // Level, not bursting: after the first round every window is near the budget.
        assert!(per_window[4..].iter().all(|&n| n >= 80), "{per_window:?}");
    }

    #[test]
    fn a_first_listing_is_paid_for_by_the_groups_next_polls() {
        let mut pacing = Pacing::default();
        let new = object(Some(0), Duration::from_secs(1), 100, None);
        let mut other = object(Some(0), Duration::from_secs(1), 100, None);
        // 1 000 statx at 100 a second: the group's budget is spent for 10 s.
        pacing.charge(&new, &spent(1000, 0), Duration::ZERO);
        let turn = pacing.hold(&mut other, Duration::ZERO).expect("held for the first listing");
        assert!(turn >= Duration::from_secs(9), "held until {turn:?}");
        // Another policy's group pays nothing for it.
        let mut apart = object(Some(1), Duration::from_secs(1), 100, None);
        assert_eq!(pacing.hold(&mut apart, Duration::ZERO), None);
    }

    #[test]
    fn within_budget_nothing_is_held() {
        let mut objects: Vec<WatchedObject> =
            (0..100).map(|_| object(None, Duration::from_secs(1), 2000, None)).collect();
        let (polls, _) = simulate(&mut objects, 10);
        assert!(polls.iter().all(|&n| (9..=10).contains(&n)), "{polls:?}");
    }
}
