//! Request connections and instance channels: accepting, decoding, answering.
//!
//! A short connection carries one request (Register, AddWatch, RmWatch, Control) from a process
//! that has no channel yet; a registered instance's channel carries its AddWatch and RmWatch.
//! What a request asks is done by the modules that own it (`subscriptions`, `control`); this
//! module decodes, checks who asks, and sends the answer, now or, for a request that waits on
//! a worker, later (`answer_add`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use fakenotify_proto::inotify::watch_mask_is_valid;
use fakenotify_proto::record::{Record, Reply};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::fs::FileType;
use rustix::io::Errno;

use crate::config::Mode;
use crate::connections::{Accepted, CONNECTION_IDLE, MAX_CONNECTIONS};
use crate::grant;
use crate::instance::{Flush, Instance};
use crate::intake::Reach;
use crate::kernel::InstanceKernel;
use crate::pairing;
use crate::pending::ReplyTo;
use crate::server::{now, reply, Server, CHANNEL, CONNECTION, INSTANCE, INSTANCE_KERNEL};
use crate::wire::{self, RecvError};

/// Queue bytes freed by closing instances after which the heap is trimmed ([`give_memory_back`]).
const TRIM_AFTER: u64 = 1 << 20;

/// An AddWatch or RmWatch record, no longer borrowing the bytes it was decoded from (neither
/// has a body to borrow), so that its fds can be taken from the received message.
fn detach(record: Record<'_>) -> Record<'static> {
    match record {
        Record::AddWatch { mask } => Record::AddWatch { mask },
        Record::RmWatch { wd } => Record::RmWatch { wd },
        Record::Register => Record::Register,
        Record::Reply(reply) => Record::Reply(reply),
        Record::Control(_) | Record::ControlReply(_) => Record::Control(&[]),
    }
}

/// Returns freed heap pages to the system. glibc keeps what a flood of events left freed in
/// its arenas (565 MB stayed after the instances closed, issue 14); musl's allocator returns
/// them by itself.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn warn_suppressed(uid: u32, kind: &str, count: u64) {
    warn!(
        "uid {uid}: suppressed {count} more warnings ({kind}) in the last {}s",
        crate::peer_log::WINDOW.as_secs()
    );
}

impl Server {
    pub(crate) fn accept(&mut self) {
        if self.connections.len() >= MAX_CONNECTIONS {
            self.close_oldest_connection("too many open request connections");
        }
        let listener = self.listener.path.display();
        let id = match self.connections.accept(self.listener.fd.as_fd(), now()) {
            Accepted::New(id) => id,
            Accepted::Drained => return,
            Accepted::OutOfFds(errno) => {
                // Refused rather than spin on a listener that stays readable.
                warn!("accept on {listener}: {errno}; refusing a connection");
                self.stats.error("accept: out of file descriptors");
                return self.close_oldest_connection("out of file descriptors");
            }
            Accepted::Failed(op, errno) => return warn!("{op} on {listener}: {errno}"),
        };
        let Some(conn) = self.connections.get(id) else { return };
        if let Err(errno) = epoll::add(
            &self.epoll,
            &conn.fd,
            EventData::new_u64(CONNECTION | id as u64),
            EventFlags::IN,
        ) {
            warn!("epoll_ctl for a connection: {errno}");
            self.connections.remove(id);
            return;
        }
        // A client sends its request right after connecting: it is usually there already,
        // and answering now saves a trip through epoll_wait. One per wake-up: the listener is
        // level-triggered and reports the next one, and a lone request costs no extra accept
        // that finds nothing.
        self.serve_connection(id);
    }

    fn close_oldest_connection(&mut self, why: &str) {
        if let Some((id, uid, pid)) = self.connections.to_evict() {
            self.warn_peer(
                uid,
                "oldest connection",
                format_args!("client pid {pid} uid {uid}: {why}; closing its oldest connection"),
            );
            self.stats.error(format!("connection closed: {why}"));
            self.close_connection(id);
        }
    }

