//! `inotify_add_watch` and `inotify_rm_watch`: which object a request watches, how it is
//! watched (a kernel watch for a local object, polled for a remote one), and the subscriptions
//! that tie instances' wds to objects, with the inotify rules for masks and wds.
//!
//! An object on a remote mount is examined and first listed on its device's worker
//! (`place`, `workers`): the request waits for it in `pending`, and nothing else does.

use std::os::fd::{AsFd, OwnedFd};

use fakenotify_proto::inotify::{
    watch_mask_is_valid, IN_CLOSE_NOWRITE, IN_MASK_CREATE, IN_ONLYDIR,
};
use fakenotify_proto::record::Reply;
use rustix::fs::FileType;
use rustix::io::Errno;

use crate::config::Mode;
use crate::fstype;
use crate::instance::Instance;
use crate::pending::{PendingAdd, ReplyTo, Stage};
use crate::place::{self, PlaceJob, Placed};
use crate::policy;
use crate::poller;
use crate::schedule::Slot;
use crate::server::{now, object_path, reply, Server};
use crate::usage::Object;
use crate::watch::{PollState, Source, WatchedObject, STAT_EVENTS};
use crate::wds::{self, Subscribed};
use crate::workers::{Job, PollJob};

/// Where a new object's events come from (`Server::placement`).
struct Placement {
    governance: policy::Governance,
    remote: Option<&'static str>,
    poll: bool,
}

/// The answer to a request that joined a polled object, and whether it made a new wd.
struct Joined {
    reply: Reply,
    new_wd: bool,
}

/// `inotify_add_watch` requests of one uid that may wait on workers at once; past it they get
/// ENOSPC. An application adds its watches one at a time per thread.
const MAX_PENDING_PER_UID: usize = 64;

