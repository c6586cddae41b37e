//! From what a poll found to the subscribers' queues, in order per device (`settling`): renames
//! paired across directories (`moves`), directories renamed on the server followed on their
//! worker (`relocate`), one fan-out path for polled and kernel events (`fanout`), and the end
//! of an object that is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fakenotify_proto::inotify::{
    IN_ATTRIB, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_ISDIR, IN_MOVED_FROM, IN_MOVED_TO,
};

use crate::diff::Change;
use crate::fanout;
use crate::instance::QueuedEvent;
use crate::moves;
use crate::relocate;
use crate::server::{now, object_path, Server};
use crate::settling::Step;
use crate::watch::{PollState, Source, Subscriber};
use crate::workers::{Job, PollJob, PollResult};

/// Polls in a row that may miss a directory before it counts as gone whatever the listings say,
/// unless less than `MIN_MISSING` passed since the first: pairing a rename across directories
/// takes a poll of each, which the worker of a busy device may run late, so short
/// intervals get that long.
const MAX_MISSES: u8 = 5;
const MIN_MISSING: Duration = Duration::from_secs(2);

/// A fresh non-zero rename cookie.
fn take_cookie(next: &mut u32) -> u32 {
    let cookie = *next;
    *next = next.checked_add(1).unwrap_or(1);
    cookie
}

impl Server {
    /// Takes the steps of device `dev` that may be taken now: all of them, unless one needs
    /// a relocation on the worker ([`Settling`]).
    pub(crate) fn settle_device(&mut self, dev: u64) {
        while let Some(step) = self.settling.next(dev) {
            self.take_step(dev, step);
        }
    }

