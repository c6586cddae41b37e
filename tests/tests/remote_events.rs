//! Changes made in a bindfs mount's backing directory, which the kernel never reports on the
//! mount, reach a preloaded client as the inotify events DESIGN.md's table promises: one test
//! per kind of change, plus masks, rm_watch, overflow and shared watches.

use std::time::Duration;

use fakenotify_tests::*;

#[test]
fn a_backing_change_is_missed_without_fakenotify_and_seen_with_it() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let spec = format!("all:{}", fuse.mount.display());
    let mut plain = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), false);
    let mut served = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), true);

    write(&fuse.backing("from-the-server"), b"x");
    served.expect_event("IN_CREATE from-the-server", |e| e.matches(IN_CREATE, "from-the-server"));

    // A change made through the mount is seen by the kernel: once the plain client reports it,
    // it has had every chance to report the earlier backing change too.
    write(&fuse.mounted("through-the-mount"), b"");
    plain
        .expect_event("IN_CREATE through-the-mount", |e| e.matches(IN_CREATE, "through-the-mount"));
    let missed: Vec<_> =
        plain.events().into_iter().filter(|e| e.name == "from-the-server").collect();
    assert!(
        missed.is_empty(),
        "without FakeNotify the kernel reported a backing change: {missed:?}"
    );
}

#[test]
fn a_written_file_gives_create_then_close_write_once_settled() {
    let mut remote = Remote::watch("all");
    write(&remote.fuse.backing("new.txt"), b"hello");
    let create =
        remote.client.expect_event("IN_CREATE new.txt", |e| e.matches(IN_CREATE, "new.txt"));
    remote.client.expect_event("IN_CLOSE_WRITE new.txt", |e| e.matches(IN_CLOSE_WRITE, "new.txt"));
    let events = remote.client.events();
    let position = |mask| events.iter().position(|e| e.matches(mask, "new.txt"));
    assert!(
        position(IN_CREATE) < position(IN_CLOSE_WRITE),
        "IN_CLOSE_WRITE came before IN_CREATE: {events:?}"
    );
    assert_eq!(create.cookie, 0, "IN_CREATE carries no cookie");
    assert_eq!(create.wd, 1, "the first watch of an instance is wd 1");
}

#[test]
fn appending_gives_modify_then_close_write() {
    let mut remote = Remote::prepared("all", |fuse| write(&fuse.backing("log.txt"), b"first\n"));
    append(&remote.fuse.backing("log.txt"), b"second\n");
    remote.client.expect_event("IN_MODIFY log.txt", |e| e.matches(IN_MODIFY, "log.txt"));
    remote.client.expect_event("IN_CLOSE_WRITE log.txt", |e| e.matches(IN_CLOSE_WRITE, "log.txt"));
    let created: Vec<_> = remote.client.events().into_iter().filter(|e| e.is(IN_CREATE)).collect();
    assert!(
        created.is_empty(),
        "a file that existed before the watch was reported created: {created:?}"
    );
}