impl Server {
    /// `inotify_add_watch` for instance `key` on the object the client opened.
    pub(crate) fn add_watch(
        &mut self,
        key: u64,
        uid: u32,
        mask: u32,
        object_fd: &OwnedFd,
    ) -> Reply {
        if !watch_mask_is_valid(mask) {
            return reply(Errno::INVAL);
        }
        let st = match rustix::fs::fstat(object_fd) {
            Ok(st) => st,
            // Gone on the server since the application's path lookup.
            Err(errno) if poller::is_gone(errno) => return reply(Errno::NOENT),
            Err(_) => return reply(Errno::BADF),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if mask & IN_ONLYDIR != 0 && !is_dir {
            return reply(Errno::NOTDIR);
        }
        let identity = (st.st_dev, st.st_ino);
        let mut existing = self.registry.find(identity);
        if existing.is_some_and(|id| self.registry.get(id).is_some_and(WatchedObject::is_polled))
            && place::fd_is_stale(object_fd.as_fd(), identity.1, true)
        {
            // A path the server no longer has, opened through a dentry the kernel still
            // caches (FUSE keeps one for a second): the kernel would not find the path.
            return reply(Errno::NOENT);
        }
        if let Some(id) = existing.filter(|&id| self.is_stale(id)) {
            // The inode number was freed and reused by the object being added: the watched
            // object is gone, as the kernel would have said when the old inode died.
            self.object_gone(id);
            existing = None;
        }
        if let Some(id) = existing {
            if self.instances.get(&key).is_some_and(|i| i.wds.wd_for(id).is_some()) {
                return self.update_watch(id, key, mask, object_fd);
            }
        }
        let placement = match existing {
            Some(_) => None,
            None => Some(self.placement(object_fd, is_dir, identity)),
        };
        let local = placement.as_ref().is_some_and(|p| !p.poll);
        let instance_kernel = self.instances.get(&key).and_then(|i| i.kernel.as_ref());
        let rewatch = local && instance_kernel.is_some_and(|k| k.watches(identity));
        let watches: usize =
            self.instances.values().filter(|i| i.uid == uid).map(Instance::watch_count).sum();
        let limit = self.settings.limits.max_user_watches as usize;
        if local && (rewatch || watches < limit) {
            return self.add_kernel_watch(key, mask, object_fd, identity, placement.as_ref());
        }
        if watches >= limit {
            debug!("uid {uid} reached max_user_watches {}", self.settings.limits.max_user_watches);
            self.stats.error("limit: max_user_watches");
            return reply(Errno::NOSPC);
        }
        if let Some(id) =
            existing.filter(|&id| self.registry.get(id).is_some_and(|o| o.is_polled()))
        {
            if let Err(errno) = self.polled_budget(uid, id, Object::Joined) {
                return reply(errno);
            }
        }
        let (id, joined) = match existing {
            Some(id) => {
                self.poll_before_joining(id, mask);
                (id, true)
            }
            None => {
                let placement = placement.expect("a new object was placed above");
                match self.create_placed_object(object_fd, is_dir, identity, mask, placement) {
                    Ok(id) => (id, false),
                    Err(errno) => return reply(errno),
                }
            }
        };
        let answer = self.subscribe(key, uid, mask, id).reply;
        if answer.errno != 0 {
            // A new object over the uid's budget goes again at once.
            self.drop_if_unwatched(id);
        } else if joined {
            // A new kernel watch already has this mask.
            self.refresh_kernel_mask(id, object_fd);
        }
        answer
    }

    /// Whether a polled object's fd no longer reaches an inode of its identity.
    fn is_stale(&self, id: usize) -> bool {
        let Some(object) = self.registry.get(id) else { return false };
        let Source::Polled(state) = &object.source else { return false };
        place::fd_is_stale(state.fd.as_fd(), object.id.1, object.governance.force_sync)
    }

    /// `inotify_add_watch` on an object of a remote mount: what needs its filesystem goes to the
    /// device's worker ([`place::place`]), and the request waits for it ([`Server::on_placed`]).
    pub(crate) fn start_remote_add(
        &mut self,
        key: u64,
        uid: u32,
        mask: u32,
        fd: OwnedFd,
        worker: u64,
        reply_to: ReplyTo,
    ) -> Option<Reply> {
        // What waits costs memory and a worker's time: each uid has a bound, as for watches.
        let waiting = self.pending.iter().filter(|(_, p)| p.uid == uid && !p.cancelled).count();
        if waiting >= MAX_PENDING_PER_UID {
            self.warn_peer(
                uid,
                "pending",
                format_args!(
                    "uid {uid}: {waiting} inotify_add_watch requests wait on slow mounts; \
                     refusing more with ENOSPC"
                ),
            );
            self.stats.error("limit: pending requests per uid");
            return Some(reply(Errno::NOSPC));
        }
        let request = self.pending.insert(PendingAdd {
            key,
            uid,
            mask,
            reply_to,
            since: now(),
            worker,
            stage: Stage::Placing,
            cancelled: false,
        });
        let watched = self.registry.watched();
        let job = PlaceJob { request, fd, uid, mask, watched };
        if self.workers.dispatch(worker, Job::Place(job)).is_err() {
            self.pending.remove(request);
            return Some(reply(Errno::NOMEM));
        }
        None
    }

    /// The worker examined the object of request `request`: it joins a polled object, or a new
    /// one is made, whose first listing runs on the worker too.
    pub(crate) fn on_placed(&mut self, request: usize, placed: Result<Placed, Errno>) {
        let Some(pending) = self.pending.get(request) else { return };
        if pending.cancelled {
            self.pending.remove(request);
            return;
        }
        let (key, uid, mask) = (pending.key, pending.uid, pending.mask);
        let placed = match placed {
            Ok(placed) => placed,
            Err(errno) => {
                if errno == Errno::ACCESS {
                    debug!("instance {key} (uid {uid}): add_watch refused: {errno}");
                    self.stats.error("refused: unproven read access");
                }
                self.answer_add(request, reply(errno));
                return;
            }
        };
        if mask & IN_ONLYDIR != 0 && !placed.is_dir {
            self.answer_add(request, reply(Errno::NOTDIR));
            return;
        }
        let existing = self.registry.find(placed.identity);
        let polled = existing.filter(|&id| self.registry.get(id).is_some_and(|o| o.is_polled()));
        if polled.is_some() && placed.stale {
            self.answer_add(request, reply(Errno::NOENT));
            return;
        }
        let governance = self.policies.govern(&placed.ancestry);
        let poll = match governance.mode {
            Mode::Poll => true,
            Mode::Inotify => false,
            Mode::Auto => placed.remote.is_some(),
        };
        if polled.is_none() && (existing.is_some() || !poll) {
            // A kernel watch: a policy asks for one on this mount, or the object is one the
            // shared inotify fd watches since a restart. Added here, as for a local object.
            let answer = self.add_watch(key, uid, mask, &placed.kept);
            {
                self.answer_add(request, answer);
                return;
            }
        }
        let rewatch = polled
            .is_some_and(|id| self.instances.get(&key).is_some_and(|i| i.wds.wd_for(id).is_some()));
        if !rewatch {
            let watches: usize =
                self.instances.values().filter(|i| i.uid == uid).map(Instance::watch_count).sum();
            if watches >= self.settings.limits.max_user_watches as usize {
                debug!("uid {uid} reached max_user_watches");
                self.stats.error("limit: max_user_watches");
                {
                    self.answer_add(request, reply(Errno::NOSPC));
                    return;
                }
            }
        }
        match polled {
            Some(id) => {
                if rewatch && mask & IN_MASK_CREATE != 0 {
                    self.answer_add(request, reply(Errno::EXIST));
                    return;
                }
                if !rewatch {
                    if let Err(errno) = self.polled_budget(uid, id, Object::Joined) {
                        self.answer_add(request, reply(errno));
                        return;
                    }
                }
                self.join_after_poll(request, id);
            }
            None => self.create_remote_object(request, placed, governance),
        }
    }

    /// A new polled object for request `request`, in the registry at once (so that requests
    /// for the same object join it) and listed for the first time on its worker.
    fn create_remote_object(
        &mut self,
        request: usize,
        placed: Placed,
        governance: policy::Governance,
    ) {
        let Some(mask) = self.pending.get(request).map(|p| p.mask) else { return };
        let generation = self.next_generation;
        self.next_generation += 1;
        let Placed { identity, is_dir, remote, kept, parent, path, ancestry, .. } = placed;
        self.counters.add(&placed.counters);
        let first = match placed.first {
            Some(Err((op, errno))) => {
                warn!("{path}: {op}: {errno}");
                let errno = if poller::is_gone(errno) { Errno::NOENT } else { errno };
                self.answer_add(request, reply(errno));
                return;
            }
            Some(Ok(scan)) => Some(scan),
            None => None,
        };
        let parent = parent.filter(|&parent| self.registry.find_polled(parent).is_some());
        if let Some(scan) = first {
            // Listed by the worker that examined it: the request joins at once.
            let mut state = PollState::new(kept, scan, generation, ancestry);
            state.parent = parent;
            let id = self.insert_polled(identity, is_dir, path, governance, state, remote);
            if let Some(object) = self.registry.get(id) {
                // A first listing is work like any other poll: the budget pays for it.
                self.pacing.charge(object, &placed.counters, now());
            }
            self.schedule_first_poll(Slot { object: id, generation });
            if let Some(pending) = self.pending.get_mut(request) {
                pending.stage = Stage::Joining(id);
            }
            return self.finish_joins(id, vec![request]);
        }
        let Ok(fd) = kept.try_clone() else {
            self.answer_add(request, reply(Errno::MFILE));
            return;
        };
        let with_stats = mask & STAT_EVENTS != 0;
        let look = poller::Look::first(identity, is_dir, with_stats, governance.force_sync);
        let mut state = PollState::unlisted(kept, generation, with_stats, now());
        state.parent = parent;
        state.ancestry = ancestry;
        let id = self.insert_polled(identity, is_dir, path, governance, state, remote);
        if let Some(pending) = self.pending.get_mut(request) {
            pending.stage = Stage::Joining(id);
        }
        let job = PollJob::urgent(id, generation, fd, look, None, vec![request]);
        if let Err(job) = self.workers.dispatch(identity.0, Job::Poll(job)) {
            let Job::Poll(job) = *job else { return };
            for request in job.joiners {
                self.answer_add(request, reply(Errno::NOMEM));
            }
            self.drop_if_unwatched(id);
        }
    }

    /// A polled object restored from the fd store on a remote mount: in the registry at once,
    /// so that its watches are restored with it, and listed for the first time on its worker,
    /// which finds its ancestry (for policies) too. Until then it matches policies by itself.
    pub(crate) fn restore_remote_object(
        &mut self,
        fd: OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
    ) -> usize {
        let generation = self.next_generation;
        self.next_generation += 1;
        let governance = self.policies.govern(&[identity]);
        let with_stats = mask & STAT_EVENTS != 0;
        let look = poller::Look::first(identity, is_dir, with_stats, governance.force_sync);
        let dup = fd.try_clone();
        let path = place::fd_path(fd.as_fd());
        let state = PollState::unlisted(fd, generation, with_stats, now());
        let id = self.insert_polled(identity, is_dir, path, governance, state, Some("remote"));
        let job = dup.map(|fd| PollJob {
            find_ancestry: true,
            ..PollJob::urgent(id, generation, fd, look, None, Vec::new())
        });
        let dispatched =
            job.is_ok_and(|job| self.workers.dispatch(identity.0, Job::Poll(job)).is_ok());
        if !dispatched {
            warn!("restart: {}: no worker to list it", object_path(self.registry.objects(), id));
        }
        id
    }

    /// Puts a polled object in the registry and counts it on its mount (`remote`: what `statfs`
    /// named, where known).
    fn insert_polled(
        &mut self,
        identity: policy::Identity,
        is_dir: bool,
        path: String,
        governance: policy::Governance,
        state: PollState,
        remote: Option<&'static str>,
    ) -> usize {
        let object = WatchedObject {
            id: identity,
            is_dir,
            path,
            governance,
            subscribers: Vec::new(),
            source: Source::Polled(state),
        };
        let id = self.registry.insert(object);
        self.mounts.attach(identity.0, remote.unwrap_or("local"));
        id
    }

    /// Request `request` joins the polled object `id` after its next poll: changes made so far
    /// go to the current subscribers under their current masks, as the kernel would have
    /// delivered them, and the poll takes attributes if the new mask needs them.
    fn join_after_poll(&mut self, request: usize, id: usize) {
        if let Some(pending) = self.pending.get_mut(request) {
            pending.stage = Stage::Joining(id);
        }
        self.joins.entry(id).or_default().push(request);
        self.poll_out_of_turn(id);
    }

    /// The poll that `joiners` waited for came back (or the object is gone): each joins, or
    /// learns why not.
    pub(crate) fn finish_joins(&mut self, id: usize, joiners: Vec<usize>) {
        for request in joiners {
            let Some(pending) = self.pending.get(request) else { continue };
            if pending.cancelled {
                self.pending.remove(request);
                continue;
            }
            let (key, uid, mask) = (pending.key, pending.uid, pending.mask);
            let answer = match self.registry.get(id) {
                Some(object) if object.is_polled() => self.subscribe(key, uid, mask, id),
                _ => Joined { reply: reply(Errno::NOENT), new_wd: false },
            };
            if !self.answer_add(request, answer.reply) && answer.new_wd {
                // Nobody heard of the wd: the watch goes as if never made.
                self.end_watch(key, answer.reply.value, id, false);
            }
        }
        self.drop_if_unwatched(id);
    }

    /// Subscribes instance `key` to the polled object `id` with `mask`, or changes the mask of
    /// its watch there, by the rules of `wds`.
    fn subscribe(&mut self, key: u64, uid: u32, mask: u32, id: usize) -> Joined {
        let refused = |errno| Joined { reply: reply(errno), new_wd: false };
        let Some(instance) = self.instances.get(&key) else { return refused(Errno::INVAL) };
        let rewatch = instance.wds.wd_for(id).is_some();
        let new_object = self.registry.get(id).is_some_and(|o| o.subscribers.is_empty());
        if new_object && !rewatch {
            // Its listing is known only now; over the uid's budget it goes again.
            if let Err(errno) = self.polled_budget(uid, id, Object::New) {
                return refused(errno);
            }
        }
        let (Some(instance), Some(object)) =
            (self.instances.get_mut(&key), self.registry.get_mut(id))
        else {
            return refused(Errno::NOENT);
        };
        match wds::subscribe(&mut instance.wds, &mut object.subscribers, key, id, mask) {
            Ok(Subscribed { wd, new }) => {
                if new {
                    debug!("instance {key}: wd {wd} watches {} (mask {mask:#x})", object.path);
                }
                Joined { reply: Reply { errno: 0, value: wd }, new_wd: new }
            }
            Err(errno) => refused(errno),
        }
    }

    /// Ends watch `wd` of instance `key` on object `id`: `IN_IGNORED` to the instance if
    /// `told` (the application had the wd), and the object goes once nobody watches it.
    fn end_watch(&mut self, key: u64, wd: i32, id: usize, told: bool) {
        self.own_closes.remove(&(key, wd));
        let mut no_subscribers = Vec::new();
        let subscribers =
            self.registry.get_mut(id).map_or(&mut no_subscribers, |o| &mut o.subscribers);
        if let Some(instance) = self.instances.get_mut(&key) {
            if let Some(ignored) = wds::end_watch(&mut instance.wds, subscribers, key, wd, told) {
                instance.push(ignored);
                self.dirty.insert(key);
            }
        } else {
            subscribers.retain(|s| !(s.instance == key && s.wd == wd));
        }
        self.drop_if_unwatched(id);
    }

    /// Drops the object `id` if no watch and no request holds it.
    pub(crate) fn drop_if_unwatched(&mut self, id: usize) {
        let unwatched = self.registry.get(id).is_some_and(|o| o.subscribers.is_empty());
        let waited_for = self.joins.contains_key(&id)
            || self.pending.iter().any(|(_, p)| p.stage == Stage::Joining(id) && !p.cancelled);
        if unwatched && !waited_for {
            self.drop_object(id);
        }
    }

    /// `inotify_add_watch` on a local object: a kernel watch on the instance's own inotify fd,
    /// charged to its user; the kernel answers as for the application itself (ENOSPC over the
    /// user's `max_user_watches`, EEXIST for IN_MASK_CREATE, the same wd for the same object).
    fn add_kernel_watch(
        &mut self,
        key: u64,
        mask: u32,
        object_fd: &OwnedFd,
        identity: policy::Identity,
        placement: Option<&Placement>,
    ) -> Reply {
        let Some(instance) = self.instances.get_mut(&key) else { return reply(Errno::INVAL) };
        let Some(mut kernel) = instance.kernel.take() else { return reply(Errno::NOSPC) };
        let added = kernel.add(object_fd.as_fd(), identity, mask, || instance.wds.allocate());
        instance.kernel = Some(kernel);
        match added {
            Ok((wd, _)) => {
                let forced = placement.is_some_and(|p| p.governance.mode == Mode::Inotify);
                let policy = if forced { ", by policy" } else { "" };
                debug!("instance {key}: wd {wd} is a kernel watch (mask {mask:#x}{policy})");
                Reply { errno: 0, value: wd }
            }
            Err(errno) => {
                debug!("instance {key} (uid {}): kernel watch: {errno}", instance.uid);
                reply(errno)
            }
        }
    }

    /// `inotify_add_watch` on an object the instance already watches: same wd, new mask.
    fn update_watch(&mut self, id: usize, key: u64, mask: u32, object_fd: &OwnedFd) -> Reply {
        if mask & IN_MASK_CREATE != 0 {
            return reply(Errno::EXIST);
        }
        self.poll_before_joining(id, mask);
        let (Some(instance), Some(object)) =
            (self.instances.get_mut(&key), self.registry.get_mut(id))
        else {
            return reply(Errno::NOENT);
        };
        // The same wd, its mask replaced or added to.
        let answer = wds::subscribe(&mut instance.wds, &mut object.subscribers, key, id, mask);
        self.refresh_kernel_mask(id, object_fd);
        match answer {
            Ok(subscribed) => Reply { errno: 0, value: subscribed.wd },
            Err(errno) => reply(errno),
        }
    }

    /// Before a subscriber joins a polled object or changes its mask, changes made so far go
    /// to the current subscribers under their current masks, as the kernel would have
    /// delivered them; the poll also takes attributes if the new mask needs them.
    fn poll_before_joining(&mut self, id: usize, mask: u32) {
        let Some(object) = self.registry.get(id) else { return };
        if object.is_polled() {
            let want_stats = mask & STAT_EVENTS != 0 && !object.needs_stats();
            self.poll_object(id, want_stats);
        }
    }

    /// A new watched object: a kernel watch for a local one, else a polled baseline. A kernel
    /// watch keeps no fd (an open fd would hold back IN_DELETE_SELF and pin the mount); a polled
    /// object keeps a copy of the client's fd in its poll state.
    pub(crate) fn create_object(
        &mut self,
        fd: &OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
    ) -> Result<usize, Errno> {
        let placement = self.placement(fd, is_dir, identity);
        self.create_placed_object(fd, is_dir, identity, mask, placement)
    }

    /// Whether an object is polled or watched by the kernel, and the policy that governs it.
    fn placement(&self, fd: &OwnedFd, is_dir: bool, identity: policy::Identity) -> Placement {
        let ancestry = self.policies.ancestry(fd.as_fd(), identity, is_dir);
        let governance = self.policies.govern(&ancestry);
        // A filesystem that cannot say what it is gets polled, as a kernel watch there could
        // stay silent: a FUSE server without statfs, or a directory renamed behind a
        // path-based one (bindfs, rclone, sshfs), which answers for its old path no more while
        // the kernel's cached dentry still lets the client open it.
        let remote = match rustix::fs::fstatfs(fd) {
            Ok(statfs) => fstype::remote_name(fstype::magic(&statfs)),
            Err(_) => Some("unknown filesystem"),
        };
        let poll = match governance.mode {
            Mode::Poll => true,
            Mode::Inotify => false,
            Mode::Auto => remote.is_some(),
        };
        Placement { governance, remote, poll }
    }

    fn create_placed_object(
        &mut self,
        fd: &OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
        placement: Placement,
    ) -> Result<usize, Errno> {
        let Placement { governance, remote, poll } = placement;
        // The path is only for people: status and log lines. A kernel watch names it only in
        // debug lines, so the common local add_watch skips the readlink.
        let id_text = || format!("(dev {} ino {})", identity.0, identity.1);
        let path = if poll || crate::log::enabled(crate::config::LogLevel::Debug) {
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| id_text())
        } else {
            id_text()
        };
        let mut object = WatchedObject {
            id: identity,
            is_dir,
            path,
            governance,
            subscribers: Vec::new(),
            source: Source::Kernel { wd: -1 },
        };
        if !poll {
            match self.kernel.watch(fd.as_fd(), mask) {
                Ok(kwd) => {
                    object.source = Source::Kernel { wd: kwd };
                    debug!("{}: kernel watch (local filesystem)", object.path);
                    return Ok(self.registry.insert(object));
                }
                Err(errno) => {
                    warn!("{}: kernel watch failed ({errno}); polling instead", object.path)
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let with_stats = mask & STAT_EVENTS != 0;
        let own_fd = place::readable(fd, is_dir)
            .inspect_err(|errno| warn!("{}: reopening for polling: {errno}", object.path))?;
        let mut state = poller::baseline(
            own_fd,
            &object,
            with_stats,
            &mut self.scan_io,
            &mut self.counters,
            generation,
        )
        .map_err(|(op, errno)| {
            warn!("{}: {op}: {errno}", object.path);
            errno
        })?;
        // Kept, so that applying policies anew makes no filesystem call.
        state.ancestry = policy::ancestry(fd.as_fd(), identity, is_dir);
        if is_dir {
            // One `fstatat` of "..", not a search of every listing for this inode.
            state.parent = rustix::fs::statat(fd, c"..", rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| (st.st_dev, st.st_ino))
                .filter(|&parent| self.registry.find_polled(parent).is_some());
        }
        object.source = Source::Polled(state);
        self.mounts.attach(identity.0, remote.unwrap_or("local"));
        let interval = object.governance.interval;
        debug!("{}: polled every {interval:?} ({})", object.path, remote.unwrap_or("policy"));
        let id = self.registry.insert(object);
        self.schedule_first_poll(Slot { object: id, generation });
        Ok(id)
    }

    /// Widens a kernel watch to the union of its subscribers' masks, through the fd of the
    /// request that changed them. Narrowing needs no syscall: events are filtered per subscriber.
    fn refresh_kernel_mask(&mut self, id: usize, fd: &OwnedFd) {
        let Some(object) = self.registry.get(id) else { return };
        if let Source::Kernel { wd } = object.source {
            if let Err(errno) = self.kernel.watch(fd.as_fd(), object.union_mask()) {
                warn!("{}: updating kernel watch {wd}: {errno}", object.path);
            }
        }
    }

    pub(crate) fn rm_watch(&mut self, key: u64, wd: i32) -> Reply {
        let Some(instance) = self.instances.get_mut(&key) else { return reply(Errno::INVAL) };
        let Some(object) = instance.wds.watches.get(&wd).map(|w| w.object) else {
            return match instance.kernel.as_mut().map(|k| k.remove(wd)) {
                Some(Ok(())) => {
                    // The kernel queued IN_IGNORED: it goes out before the reply.
                    self.forward_instance_kernel(key);
                    Reply { errno: 0, value: 0 }
                }
                _ => reply(Errno::INVAL),
            };
        };
        self.unsubscribe(key, wd, object);
        Reply { errno: 0, value: 0 }
    }

    /// Ends one watch: IN_IGNORED to its instance, and the object goes once nobody watches it.
    pub(crate) fn unsubscribe(&mut self, key: u64, wd: i32, id: usize) {
        self.end_watch(key, wd, id, true);
    }

    pub(crate) fn drop_object(&mut self, id: usize) {
        let Some(object) = self.registry.remove(id) else { return };
        // Requests waiting to join it learn that it is gone; those whose poll is in flight learn
        // it when the poll comes back for an object that is no longer there.
        for request in self.joins.remove(&id).unwrap_or_default() {
            self.answer_add(request, reply(Errno::NOENT));
        }
        // Held halves for this object have nobody to go to; those for others go out now.
        self.release_held(id);
        match object.source {
            Source::Kernel { wd } => self.kernel.unwatch(wd),
            Source::Polled(_) => self.mounts.detach(object.id.0),
        }
        debug!("{}: no longer watched", object.path);
    }

    /// The client opened the object to prove read access, and that open file's last close, here
    /// or in the client, comes after the watch was added. A kernel watch that reports
    /// IN_CLOSE_NOWRITE will see it: the subscriber must not, as a real `inotify_add_watch`
    /// opens nothing. Another close of the object at the same moment is indistinguishable from
    /// it, so whichever comes first is the one held back.
    pub(crate) fn expect_own_close(&mut self, key: u64, wd: i32) {
        let Some(instance) = self.instances.get(&key) else { return };
        if let Some(events) = instance.kernel.as_ref().and_then(|k| k.events_of(wd)) {
            if events & IN_CLOSE_NOWRITE != 0 {
                self.own_closes.insert((key, wd));
            }
            return;
        }
        let Some(id) = instance.wds.watches.get(&wd).map(|w| w.object) else { return };
        let Some(object) = self.registry.get(id) else { return };
        let reports_close = object
            .subscribers
            .iter()
            .any(|s| s.instance == key && s.wd == wd && s.wants(IN_CLOSE_NOWRITE));
        if matches!(object.source, Source::Kernel { .. }) && reports_close {
            self.own_closes.insert((key, wd));
        }
    }
}
