//! Wire records shared by every FakeNotify crate, and the inotify ABI they carry.
//!
//! This crate is `#![no_std]`, allocation-free and does no I/O: the preload encodes and decodes
//! on stack buffers with it, the daemon and ctl with it. Each record family lives in its own
//! module and is validated once at the edge (`decode`), after which its fields cannot be wrong.
//! It is not the transport: sockets, fd passing and timeouts belong to the crates that use it.
#![no_std]

pub mod control;
pub mod inotify;
pub mod record;

/// Default path of the daemon's socket, used when neither `--socket` nor `$FAKENOTIFY_SOCKET`
/// says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/fakenotify/fakenotify.sock";

/// The original FakeNotify's socket path. The preload and the clients try it when neither
/// `--socket` nor `$FAKENOTIFY_SOCKET` is given and [`DEFAULT_SOCKET`] is absent, so a daemon
/// configured with the old path still serves them.
pub const LEGACY_SOCKET: &str = "/run/fakenotify.sock";

/// The environment variable that names the daemon's socket for the preload and the clients.
pub const SOCKET_ENV: &str = "FAKENOTIFY_SOCKET";
