//! The schedule of polls and their hand-over to the device workers: what is due, the budget
//! it waits for, the result taken back, and `status`'s view of jobs stuck on a worker.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::io::Errno;

use crate::mounts::Observed;
use crate::pending::Stage;
use crate::poller::{self, PollOutcome};
use crate::relocate;
use crate::schedule::{self, Slot};
use crate::server::{now, object_path, reply, Server};
use crate::settling::Step;
use crate::watch::{PollState, Source, WatchedObject, STAT_EVENTS};
use crate::workers::{Done, Job, PollJob, PollResult, PATHS_WORKER};

/// A poll running longer than this is reported in `status` as a slow or hung mount.
const SLOW_SCAN: Duration = Duration::from_secs(1);

/// The jobs stuck on one worker, for `status`.
pub(crate) struct StuckJobs {
    pub worker: u64,
    /// What the oldest is: "poll", "add_watch", "policy paths", "relocation".
    pub job: &'static str,
    /// The object it is about, as its path when it is known.
    pub what: String,
    pub running: Duration,
    /// Jobs waiting there for longer than `SLOW_SCAN`, the oldest among them.
    pub count: u64,
}

impl Server {
    pub(crate) fn poll_due(&mut self) {
        let mut expirations = [0u8; 8];
        // The count is not needed: the schedule says what is due.
        let _ = rustix::io::read(&self.timer, &mut expirations);
        // It fired, so it is disarmed: the next turn arms it whatever the deadline.
        self.armed = None;
        self.close_idle_connections();
        self.sweep_peer_log();
        let start = now();
        self.feeds.prune(start);
        self.pacing.refresh(start, self.registry.iter().map(|(_, o)| o));
        // Due within their slack: back on the schedule after this round.
        let mut not_yet = Vec::new();
        while let Some((deadline, slot)) = self.schedule.pop_due(start + schedule::MAX_SLACK) {
            let Some(object) = self.registry.get_mut(slot.object) else { continue };
            let Source::Polled(state) = &object.source else { continue };
            if state.generation != slot.generation {
                continue;
            }
            if deadline > start + schedule::slack(object.governance.interval) {
                not_yet.push((deadline, slot));
                continue;
            }
            // Under a healthy feed, only every safety interval; asked again at its own.
            if self.feeds.defers(slot, &object.path, start) {
                self.schedule.at(slot, start + object.governance.interval);
                continue;
            }
            if state.scan.is_none() {
                // An out-of-turn poll is in flight: this one comes round again.
                let interval = object.governance.interval;
                self.schedule.at(slot, start + interval);
                continue;
            }
            // Over its group's budget, the poll waits for its turn.
            if let Some(turn) = self.pacing.hold(object, start) {
                self.schedule.at(slot, turn);
                continue;
            }
            self.dispatch(slot.object, true);
        }
        for (deadline, slot) in not_yet {
            self.schedule.at(slot, deadline);
        }
    }

    /// Hands a poll of `id` to its device's worker, with the requests waiting to join
    /// the object. A scheduled poll is rescheduled when its result comes back
    /// ([`Server::on_polled`]).
    pub(crate) fn dispatch(&mut self, id: usize, scheduled: bool) {
        let joiners = self.joins.remove(&id).unwrap_or_default();
        let want_stats =
            joiners.iter().filter_map(|&r| self.pending.get(r)).any(|p| p.mask & STAT_EVENTS != 0);
        let Some(object) = self.registry.get_mut(id) else { return };
        let dev = object.id.0;
        let look = poller::Look::of(object, self.mounts.listing(dev), want_stats);
        let Source::Polled(state) = &mut object.source else { return };
        let Ok(fd) = state.fd.try_clone() else {
            warn!("poll {}: no fd left to hand to the worker", object.path);
            self.stats.error("poll: out of file descriptors");
            let next = now() + object.governance.interval;
            if scheduled {
                self.schedule.at(Slot { object: id, generation: state.generation }, next);
            }
            return self.finish_joins(id, joiners);
        };
        let Some(scan) = state.scan.take() else {
            self.joins.entry(id).or_default().extend(joiners);
            return;
        };
        let urgent = !joiners.is_empty();
        let job = PollJob {
            scheduled,
            urgent,
            ..PollJob::urgent(id, state.generation, fd, look, Some(scan), joiners)
        };
        state.dispatched = Some(now());
        if let Err(job) = self.workers.dispatch(dev, Job::Poll(job)) {
            // No thread: the state comes back and the poll is retried at the next interval.
            let Job::Poll(job) = *job else { return };
            state.scan = job.state;
            state.dispatched = None;
            if scheduled {
                let next = now() + object.governance.interval;
                self.schedule.at(Slot { object: id, generation: state.generation }, next);
            }
            self.finish_joins(id, job.joiners);
        }
    }