#[test]
fn chmod_gives_attrib_and_nothing_else() {
    use std::os::unix::fs::PermissionsExt;
    let mut remote =
        Remote::prepared("all", |fuse| write(&fuse.backing("script.sh"), b"echo hi\n"));
    std::fs::set_permissions(
        remote.fuse.backing("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    remote.client.expect_event("IN_ATTRIB script.sh", |e| e.matches(IN_ATTRIB, "script.sh"));
    remote.marker("marker");
    let others: Vec<_> = remote
        .client
        .events()
        .into_iter()
        .filter(|e| e.name == "script.sh" && e.mask != IN_ATTRIB)
        .collect();
    assert!(others.is_empty(), "a chmod gave more than IN_ATTRIB: {others:?}");
}

#[test]
fn a_create_whose_owner_is_set_just_after_is_a_create_not_a_move_in() {
    // bindfs, and every FUSE server that creates as the calling user, chowns each new file
    // just after creating it, which sets its ctime past its mtime as a rename would. A watch
    // for IN_CREATE alone would never see such a file if it came as a lone IN_MOVED_TO.
    let mut remote = Remote::watch("CREATE|MOVED_TO");
    for i in 0..5 {
        let name = format!("owned-{i}");
        let path = remote.fuse.backing(&name);
        write(&path, b"");
        std::thread::sleep(Duration::from_millis(5));
        std::os::unix::fs::lchown(&path, Some(1000 + i), None).expect("chown the new file");
    }
    for i in 0..5 {
        let name = format!("owned-{i}");
        remote.client.expect_event(&format!("IN_CREATE {name}"), |e| e.matches(IN_CREATE, &name));
    }
    let moved: Vec<_> = remote.client.events().into_iter().filter(|e| e.is(IN_MOVED_TO)).collect();
    assert!(moved.is_empty(), "a new file looked moved in: {moved:?}");
}

#[test]
fn rename_gives_moved_from_and_moved_to_with_one_nonzero_cookie() {
    let mut remote = Remote::prepared("all", |fuse| write(&fuse.backing("draft.txt"), b"text"));
    std::fs::rename(remote.fuse.backing("draft.txt"), remote.fuse.backing("final.txt")).unwrap();
    let from = remote
        .client
        .expect_event("IN_MOVED_FROM draft.txt", |e| e.matches(IN_MOVED_FROM, "draft.txt"));
    let to = remote
        .client
        .expect_event("IN_MOVED_TO final.txt", |e| e.matches(IN_MOVED_TO, "final.txt"));
    assert_ne!(from.cookie, 0, "a rename pair needs a non-zero cookie");
    assert_eq!(from.cookie, to.cookie, "the two halves of a rename must share their cookie");
    let events = remote.client.events();
    let index = |e: &EventLine| events.iter().position(|x| x == e);
    assert!(index(&from) < index(&to), "IN_MOVED_TO came before IN_MOVED_FROM: {events:?}");

    remote.marker("marker");
    let wrong: Vec<_> = remote
        .client
        .events()
        .into_iter()
        .filter(|e| e.is(IN_CREATE | IN_DELETE) && e.name != "marker")
        .collect();
    assert!(wrong.is_empty(), "a rename was also reported as create/delete: {wrong:?}");
}

#[test]
fn renaming_a_directory_carries_isdir() {
    let mut remote =
        Remote::prepared("all", |fuse| std::fs::create_dir(fuse.backing("season1")).unwrap());
    std::fs::rename(remote.fuse.backing("season1"), remote.fuse.backing("Season 01")).unwrap();
    let from = remote.client.expect_event("IN_MOVED_FROM|IN_ISDIR season1", |e| {
        e.matches(IN_MOVED_FROM | IN_ISDIR, "season1")
    });
    let to = remote.client.expect_event("IN_MOVED_TO|IN_ISDIR Season 01", |e| {
        e.matches(IN_MOVED_TO | IN_ISDIR, "Season 01")
    });
    assert!(
        from.cookie != 0 && from.cookie == to.cookie,
        "cookies {} and {} must be equal and non-zero",
        from.cookie,
        to.cookie
    );
}

#[test]
fn deleting_a_file_gives_delete() {
    let mut remote = Remote::prepared("all", |fuse| write(&fuse.backing("old.txt"), b"bye"));
    std::fs::remove_file(remote.fuse.backing("old.txt")).unwrap();
    let delete =
        remote.client.expect_event("IN_DELETE old.txt", |e| e.matches(IN_DELETE, "old.txt"));
    assert_eq!(delete.cookie, 0);
}

#[test]
fn mkdir_and_rmdir_carry_isdir() {
    let mut remote = Remote::watch("all");
    std::fs::create_dir(remote.fuse.backing("Movies")).unwrap();
    remote
        .client
        .expect_event("IN_CREATE|IN_ISDIR Movies", |e| e.matches(IN_CREATE | IN_ISDIR, "Movies"));
    std::fs::remove_dir(remote.fuse.backing("Movies")).unwrap();
    remote
        .client
        .expect_event("IN_DELETE|IN_ISDIR Movies", |e| e.matches(IN_DELETE | IN_ISDIR, "Movies"));
}

#[test]
fn removing_the_watched_directory_gives_delete_self_then_ignored() {
    let fuse = FuseMount::new();
    std::fs::create_dir(fuse.backing("inbox")).unwrap();
    write(&fuse.backing("inbox/letter"), b"");
    let daemon = Daemon::fast();
    let spec = format!("all:{}", fuse.mounted("inbox").display());
    let mut client = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), true);
    let wd = client.wd_of(&fuse.mounted("inbox"));

    std::fs::remove_dir_all(fuse.backing("inbox")).unwrap();
    let gone = client.expect_event("IN_DELETE_SELF", |e| e.is(IN_DELETE_SELF));
    let ignored = client.expect_event("IN_IGNORED", |e| e.is(IN_IGNORED));
    assert_eq!(
        (gone.wd, ignored.wd),
        (wd, wd),
        "both events belong to the watch of the removed directory"
    );
    let events = client.events();
    let index = |e: &EventLine| events.iter().position(|x| x == e);
    assert!(index(&gone) < index(&ignored), "IN_IGNORED came before IN_DELETE_SELF: {events:?}");
    assert_eq!(
        events.last(),
        Some(&ignored),
        "nothing may follow IN_IGNORED for that wd: {events:?}"
    );
}

