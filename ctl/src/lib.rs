//! The client side of fakenotifyd's socket, shared by `fakenotify-ctl` and `fakenotifyd`'s admin
//! verbs (`add`, `remove`, `list`, `status`).
//!
//! It speaks the framed records of `fakenotify-proto`: control requests with fixed layouts,
//! replies in nanoserde binary, and for `watch` the same Register/AddWatch records the preload
//! sends, so a script can follow a remote directory without any preload. It is not the daemon's
//! implementation of those requests; that lives in `fakenotifyd`.

pub mod cli;
pub mod doctor;
pub mod duration;
pub mod event_format;
pub mod feed;
pub mod feed_coalesce;
pub mod json_check;
pub mod message;
pub mod pattern;
pub mod procinfo;
pub mod render;
pub mod transport;
pub mod watch;
pub mod watcher;
