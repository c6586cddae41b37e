//! Watches on local directories: the daemon forwards the kernel's own events (including
//! IN_OPEN, IN_ACCESS and IN_CLOSE_NOWRITE, which no poll can see) with each subscriber's wd.
//! The daemons here poll every ten minutes, so any event that arrives was forwarded.

use std::io::Read;

use fakenotify_tests::*;

const SLOW_POLLS: &str = "[daemon]\ndefault_poll_interval = \"600s\"\n";

fn spec(mask: &str, dir: &TempDir) -> String {
    format!("{mask}:{}", dir.path().display())
}

fn read_file(path: &std::path::Path) {
    let mut contents = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut contents)).unwrap();
}

#[test]
fn local_events_are_forwarded_with_the_subscribers_wd() {
    let (first, second) = (TempDir::new("local-a"), TempDir::new("local-b"));
    let daemon = Daemon::start(SLOW_POLLS);
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&spec("all", &first), &spec("all", &second)],
        Some(&daemon),
        true,
    );
    client.expect_line("INIT ... socket (served by fakenotifyd)", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    let wd = client.wd_of(second.path());
    assert_eq!(wd, 2);

    write(&second.join("new.txt"), b"hello");
    client.expect_event("IN_CREATE new.txt on wd 2", |e| {
        e.wd == wd && e.matches(IN_CREATE, "new.txt")
    });
    client.expect_event("IN_MODIFY new.txt", |e| e.wd == wd && e.matches(IN_MODIFY, "new.txt"));
    client.expect_event("IN_CLOSE_WRITE new.txt", |e| {
        e.wd == wd && e.matches(IN_CLOSE_WRITE, "new.txt")
    });

    read_file(&second.join("new.txt"));
    client.expect_event("IN_OPEN new.txt", |e| e.wd == wd && e.matches(IN_OPEN, "new.txt"));
    client.expect_event("IN_ACCESS new.txt", |e| e.wd == wd && e.matches(IN_ACCESS, "new.txt"));
    client.expect_event("IN_CLOSE_NOWRITE new.txt", |e| {
        e.wd == wd && e.matches(IN_CLOSE_NOWRITE, "new.txt")
    });

    std::fs::rename(second.join("new.txt"), second.join("old.txt")).unwrap();
    let from = client.expect_event("IN_MOVED_FROM new.txt", |e| {
        e.wd == wd && e.matches(IN_MOVED_FROM, "new.txt")
    });
    let to = client
        .expect_event("IN_MOVED_TO old.txt", |e| e.wd == wd && e.matches(IN_MOVED_TO, "old.txt"));
    assert!(
        from.cookie != 0 && from.cookie == to.cookie,
        "cookies {} and {} must be equal and non-zero",
        from.cookie,
        to.cookie
    );

    std::fs::create_dir(second.join("sub")).unwrap();
    client.expect_event("IN_CREATE|IN_ISDIR sub", |e| {
        e.wd == wd && e.matches(IN_CREATE | IN_ISDIR, "sub")
    });
    std::fs::remove_file(second.join("old.txt")).unwrap();
    client.expect_event("IN_DELETE old.txt", |e| e.wd == wd && e.matches(IN_DELETE, "old.txt"));

    let strays: Vec<_> = client.events().into_iter().filter(|e| e.wd != wd).collect();
    assert!(strays.is_empty(), "events on the untouched directory's wd: {strays:?}");
}

#[test]
fn two_local_subscribers_get_their_own_wds_and_masks() {
    let (other, shared) = (TempDir::new("local-other"), TempDir::new("local-shared"));
    let daemon = Daemon::start(SLOW_POLLS);
    let mut everything = Client::inotify_client(
        Libc::Glibc,
        &[&spec("all", &other), &spec("all", &shared)],
        Some(&daemon),
        true,
    );
    let mut creates =
        Client::inotify_client(Libc::Glibc, &[&spec("CREATE", &shared)], Some(&daemon), true);

    write(&shared.join("a"), b"x");
    read_file(&shared.join("a"));
    everything.expect_event("IN_CLOSE_NOWRITE a on wd 2", |e| {
        e.wd == 2 && e.matches(IN_CLOSE_NOWRITE, "a")
    });
    creates.expect_event("IN_CREATE a on wd 1", |e| e.wd == 1 && e.matches(IN_CREATE, "a"));
    // Kernel events come in order: once this create is printed, the open and reads before it
    // would have been too, had they passed the mask.
    write(&shared.join("marker"), b"");
    creates.expect_event("IN_CREATE marker", |e| e.matches(IN_CREATE, "marker"));
    let outside: Vec<_> = creates.events().into_iter().filter(|e| e.mask != IN_CREATE).collect();
    assert!(outside.is_empty(), "a subscriber with mask IN_CREATE got other events: {outside:?}");
}

