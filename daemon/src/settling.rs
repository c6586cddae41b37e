//! The order in which what a device's polls found reaches the subscribers.
//!
//! A poll result is settled in steps: its changes are paired with other directories' renames
//! and delivered one at a time, the directories that pairing asks for are polled, and the
//! requests that waited for the poll join. A change that moved a watched directory needs that
//! directory reopened at its new place, and sometimes polled, before it is delivered; a poll
//! that could not reach its directory needs it looked for. Both are filesystem calls, made on
//! the device's worker ([`crate::relocate`]). Meanwhile everything of that device waits here in
//! order: the rest of the result's steps, and the results that come back after it. Pairing
//! renames depends on seeing the polls of a device in the order they ran. Other devices go on.
//! Pure bookkeeping, no system call.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::diff::Change;
use crate::workers::PollResult;

/// One step of settling what a device's polls found.
pub enum Step {
    /// A poll came back (boxed: most steps are small).
    Polled(Box<PollResult>),
    /// A change to deliver to the subscribers of `object`. `paired`: it is the IN_MOVED_TO of
    /// a rename whose IN_MOVED_FROM was delivered with it.
    Deliver { object: usize, change: Change, paired: bool },
    /// A change whose directory was followed to its new place: it goes out as it is.
    Followed { object: usize, change: Change },
    /// Poll `object` out of turn (rename pairing asks for it).
    PollNow(usize),
    /// The requests waiting for a poll of `object` join it.
    Join { object: usize, joiners: Vec<usize> },
}

#[derive(Default)]
struct Device {
    /// Since when a relocation job has been on the worker, and for which object.
    relocating: Option<(Duration, usize)>,
    steps: VecDeque<Step>,
}

/// The steps of each device, and the devices whose worker relocates a directory.
#[derive(Default)]
pub struct Settling {
    devices: HashMap<u64, Device>,
}

impl Settling {
    /// Queues `step` after everything of device `dev`.
    pub fn push_back(&mut self, dev: u64, step: Step) {
        self.devices.entry(dev).or_default().steps.push_back(step);
    }

    /// Puts `steps`, in their order, before everything of device `dev`: they continue the
    /// step just taken.
    pub fn push_front(&mut self, dev: u64, steps: Vec<Step>) {
        if steps.is_empty() {
            return;
        }
        let device = self.devices.entry(dev).or_default();
        for step in steps.into_iter().rev() {
            device.steps.push_front(step);
        }
    }

    /// The next step of device `dev`; None while its worker relocates a directory, or when
    /// nothing waits.
    pub fn next(&mut self, dev: u64) -> Option<Step> {
        let device = self.devices.get_mut(&dev)?;
        if device.relocating.is_some() {
            return None;
        }
        let step = device.steps.pop_front();
        if device.steps.is_empty() {
            self.devices.remove(&dev);
        }
        step
    }

    /// Device `dev`'s worker relocates `object` since `since`: its steps wait.
    pub fn relocating(&mut self, dev: u64, object: usize, since: Duration) {
        self.devices.entry(dev).or_default().relocating = Some((since, object));
    }

    /// The relocation on `dev` came back: its steps go on.
    pub fn relocated(&mut self, dev: u64) {
        if let Some(device) = self.devices.get_mut(&dev) {
            device.relocating = None;
            if device.steps.is_empty() {
                self.devices.remove(&dev);
            }
        }
    }

    /// The relocations in progress: device, object, since when; for `status`.
    pub fn relocations(&self) -> impl Iterator<Item = (u64, usize, Duration)> + '_ {
        self.devices
            .iter()
            .filter_map(|(&dev, d)| d.relocating.map(|(since, object)| (dev, object, since)))
    }

    /// How many steps wait, on all devices.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.devices.values().map(|d| d.steps.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(step: Option<Step>) -> Option<usize> {
        match step {
            Some(Step::PollNow(object)) => Some(object),
            _ => None,
        }
    }

    #[test]
    fn steps_come_in_order_and_continuations_first() {
        let mut settling = Settling::default();
        settling.push_back(1, Step::PollNow(10));
        settling.push_back(1, Step::PollNow(11));
        assert_eq!(polled(settling.next(1)), Some(10));
        settling.push_front(1, vec![Step::PollNow(20), Step::PollNow(21)]);
        assert_eq!(polled(settling.next(1)), Some(20));
        assert_eq!(polled(settling.next(1)), Some(21));
        assert_eq!(polled(settling.next(1)), Some(11));
        assert!(settling.next(1).is_none());
        assert_eq!(settling.waiting(), 0);
    }

    #[test]
    fn a_relocation_holds_its_device_only() {
        let mut settling = Settling::default();
        settling.push_back(1, Step::PollNow(10));
        settling.push_back(2, Step::PollNow(20));
        settling.relocating(1, 7, Duration::from_secs(3));
        settling.push_back(1, Step::PollNow(11));
        assert!(settling.next(1).is_none());
        assert_eq!(polled(settling.next(2)), Some(20));
        assert_eq!(settling.relocations().collect::<Vec<_>>(), [(1, 7, Duration::from_secs(3))]);
        settling.relocated(1);
        assert_eq!(polled(settling.next(1)), Some(10));
        assert_eq!(polled(settling.next(1)), Some(11));
        assert_eq!(settling.relocations().count(), 0);
    }

    #[test]
    fn a_relocation_with_nothing_waiting_leaves_nothing_behind() {
        let mut settling = Settling::default();
        settling.relocating(3, 1, Duration::ZERO);
        settling.relocated(3);
        assert!(settling.devices.is_empty());
    }
}
