//! Renames between two polled directories, paired by inode into IN_MOVED_FROM/IN_MOVED_TO.
//!
//! The two directories are polled at different moments, so one half waits for the other:
//! a delete is held until its directory's next poll (a create of the same inode elsewhere
//! pairs with it meanwhile); a create whose inode the caller found in another directory's
//! listing is held until that directory has been polled (the caller polls it at once). What
//! finds no partner is delivered as it was: IN_DELETE, and IN_CREATE, or a lone IN_MOVED_TO
//! with a cookie of its own for a create whose inode looks renamed (moved in from a place no
//! poll sees). Pure bookkeeping, no I/O.

use std::collections::HashMap;

use fakenotify_proto::inotify::{IN_CREATE, IN_DELETE, IN_ISDIR, IN_MOVED_FROM, IN_MOVED_TO};

use crate::diff::Change;

/// One change to deliver to the subscribers of `object`; `change.pair` is a cookie by now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub object: usize,
    pub change: Change,
}

#[derive(Debug)]
struct Waiting {
    object: usize,
    dev: u64,
    change: Change,
    /// For a held create: the directory whose poll decides it.
    source: usize,
}

/// What one poll settles: what to deliver now, and which directories to poll at once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub deliveries: Vec<Delivery>,
    pub poll_now: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct MoveTracker {
    deletes: Vec<Waiting>,
    creates: Vec<Waiting>,
}

/// How a poll's changes may be held back.
pub struct Context<'a> {
    /// Other polled directories share the device: a delete may be half of a rename.
    pub hold_deletes: bool,
    /// Inode → another polled directory whose listing still holds it.
    pub elsewhere: &'a HashMap<u64, usize>,
}

/// The same inode of the same kind: a file never pairs with a directory that reused its inode.
fn same_inode(a: &Change, b: &Change) -> bool {
    a.ino == b.ino && (a.mask & IN_ISDIR) == (b.mask & IN_ISDIR)
}

fn moved(change: &Change, kind: u32, cookie: u32) -> Change {
    Change { mask: kind | (change.mask & IN_ISDIR), pair: cookie, ..change.clone() }
}

/// A change that found no partner: a create that looks renamed is a lone IN_MOVED_TO, as the
/// kernel reports a rename into the watched set; anything else goes out as it was.
fn unpaired(change: Change, cookie: &mut impl FnMut() -> u32) -> Change {
    if change.looks_moved && change.mask & !IN_ISDIR == IN_CREATE {
        moved(&change, IN_MOVED_TO, cookie())
    } else {
        change
    }
}

impl MoveTracker {
    /// Settles the changes of one poll of `object` on device `dev`. `cookie` hands out fresh
    /// cookies; within-directory rename pairs get one each.
    pub fn settle(
        &mut self,
        object: usize,
        dev: u64,
        changes: Vec<Change>,
        context: &Context<'_>,
        cookie: &mut impl FnMut() -> u32,
    ) -> Settled {
        let mut out = Settled::default();
        // Deletes held since this directory's previous poll found no partner: final now.
        let (done, kept): (Vec<_>, Vec<_>) =
            self.deletes.drain(..).partition(|w| w.object == object);
        self.deletes = kept;
        out.deliveries.extend(done.into_iter().map(|w| Delivery { object, change: w.change }));
        let mut local_cookies: HashMap<u32, u32> = HashMap::new();
        for mut change in changes {
            // A delete held from this poll goes out before any later event for the same name,
            // so that replaying the stream never removes the new entry.
            while let Some(i) = self.deletes.iter().position(|w| {
                w.object == object && !change.name.is_empty() && w.change.name == change.name
            }) {
                let held = self.deletes.remove(i);
                out.deliveries.push(Delivery { object, change: held.change });
            }
            let kind = change.mask & !IN_ISDIR;
            if kind == IN_DELETE && change.ino != 0 {
                let create = self
                    .creates
                    .iter()
                    .position(|w| w.dev == dev && same_inode(&w.change, &change));
                if let Some(i) = create {
                    let create = self.creates.remove(i);
                    let c = cookie();
                    out.deliveries
                        .push(Delivery { object, change: moved(&change, IN_MOVED_FROM, c) });
                    out.deliveries.push(Delivery {
                        object: create.object,
                        change: moved(&create.change, IN_MOVED_TO, c),
                    });
                } else if context.hold_deletes {
                    self.deletes.push(Waiting { object, dev, change, source: object });
                } else {
                    out.deliveries.push(Delivery { object, change });
                }
                continue;
            }
            if kind == IN_CREATE && change.ino != 0 {
                let pending = self.deletes.iter().position(|w| {
                    w.dev == dev && w.object != object && same_inode(&w.change, &change)
                });
                if let Some(i) = pending {
                    let delete = self.deletes.remove(i);
                    let c = cookie();
                    out.deliveries.push(Delivery {
                        object: delete.object,
                        change: moved(&delete.change, IN_MOVED_FROM, c),
                    });
                    out.deliveries
                        .push(Delivery { object, change: moved(&change, IN_MOVED_TO, c) });
                    continue;
                }
                if let Some(&source) = context.elsewhere.get(&change.ino).filter(|&&s| s != object)
                {
                    if !out.poll_now.contains(&source) {
                        out.poll_now.push(source);
                    }
                    self.creates.push(Waiting { object, dev, change, source });
                    continue;
                }
                out.deliveries.push(Delivery { object, change: unpaired(change, cookie) });
                continue;
            }
            if change.pair != 0 {
                change.pair = *local_cookies.entry(change.pair).or_insert_with(&mut *cookie);
            }
            out.deliveries.push(Delivery { object, change });
        }
        // Creates that waited for this directory and found no delete here: plain creates.
        let (done, kept): (Vec<_>, Vec<_>) =
            self.creates.drain(..).partition(|w| w.source == object);
        self.creates = kept;
        out.deliveries.extend(
            done.into_iter()
                .map(|w| Delivery { object: w.object, change: unpaired(w.change, cookie) }),
        );
        out
    }