#[test]
fn rm_watch_gives_ignored_and_ends_the_watch() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let spec = format!("all:{}", fuse.mount.display());
    let mut client = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);
    let mut witness = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), true);
    let wd = client.wd_of(&fuse.mount);

    client.command(&format!("rm {wd}"));
    client.expect_line("RM OK", |l| l.text == format!("RM {wd} OK"));
    client.expect_event("IN_IGNORED for the removed wd", |e| e.wd == wd && e.mask == IN_IGNORED);

    // The witness keeps the directory watched; the poll that shows it the new file would have
    // queued the event for the removed watch too.
    write(&fuse.backing("unwatched"), b"");
    witness.expect_event("IN_CREATE unwatched", |e| e.matches(IN_CREATE, "unwatched"));
    client.barrier();
    let after: Vec<_> = client.events().into_iter().filter(|e| e.mask != IN_IGNORED).collect();
    assert!(after.is_empty(), "events came for a removed watch: {after:?}");

    client.command(&format!("rm {wd}"));
    client.expect_line("RM EINVAL for a removed wd", |l| l.text == format!("RM {wd} EINVAL"));
}

#[test]
fn only_events_in_the_mask_are_delivered() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mount = fuse.mount.display().to_string();
    let mut filtered = Client::inotify_client(
        Libc::Glibc,
        &[&format!("CREATE|DELETE:{mount}")],
        Some(&daemon),
        true,
    );
    let mut witness =
        Client::inotify_client(Libc::Glibc, &[&format!("all:{mount}")], Some(&daemon), true);

    write(&fuse.backing("f1"), b"1");
    filtered.expect_event("IN_CREATE f1", |e| e.matches(IN_CREATE, "f1"));
    witness.expect_event("IN_CLOSE_WRITE f1", |e| e.matches(IN_CLOSE_WRITE, "f1"));
    // The create's own IN_MODIFY (a new file with data) is not the append's.
    witness.mark();
    append(&fuse.backing("f1"), b"2");
    witness.expect_event("IN_MODIFY f1", |e| e.matches(IN_MODIFY, "f1"));
    std::fs::set_permissions(
        fuse.backing("f1"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // (Only a step barrier here: whether IN_ATTRIB comes alone is checked elsewhere.)
    witness.expect_event("IN_ATTRIB f1", |e| e.is(IN_ATTRIB) && e.name == "f1");
    std::fs::rename(fuse.backing("f1"), fuse.backing("f2")).unwrap();
    witness.expect_event("IN_MOVED_TO f2", |e| e.matches(IN_MOVED_TO, "f2"));
    std::fs::remove_file(fuse.backing("f2")).unwrap();
    filtered.expect_event("IN_DELETE f2", |e| e.matches(IN_DELETE, "f2"));

    // Every change above was delivered by an earlier poll than this create's.
    write(&fuse.backing("marker"), b"");
    filtered.expect_event("IN_CREATE marker", |e| e.matches(IN_CREATE, "marker"));
    let outside: Vec<_> =
        filtered.events().into_iter().filter(|e| e.mask & !(IN_CREATE | IN_DELETE) != 0).collect();
    assert!(
        outside.is_empty(),
        "events outside the mask IN_CREATE|IN_DELETE were delivered: {outside:?}"
    );
}

#[test]
fn a_rename_between_two_watched_directories_pairs_cookies_across_wds() {
    let fuse = FuseMount::new();
    for dir in ["incoming", "library"] {
        std::fs::create_dir(fuse.backing(dir)).unwrap();
    }
    write(&fuse.backing("incoming/film.mkv"), b"");
    let daemon = Daemon::fast();
    let (incoming, library) = (fuse.mounted("incoming"), fuse.mounted("library"));
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", incoming.display()), &format!("all:{}", library.display())],
        Some(&daemon),
        true,
    );
    let (from_wd, to_wd) = (client.wd_of(&incoming), client.wd_of(&library));

    std::fs::rename(fuse.backing("incoming/film.mkv"), fuse.backing("library/film.mkv")).unwrap();
    let from = client.expect_event("IN_MOVED_FROM film.mkv on incoming's wd", |e| {
        e.wd == from_wd && e.matches(IN_MOVED_FROM, "film.mkv")
    });
    let to = client.expect_event("IN_MOVED_TO film.mkv on library's wd", |e| {
        e.wd == to_wd && e.matches(IN_MOVED_TO, "film.mkv")
    });
    assert!(
        from.cookie != 0 && from.cookie == to.cookie,
        "cookies {} and {} must be equal and non-zero",
        from.cookie,
        to.cookie
    );
}

