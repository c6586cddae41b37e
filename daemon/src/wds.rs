//! An instance's watch descriptors and the inotify rules for them, as inotify(7) states them:
//! wds count up from 1 and are not reused while the instance lives; adding a watch on an
//! object the instance already watches keeps its wd and replaces its mask, or adds to it with
//! `IN_MASK_ADD`, or fails with `EEXIST` under `IN_MASK_CREATE`; a watch that ends queues
//! `IN_IGNORED` for its wd. Pure bookkeeping over the instance's wds and an object's
//! subscribers: no fd, no system call.

use std::collections::{BTreeMap, HashMap};

use fakenotify_proto::inotify::{IN_IGNORED, IN_MASK_CREATE};
use rustix::io::Errno;

use crate::instance::QueuedEvent;
use crate::watch::Subscriber;

/// What a watch descriptor of an instance points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchRef {
    pub object: usize,
}

/// The wds of one instance for polled objects (its kernel watches number theirs from the same
/// sequence, `allocate`).
pub struct Wds {
    /// Read here; changed only through `insert` and `remove`, which keep `by_object`.
    pub watches: BTreeMap<i32, WatchRef>,
    /// The reverse of `watches`: each object's wd, so a repeated add_watch finds it at once.
    by_object: HashMap<usize, i32>,
    next: i32,
}

impl Default for Wds {
    fn default() -> Wds {
        Wds { watches: BTreeMap::new(), by_object: HashMap::new(), next: 1 }
    }
}

impl Wds {
    /// The next wd to hand out, for the state saved across a restart.
    pub fn next(&self) -> i32 {
        self.next
    }

    /// Continues the wd sequence of an instance restored after a restart.
    pub fn resume(&mut self, next: i32) {
        self.next = next.max(1);
    }

    /// A new watch descriptor; wds count up from 1 and are not reused while the instance lives.
    pub fn allocate(&mut self) -> i32 {
        let wd = self.next;
        self.next = self.next.checked_add(1).unwrap_or(1);
        wd
    }

    pub fn wd_for(&self, object: usize) -> Option<i32> {
        self.by_object.get(&object).copied()
    }

    pub fn insert(&mut self, wd: i32, object: usize) {
        self.watches.insert(wd, WatchRef { object });
        self.by_object.insert(object, wd);
    }

    /// Takes `wd` out; the object it pointed at, if it was there.
    pub fn remove(&mut self, wd: i32) -> Option<usize> {
        let watch = self.watches.remove(&wd)?;
        self.by_object.remove(&watch.object);
        Some(watch.object)
    }

    pub fn len(&self) -> usize {
        self.watches.len()
    }
}

/// The wd an add_watch answers, and whether it is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribed {
    pub wd: i32,
    pub new: bool,
}

/// An add_watch of `mask` by instance `key` (whose wds are `wds`) on the object `object`, whose
/// subscribers are `subscribers`.
pub fn subscribe(
    wds: &mut Wds,
    subscribers: &mut Vec<Subscriber>,
    key: u64,
    object: usize,
    mask: u32,
) -> Result<Subscribed, Errno> {
    if let Some(wd) = wds.wd_for(object) {
        if mask & IN_MASK_CREATE != 0 {
            return Err(Errno::EXIST);
        }
        if let Some(sub) = subscribers.iter_mut().find(|s| s.instance == key && s.wd == wd) {
            sub.mask = sub.updated_mask(mask);
        }
        return Ok(Subscribed { wd, new: false });
    }
    let wd = wds.allocate();
    wds.insert(wd, object);
    subscribers.push(Subscriber { instance: key, wd, mask });
    Ok(Subscribed { wd, new: true })
}