    /// A warning about the peer `uid`, rate-limited per uid and `kind` (`peer_log`).
    pub(crate) fn warn_peer(
        &mut self,
        uid: u32,
        kind: &'static str,
        message: std::fmt::Arguments<'_>,
    ) {
        if !crate::log::enabled(crate::config::LogLevel::Warn) {
            return;
        }
        let verdict = self.peer_log.warn(uid, kind, now());
        if verdict.suppressed > 0 {
            warn_suppressed(uid, kind, verdict.suppressed);
        }
        if verdict.write {
            warn!("{message}");
        }
    }

    /// Summarises the warnings left out in peer-log windows that have ended.
    pub(crate) fn sweep_peer_log(&mut self) {
        for (uid, kind, count) in self.peer_log.sweep(now()) {
            warn_suppressed(uid, kind, count);
        }
    }

    /// Closes request connections that have not finished a request in `CONNECTION_IDLE`.
    pub(crate) fn close_idle_connections(&mut self) {
        for (id, uid, pid) in self.connections.idle(now()) {
            self.warn_peer(
                uid,
                "idle",
                format_args!(
                    "client pid {pid} uid {uid}: no request within {CONNECTION_IDLE:?}; \
                     closing its connection"
                ),
            );
            self.stats.error("connection closed: idle");
            self.close_connection(id);
        }
    }

    pub(crate) fn close_connection(&mut self, id: usize) {
        // Closing the fd (its only copy) takes it out of the epoll set.
        if self.connections.remove(id).is_some_and(|c| c.waiting) {
            self.cancel_pending(|to, _| to == ReplyTo::Connection(id));
            for pending in self.policy_changes.values_mut() {
                if pending.reply_to == Some(id) {
                    pending.reply_to = None;
                }
            }
        }
    }

    /// Drops the requests whose client went away: each is forgotten when its job comes back.
    fn cancel_pending(&mut self, gone: impl Fn(ReplyTo, u64) -> bool) {
        for (_, request) in self.pending.iter_mut() {
            if gone(request.reply_to, request.key) {
                request.cancelled = true;
            }
        }
    }

    /// Answers one request. The connection stays in the (level-triggered) epoll set, so a
    /// further request or the peer's close wakes the loop again.
    pub(crate) fn serve_connection(&mut self, id: usize) {
        let Some(conn) = self.connections.get(id) else { return };
        let (uid, pid) = (conn.uid, conn.pid);
        let mut received = match wire::recv_record(conn.fd.as_fd(), &mut self.recv_buf) {
            Ok(received) => received,
            Err(RecvError::WouldBlock) => return,
            Err(RecvError::Closed) => return self.close_connection(id),
            Err(error) => return self.connection_misbehaved(id, uid, pid, &error),
        };
        let answer = match received.record() {
            Ok(Record::Register) => {
                let answer = self.register(uid, pid, &received.fds);
                drop(received);
                return self.bind_channel(id, answer);
            }
            // The application's end comes first, as proof of ownership; the object after it.
            Ok(record @ (Record::AddWatch { .. } | Record::RmWatch { .. })) => {
                match received.fds.first().and_then(|app_end| self.instance_key(app_end)) {
                    Some(key) => {
                        let record = detach(record);
                        // The object, if any, comes last.
                        let object = received.fds.pop().filter(|_| record.fds() == 2);
                        let to = ReplyTo::Connection(id);
                        self.watch_request(key, uid, record, object, to).unwrap_or_else(|| {
                            if let Some(conn) = self.connections.get_mut(id) {
                                conn.waiting = true;
                            }
                            Reply::IN_PROGRESS
                        })
                    }
                    None => reply(Errno::INVAL),
                }
            }
            Ok(Record::Control(body)) => {
                // The answer to a policy change comes once a worker has found its paths.
                let Some(response) = self.control(uid, pid, body, id) else {
                    let Some(conn) = self.connections.get(id) else { return };
                    let later = Record::Reply(Reply::IN_PROGRESS);
                    if wire::send_record(conn.fd.as_fd(), &later, &[]).is_err() {
                        self.close_connection(id);
                    }
                    return;
                };
                let Some(conn) = self.connections.get(id) else { return };
                let bytes = response.to_bytes();
                if wire::send_record(conn.fd.as_fd(), &Record::ControlReply(&bytes), &[]).is_err() {
                    return self.close_connection(id);
                }
                return;
            }
            Ok(record) => {
                let kind = record.kind();
                self.warn_peer(
                    uid,
                    "protocol",
                    format_args!(
                        "client pid {pid} uid {uid}: unexpected {kind:?} record; closing its \
                         connection"
                    ),
                );
                self.stats.error("protocol");
                return self.close_connection(id);
            }
            Err(error) => return self.connection_misbehaved(id, uid, pid, &error),
        };
        // Events the request queued (IN_IGNORED of an rm_watch) are readable before its reply,
        // as with the kernel; the fds it carried are closed after the reply, off the client's
        // wait.
        self.flush_dirty();
        let Some(conn) = self.connections.get(id) else { return };
        if wire::send_record(conn.fd.as_fd(), &Record::Reply(answer), &[]).is_err() {
            self.close_connection(id);
        }
        drop(received);
    }