#[test]
fn a_watched_remote_file_gives_modify_then_delete_self_and_ignored() {
    let fuse = FuseMount::new();
    write(&fuse.backing("db.sqlite"), b"v1");
    let daemon = Daemon::fast();
    let file = fuse.mounted("db.sqlite");
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", file.display())],
        Some(&daemon),
        true,
    );
    let wd = client.wd_of(&file);

    append(&fuse.backing("db.sqlite"), b"v2");
    client.expect_event("IN_MODIFY on the file itself", |e| e.wd == wd && e.matches(IN_MODIFY, ""));
    client.expect_event("IN_CLOSE_WRITE on the file itself", |e| {
        e.wd == wd && e.matches(IN_CLOSE_WRITE, "")
    });
    std::fs::remove_file(fuse.backing("db.sqlite")).unwrap();
    let gone = client.expect_event("IN_DELETE_SELF", |e| e.wd == wd && e.mask == IN_DELETE_SELF);
    let ignored = client.expect_event("IN_IGNORED", |e| e.wd == wd && e.mask == IN_IGNORED);
    let events = client.events();
    let index = |e: &EventLine| events.iter().position(|x| x == e);
    assert!(index(&gone) < index(&ignored), "IN_IGNORED came before IN_DELETE_SELF: {events:?}");
}

#[test]
fn mask_add_extends_the_mask_of_an_existing_watch() {
    let mut remote = Remote::watch("CREATE");
    let mount = remote.fuse.mount.display().to_string();
    remote.client.command(&format!("add DELETE|MASK_ADD:{mount}"));
    remote
        .client
        .expect_line("WATCH 1 for the same directory", |l| l.text == format!("WATCH 1 {mount}"));
    write(&remote.fuse.backing("short-lived"), b"");
    remote.client.expect_event("IN_CREATE short-lived", |e| e.matches(IN_CREATE, "short-lived"));
    std::fs::remove_file(remote.fuse.backing("short-lived")).unwrap();
    remote.client.expect_event("IN_DELETE short-lived", |e| e.matches(IN_DELETE, "short-lived"));
}

#[test]
fn adding_the_same_directory_twice_returns_the_same_wd_and_replaces_the_mask() {
    let fuse = FuseMount::new();
    write(&fuse.backing("kept"), b"");
    let daemon = Daemon::fast();
    let mount = fuse.mount.display().to_string();
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &["-n", &format!("CREATE:{mount}")],
        Some(&daemon),
        true,
    );
    let mut witness =
        Client::inotify_client(Libc::Glibc, &[&format!("all:{mount}")], Some(&daemon), true);

    // Waits look past the first WATCH line: the answer to this add must be in before the change.
    client.mark();
    client.command(&format!("add DELETE:{mount}"));
    client.expect_line("WATCH 1 for the same directory", |l| l.text == format!("WATCH 1 {mount}"));
    std::fs::remove_file(fuse.backing("kept")).unwrap();
    client.expect_event("IN_DELETE kept (the new mask)", |e| e.matches(IN_DELETE, "kept"));
    // Without IN_MASK_ADD the new mask replaces the old one: creates are no longer reported.
    write(&fuse.backing("new"), b"");
    witness.expect_event("IN_CREATE new", |e| e.matches(IN_CREATE, "new"));
    client.barrier();
    let creates: Vec<_> = client.events().into_iter().filter(|e| e.is(IN_CREATE)).collect();
    assert!(
        creates.is_empty(),
        "IN_CREATE delivered after the mask was replaced by IN_DELETE: {creates:?}"
    );
}