/// Ends watch `wd` of instance `key`: out of its wds and of the object's subscribers. The
/// `IN_IGNORED` to queue for it, unless the application never heard of the wd (`told`).
pub fn end_watch(
    wds: &mut Wds,
    subscribers: &mut Vec<Subscriber>,
    key: u64,
    wd: i32,
    told: bool,
) -> Option<QueuedEvent> {
    wds.remove(wd);
    subscribers.retain(|s| !(s.instance == key && s.wd == wd));
    told.then(|| QueuedEvent { wd, mask: IN_IGNORED, cookie: 0, name: Box::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{self, Event};
    use fakenotify_proto::inotify::{IN_CREATE, IN_DELETE, IN_MASK_ADD, IN_MODIFY, IN_ONESHOT};

    const A: u64 = 10;
    const B: u64 = 20;

    fn add(wds: &mut Wds, subs: &mut Vec<Subscriber>, key: u64, object: usize, mask: u32) -> i32 {
        subscribe(wds, subs, key, object, mask).expect("subscribe").wd
    }

    #[test]
    fn wds_count_up_from_one_and_are_not_reused() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        assert_eq!(add(&mut wds, &mut subs, A, 7, IN_CREATE), 1);
        assert_eq!(add(&mut wds, &mut subs, A, 8, IN_CREATE), 2);
        end_watch(&mut wds, &mut subs, A, 1, true);
        assert_eq!(add(&mut wds, &mut subs, A, 7, IN_CREATE), 3);
        assert_eq!(wds.next(), 4);
        wds.resume(40);
        assert_eq!(wds.allocate(), 40);
    }

    #[test]
    fn the_same_object_keeps_its_wd_and_a_plain_add_replaces_the_mask() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        let first = subscribe(&mut wds, &mut subs, A, 7, IN_CREATE);
        let again = subscribe(&mut wds, &mut subs, A, 7, IN_DELETE);
        assert_eq!(first, Ok(Subscribed { wd: 1, new: true }));
        assert_eq!(again, Ok(Subscribed { wd: 1, new: false }));
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].mask, IN_DELETE);
    }

    #[test]
    fn mask_add_merges_with_the_old_mask() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        add(&mut wds, &mut subs, A, 7, IN_CREATE);
        add(&mut wds, &mut subs, A, 7, IN_DELETE | IN_MASK_ADD);
        assert!(subs[0].wants(IN_CREATE) && subs[0].wants(IN_DELETE));
        assert_eq!(subs[0].mask & IN_MASK_ADD, 0, "IN_MASK_ADD is no event bit to keep");
    }

    #[test]
    fn mask_create_on_a_watched_object_is_eexist_and_changes_nothing() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        add(&mut wds, &mut subs, A, 7, IN_CREATE);
        let refused = subscribe(&mut wds, &mut subs, A, 7, IN_DELETE | IN_MASK_CREATE);
        assert_eq!(refused, Err(Errno::EXIST));
        assert_eq!(subs[0].mask, IN_CREATE);
        // On an object it does not watch yet, IN_MASK_CREATE is an ordinary add.
        let fresh = subscribe(&mut wds, &mut subs, A, 8, IN_DELETE | IN_MASK_CREATE);
        assert_eq!(fresh, Ok(Subscribed { wd: 2, new: true }));
    }

    #[test]
    fn each_instance_has_its_own_wds_on_a_shared_object() {
        let (mut a, mut b, mut subs) = (Wds::default(), Wds::default(), Vec::new());
        add(&mut a, &mut subs, A, 7, IN_CREATE);
        add(&mut a, &mut subs, A, 8, IN_CREATE);
        let wd = add(&mut b, &mut subs, B, 8, IN_DELETE);
        assert_eq!(wd, 1, "another instance counts from 1");
        let ignored = end_watch(&mut a, &mut subs, A, 2, true);
        assert_eq!(ignored.map(|e| (e.wd, e.mask)), Some((2, IN_IGNORED)));
        assert_eq!(
            subs,
            [
                Subscriber { instance: A, wd: 1, mask: IN_CREATE },
                Subscriber { instance: B, wd: 1, mask: IN_DELETE }
            ]
        );
        assert_eq!(a.wd_for(8), None);
        assert_eq!(b.wd_for(8), Some(1));
    }

    #[test]
    fn a_watch_nobody_heard_of_ends_without_ignored() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        add(&mut wds, &mut subs, A, 7, IN_CREATE);
        assert_eq!(end_watch(&mut wds, &mut subs, A, 1, false), None);
        assert!(subs.is_empty() && wds.len() == 0);
    }

    #[test]
    fn a_oneshot_watch_gets_one_event_then_ignored() {
        let (mut wds, mut subs) = (Wds::default(), Vec::new());
        add(&mut wds, &mut subs, A, 7, IN_MODIFY | IN_ONESHOT);
        add(&mut Wds::default(), &mut subs, B, 7, IN_MODIFY);
        let events = [Event { mask: IN_MODIFY, cookie: 0, name: b"f" }; 2];
        let fanned = fanout::fan_out(&subs, &events, |_, _| false);
        assert_eq!(fanned.deliveries, [(A, 1, 0), (B, 1, 0), (B, 1, 1)]);
        assert_eq!(fanned.ended, [(A, 1)]);
        let ignored = end_watch(&mut wds, &mut subs, A, 1, true);
        assert_eq!(ignored.map(|e| e.mask), Some(IN_IGNORED));
        assert_eq!(subs.len(), 1);
    }
}
