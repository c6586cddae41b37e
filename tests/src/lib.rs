//! Shared support for FakeNotify's end-to-end tests: real processes, a real FUSE mount, real
//! inotify clients.
//!
//! The tests in `tests/tests/` start a `fakenotifyd` on a temporary socket ([`Daemon`]), mount a
//! bindfs FUSE filesystem over a temporary backing directory ([`FuseMount`]) that stands in for
//! NFS (or one of the FUSE servers users run: rclone, sshfs to a private [`Sshd`], mergerfs),
//! make changes in the backing directory (which the kernel never reports on the mount), and
//! run inotify clients with and without `LD_PRELOAD=libfakenotify.so` ([`Client`]): the C test
//! client in `tests/clients/` (glibc and musl builds), `inotifywait` and a Node `fs.watch` script.
//! [`artifacts`] builds the daemon, the ctl, the preload (a cargo workspace of its own) and the C
//! client once per test process.
//!
//! Every resource is a value whose `Drop` cleans up (kills, unmounts, removes), so tests stay
//! independent and can run in parallel. Every wait is bounded; a timeout panics with the client's
//! transcript and, through [`Daemon`]'s `Drop`, the daemon's log.

pub mod artifacts;
pub mod client;
pub mod daemon;
pub mod deploy;
pub mod differential;
pub mod fuse;
pub mod masks;
pub mod namespace;
pub mod peer;
pub mod process;
pub mod raw_client;
pub mod remote;
pub mod script;
pub mod seqpacket;
pub mod sshd;
pub mod temp;

use std::time::Duration;

pub use artifacts::{artifacts, c_program, Artifacts, Libc};
pub use client::{Client, EventLine, Line, Stream};
pub use daemon::{rss_kib, run_ctl, run_fakenotifyd, Daemon, Finished, Status, FAST_CONFIG};
pub use fuse::FuseMount;
pub use masks::{mask_from_names, mask_names};
pub use namespace::{in_private_namespace, inside_private_namespace};
pub use remote::{append, write, Remote};
pub use script::ScriptClient;
pub use sshd::Sshd;
pub use temp::TempDir;

pub use fakenotify_proto::inotify::*;

/// Upper bound for anything a test expects to happen: an event after a change, a daemon
/// becoming ready. Generous because CI machines are slow and it only costs time on failure.
pub const WAIT: Duration = Duration::from_secs(10);