#[test]
fn each_event_carries_one_kind_and_only_masked_bits() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mount = fuse.mount.display().to_string();
    let mut everything =
        Client::inotify_client(Libc::Glibc, &[&format!("all:{mount}")], Some(&daemon), true);
    let mut attrib =
        Client::inotify_client(Libc::Glibc, &[&format!("ATTRIB:{mount}")], Some(&daemon), true);

    // A chmod right after the create lands in the poll where the written file settles, so that
    // poll owes both IN_CLOSE_WRITE and IN_ATTRIB for the same name: two events, as inotify
    // reports them, never one event with two kinds.
    write(&fuse.backing("video.mkv"), b"frames");
    everything.expect_event("IN_CREATE video.mkv", |e| e.matches(IN_CREATE, "video.mkv"));
    std::fs::set_permissions(
        fuse.backing("video.mkv"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    everything.expect_event("IN_CLOSE_WRITE video.mkv", |e| {
        e.is(IN_CLOSE_WRITE) && e.name == "video.mkv"
    });
    everything.expect_event("IN_ATTRIB video.mkv", |e| e.is(IN_ATTRIB) && e.name == "video.mkv");
    attrib.expect_event("IN_ATTRIB video.mkv", |e| e.is(IN_ATTRIB) && e.name == "video.mkv");

    for (client, allowed) in [(&mut everything, IN_ALL_EVENTS), (&mut attrib, IN_ATTRIB)] {
        for event in client.events() {
            let kinds = event.mask & IN_ALL_EVENTS;
            assert_eq!(kinds.count_ones(), 1, "one event kind per event expected, got {event}");
            assert_eq!(
                kinds & !allowed,
                0,
                "{event} has bits outside the watch mask {}",
                mask_names(allowed)
            );
        }
    }
}

#[test]
fn oneshot_delivers_one_event_then_ignored() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mount = fuse.mount.display().to_string();
    let mut oneshot = Client::inotify_client(
        Libc::Glibc,
        &["-n", &format!("CREATE|ONESHOT:{mount}")],
        Some(&daemon),
        true,
    );
    let mut witness =
        Client::inotify_client(Libc::Glibc, &[&format!("CREATE:{mount}")], Some(&daemon), true);

    write(&fuse.backing("first"), b"");
    oneshot.expect_event("IN_CREATE first", |e| e.matches(IN_CREATE, "first"));
    oneshot.expect_event("IN_IGNORED after the one shot", |e| e.wd == 1 && e.mask == IN_IGNORED);
    write(&fuse.backing("second"), b"");
    // The poll that shows `second` to the witness would have queued it for the ended watch too.
    witness.expect_event("IN_CREATE second", |e| e.matches(IN_CREATE, "second"));
    oneshot.barrier();
    let late: Vec<_> = oneshot.events().into_iter().filter(|e| e.name == "second").collect();
    assert!(late.is_empty(), "events after IN_ONESHOT fired: {late:?}");
}

