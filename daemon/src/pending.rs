//! Requests the event loop answers later, because their filesystem calls run on a worker: an
//! `inotify_add_watch` on a remote mount, and the policy changes that resolve paths. A request
//! waits for its own jobs only; its connection stays open, exempt from the idle timeout, and a
//! request whose client went away is dropped when its jobs come back, leaving nothing behind.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;

/// Where the answer to a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// A short request connection (`Server::connections`).
    Connection(usize),
    /// The request channel of the instance with this key.
    Channel(u64),
}

/// What an `inotify_add_watch` on a remote mount is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The worker examines the object fd (`place::place`).
    Placing,
    /// The next poll (or the first listing) of this object, after which it joins.
    Joining(usize),
}

/// An `inotify_add_watch` in progress.
pub struct PendingAdd {
    /// The instance.
    pub key: u64,
    pub uid: u32,
    pub mask: u32,
    pub reply_to: ReplyTo,
    /// When the request arrived.
    pub since: Duration,
    /// The worker its jobs run on.
    pub worker: u64,
    pub stage: Stage,
    /// The client went away (its connection or channel closed, or the instance ended): the
    /// request is dropped when its job comes back, and no watch is made.
    pub cancelled: bool,
}

/// A policy change waiting for its paths to be resolved.
pub enum PolicyChange {
    /// The daemon started: the configuration file's policies.
    Start,
    /// A reload (SIGHUP, or `ctl reload` when `reply_to` is set).
    Reload { config: Box<Config>, path: PathBuf, summary: String },
    /// `ctl add`: one policy, which replaces one of the same path.
    Add { path: PathBuf, uid: u32 },
}

/// A [`PolicyChange`] and who waits for its answer.
pub struct PendingPolicy {
    pub change: PolicyChange,
    /// The `ctl` connection waiting for the answer, if any.
    pub reply_to: Option<usize>,
    pub since: Duration,
}
