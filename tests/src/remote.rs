//! The setup most remote-event tests start from: a bindfs mount, a daemon polling every 200 ms
//! and a preloaded C client watching the mount.

use std::path::Path;

use crate::{Client, Daemon, EventLine, FuseMount, Libc, FAST_CONFIG, IN_CREATE};

/// Fields drop in declaration order: the client first, then the daemon (which holds fds on the
/// mount), then the mount, so the unmount finds nothing busy.
pub struct Remote {
    pub client: Client,
    pub daemon: Daemon,
    pub fuse: FuseMount,
}

impl Remote {
    /// The glibc C client (blocking reads), preloaded, watching the mount's root with `mask`.
    pub fn watch(mask: &str) -> Remote {
        Remote::prepared(mask, |_| {})
    }

    /// Like [`Remote::watch`], with `prepare` filling the backing directory before the client
    /// starts (files that exist before the watch, so no IN_CREATE is due for them).
    pub fn prepared(mask: &str, prepare: impl FnOnce(&FuseMount)) -> Remote {
        Remote::new(FAST_CONFIG, |fuse, daemon| {
            prepare(fuse);
            let spec = format!("{mask}:{}", fuse.mount.display());
            Client::inotify_client(Libc::Glibc, &[&spec], Some(daemon), true)
        })
    }

    /// A mount, a daemon with `config`, and the client `spawn` starts.
    pub fn new(config: &str, spawn: impl FnOnce(&FuseMount, &Daemon) -> Client) -> Remote {
        let fuse = FuseMount::new();
        let daemon = Daemon::start(config);
        let client = spawn(&fuse, &daemon);
        Remote { client, daemon, fuse }
    }

    /// Creates `name` in the backing directory and waits until the client reports its
    /// IN_CREATE: everything the daemon saw before has then been delivered (the daemon writes
    /// the events of one poll in order, and this create is only seen by a later poll). Needs
    /// IN_CREATE in the watch's mask.
    pub fn marker(&mut self, name: &str) -> EventLine {
        write(&self.fuse.backing(name), b"");
        self.client.expect_event(&format!("IN_CREATE {name} (marker)"), |e| {
            e.is(IN_CREATE) && e.name == name
        })
    }
}

/// `std::fs::write` with the path in the panic message.
pub fn write(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Appends `contents` to an existing file.
pub fn append(path: &Path, contents: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for appending: {e}", path.display()));
    file.write_all(contents).unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}