#[test]
fn local_and_remote_watches_share_one_instance() {
    let local = TempDir::new("local-mixed");
    let mut remote = Remote::new(FAST_CONFIG, |fuse, daemon| {
        let args = [spec("CREATE", &local), format!("CREATE:{}", fuse.mount.display())];
        Client::inotify_client(Libc::Glibc, &[&args[0], &args[1]], Some(daemon), true)
    });
    write(&local.join("here"), b"");
    remote
        .client
        .expect_event("IN_CREATE here on wd 1", |e| e.wd == 1 && e.matches(IN_CREATE, "here"));
    write(&remote.fuse.backing("there"), b"");
    remote
        .client
        .expect_event("IN_CREATE there on wd 2", |e| e.wd == 2 && e.matches(IN_CREATE, "there"));
}

#[test]
fn rm_watch_on_a_local_directory_gives_ignored() {
    let dir = TempDir::new("local-rm");
    let daemon = Daemon::start(SLOW_POLLS);
    let mut client =
        Client::inotify_client(Libc::Glibc, &["-n", &spec("all", &dir)], Some(&daemon), true);
    client.command("rm 1");
    client.expect_line("RM 1 OK", |l| l.text == "RM 1 OK");
    client.expect_event("IN_IGNORED", |e| e.wd == 1 && e.mask == IN_IGNORED);
    write(&dir.join("after"), b"");
    client.barrier();
    let after: Vec<_> = client.events().into_iter().filter(|e| e.mask != IN_IGNORED).collect();
    assert!(after.is_empty(), "events after rm_watch: {after:?}");
}

#[test]
fn removing_a_local_watched_directory_gives_delete_self_then_ignored() {
    let parent = TempDir::new("local-parent");
    let dir = parent.join("doomed");
    std::fs::create_dir(&dir).unwrap();
    let daemon = Daemon::start(SLOW_POLLS);
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", dir.display())],
        Some(&daemon),
        true,
    );
    std::fs::remove_dir(&dir).unwrap();
    let gone = client.expect_event("IN_DELETE_SELF", |e| e.wd == 1 && e.mask == IN_DELETE_SELF);
    let ignored = client.expect_event("IN_IGNORED", |e| e.wd == 1 && e.mask == IN_IGNORED);
    let events = client.events();
    let index = |e: &EventLine| events.iter().position(|x| x == e);
    assert!(index(&gone) < index(&ignored), "IN_IGNORED came before IN_DELETE_SELF: {events:?}");
}

#[test]
fn a_poll_policy_makes_a_local_directory_polled() {
    let dir = TempDir::new("local-policy");
    let config = format!(
        "[daemon]\ndefault_poll_interval = \"600s\"\n\n[[watch]]\npath = \"{}\"\npoll_interval = \"200ms\"\nmode = \"poll\"\n",
        dir.path().display()
    );
    write(&dir.join("existing"), b"data");
    let daemon = Daemon::start(&config);
    let mut client =
        Client::inotify_client(Libc::Glibc, &[&spec("all", &dir)], Some(&daemon), true);

    write(&dir.join("new"), b"");
    client.expect_event("IN_CREATE new (from a 200 ms poll)", |e| e.matches(IN_CREATE, "new"));
    read_file(&dir.join("existing"));
    write(&dir.join("marker"), b"");
    client.expect_event("IN_CREATE marker", |e| e.matches(IN_CREATE, "marker"));
    let kernel_only: Vec<_> = client
        .events()
        .into_iter()
        .filter(|e| e.mask & (IN_OPEN | IN_ACCESS | IN_CLOSE_NOWRITE) != 0)
        .collect();
    assert!(
        kernel_only.is_empty(),
        "mode = \"poll\" still forwarded kernel events: {kernel_only:?}"
    );
    let status = daemon.status();
    assert_eq!(
        (status.objects_polled, status.objects_kernel),
        (1, 0),
        "the directory should be polled: {status:?}"
    );
}