    /// A poll of `id` out of turn, its state taken for the worker; None while a poll of it is
    /// in flight.
    pub(crate) fn take_poll_job(&mut self, id: usize) -> Option<PollJob> {
        let object = self.registry.get_mut(id)?;
        let look = poller::Look::of(object, self.mounts.listing(object.id.0), false);
        let Source::Polled(state) = &mut object.source else { return None };
        let fd = state.fd.try_clone().ok()?;
        let scan = state.scan.take()?;
        state.dispatched = Some(now());
        Some(PollJob::urgent(id, state.generation, fd, look, Some(scan), Vec::new()))
    }

    /// Takes back what the workers finished: polls, examined objects, resolved policies.
    pub(crate) fn on_worked(&mut self) {
        for done in self.workers.drain() {
            match done {
                Done::Poll(result) => match self.registry.get(result.object) {
                    Some(object) => {
                        let dev = object.id.0;
                        self.settling.push_back(dev, Step::Polled(Box::new(result)));
                        self.settle_device(dev);
                    }
                    // Gone while the poll ran: its requests learn it.
                    None => {
                        let steps = self.on_polled(result);
                        self.take_steps(steps);
                    }
                },
                Done::Relocated { relocated, poll } => self.on_relocated(relocated, poll),
                Done::Placed { request, placed } => self.on_placed(request, placed),
                Done::Resolved(job) => {
                    if let Some(pending) = self.policy_changes.remove(&job.ticket) {
                        self.apply_policy_change(pending, job.policies);
                    }
                }
            }
        }
    }

    /// Takes back a finished poll: its state, its counters; returns the steps that deliver its
    /// changes, then the requests that waited for it join.
    pub(crate) fn on_polled(&mut self, mut result: PollResult) -> Vec<Step> {
        let id = result.object;
        let joiners = std::mem::take(&mut result.joiners);
        let current = self.registry.get(id).and_then(|o| match &o.source {
            Source::Polled(state) => Some(state.generation),
            Source::Kernel { .. } => None,
        });
        if current != Some(result.generation) {
            // The object went (its slot may hold another by now) while the poll was in flight.
            for request in joiners {
                self.answer_add(request, reply(Errno::NOENT));
            }
            return Vec::new();
        }
        let Some(object) = self.registry.get_mut(id) else { return Vec::new() };
        let Source::Polled(state) = &mut object.source else { return Vec::new() };
        state.dispatched = None;
        let first = result.first;
        let Some(scan) = result.state else {
            // The first listing failed: the object cannot be polled.
            let why = match result.outcome {
                PollOutcome::Failed { op, errno } => {
                    warn!("{}: {op}: {errno}", object.path);
                    errno
                }
                _ => Errno::NOENT,
            };
            let errno = if poller::is_gone(why) { Errno::NOENT } else { why };
            for request in joiners {
                self.answer_add(request, reply(errno));
            }
            if self.registry.get(id).is_some_and(|o| !o.subscribers.is_empty()) {
                // A restored object that cannot be listed any more: its watches end.
                self.object_gone(id);
            } else {
                self.drop_if_unwatched(id);
            }
            return Vec::new();
        };
        if let Some(ancestry) = result.ancestry.take() {
            state.parent = ancestry.get(1).copied();
            let mode = object.governance.mode;
            object.governance = self.policies.govern(&ancestry);
            object.governance.mode = mode;
            state.ancestry = ancestry;
        }
        if first {
            state.pace =
                crate::watch::Pace::estimate(scan.snapshot.len(), scan.snapshot.has_stats());
        }
        state.scan = Some(scan);
        self.counters.add(&result.counters);
        let finished = now();
        if first {
            // A first listing is work like any other poll: the budget pays for it.
            self.pacing.charge(object, &result.counters, finished);
        }
        if result.scheduled {
            self.stats.polls += 1;
            let index = object.governance.policy.unwrap_or(self.policies.list.len());
            if let Some(figures) = self.stats.per_policy.get_mut(index) {
                figures.polls += 1;
                figures.last = result.took;
                figures.worst = figures.worst.max(result.took);
                figures.time += result.took;
                figures.scan.add(&result.counters);
            }
            let generation = result.generation;
            let next = self.pacing.after_poll(object, &result.counters, finished);
            self.schedule.at(Slot { object: id, generation }, next);
        }
        let path = object.path.clone();
        if first {
            let interval = object.governance.interval;
            debug!("{path}: polled every {interval:?} (first listing on its worker)");
            self.schedule_first_poll(Slot { object: id, generation: result.generation });
        }
        self.observe_mount(id, result.observed);
        let mut steps = self.take_outcome(id, &path, result.outcome);
        steps.push(Step::Join { object: id, joiners });
        steps
    }

    /// Takes what a poll of `id` told of its mount; the mount's turn to listing every poll is
    /// logged, once.
    fn observe_mount(&mut self, id: usize, observed: Observed) {
        let Some(object) = self.registry.get(id) else { return };
        if let Some(mount) = self.mounts.observe(object.id.0, observed) {
            let place = mount.mount_point.as_deref().unwrap_or(&object.path);
            warn!(
                "{place} ({}): directories there are listed at every poll from now on: {}",
                mount.fs_type,
                mount.reason.text()
            );
        }
    }

