//! Who gets an event of a watched object: the one fan-out path for polled and kernel-forwarded
//! objects alike. Pure: it decides, the caller queues.
//!
//! inotify(7)'s rules: a subscriber gets an event only if its mask asks for it (IN_IGNORED,
//! IN_Q_OVERFLOW and IN_UNMOUNT always); an IN_ONESHOT watch gets its first event and then ends
//! (the caller sends its IN_IGNORED); the nameless IN_CLOSE_NOWRITE of the fd that proved read
//! access for a new watch is not the application's (`own_close`).

use fakenotify_proto::inotify::{IN_CLOSE_NOWRITE, IN_ONESHOT};

use crate::watch::Subscriber;

/// One event to fan out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub mask: u32,
    pub cookie: u32,
    pub name: &'a [u8],
}

/// What to do with a list of events of one object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fanned {
    /// `(instance, wd, index of the event)`, in event order, then subscriber order.
    pub deliveries: Vec<(u64, i32, usize)>,
    /// IN_ONESHOT watches that got their event and now end.
    pub ended: Vec<(u64, i32)>,
}

/// Fans `events` out to `subscribers`. `own_close(instance, wd)` is asked for each nameless
/// IN_CLOSE_NOWRITE a subscriber would get, and returns whether it is the close the daemon
/// expects for that watch (and forgets it), in which case that subscriber does not get it.
pub fn fan_out(
    subscribers: &[Subscriber],
    events: &[Event<'_>],
    mut own_close: impl FnMut(u64, i32) -> bool,
) -> Fanned {
    let mut fanned = Fanned::default();
    for (index, event) in events.iter().enumerate() {
        for sub in subscribers {
            let key = (sub.instance, sub.wd);
            if !sub.wants(event.mask) || fanned.ended.contains(&key) {
                continue;
            }
            if event.mask & IN_CLOSE_NOWRITE != 0
                && event.name.is_empty()
                && own_close(key.0, key.1)
            {
                continue;
            }
            fanned.deliveries.push((sub.instance, sub.wd, index));
            if sub.mask & IN_ONESHOT != 0 {
                fanned.ended.push(key);
            }
        }
    }
    fanned
}

#[cfg(test)]
mod tests {
    use super::*;
    use fakenotify_proto::inotify::{IN_CREATE, IN_DELETE, IN_IGNORED, IN_ISDIR, IN_MODIFY};

    fn sub(instance: u64, wd: i32, mask: u32) -> Subscriber {
        Subscriber { instance, wd, mask }
    }

    fn event(mask: u32, name: &'static [u8]) -> Event<'static> {
        Event { mask, cookie: 0, name }
    }

    #[test]
    fn each_subscriber_gets_what_its_mask_asks_for() {
        let subs = [sub(1, 1, IN_CREATE), sub(2, 5, IN_DELETE), sub(3, 2, IN_CREATE | IN_DELETE)];
        let events = [event(IN_CREATE | IN_ISDIR, b"d"), event(IN_DELETE, b"f")];
        let fanned = fan_out(&subs, &events, |_, _| false);
        assert_eq!(fanned.deliveries, vec![(1, 1, 0), (3, 2, 0), (2, 5, 1), (3, 2, 1)]);
        assert!(fanned.ended.is_empty());
    }

    #[test]
    fn a_oneshot_watch_gets_its_first_event_only_and_ends() {
        let subs = [sub(1, 1, IN_CREATE | IN_DELETE | IN_ONESHOT), sub(2, 1, IN_DELETE)];
        let events = [event(IN_CREATE, b"a"), event(IN_DELETE, b"a"), event(IN_CREATE, b"b")];
        let fanned = fan_out(&subs, &events, |_, _| false);
        assert_eq!(fanned.deliveries, vec![(1, 1, 0), (2, 1, 1)]);
        assert_eq!(fanned.ended, vec![(1, 1)]);
    }

    #[test]
    fn ignored_always_goes_out_whatever_the_mask() {
        let subs = [sub(1, 3, IN_MODIFY)];
        let fanned = fan_out(&subs, &[event(IN_IGNORED, b"")], |_, _| false);
        assert_eq!(fanned.deliveries, vec![(1, 3, 0)]);
    }

    #[test]
    fn the_close_of_the_proof_fd_is_kept_from_its_watch_only() {
        let subs = [sub(1, 1, IN_CLOSE_NOWRITE), sub(2, 4, IN_CLOSE_NOWRITE)];
        let mut expected = vec![(2u64, 4i32)];
        let events = [event(IN_CLOSE_NOWRITE, b""), event(IN_CLOSE_NOWRITE, b"")];
        let fanned = fan_out(&subs, &events, |instance, wd| {
            let found = expected.iter().position(|&k| k == (instance, wd));
            found.map(|i| expected.remove(i)).is_some()
        });
        // Instance 2's first nameless close is its own; its second is somebody else's.
        assert_eq!(fanned.deliveries, vec![(1, 1, 0), (1, 1, 1), (2, 4, 1)]);
    }

    #[test]
    fn a_named_close_is_never_taken_for_the_proof() {
        let subs = [sub(1, 1, IN_CLOSE_NOWRITE)];
        let fanned = fan_out(&subs, &[event(IN_CLOSE_NOWRITE, b"f")], |_, _| true);
        assert_eq!(fanned.deliveries, vec![(1, 1, 0)]);
    }
}
