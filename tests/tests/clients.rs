//! Real inotify programs on the FUSE mount: inotifywait (inotify-tools), Node's fs.watch
//! (libuv) and the C test client built against glibc and musl, each in its reading modes.

use std::path::Path;
use std::process::Command;

use fakenotify_tests::*;

#[test]
fn inotifywait_without_the_preload_misses_a_backing_create() {
    let fuse = FuseMount::new();
    let mut plain = Client::inotifywait(&[&fuse.mount], None, false);
    write(&fuse.backing("missed"), b"");
    // The kernel does report changes made through the mount; once this one is printed, the
    // backing create has had every chance to be printed first.
    write(&fuse.mounted("seen"), b"");
    plain.expect_event("CREATE seen", |e| e.matches(IN_CREATE, "seen"));
    let missed: Vec<_> = plain.events().into_iter().filter(|e| e.name == "missed").collect();
    assert!(missed.is_empty(), "inotifywait saw a backing change without FakeNotify: {missed:?}");
}

#[test]
fn inotifywait_with_the_preload_sees_remote_changes() {
    let mut remote = Remote::new(FAST_CONFIG, |fuse, daemon| {
        Client::inotifywait(&[&fuse.mount], Some(daemon), true)
    });
    let (fuse, client) = (&remote.fuse, &mut remote.client);

    write(&fuse.backing("a.txt"), b"one\n");
    client.expect_event("CREATE a.txt", |e| e.matches(IN_CREATE, "a.txt"));
    client.expect_event("CLOSE_WRITE a.txt", |e| e.matches(IN_CLOSE_WRITE, "a.txt"));
    append(&fuse.backing("a.txt"), b"two\n");
    client.expect_event("MODIFY a.txt", |e| e.matches(IN_MODIFY, "a.txt"));
    std::fs::create_dir(fuse.backing("Shows")).unwrap();
    client.expect_event("CREATE,ISDIR Shows", |e| e.matches(IN_CREATE | IN_ISDIR, "Shows"));
    std::fs::rename(fuse.backing("a.txt"), fuse.backing("b.txt")).unwrap();
    client.expect_event("MOVED_FROM a.txt", |e| e.matches(IN_MOVED_FROM, "a.txt"));
    client.expect_event("MOVED_TO b.txt", |e| e.matches(IN_MOVED_TO, "b.txt"));
    std::fs::remove_file(fuse.backing("b.txt")).unwrap();
    client.expect_event("DELETE b.txt", |e| e.matches(IN_DELETE, "b.txt"));
}

#[test]
fn node_fs_watch_with_the_preload_sees_remote_changes() {
    let mut remote = Remote::new(FAST_CONFIG, |fuse, daemon| {
        Client::node_watch(&[&fuse.mount], Some(daemon), true)
    });
    let (fuse, client) = (&remote.fuse, &mut remote.client);

    write(&fuse.backing("a.txt"), b"one\n");
    client.expect_line("rename a.txt (create)", |l| l.text == "rename a.txt");
    client.mark();
    append(&fuse.backing("a.txt"), b"two\n");
    client.expect_line("change a.txt (modify)", |l| l.text == "change a.txt");
    std::fs::create_dir(fuse.backing("Shows")).unwrap();
    client.expect_line("rename Shows (mkdir)", |l| l.text == "rename Shows");
    client.mark();
    std::fs::rename(fuse.backing("a.txt"), fuse.backing("b.txt")).unwrap();
    client.expect_line("rename a.txt (moved from)", |l| l.text == "rename a.txt");
    client.expect_line("rename b.txt (moved to)", |l| l.text == "rename b.txt");
    client.mark();
    std::fs::remove_file(fuse.backing("b.txt")).unwrap();
    client.expect_line("rename b.txt (delete)", |l| l.text == "rename b.txt");
}

/// Creates and renames a file in the backing directory and checks what a C client printed:
/// IN_CREATE, then a moved pair whose cookies are equal and non-zero.
fn create_and_rename(remote: &mut Remote) {
    write(&remote.fuse.backing("song.flac"), b"");
    remote.client.expect_event("IN_CREATE song.flac", |e| e.matches(IN_CREATE, "song.flac"));
    std::fs::rename(remote.fuse.backing("song.flac"), remote.fuse.backing("01 song.flac")).unwrap();
    let from = remote
        .client
        .expect_event("IN_MOVED_FROM song.flac", |e| e.matches(IN_MOVED_FROM, "song.flac"));
    let to = remote
        .client
        .expect_event("IN_MOVED_TO 01 song.flac", |e| e.matches(IN_MOVED_TO, "01 song.flac"));
    assert!(
        from.cookie != 0 && from.cookie == to.cookie,
        "cookies {} and {} must be equal and non-zero",
        from.cookie,
        to.cookie
    );
}

/// A preloaded C client built against `libc`, run with `flags`, watching the mount.
fn c_client(libc: Libc, flags: &[&str]) -> Remote {
    Remote::new(FAST_CONFIG, |fuse, daemon| {
        let spec = format!("CREATE|MOVE:{}", fuse.mount.display());
        let mut args = flags.to_vec();
        args.push(&spec);
        let mut client = Client::inotify_client(libc, &args, Some(daemon), true);
        client.expect_line("INIT ... socket (served by fakenotifyd)", |l| {
            l.text.starts_with("INIT ") && l.text.ends_with(" socket")
        });
        client
    })
}

#[test]
fn glibc_client_blocking_reads() {
    create_and_rename(&mut c_client(Libc::Glibc, &[]));
}

#[test]
fn glibc_client_nonblocking_poll_loop() {
    create_and_rename(&mut c_client(Libc::Glibc, &["-n"]));
}

#[test]
fn glibc_client_with_inotify_init_without_flags() {
    create_and_rename(&mut c_client(Libc::Glibc, &["-i"]));
}

#[test]
fn musl_client_blocking_reads() {
    create_and_rename(&mut c_client(Libc::Musl, &[]));
}

#[test]
fn musl_client_nonblocking_poll_loop() {
    create_and_rename(&mut c_client(Libc::Musl, &["-n"]));
}

#[test]
fn musl_client_is_dynamically_linked_against_musl() {
    let client = artifacts().inotify_client(Libc::Musl);
    let headers = readelf(&client, "-l");
    assert!(
        headers.contains("program interpreter: /lib/ld-musl-x86_64.so.1"),
        "{} must be a dynamic musl executable (else LD_PRELOAD cannot reach it):\n{headers}",
        client.display()
    );
}

#[test]
fn without_the_preload_the_client_reports_a_real_inotify_fd() {
    let dir = TempDir::new("real");
    let spec = format!("CREATE:{}", dir.path().display());
    for libc in [Libc::Glibc, Libc::Musl] {
        let mut client = Client::inotify_client(libc, &[&spec], None, false);
        client.expect_line("INIT ... inotify", |l| {
            l.text.starts_with("INIT ") && l.text.ends_with(" inotify")
        });
    }
}

fn readelf(file: &Path, flag: &str) -> String {
    let output =
        Command::new("readelf").arg(flag).arg(file).output().expect("run readelf (binutils)");
    assert!(
        output.status.success(),
        "readelf {flag} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