    /// Whether a poll of `object` settles something held: a delete it held, or a create that
    /// waits for it. A poll that found nothing settles nothing else.
    pub fn waits_on(&self, object: usize) -> bool {
        self.deletes.iter().any(|w| w.object == object)
            || self.creates.iter().any(|w| w.source == object)
    }

    /// The object is no longer polled: what it held back is delivered unpaired.
    pub fn release(&mut self, object: usize, cookie: &mut impl FnMut() -> u32) -> Vec<Delivery> {
        let (deletes, kept): (Vec<_>, Vec<_>) =
            self.deletes.drain(..).partition(|w| w.object == object);
        self.deletes = kept;
        let (creates, kept): (Vec<_>, Vec<_>) =
            self.creates.drain(..).partition(|w| w.object == object || w.source == object);
        self.creates = kept;
        deletes
            .into_iter()
            .chain(creates)
            .map(|w| Delivery { object: w.object, change: unpaired(w.change, cookie) })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(mask: u32, name: &str, ino: u64) -> Change {
        Change { mask, name: name.as_bytes().to_vec(), ino, ..Change::default() }
    }

    fn counter() -> impl FnMut() -> u32 {
        let mut next = 100;
        move || {
            next += 1;
            next
        }
    }

    fn names(settled: &Settled) -> Vec<(usize, u32, u32, String)> {
        settled
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.object,
                    d.change.mask,
                    d.change.pair,
                    String::from_utf8_lossy(&d.change.name).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn delete_first_then_create_elsewhere_is_a_move() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let mut cookie = counter();
        let first = t.settle(1, 7, vec![change(IN_DELETE, "a.part", 42)], &ctx, &mut cookie);
        assert!(first.deliveries.is_empty(), "the delete waits for a partner");
        let second = t.settle(2, 7, vec![change(IN_CREATE, "a.mkv", 42)], &ctx, &mut cookie);
        assert_eq!(
            names(&second),
            [(1, IN_MOVED_FROM, 101, "a.part".into()), (2, IN_MOVED_TO, 101, "a.mkv".into())]
        );
    }

    #[test]
    fn create_first_waits_for_its_source_to_be_polled() {
        let mut t = MoveTracker::default();
        let elsewhere = HashMap::from([(42, 1)]);
        let mut cookie = counter();
        let ctx = Context { hold_deletes: true, elsewhere: &elsewhere };
        let created =
            t.settle(2, 7, vec![change(IN_CREATE | IN_ISDIR, "season", 42)], &ctx, &mut cookie);
        assert_eq!(created, Settled { deliveries: vec![], poll_now: vec![1] });
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let source =
            t.settle(1, 7, vec![change(IN_DELETE | IN_ISDIR, "season", 42)], &ctx, &mut cookie);
        assert_eq!(
            names(&source),
            [
                (1, IN_MOVED_FROM | IN_ISDIR, 101, "season".into()),
                (2, IN_MOVED_TO | IN_ISDIR, 101, "season".into())
            ]
        );
    }

    #[test]
    fn unmatched_halves_are_delivered_as_they_were() {
        let mut t = MoveTracker::default();
        let elsewhere = HashMap::from([(5, 1)]);
        let mut cookie = counter();
        let ctx = Context { hold_deletes: true, elsewhere: &elsewhere };
        // A hard link: the inode is still in directory 1 after its poll.
        t.settle(2, 7, vec![change(IN_CREATE, "link", 5)], &ctx, &mut cookie);
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let polled = t.settle(1, 7, vec![change(IN_DELETE, "gone", 9)], &ctx, &mut cookie);
        assert_eq!(names(&polled), [(2, IN_CREATE, 0, "link".into())]);
        // The delete is final at directory 1's next poll.
        assert!(t.waits_on(1) && !t.waits_on(2));
        let next = t.settle(1, 7, vec![], &ctx, &mut cookie);
        assert_eq!(names(&next), [(1, IN_DELETE, 0, "gone".into())]);
        assert!(!t.waits_on(1), "an empty poll that settles nothing may skip settle");
    }

    #[test]
    fn other_devices_and_lone_directories_do_not_pair() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let mut cookie = counter();
        let lone = Context { hold_deletes: false, elsewhere: &none };
        let out = t.settle(1, 7, vec![change(IN_DELETE, "x", 3)], &lone, &mut cookie);
        assert_eq!(names(&out), [(1, IN_DELETE, 0, "x".into())]);
        let held = Context { hold_deletes: true, elsewhere: &none };
        t.settle(1, 7, vec![change(IN_DELETE, "y", 4)], &held, &mut cookie);
        let other_dev = t.settle(2, 8, vec![change(IN_CREATE, "y", 4)], &held, &mut cookie);
        assert_eq!(names(&other_dev), [(2, IN_CREATE, 0, "y".into())]);
        assert_eq!(t.release(1, &mut cookie).len(), 1);
    }

