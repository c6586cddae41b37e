//! The watched objects and the indexes that find them: by identity `(st_dev, st_ino)`, one
//! object however many watches point at it, and by the wd of a kernel watch on the daemon's
//! shared inotify fd. Pure bookkeeping: no system call is made here; the objects keep the fds
//! they are polled through, and the event loop alone touches this.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::policy::Identity;
use crate::slab::Slab;
use crate::watch::{PollState, Source, WatchedObject};

/// The identities the registry holds, shared read-only with the workers: one that examines the
/// object of an `inotify_add_watch` lists it at once when it is new, rather than hand it back
/// for a second job. A stale answer costs only a listing thrown away.
pub type Watched = Arc<Mutex<HashSet<Identity>>>;

/// Whether `identity` is watched, by the shared set.
pub fn is_watched(watched: &Watched, identity: Identity) -> bool {
    watched.lock().unwrap_or_else(PoisonError::into_inner).contains(&identity)
}

#[derive(Default)]
pub struct Registry {
    objects: Slab<WatchedObject>,
    by_identity: HashMap<Identity, usize>,
    by_kernel_wd: HashMap<i32, usize>,
    watched: Watched,
}

impl Registry {
    /// Registers `object` under its identity (and its kernel wd, if it has one).
    pub fn insert(&mut self, object: WatchedObject) -> usize {
        let identity = object.id;
        let kernel_wd = match object.source {
            Source::Kernel { wd } if wd >= 0 => Some(wd),
            _ => None,
        };
        let id = self.objects.insert(object);
        self.by_identity.insert(identity, id);
        self.watched.lock().unwrap_or_else(PoisonError::into_inner).insert(identity);
        if let Some(wd) = kernel_wd {
            self.by_kernel_wd.insert(wd, id);
        }
        id
    }

    /// Takes `id` out, with its index entries.
    pub fn remove(&mut self, id: usize) -> Option<WatchedObject> {
        let object = self.objects.remove(id)?;
        if self.by_identity.get(&object.id) == Some(&id) {
            self.by_identity.remove(&object.id);
            self.watched.lock().unwrap_or_else(PoisonError::into_inner).remove(&object.id);
        }
        if let Source::Kernel { wd } = object.source {
            self.by_kernel_wd.remove(&wd);
        }
        Some(object)
    }

    pub fn get(&self, id: usize) -> Option<&WatchedObject> {
        self.objects.get(id)
    }

    pub fn get_mut(&mut self, id: usize) -> Option<&mut WatchedObject> {
        self.objects.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &WatchedObject)> {
        self.objects.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut WatchedObject)> {
        self.objects.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// The objects, for code that reads them all at once (status, pacing, feeds).
    pub fn objects(&self) -> &Slab<WatchedObject> {
        &self.objects
    }

    /// The set of watched identities, for a worker.
    pub fn watched(&self) -> Watched {
        Arc::clone(&self.watched)
    }

    /// The object watched for `identity`.
    pub fn find(&self, identity: Identity) -> Option<usize> {
        self.by_identity.get(&identity).copied()
    }

    /// The object `identity` if it is polled.
    pub fn find_polled(&self, identity: Identity) -> Option<usize> {
        self.find(identity).filter(|&id| self.get(id).is_some_and(WatchedObject::is_polled))
    }

    /// The object of kernel watch `wd` on the shared inotify fd.
    pub fn by_kernel_wd(&self, wd: i32) -> Option<usize> {
        self.by_kernel_wd.get(&wd).copied()
    }

    /// The kernel dropped watch `wd` (its object was deleted or unmounted): the object stays,
    /// with no kernel watch, until its subscribers are gone.
    pub fn kernel_watch_gone(&mut self, wd: i32) {
        if let Some(id) = self.by_kernel_wd.remove(&wd) {
            if let Some(object) = self.objects.get_mut(id) {
                object.source = Source::Kernel { wd: -1 };
            }
        }
    }

    /// The polled directories whose last listing holds the directory `identity`, and its name
    /// in each.
    pub fn listed_in(&self, identity: Identity) -> Vec<(usize, Vec<u8>)> {
        self.objects
            .iter()
            .filter_map(|(parent, o)| {
                let Source::Polled(PollState { scan: Some(state), .. }) = &o.source else {
                    return None;
                };
                if o.id.0 != identity.0 || !o.is_dir {
                    return None;
                }
                Some((parent, state.snapshot.dir_name(identity.1)?.to_vec()))
            })
            .collect()
    }

    /// The polled directories on device `dev` other than `except`.
    pub fn polled_dirs_on(&self, dev: u64, except: usize) -> Vec<usize> {
        self.objects
            .iter()
            .filter(|(other, o)| *other != except && o.id.0 == dev && o.is_dir && o.is_polled())
            .map(|(other, _)| other)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policies;

    fn object(id: Identity, source: Source) -> WatchedObject {
        WatchedObject {
            id,
            is_dir: true,
            path: format!("/o/{}", id.1),
            governance: Policies::default().govern(&[id]),
            subscribers: Vec::new(),
            source,
        }
    }

    #[test]
    fn an_object_is_found_by_identity_and_kernel_wd_until_removed() {
        let mut registry = Registry::default();
        let a = registry.insert(object((1, 10), Source::Kernel { wd: 7 }));
        let b = registry.insert(object((1, 11), Source::Kernel { wd: -1 }));
        assert_eq!(registry.find((1, 10)), Some(a));
        assert_eq!(registry.find((1, 11)), Some(b));
        assert_eq!(registry.by_kernel_wd(7), Some(a));
        assert_eq!(registry.by_kernel_wd(-1), None, "no kernel watch is no index entry");
        assert_eq!(registry.find_polled((1, 10)), None);
        assert!(is_watched(&registry.watched(), (1, 10)));
        assert!(registry.remove(a).is_some());
        assert_eq!((registry.find((1, 10)), registry.by_kernel_wd(7)), (None, None));
        assert!(!is_watched(&registry.watched(), (1, 10)), "the workers' set follows");
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_kernel_watch_the_kernel_dropped_leaves_its_object_without_one() {
        let mut registry = Registry::default();
        let a = registry.insert(object((1, 10), Source::Kernel { wd: 3 }));
        registry.kernel_watch_gone(3);
        assert_eq!(registry.by_kernel_wd(3), None);
        assert!(matches!(registry.get(a).map(|o| &o.source), Some(Source::Kernel { wd: -1 })));
        assert_eq!(registry.find((1, 10)), Some(a), "found until its subscribers are gone");
    }

    #[test]
    fn a_reused_slot_keeps_the_index_of_its_new_object() {
        let mut registry = Registry::default();
        let a = registry.insert(object((1, 10), Source::Kernel { wd: -1 }));
        registry.remove(a);
        let b = registry.insert(object((1, 12), Source::Kernel { wd: -1 }));
        assert_eq!(a, b, "the slot is reused");
        assert_eq!((registry.find((1, 10)), registry.find((1, 12))), (None, Some(b)));
    }
}
