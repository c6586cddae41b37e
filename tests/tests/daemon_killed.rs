//! The daemon killed with SIGKILL (a crash, the OOM killer) while applications watch: they
//! keep running and never read EOF or an error (the stream just goes quiet, as inotify on NFS
//! does), and watchers started once a new daemon serves the same socket get events again.

use std::time::Duration;

use fakenotify_tests::*;

/// Long enough for a reader to notice an ended fd, and for several polls that would have
/// reported the change made meanwhile.
const QUIET: Duration = Duration::from_secs(1);

#[test]
fn node_fs_watch_survives_a_killed_daemon_and_a_new_watcher_gets_events_after_restart() {
    let fuse = FuseMount::new();
    let mut daemon = Daemon::fast();
    let mut before = Client::node_watch(&[&fuse.mount], Some(&daemon), true);
    write(&fuse.backing("before-the-kill"), b"x");
    before.expect_line("rename before-the-kill", |l| l.text == "rename before-the-kill");

    daemon.kill();
    write(&fuse.backing("while-no-daemon"), b"x");
    let meanwhile = before.collect_for(QUIET);
    assert!(
        before.is_running(),
        "node exited when the daemon was killed; it printed {meanwhile:?}\n{}",
        before.transcript()
    );
    let stderr: Vec<_> =
        before.lines().into_iter().filter(|l| l.stream == Stream::Stderr).collect();
    assert!(stderr.is_empty(), "node complained when the daemon was killed: {stderr:?}");

    daemon.restart();
    let mut after = Client::node_watch(&[&fuse.mount], Some(&daemon), true);
    write(&fuse.backing("after-the-restart"), b"x");
    after.expect_line("rename after-the-restart", |l| l.text == "rename after-the-restart");

    // The first watcher's instance died with the old daemon: it stays quiet and alive.
    let late = before.collect_for(QUIET);
    assert!(
        before.is_running(),
        "the first node watcher exited after the restart; it printed {late:?}\n{}",
        before.transcript()
    );
    let complaints: Vec<_> = before
        .lines()
        .into_iter()
        .filter(|l| l.stream == Stream::Stderr || l.text.starts_with("ERROR"))
        .collect();
    assert!(complaints.is_empty(), "the first node watcher complained: {complaints:?}");
}

#[test]
fn c_readers_never_see_eof_when_the_daemon_is_killed() {
    let fuse = FuseMount::new();
    let mut daemon = Daemon::fast();
    let spec = format!("all:{}", fuse.mount.display());
    let mut readers: Vec<Client> = [&["-n"][..], &[][..], &["-i"][..]]
        .iter()
        .map(|flags| {
            let mut args = flags.to_vec();
            args.push(&spec);
            Client::inotify_client(Libc::Glibc, &args, Some(&daemon), true)
        })
        .collect();
    readers.push(Client::inotify_client(Libc::Musl, &[&spec], Some(&daemon), true));
    write(&fuse.backing("seen"), b"");
    for reader in &mut readers {
        reader.expect_event("IN_CREATE seen", |e| e.matches(IN_CREATE, "seen"));
    }

    daemon.kill();
    write(&fuse.backing("unseen"), b"");
    std::thread::sleep(QUIET);
    for reader in &mut readers {
        let ended: Vec<_> = reader
            .lines()
            .into_iter()
            .filter(|l| l.text == "EOF" || l.text.starts_with("ERROR"))
            .collect();
        assert!(ended.is_empty(), "a reader saw its fd end when the daemon was killed: {ended:?}");
        assert!(reader.is_running(), "a reader exited when the daemon was killed");
        // The instance is gone with the daemon: a new watch is refused as real inotify refuses
        // one it cannot take, and the reader goes on.
        reader.command(&format!("add CREATE:{}", fuse.mount.display()));
        reader.expect_line("an answer to add", |l| {
            l.text.starts_with("ERROR add_watch") || l.text.starts_with("WATCH")
        });
    }

    daemon.restart();
    let mut fresh = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), true);
    fresh.expect_line("INIT ... socket", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    write(&fuse.backing("after-the-restart"), b"");
    fresh
        .expect_event("IN_CREATE after-the-restart", |e| e.matches(IN_CREATE, "after-the-restart"));
}