    #[test]
    fn a_create_that_looks_moved_and_pairs_with_nothing_is_a_lone_moved_to() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let mut cookie = counter();
        let moved_in = |mask, name, ino| Change { looks_moved: true, ..change(mask, name, ino) };
        let out = t.settle(
            1,
            7,
            vec![moved_in(IN_CREATE, "b", 5), moved_in(IN_CREATE | IN_ISDIR, "s", 6)],
            &ctx,
            &mut cookie,
        );
        assert_eq!(
            names(&out),
            [(1, IN_MOVED_TO, 101, "b".into()), (1, IN_MOVED_TO | IN_ISDIR, 102, "s".into())]
        );
        // With a held delete of its inode it is the second half of a rename pair, as before.
        t.settle(2, 7, vec![change(IN_DELETE, "c", 8)], &ctx, &mut cookie);
        let out = t.settle(1, 7, vec![moved_in(IN_CREATE, "c", 8)], &ctx, &mut cookie);
        assert_eq!(
            names(&out),
            [(2, IN_MOVED_FROM, 103, "c".into()), (1, IN_MOVED_TO, 103, "c".into())]
        );
    }

    #[test]
    fn a_file_never_pairs_with_a_directory() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let mut cookie = counter();
        t.settle(1, 7, vec![change(IN_DELETE, "f7", 42)], &ctx, &mut cookie);
        let out = t.settle(3, 7, vec![change(IN_CREATE | IN_ISDIR, "s1", 42)], &ctx, &mut cookie);
        assert_eq!(names(&out), [(3, IN_CREATE | IN_ISDIR, 0, "s1".into())]);
    }

    #[test]
    fn an_inode_swapped_between_two_directories_by_reuse_replays_by_name() {
        // rm d1/f1 (inode 1), mv d2/f2 d1/f1 (inode 2), create d2/f2 (takes inode 1). Paired
        // by inode both ways, the second IN_MOVED_FROM would take d1/f1 away again; the delete
        // goes out before the create of its name instead, and pairs with nothing.
        let mut t = MoveTracker::default();
        let elsewhere = HashMap::from([(2, 2)]);
        let ctx = Context { hold_deletes: true, elsewhere: &elsewhere };
        let mut cookie = counter();
        let first = t.settle(
            1,
            7,
            vec![change(IN_DELETE, "f1", 1), change(IN_CREATE, "f1", 2)],
            &ctx,
            &mut cookie,
        );
        assert_eq!(names(&first), [(1, IN_DELETE, 0, "f1".into())]);
        assert_eq!(first.poll_now, [2]);
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let second = t.settle(
            2,
            7,
            vec![change(IN_DELETE, "f2", 2), change(IN_CREATE, "f2", 1)],
            &ctx,
            &mut cookie,
        );
        assert_eq!(
            names(&second),
            [
                (2, IN_MOVED_FROM, 101, "f2".into()),
                (1, IN_MOVED_TO, 101, "f1".into()),
                (2, IN_CREATE, 0, "f2".into()),
            ]
        );
    }

    #[test]
    fn a_held_delete_goes_out_before_a_create_of_the_same_name() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let ctx = Context { hold_deletes: true, elsewhere: &none };
        let mut cookie = counter();
        let out = t.settle(
            2,
            7,
            vec![change(IN_DELETE, "f3", 40), change(IN_CREATE, "f3", 41)],
            &ctx,
            &mut cookie,
        );
        assert_eq!(names(&out), [(2, IN_DELETE, 0, "f3".into()), (2, IN_CREATE, 0, "f3".into())]);
    }

    #[test]
    fn local_rename_pairs_get_fresh_cookies() {
        let mut t = MoveTracker::default();
        let none = HashMap::new();
        let ctx = Context { hold_deletes: false, elsewhere: &none };
        let mut cookie = counter();
        let pair = |mask, name: &str| Change { pair: 1, ..change(mask, name, 3) };
        let out = t.settle(
            1,
            7,
            vec![pair(IN_MOVED_FROM, "a"), pair(IN_MOVED_TO, "b")],
            &ctx,
            &mut cookie,
        );
        assert_eq!(
            names(&out),
            [(1, IN_MOVED_FROM, 101, "a".into()), (1, IN_MOVED_TO, 101, "b".into())]
        );
    }
}