    /// Answers a Register. Once it succeeded, the connection leaves the pool of short request
    /// connections (no idle timeout, not counted against their cap) and becomes the instance's
    /// request channel, which lives as long as the instance or until its peer closes it.
    fn bind_channel(&mut self, id: usize, answer: Result<u64, Errno>) {
        let Some(conn) = self.connections.get(id) else { return };
        let reply = match answer {
            Ok(_) => Reply { errno: 0, value: 0 },
            Err(errno) => reply(errno),
        };
        if wire::send_record(conn.fd.as_fd(), &Record::Reply(reply), &[]).is_err() {
            return self.close_connection(id);
        }
        let Ok(key) = answer else { return };
        let Some(conn) = self.connections.remove(id) else { return };
        if let Err(errno) =
            epoll::modify(&self.epoll, &conn.fd, EventData::new_u64(CHANNEL | key), EventFlags::IN)
        {
            warn!("epoll_ctl for the request channel of instance {key}: {errno}");
            return;
        }
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.channel = Some(conn.fd);
        }
    }

    /// Answers one request on an instance's channel: AddWatch carries the object's fd alone,
    /// RmWatch no fd, since the channel itself names the instance. A closed or misbehaving
    /// channel is dropped; the instance and its watches stay, and the process falls back to a
    /// short connection per request.
    pub(crate) fn serve_channel(&mut self, key: u64) {
        let Some(instance) = self.instances.get(&key) else { return };
        let Some(channel) = instance.channel.as_ref() else { return };
        let (uid, pid) = (instance.uid, instance.pid);
        let mut received = match wire::recv_record(channel.as_fd(), &mut self.recv_buf) {
            Ok(received) => received,
            Err(RecvError::WouldBlock) => return,
            Err(RecvError::Closed) => return self.drop_channel(key),
            Err(error) => return self.channel_misbehaved(key, uid, pid, &error),
        };
        let answer = match received.channel_record() {
            Ok(record) => {
                let record = detach(record);
                let object = received.fds.pop();
                self.watch_request(key, uid, record, object, ReplyTo::Channel(key))
                    .unwrap_or(Reply::IN_PROGRESS)
            }
            Err(error) => return self.channel_misbehaved(key, uid, pid, &error),
        };
        // As in `serve_connection`: queued events first, the carried fds closed after the reply.
        self.flush_dirty();
        let Some(channel) = self.instances.get(&key).and_then(|i| i.channel.as_ref()) else {
            return;
        };
        if wire::send_record(channel.as_fd(), &Record::Reply(answer), &[]).is_err() {
            self.drop_channel(key);
        }
        drop(received);
    }

    /// An AddWatch or RmWatch for instance `key`, from either way in; `object` is the fd to
    /// watch (the record's fd count was checked when it was received), taken so that it is
    /// closed before any kernel watch is added.
    /// None when the answer comes later, to `to`: the object lies on a remote mount, and the
    /// request waits for that device's worker.
    fn watch_request(
        &mut self,
        key: u64,
        uid: u32,
        record: Record<'_>,
        object: Option<OwnedFd>,
        to: ReplyTo,
    ) -> Option<Reply> {
        Some(match (record, object) {
            (Record::AddWatch { mask }, Some(object_fd)) => {
                if !watch_mask_is_valid(mask) {
                    return Some(reply(Errno::INVAL));
                }
                if let Reach::Remote { worker } = self.intake.reach(object_fd.as_fd()) {
                    return self.start_remote_add(key, uid, mask, object_fd, worker, to);
                }
                if let Some(worker) = self.polled_locally(object_fd.as_fd()) {
                    return self.start_remote_add(key, uid, mask, object_fd, worker, to);
                }
                // The fd must prove read access for the peer.
                match grant::check(object_fd, uid) {
                    Ok(granted) => {
                        let answer = self.add_watch(key, uid, mask, &granted.fd);
                        if answer.errno == 0 && granted.opened {
                            self.expect_own_close(key, answer.value);
                        }
                        // The proof's open file may end here, after the watch exists.
                        drop(granted);
                        answer
                    }
                    Err(errno) => {
                        debug!("instance {key} (uid {uid}): add_watch refused: {errno}");
                        self.stats.error("refused: unproven read access");
                        reply(errno)
                    }
                }
            }
            (Record::RmWatch { wd }, _) => self.rm_watch(key, wd),
            _ => reply(Errno::INVAL),
        })
    }

    /// A malformed record on instance `key`'s channel: logged (rate-limited) and the channel
    /// dropped; the instance and its watches stay.
    fn channel_misbehaved(&mut self, key: u64, uid: u32, pid: i32, error: &dyn std::fmt::Display) {
        self.warn_peer(
            uid,
            "protocol",
            format_args!(
                "instance {key} (pid {pid} uid {uid}): {error}; closing its request channel"
            ),
        );
        self.stats.error("protocol");
        self.drop_channel(key);
    }

    fn drop_channel(&mut self, key: u64) {
        // Closing the fd (its only copy) takes it out of the epoll set.
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.channel = None;
        }
        self.cancel_pending(|to, _| to == ReplyTo::Channel(key));
    }

    /// The device of an object on a local filesystem that a policy polls (`mode = "poll"`):
    /// its listings run on the device's worker, as a remote object's do, so that a huge local
    /// directory delays only the request that asked for it. None, without a system call, while
    /// no policy polls.
    fn polled_locally(&self, fd: BorrowedFd<'_>) -> Option<u64> {
        if !self.policies.list.iter().any(|p| p.watch.mode == Mode::Poll) {
            return None;
        }
        let st = rustix::fs::fstat(fd).ok()?;
        let identity = (st.st_dev, st.st_ino);
        if self.registry.find_polled(identity).is_some() {
            return Some(st.st_dev);
        }
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        let ancestry = self.policies.ancestry(fd, identity, is_dir);
        (self.policies.govern(&ancestry).mode == Mode::Poll).then_some(st.st_dev)
    }

    /// A malformed record on request connection `id`: logged (rate-limited), answered if it is
    /// of another protocol version, and the connection closed.
    fn connection_misbehaved(&mut self, id: usize, uid: u32, pid: i32, error: &RecvError) {
        self.warn_peer(
            uid,
            "protocol",
            format_args!("client pid {pid} uid {uid}: {error}; closing its connection"),
        );
        self.stats.error("protocol");
        self.answer_bad_version(id, error);
        self.close_connection(id);
    }

    /// A peer of another protocol version gets a reply it can recognise before the close.
    fn answer_bad_version(&self, id: usize, error: &RecvError) {
        if let (
            RecvError::Decode(fakenotify_proto::record::DecodeError::Version { .. }),
            Some(conn),
        ) = (error, self.connections.get(id))
        {
            // The connection is closed next whether or not the peer takes this.
            let _ = wire::send_record(
                conn.fd.as_fd(),
                &Record::Reply(reply(Errno::PROTONOSUPPORT)),
                &[],
            );
        }
    }

    /// A new instance; its key is the inode of the application's end.
    fn register(&mut self, uid: u32, pid: i32, fds: &[OwnedFd]) -> Result<u64, Errno> {
        let [app_end, daemon_end] = fds else { return Err(Errno::INVAL) };
        for fd in fds {
            let is_seqpacket = rustix::net::sockopt::socket_type(fd)
                .map(|t| t == rustix::net::SocketType::SEQPACKET);
            if is_seqpacket != Ok(true) {
                return Err(Errno::INVAL);
            }
        }
        let Ok(key) = rustix::fs::fstat(app_end).map(|st| st.st_ino) else {
            return Err(Errno::BADF);
        };
        // Nothing is written to either socket before both peers are known to be the registering
        // process's own, or the two to be one pair.
        // The peers' credentials are two getsockopt calls; sock_diag, a netlink socket and two
        // round trips, is asked only when they do not settle it.
        let own_pair = pairing::both_peers_made_by(app_end.as_fd(), daemon_end.as_fd(), pid, uid);
        if !own_pair && pairing::are_one_pair(app_end.as_fd(), daemon_end.as_fd()) != Ok(true) {
            debug!("uid {uid} (pid {pid}): Register with two sockets that are no pair");
            self.stats.error("refused: register of no pair");
            return Err(Errno::INVAL);
        }
        if self.instances.contains_key(&key) {
            return Err(Errno::EXIST);
        }
        let owned = self.instances.values().filter(|i| i.uid == uid).count();
        if owned >= self.settings.limits.max_user_instances as usize {
            // Counted, not logged: a client looping on a limit must not flood the log.
            debug!(
                "uid {uid} (pid {pid}) reached max_user_instances {}",
                self.settings.limits.max_user_instances
            );
            self.stats.error("limit: max_user_instances");
            return Err(Errno::MFILE);
        }
        // An instance holds two fds: its socket and its request channel.
        if self.user_use(uid).fds + crate::usage::FDS_PER_INSTANCE > self.user_fd_share() {
            debug!("uid {uid} (pid {pid}) reached its share of the daemon's fds");
            self.stats.error("limit: max_user_fds");
            return Err(Errno::MFILE);
        }
        let Ok(socket) = daemon_end.try_clone() else { return Err(Errno::MFILE) };
        if let Err(errno) =
            epoll::add(&self.epoll, &socket, EventData::new_u64(INSTANCE | key), EventFlags::RDHUP)
        {
            warn!("epoll_ctl for an instance: {errno}");
            return Err(Errno::NOMEM);
        }
        let max_queued = self.settings.limits.max_queued_events as usize;
        let charge = self.queues.charge_for(uid);
        let mut instance = Instance::new(socket, uid, pid, max_queued, charge);
        // The kernel's own EMFILE when the user is at max_user_instances, as inotify_init1.
        instance.kernel = Some(self.instance_kernel(key, uid)?);
        self.instances.insert(key, instance);
        info!(
            "instance {key}: registered by pid {pid} ({}) uid {uid}",
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim_end()
                .escape_debug()
        );
        Ok(key)
    }

    /// An instance's inotify fd, charged to `uid`, in the epoll set.
    pub(crate) fn instance_kernel(&self, key: u64, uid: u32) -> Result<InstanceKernel, Errno> {
        let kernel = InstanceKernel::new_as(uid).inspect_err(|errno| {
            debug!("instance {key}: inotify_init1 as uid {uid}: {errno}");
        })?;
        let token = EventData::new_u64(INSTANCE_KERNEL | key);
        epoll::add(&self.epoll, kernel.fd(), token, EventFlags::IN).map_err(|errno| {
            warn!("epoll_ctl for an instance's inotify fd: {errno}");
            Errno::NOMEM
        })?;
        Ok(kernel)
    }

    fn instance_key(&self, fd: &OwnedFd) -> Option<u64> {
        let st = rustix::fs::fstat(fd).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::Socket
            && self.instances.contains_key(&st.st_ino))
        .then_some(st.st_ino)
    }

    /// Sends the answer to request `request` and forgets it; whether the client took it.
    pub(crate) fn answer_add(&mut self, request: usize, answer: Reply) -> bool {
        let Some(pending) = self.pending.remove(request) else { return false };
        if pending.cancelled {
            return false;
        }
        // Events the request queued are readable before its answer, as with the kernel.
        self.flush_dirty();
        match pending.reply_to {
            ReplyTo::Connection(id) => {
                let Some(conn) = self.connections.get_mut(id) else { return false };
                conn.waiting = false;
                conn.opened = now();
                let sent = wire::send_record(conn.fd.as_fd(), &Record::Reply(answer), &[]);
                if sent.is_err() {
                    self.close_connection(id);
                }
                sent.is_ok()
            }
            ReplyTo::Channel(key) => {
                let Some(channel) = self.instances.get(&key).and_then(|i| i.channel.as_ref())
                else {
                    return false;
                };
                let sent = wire::send_record(channel.as_fd(), &Record::Reply(answer), &[]);
                if sent.is_err() {
                    self.drop_channel(key);
                }
                sent.is_ok()
            }
        }
    }

    pub(crate) fn on_instance_ready(&mut self, key: u64, flags: EventFlags) {
        if flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR) {
            return self.close_instance(key);
        }
        if flags.contains(EventFlags::OUT) {
            self.dirty.insert(key);
        }
    }

    /// The application closed its end: every watch of the instance ends.
    fn close_instance(&mut self, key: u64) {
        let Some(instance) = self.instances.remove(&key) else { return };
        let held = instance.queue_capacity_bytes() as u64 + instance.queued_bytes();
        self.stats.closed_delivered += instance.delivered;
        self.stats.closed_overflows += instance.overflows;
        // Closing the socket right after removes it from the epoll set anyway.
        let _ = epoll::delete(&self.epoll, &instance.socket);
        for (wd, watch) in &instance.wds.watches {
            if let Some(object) = self.registry.get_mut(watch.object) {
                object.subscribers.retain(|s| !(s.instance == key && s.wd == *wd));
                self.drop_if_unwatched(watch.object);
            }
        }
        self.dirty.remove(&key);
        self.own_closes.retain(|&(instance, _)| instance != key);
        // Its requests still waiting are dropped; those on a short connection get their answer
        // now: the instance is gone, as if its fd had been closed before the call.
        for (_, pending) in self.pending.iter_mut().filter(|(_, p)| p.key == key) {
            pending.cancelled = true;
            let ReplyTo::Connection(id) = pending.reply_to else { continue };
            let Some(conn) = self.connections.get_mut(id) else { continue };
            conn.waiting = false;
            conn.opened = now();
            // The connection is closed next anyway if the peer is gone.
            let _ = wire::send_record(conn.fd.as_fd(), &Record::Reply(reply(Errno::BADF)), &[]);
        }
        debug!("instance {key}: closed by pid {}", instance.pid);
        drop(instance);
        self.freed_since_trim += held;
        if self.freed_since_trim > TRIM_AFTER {
            self.freed_since_trim = 0;
            give_memory_back();
        }
    }

    pub(crate) fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop_first() {
            let Some(instance) = self.instances.get_mut(&key) else { continue };
            let interest = match instance.flush() {
                Flush::Done => EventFlags::RDHUP,
                Flush::Blocked => EventFlags::RDHUP | EventFlags::OUT,
                Flush::Closed => {
                    self.close_instance(key);
                    continue;
                }
            };
            if let Err(errno) = epoll::modify(
                &self.epoll,
                &instance.socket,
                EventData::new_u64(INSTANCE | key),
                interest,
            ) {
                warn!("epoll_ctl for instance {key}: {errno}");
            }
        }
    }
}
