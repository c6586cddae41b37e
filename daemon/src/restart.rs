//! Restarts that keep every instance and watch: on a clean stop under a service manager, the
//! daemon hands its instance sockets and polled objects' fds to the manager's fd store with a
//! state record (`saved_state`); a daemon started with them resumes each instance with its
//! wds and masks. Applications keep their fds throughout and never notice.
//!
//! Without a service manager, or after a crash, nothing is saved: applications keep running
//! (their streams go quiet) and their next `inotify_init1` reaches the new daemon. Kernel-
//! forwarded (local) watches keep no fd, so they are not saved. Changes made while no daemon
//! ran are not reported: a restored object starts from a fresh listing.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::fs::{AtFlags, FileType, StatxFlags};

use crate::instance::Instance;
use crate::intake::Reach;
use crate::saved_state::{SavedInstance, SavedObject, SavedState, SavedWatch, HEADER, STORE_NAME};
use crate::sd_notify;
use crate::server::{Server, INSTANCE};
use crate::watch::{Source, Subscriber};

/// Largest state record read back (about 60 bytes per watch).
const MAX_RECORD: usize = 64 << 20;

impl Server {
    /// Saves instances and polled watches to the service manager's fd store, if there is one.
    pub(crate) fn save_to_fd_store(&self) {
        if std::env::var_os("NOTIFY_SOCKET").is_none_or(|s| s.is_empty()) {
            return;
        }
        let mut state = SavedState::default();
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        for (_, object) in self.registry.iter() {
            let Source::Polled(polled) = &object.source else { continue };
            state.objects.push(SavedObject { id: object.id, is_dir: object.is_dir });
            fds.push(polled.fd.as_fd());
        }
        for (&key, instance) in &self.instances {
            let Ok(st) = rustix::fs::fstat(&instance.socket) else { continue };
            state.instances.push(SavedInstance {
                key,
                socket: (st.st_dev, st.st_ino),
                uid: instance.uid,
                pid: instance.pid,
                next_wd: instance.wds.next(),
            });
            fds.push(instance.socket.as_fd());
            for (&wd, watch) in &instance.wds.watches {
                let Some(object) = self.registry.get(watch.object).filter(|o| o.is_polled()) else {
                    continue;
                };
                let mask = object.subscribers.iter().find(|s| s.instance == key && s.wd == wd);
                if let Some(sub) = mask {
                    state.watches.push(SavedWatch { key, wd, mask: sub.mask, object: object.id });
                }
            }
        }
        let record = match write_record(&state.encode()) {
            Ok(record) => record,
            Err(errno) => return error!("saving state for a restart: memfd: {errno}"),
        };
        fds.insert(0, record.as_fd());
        match sd_notify::store_fds(STORE_NAME, &fds) {
            Ok(_) => info!(
                "saved {} instances and {} polled watches to the service manager's fd store",
                state.instances.len(),
                state.watches.len()
            ),
            Err(errno) => error!("saving state for a restart: FDSTORE: {errno}"),
        }
    }

    /// Resumes what a previous daemon saved; `fds` are the fds the fd store passed back.
    pub(crate) fn restore(&mut self, fds: Vec<OwnedFd>) {
        let passed = fds.len();
        let mut record = None;
        let mut by_identity: HashMap<(u64, u64), OwnedFd> = HashMap::new();
        for fd in fds {
            // From the kernel's inode, never from the server: a stored fd may lie on a mount
            // that hangs now.
            let Ok(st) = cached_identity(fd.as_fd()) else { continue };
            if record.is_none() && st.kind == FileType::RegularFile {
                if let Some(text) = read_record(&fd) {
                    record = Some(text);
                    continue;
                }
            }
            by_identity.insert(st.identity, fd);
        }
        let Some(text) = record else {
            return warn!(
                "restart: {passed} stored fds but no state record among them; closing them"
            );
        };
        let state = match SavedState::decode(&text) {
            Ok(state) => state,
            Err(error) => return warn!("restart: {error}; starting afresh"),
        };
        let mut objects: HashMap<(u64, u64), usize> = HashMap::new();
        for saved in &state.objects {
            let Some(fd) = by_identity.remove(&saved.id) else { continue };
            let mask =
                state.watches.iter().filter(|w| w.object == saved.id).fold(0, |m, w| m | w.mask);
            let created = match self.intake.reach(fd.as_fd()) {
                Reach::Local => self.create_object(&fd, saved.is_dir, saved.id, mask),
                // Listed on its worker: a hung mount must not keep the daemon from starting.
                Reach::Remote { .. } => {
                    Ok(self.restore_remote_object(fd, saved.is_dir, saved.id, mask))
                }
            };
            match created {
                Ok(id) => {
                    objects.insert(saved.id, id);
                }
                Err(errno) => {
                    warn!("restart: object (dev {} ino {}): {errno}", saved.id.0, saved.id.1)
                }
            }
        }
        let max_queued = self.settings.limits.max_queued_events as usize;
        for saved in &state.instances {
            let Some(socket) = by_identity.remove(&saved.socket) else { continue };
            let token = EventData::new_u64(INSTANCE | saved.key);
            if let Err(errno) = epoll::add(&self.epoll, &socket, token, EventFlags::RDHUP) {
                warn!("restart: epoll_ctl for instance {}: {errno}", saved.key);
                continue;
            }
            let charge = self.queues.charge_for(saved.uid);
            let mut instance = Instance::new(socket, saved.uid, saved.pid, max_queued, charge);
            instance.wds.resume(saved.next_wd);
            // Its local watches were not saved; later ones go on a new inotify fd of its user.
            instance.kernel = self
                .instance_kernel(saved.key, saved.uid)
                .inspect_err(|errno| warn!("restart: instance {}: {errno}", saved.key))
                .ok();
            self.instances.insert(saved.key, instance);
        }
        let mut watches = 0;
        for saved in &state.watches {
            let Some(&id) = objects.get(&saved.object) else { continue };
            let Some(instance) = self.instances.get_mut(&saved.key) else { continue };
            instance.wds.insert(saved.wd, id);
            if let Some(object) = self.registry.get_mut(id) {
                object.subscribers.push(Subscriber {
                    instance: saved.key,
                    wd: saved.wd,
                    mask: saved.mask,
                });
                watches += 1;
            }
        }
        for &id in objects.values() {
            if self.registry.get(id).is_some_and(|o| o.subscribers.is_empty()) {
                self.drop_object(id);
            }
        }
        info!("restart: resumed {} instances and {watches} watches", self.instances.len());
    }
}

/// What the kernel knows of an fd's inode, asked with `AT_STATX_DONT_SYNC`: FUSE, NFS, SMB and
/// Ceph answer from the inode they hold, without a request to the server.
struct CachedIdentity {
    identity: (u64, u64),
    kind: FileType,
}

fn cached_identity(fd: BorrowedFd<'_>) -> rustix::io::Result<CachedIdentity> {
    let st = rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::TYPE | StatxFlags::INO,
    )?;
    let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
    Ok(CachedIdentity {
        identity: (dev, st.stx_ino),
        kind: FileType::from_raw_mode(u32::from(st.stx_mode)),
    })
}

fn write_record(text: &str) -> rustix::io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("fakenotify-state", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest)?;
        rest = &rest[n..];
    }
    Ok(fd)
}

/// The state record, if `fd` holds one.
fn read_record(fd: &OwnedFd) -> Option<String> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = rustix::io::pread(fd, &mut chunk, bytes.len() as u64).ok()?;
        if n == 0 || bytes.len() + n > MAX_RECORD {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(bytes).ok()?;
    text.starts_with(HEADER).then_some(text)
}