    /// Takes `steps` of an object no longer in the registry, whose device is not known.
    pub(crate) fn take_steps(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Join { object, joiners } => self.finish_joins(object, joiners),
                Step::PollNow(object) => self.poll_out_of_turn(object),
                Step::Polled(_) | Step::Deliver { .. } | Step::Followed { .. } => {}
            }
        }
    }

    fn take_step(&mut self, dev: u64, step: Step) {
        match step {
            Step::Polled(result) => {
                let steps = self.on_polled(*result);
                self.settling.push_front(dev, steps);
            }
            Step::Deliver { object, change, paired } => {
                let moved_dir =
                    change.mask == IN_MOVED_TO | IN_ISDIR || change.mask == IN_CREATE | IN_ISDIR;
                if moved_dir && self.start_follow(object, &change, paired) {
                    self.settling.push_front(dev, vec![Step::Followed { object, change }]);
                } else {
                    self.deliver(object, std::slice::from_ref(&change));
                }
            }
            Step::Followed { object, change } => {
                self.deliver(object, std::slice::from_ref(&change));
            }
            Step::PollNow(object) => self.poll_out_of_turn(object),
            Step::Join { object, joiners } => {
                self.finish_joins(object, joiners);
                if self.joins.contains_key(&object) {
                    // Requests that came while this poll ran wait for one of their own.
                    self.poll_out_of_turn(object);
                }
            }
        }
    }

    /// A directory new under `parent` as `change.name` (a move in, or a create) whose inode a
    /// watch already holds has moved there: its watch follows it, as a kernel watch does, on
    /// the worker ([`relocate`]). Whether a relocation started, before which the change waits.
    ///
    /// Where the move was not paired (a lone IN_MOVED_TO, or an IN_CREATE because another
    /// rename took the old name within one poll, so that no delete of it was seen), the
    /// directory is polled there too before the event goes out. A client lists a directory
    /// that is new to it; had the directory's own poll come after that, it would tell the
    /// client of changes its listing already showed. After a paired IN_MOVED_TO the client
    /// moves what it knew of the subtree, and the directory's changes apply to that afterwards.
    fn start_follow(&mut self, parent: usize, change: &Change, paired: bool) -> bool {
        let Some(job) = relocate::plan_follow(&self.registry, parent, change.ino, &change.name)
        else {
            return false;
        };
        let child = job.task.object();
        let poll = if paired { None } else { self.take_poll_job(child) };
        self.start_relocation(job, poll)
    }

    /// Hands `job` to its device's worker; that device's steps wait for it. Whether it went.
    pub(crate) fn start_relocation(
        &mut self,
        job: relocate::RelocateJob,
        poll: Option<PollJob>,
    ) -> bool {
        let (dev, object) = (job.dev, job.task.object());
        match self.workers.dispatch(dev, Job::Relocate { job, poll }) {
            Ok(()) => {
                self.settling.relocating(dev, object, now());
                true
            }
            Err(job) => {
                // No thread: the poll's state goes back untouched.
                if let Job::Relocate { poll: Some(poll), .. } = *job {
                    let steps = self.on_polled(crate::workers::unrun(poll));
                    self.settling.push_front(dev, steps);
                }
                false
            }
        }
    }

    /// A relocation came back: the directories found take their new fds and paths, and the
    /// device's steps go on, the poll of a followed directory first.
    pub(crate) fn on_relocated(
        &mut self,
        relocated: relocate::Relocated,
        poll: Option<PollResult>,
    ) {
        let found_it = relocated.found_it();
        let relocate::Relocated { dev, task, identity, found } = relocated;
        let object = task.object();
        let same = self.registry.get(object).map(|o| o.id) == identity;
        relocate::apply(&mut self.registry, found);
        self.settling.relocated(dev);
        let steps = match task {
            relocate::Task::Follow { .. } => {
                if found_it {
                    let path = object_path(self.registry.objects(), object);
                    debug!("{path}: watch follows the renamed directory");
                }
                match poll {
                    Some(poll) => vec![Step::Polled(Box::new(poll))],
                    None => Vec::new(),
                }
            }
            // The directory was dropped meanwhile (its watches ended).
            relocate::Task::Refind { .. } if !same => Vec::new(),
            relocate::Task::Refind { .. } if found_it => {
                let path = object_path(self.registry.objects(), object);
                debug!("{path}: watch found its directory again after a rename above it");
                self.settle(object, Vec::new())
            }
            relocate::Task::Refind { .. } if self.may_have_moved(object) => {
                self.settle(object, Vec::new())
            }
            relocate::Task::Refind { .. } => {
                self.object_gone(object);
                Vec::new()
            }
        };
        self.settling.push_front(dev, steps);
        self.settle_device(dev);
    }

    /// Pairs renames across polled directories of one device: the steps that deliver what is
    /// settled, then poll the directories pairing asks for.
    pub(crate) fn settle(&mut self, id: usize, changes: Vec<Change>) -> Vec<Step> {
        if changes.is_empty() && !self.moves.waits_on(id) {
            // The common poll: nothing found, nothing held. No walk over the other objects.
            return Vec::new();
        }
        let Some(object) = self.registry.get(id) else { return Vec::new() };
        let dev = object.id.0;
        let others = self.registry.polled_dirs_on(dev, id);
        let created: HashSet<u64> = changes
            .iter()
            .filter(|c| c.mask & IN_CREATE != 0 && c.ino != 0)
            .map(|c| c.ino)
            .collect();
        let mut elsewhere: HashMap<u64, usize> = HashMap::new();
        if !created.is_empty() {
            for &other in &others {
                let Some(Source::Polled(PollState { scan: Some(state), .. })) =
                    self.registry.get(other).map(|o| &o.source)
                else {
                    continue;
                };
                for entry in state.snapshot.entries().iter().filter(|e| created.contains(&e.ino)) {
                    elsewhere.entry(entry.ino).or_insert(other);
                }
            }
        }
        let context = moves::Context { hold_deletes: !others.is_empty(), elsewhere: &elsewhere };
        let next_cookie = &mut self.next_cookie;
        let mut cookie = || take_cookie(next_cookie);
        let settled = self.moves.settle(id, dev, changes, &context, &mut cookie);
        let deliveries = settled.deliveries;
        let mut steps: Vec<Step> = deliveries
            .iter()
            .map(|delivery| {
                // Both halves of a pair are settled together, so a MOVED_FROM elsewhere in
                // this list is the only sign of a paired move.
                let change = &delivery.change;
                let paired = change.mask & IN_MOVED_TO != 0
                    && deliveries.iter().any(|d| {
                        d.change.mask & IN_MOVED_FROM != 0 && d.change.pair == change.pair
                    });
                Step::Deliver { object: delivery.object, change: change.clone(), paired }
            })
            .collect();
        steps.extend(settled.poll_now.into_iter().map(Step::PollNow));
        steps
    }

    /// Whether a polled directory that cannot be found (nor found again by [`relocate`]) may only have
    /// moved, so that it waits for another poll rather than counting as gone. Behind a
    /// path-based FUSE server (bindfs, rclone, sshfs, mergerfs) a rename on the server of the
    /// directory or of any directory above it leaves the daemon's fd dangling until the poll
    /// of the listing that shows the rename hands it a fresh one. So it waits one poll, and
    /// then as long as a polled listing still holds it (that directory is polled at once to
    /// settle it) or such a listing may be in flight, up to `MAX_MISSES` polls in a row and at
    /// least `MIN_MISSING`.
    pub(crate) fn may_have_moved(&mut self, id: usize) -> bool {
        let Some(object) = self.registry.get(id) else { return false };
        if !object.is_dir || !object.is_polled() {
            return false;
        }
        let identity = object.id;
        let holders: Vec<usize> =
            self.registry.listed_in(identity).into_iter().map(|(holder, _)| holder).collect();
        let in_flight = self.registry.iter().any(|(other, o)| {
            other != id
                && o.id.0 == identity.0
                && o.is_dir
                && matches!(&o.source, Source::Polled(PollState { scan: None, .. }))
        });
        let Some(Source::Polled(state)) = self.registry.get_mut(id).map(|o| &mut o.source) else {
            return false;
        };
        state.misses = state.misses.saturating_add(1);
        let since = *state.missing_since.get_or_insert_with(now);
        let unsure = !holders.is_empty() || in_flight;
        let patient = state.misses < MAX_MISSES || now().saturating_sub(since) < MIN_MISSING;
        let wait = state.misses == 1 || (unsure && patient);
        if wait {
            for holder in holders {
                self.poll_out_of_turn(holder);
            }
        } else {
            let misses = state.misses;
            debug!(
                "{}: not found in {misses} polls ({} listings hold its inode)",
                object_path(self.registry.objects(), id),
                holders.len()
            );
        }
        wait
    }

    /// Sends `changes` of object `id` (cookies assigned) to each subscriber that asked for them.
    fn deliver(&mut self, id: usize, changes: &[Change]) {
        let events: Vec<fanout::Event<'_>> = changes
            .iter()
            .map(|c| fanout::Event { mask: c.mask, cookie: c.pair, name: &c.name })
            .collect();
        self.fan_out(id, &events);
    }

    /// The one fan-out path: queues each of `events` of object `id` for the subscribers that
    /// want it (`fanout`), and ends the IN_ONESHOT watches that got theirs.
    pub(crate) fn fan_out(&mut self, id: usize, events: &[fanout::Event<'_>]) {
        let Some(object) = self.registry.get(id) else { return };
        let own_closes = &mut self.own_closes;
        let fanned = fanout::fan_out(&object.subscribers, events, |instance, wd| {
            own_closes.remove(&(instance, wd))
        });
        for (key, wd, index) in fanned.deliveries {
            let event = &events[index];
            if let Some(instance) = self.instances.get_mut(&key) {
                instance.push(QueuedEvent {
                    wd,
                    mask: event.mask,
                    cookie: event.cookie,
                    name: event.name.into(),
                });
                self.dirty.insert(key);
            }
        }
        for (key, wd) in fanned.ended {
            self.unsubscribe(key, wd, id);
        }
    }

    /// Delivers what the move tracker held back for `id`, which is no longer polled.
    pub(crate) fn release_held(&mut self, id: usize) {
        let next_cookie = &mut self.next_cookie;
        for delivery in self.moves.release(id, &mut || take_cookie(next_cookie)) {
            self.deliver(delivery.object, std::slice::from_ref(&delivery.change));
        }
    }

    /// The watched object disappeared: IN_DELETE for what it held, IN_DELETE_SELF, IN_IGNORED.
    pub(crate) fn object_gone(&mut self, id: usize) {
        self.release_held(id);
        let Some(object) = self.registry.get(id) else { return };
        let mut changes = Vec::new();
        if let Source::Polled(PollState { scan: Some(state), .. }) = &object.source {
            for entry in state.snapshot.entries() {
                let isdir = if entry.is_dir { IN_ISDIR } else { 0 };
                changes.push(Change {
                    mask: IN_DELETE | isdir,
                    name: state.snapshot.name(entry).to_vec(),
                    ..Change::default()
                });
            }
        }
        if !object.is_dir {
            // Unlinking a watched file drops its link count first, as the kernel reports.
            changes.push(Change { mask: IN_ATTRIB, ..Change::default() });
        }
        changes.push(Change { mask: IN_DELETE_SELF, ..Change::default() });
        debug!("{}: gone", object.path);
        self.deliver(id, &changes);
        let subscribers: Vec<Subscriber> =
            self.registry.get(id).map(|o| o.subscribers.clone()).unwrap_or_default();
        for sub in subscribers {
            self.unsubscribe(sub.instance, sub.wd, id);
        }
    }
}
