//! Events of kernel watches, relayed: the daemon's shared inotify fd (objects every instance
//! may watch) and each instance's own inotify fd, whose wds are the instance's.

use std::collections::BTreeSet;

use fakenotify_proto::inotify::{IN_CLOSE_NOWRITE, IN_IGNORED, IN_Q_OVERFLOW};

use crate::fanout;
use crate::instance::QueuedEvent;
use crate::server::Server;
use crate::watch::Subscriber;

impl Server {
    pub(crate) fn forward_kernel_events(&mut self) {
        let mut events: Vec<(i32, u32, u32, Vec<u8>)> = Vec::new();
        if let Err(errno) =
            self.kernel.drain(|e| events.push((e.wd, e.mask, e.cookie, e.name.to_vec())))
        {
            error!("reading the daemon's inotify fd: {errno}");
        }
        for (kwd, mask, cookie, name) in events {
            if mask & IN_Q_OVERFLOW != 0 {
                self.overflow_kernel_subscribers();
                continue;
            }
            let Some(id) = self.registry.by_kernel_wd(kwd) else { continue };
            if mask & IN_IGNORED != 0 {
                // The kernel dropped the watch (object deleted or unmounted).
                self.registry.kernel_watch_gone(kwd);
                let subscribers: Vec<Subscriber> =
                    self.registry.get(id).map(|o| o.subscribers.clone()).unwrap_or_default();
                for sub in subscribers {
                    self.unsubscribe(sub.instance, sub.wd, id);
                }
                continue;
            }
            self.deliver_kernel_event(id, mask, cookie, name);
        }
    }

    /// Relays what the kernel queued on instance `key`'s own inotify fd, with its wds.
    pub(crate) fn forward_instance_kernel(&mut self, key: u64) {
        let Some(instance) = self.instances.get_mut(&key) else { return };
        let Some(kernel) = instance.kernel.as_mut() else { return };
        let mut events = Vec::new();
        let drained = kernel.drain(&mut self.event_buf, |wd, e| {
            events.push(QueuedEvent { wd, mask: e.mask, cookie: e.cookie, name: e.name.into() })
        });
        if let Err(errno) = drained {
            warn!("instance {key}: reading its inotify fd: {errno}");
        }
        for event in events {
            let own_close = event.mask & IN_CLOSE_NOWRITE != 0 && event.name.is_empty();
            if own_close && self.own_closes.remove(&(key, event.wd)) {
                // The close of the fd that proved read access for this watch.
                continue;
            }
            if event.mask & IN_IGNORED != 0 {
                self.own_closes.remove(&(key, event.wd));
            }
            instance.push(event);
            self.dirty.insert(key);
        }
    }

    fn deliver_kernel_event(&mut self, id: usize, mask: u32, cookie: u32, name: Vec<u8>) {
        self.fan_out(id, &[fanout::Event { mask, cookie, name: &name }]);
    }

    fn overflow_kernel_subscribers(&mut self) {
        let keys: BTreeSet<u64> = self
            .registry
            .iter()
            .filter(|(_, o)| !o.is_polled())
            .flat_map(|(_, o)| o.subscribers.iter().map(|s| s.instance))
            .collect();
        for key in keys {
            if let Some(instance) = self.instances.get_mut(&key) {
                instance.push(QueuedEvent {
                    wd: -1,
                    mask: IN_Q_OVERFLOW,
                    cookie: 0,
                    name: Box::default(),
                });
                self.dirty.insert(key);
            }
        }
    }
}