    /// The steps that deliver what a poll found and start the out-of-turn polls that rename
    /// pairing asks for. A directory the poll could not reach is looked for on its worker
    /// first ([`Server::on_relocated`]).
    fn take_outcome(&mut self, id: usize, path: &str, outcome: PollOutcome) -> Vec<Step> {
        if !matches!(outcome, PollOutcome::Gone) {
            if let Some(WatchedObject { source: Source::Polled(state), .. }) =
                self.registry.get_mut(id)
            {
                state.misses = 0;
                state.missing_since = None;
            }
        }
        let changes = match outcome {
            PollOutcome::Unchanged => Vec::new(),
            PollOutcome::Changes(changes) => changes,
            PollOutcome::Gone => {
                let job = relocate::plan_refind(&self.registry, id);
                if job.is_some_and(|job| self.start_relocation(job, None)) {
                    return Vec::new();
                }
                if !self.may_have_moved(id) {
                    self.object_gone(id);
                    return Vec::new();
                }
                Vec::new()
            }
            PollOutcome::Failed { op, errno } => {
                warn!("poll {path}: {op}: {errno}");
                self.stats.error(format!("poll {op}: {errno}"));
                Vec::new()
            }
        };
        self.settle(id, changes)
    }

    /// Feeds: their supervision, and the out-of-turn polls their lines and catch-ups ask for,
    /// inside each device's `max_ops` budget like any poll.
    pub(crate) fn step_feeds(&mut self) {
        let now = now();
        for (id, feed) in self.feeds.step(self.epoll.as_fd(), now, self.registry.objects()) {
            let Some(object) = self.registry.get_mut(id) else { continue };
            if let Some(turn) = self.pacing.hold(object, now) {
                self.feeds.held_back(id, feed, turn);
                continue;
            }
            self.poll_out_of_turn(id);
        }
    }

    /// Polls `id` now unless a poll of it is in flight already.
    pub(crate) fn poll_out_of_turn(&mut self, id: usize) {
        let idle = matches!(
            self.registry.get(id).map(|o| &o.source),
            Some(Source::Polled(state)) if state.scan.is_some()
        );
        if idle {
            self.dispatch(id, false);
        }
    }

    /// Jobs that have waited on a worker longer than `SLOW_SCAN`, by worker (device): the
    /// oldest, and how many wait there. A mount that stopped answering shows here (`status`)
    /// with what waits for it, until it comes back.
    pub(crate) fn slow_scans(&self) -> Vec<StuckJobs> {
        let now = now();
        let mut per_worker: HashMap<u64, StuckJobs> = HashMap::new();
        let mut note = |worker: u64, job: &'static str, what: String, since: Duration| {
            let running = now.saturating_sub(since);
            if running < SLOW_SCAN {
                return;
            }
            let entry = per_worker.entry(worker).or_insert_with(|| StuckJobs {
                worker,
                job,
                what: what.clone(),
                running,
                count: 0,
            });
            entry.count += 1;
            if running > entry.running {
                (entry.job, entry.what, entry.running) = (job, what, running);
            }
        };
        for (_, object) in self.registry.iter() {
            if let Source::Polled(PollState { dispatched: Some(at), .. }) = &object.source {
                note(object.id.0, "poll", object.path.clone(), *at);
            }
        }
        for (_, request) in self.pending.iter().filter(|(_, p)| p.stage == Stage::Placing) {
            let what = format!("an inotify_add_watch of uid {}", request.uid);
            note(request.worker, "add_watch", what, request.since);
        }
        for change in self.policy_changes.values() {
            note(PATHS_WORKER, "policy paths", "finding the policies' paths".into(), change.since);
        }
        for (dev, object, since) in self.settling.relocations() {
            let what = object_path(self.registry.objects(), object).to_owned();
            note(dev, "relocation", what, since);
        }
        let mut list: Vec<StuckJobs> = per_worker.into_values().collect();
        list.sort_by_key(|s| s.worker);
        list
    }

    /// The first poll of a new polled object, spread over its interval (stretched when its
    /// budget group needs it).
    pub(crate) fn schedule_first_poll(&mut self, slot: Slot) {
        let fraction = self.schedule.spread_fraction();
        if let Some(object) = self.registry.get(slot.object) {
            let first = self.pacing.first_poll(object, now(), fraction);
            self.schedule.at(slot, first);
        }
    }

    /// Polls `id` at once, on the event loop's thread: used when a subscriber that needs
    /// attributes joins, to deliver pending changes and take a baseline with attributes.
    pub(crate) fn poll_object(&mut self, id: usize, want_stats: bool) {
        let Some(object) = self.registry.get_mut(id) else { return };
        let listing = self.mounts.listing(object.id.0);
        let (outcome, observed) =
            poller::poll(object, listing, want_stats, &mut self.scan_io, &mut self.counters);
        let (path, dev) = (object.path.clone(), object.id.0);
        self.observe_mount(id, observed);
        let steps = self.take_outcome(id, &path, outcome);
        self.settling.push_front(dev, steps);
        self.settle_device(dev);
    }
}