#[test]
fn a_reader_that_stops_reading_gets_one_overflow_and_others_are_served() {
    // Each round's creates come from one poll, below the limit, so a reader that keeps up never
    // overflows. Long names make one event per message, so the paused reader's socket fills
    // after a couple of hundred events and the daemon's own backlog grows past the limit.
    const LIMIT: usize = 200;
    const PER_ROUND: usize = 150;
    const MAX_ROUNDS: usize = 12;
    let config = format!("{FAST_CONFIG}max_queued_events = {LIMIT}\n");
    let fuse = FuseMount::new();
    let daemon = Daemon::start(&config);
    let spec = format!("CREATE:{}", fuse.mount.display());
    let mut slow = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);
    let mut reader = Client::inotify_client(Libc::Glibc, &[&spec], Some(&daemon), true);
    slow.command("pause");
    slow.expect_line("PAUSED", |l| l.text == "PAUSED");

    let slow_pid = slow.pid() as i32;
    let slow_overflows = |daemon: &Daemon| {
        daemon
            .status()
            .instances
            .iter()
            .filter(|i| i.pid == slow_pid)
            .map(|i| i.overflows)
            .sum::<u64>()
    };
    let long = "x".repeat(200);
    let mut rounds = 0;
    while slow_overflows(&daemon) == 0 {
        assert!(
            rounds < MAX_ROUNDS,
            "no overflow for the paused reader after {} events",
            rounds * PER_ROUND
        );
        for i in 0..PER_ROUND {
            write(&fuse.backing(format!("r{rounds:02}-{i:03}-{long}")), b"");
        }
        let last = format!("r{rounds:02}-{:03}-{long}", PER_ROUND - 1);
        reader.expect_event(&format!("IN_CREATE of round {rounds}'s last file"), |e| {
            e.matches(IN_CREATE, &last)
        });
        rounds += 1;
    }
    let total = rounds * PER_ROUND;
    let reader_creates = reader.events().iter().filter(|e| e.is(IN_CREATE)).count();
    assert_eq!(reader_creates, total, "the reader that kept up must get every create");

    slow.command("resume");
    slow.expect_event("IN_Q_OVERFLOW with wd -1", |e| e.mask == IN_Q_OVERFLOW && e.wd == -1);
    write(&fuse.backing("after"), b"");
    slow.expect_event("IN_CREATE after, once reading again", |e| e.matches(IN_CREATE, "after"));
    reader.expect_event("IN_CREATE after", |e| e.matches(IN_CREATE, "after"));

    let events = slow.events();
    let overflows = events.iter().filter(|e| e.is(IN_Q_OVERFLOW)).count();
    assert_eq!(overflows, 1, "exactly one IN_Q_OVERFLOW expected");
    let creates = events.iter().filter(|e| e.is(IN_CREATE) && e.name != "after").count();
    assert!(creates < total, "the paused reader got all {total} creates: no backlog limit applied");
    let reader_overflows: Vec<_> =
        reader.events().into_iter().filter(|e| e.is(IN_Q_OVERFLOW)).collect();
    assert!(
        reader_overflows.is_empty(),
        "the reader that kept up got an overflow: {reader_overflows:?}"
    );
}

#[test]
fn two_clients_on_one_directory_get_their_own_wds_from_one_poll() {
    let fuse = FuseMount::new();
    std::fs::create_dir(fuse.backing("shared")).unwrap();
    std::fs::create_dir(fuse.backing("other")).unwrap();
    let daemon = Daemon::fast();
    let (shared, other) = (fuse.mounted("shared"), fuse.mounted("other"));
    let mut first = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", other.display()), &format!("all:{}", shared.display())],
        Some(&daemon),
        true,
    );
    let mut second = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", shared.display())],
        Some(&daemon),
        true,
    );
    let (wd_first, wd_second) = (first.wd_of(&shared), second.wd_of(&shared));
    assert_eq!((wd_first, wd_second), (2, 1), "wds count up from 1 per instance");

    write(&fuse.backing("shared/episode.mkv"), b"");
    first.expect_event("IN_CREATE episode.mkv on wd 2", |e| {
        e.wd == wd_first && e.matches(IN_CREATE, "episode.mkv")
    });
    second.expect_event("IN_CREATE episode.mkv on wd 1", |e| {
        e.wd == wd_second && e.matches(IN_CREATE, "episode.mkv")
    });

    // One watched object for the shared directory, so one poll per interval, not two.
    let status = daemon.status();
    assert_eq!(status.objects_polled, 2, "shared and other should be 2 polled objects: {status:?}");
    let before = daemon.status();
    let _window = first.collect_for(Duration::from_secs(2));
    let after = daemon.status();
    let elapsed_ms = after.uptime_ms.saturating_sub(before.uptime_ms);
    let polls = after.polls - before.polls;
    let per_object_max = elapsed_ms / 200 + 2;
    assert!(
        polls <= 2 * per_object_max,
        "{polls} polls in {elapsed_ms} ms for 2 objects at 200 ms: the shared directory is polled per subscriber"
    );
}
