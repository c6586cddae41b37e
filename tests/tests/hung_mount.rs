//! A mount whose FUSE server stops answering (SIGSTOP, as an NFS server that goes away) must not
//! hold up events of other mounts or the control socket; `status` names it while it hangs, and
//! its events resume when it answers again.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use fakenotify_proto::record::{Record, Reply};
use fakenotify_tests::fuse::Frozen;
use fakenotify_tests::raw_client;
use fakenotify_tests::*;

#[test]
fn a_hung_mount_does_not_stop_events_of_other_mounts() {
    let hung = FuseMount::new();
    let alive = FuseMount::new();
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
    let specs = [
        format!("IN_CREATE:{}", hung.mount.display()),
        format!("IN_CREATE:{}", alive.mount.display()),
    ];
    let mut client =
        Client::inotify_client(Libc::Glibc, &["-n", &specs[0], &specs[1]], Some(&daemon), true);
    write(&hung.backing("before"), b"");
    client.expect_event("before", |e| e.matches(IN_CREATE, "before"));

    let frozen = hung.freeze();
    write(&hung.backing("during"), b"");
    // Long enough for a poll of the frozen mount to be stuck in its scanner.
    std::thread::sleep(Duration::from_millis(1500));

    for n in 0..3 {
        let name = format!("alive-{n}");
        let began = Instant::now();
        write(&alive.backing(&name), b"");
        client.expect_event(&name, |e| e.matches(IN_CREATE, &name));
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(1300),
            "{name} took {took:?} while another mount hangs"
        );
    }
    let (s, took) = daemon.full_status();
    assert!(took < Duration::from_secs(1), "status took {took:?} while a mount hangs");
    let named = s.slow_scans.iter().any(|scan| scan.path == hung.mount.display().to_string());
    assert!(named, "status names the hung mount: {:?}", s.slow_scans);
    assert!(!s.slow_scans.iter().any(|scan| scan.path == alive.mount.display().to_string()));

    drop(frozen);
    client.expect_event("during (after SIGCONT)", |e| e.matches(IN_CREATE, "during"));
    let deadline = Instant::now() + WAIT;
    while !daemon.full_status().0.slow_scans.is_empty() {
        assert!(Instant::now() < deadline, "the mount is still reported hung after SIGCONT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `client` to report `name` created, and checks that it came within the interval and a
/// second, and that `status` still answers within a second.
fn events_keep_coming(client: &mut Client, daemon: &Daemon, alive: &FuseMount, name: &str) {
    let began = Instant::now();
    write(&alive.backing(name), b"");
    client.expect_event(name, |e| e.matches(IN_CREATE, name));
    let took = began.elapsed();
    assert!(took < Duration::from_millis(1300), "{name} took {took:?} while another mount hangs");
    let (_, took) = daemon.full_status();
    assert!(took < Duration::from_secs(1), "status took {took:?} ({name})");
}

/// Runs `fakenotify-ctl ARGS` on a thread of its own: it may wait for the hung mount.
fn ctl_in_background(daemon: &Daemon, args: &[&str]) -> std::thread::JoinHandle<String> {
    let socket = daemon.socket().to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_ctl(&socket, &args, false);
        format!(
            "{}{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every request whose filesystem calls reach a hung mount waits for that mount alone: reloads,
/// policy changes, an application's `inotify_add_watch` there. Everything else goes on: events
/// of another mount, `status`, `rm_watch` of a watch on the hung mount, new instances, an
/// `inotify_add_watch` on local disk. After SIGCONT the waiting requests complete.
#[test]
fn requests_that_touch_a_hung_mount_wait_alone() {
    let hung = FuseMount::new();
    let alive = FuseMount::new();
    std::fs::create_dir(hung.backing("policy")).expect("mkdir policy");
    std::fs::create_dir(hung.backing("sub")).expect("mkdir sub");
    std::fs::create_dir(hung.backing("added")).expect("mkdir added");
    let local = TempDir::new("local");
    let config = format!(
        "[daemon]\ndefault_poll_interval = \"300ms\"\n\n[[watch]]\npath = \"{}\"\n\
         poll_interval = \"300ms\"\n\n[[watch]]\npath = \"{}\"\npoll_interval = \"300ms\"\n",
        hung.mounted("policy").display(),
        alive.mount.display()
    );
    let daemon = Daemon::start(&config);
    let specs = [
        format!("CREATE:{}", alive.mount.display()),
        format!("CREATE|DELETE:{}", hung.mount.display()),
    ];
    let mut watcher =
        Client::inotify_client(Libc::Glibc, &[&specs[0], &specs[1]], Some(&daemon), true);
    let hung_wd = watcher.wd_of(&hung.mount);

    let frozen = hung.freeze();
    // Past the kernel's attribute and entry caches of the mount (a second), so that every
    // call there waits for the server.
    std::thread::sleep(Duration::from_millis(1500));
    events_keep_coming(&mut watcher, &daemon, &alive, "alive-0");

    // SIGHUP: the reload's policy paths are looked for on a worker.
    daemon.signal(libc::SIGHUP);
    events_keep_coming(&mut watcher, &daemon, &alive, "after-sighup");

    let reload = ctl_in_background(&daemon, &["reload"]);
    events_keep_coming(&mut watcher, &daemon, &alive, "during-ctl-reload");
    let added = hung.mounted("added");
    let add = ctl_in_background(&daemon, &["add", added.to_str().expect("UTF-8")]);
    events_keep_coming(&mut watcher, &daemon, &alive, "during-ctl-add");

    // Removing a policy needs no path: it answers at once.
    let began = Instant::now();
    let out = run_ctl(daemon.socket(), &["remove", alive.mount.to_str().expect("UTF-8")], false);
    assert!(out.status.success(), "ctl remove: {out:?}");
    assert!(began.elapsed() < Duration::from_secs(1), "ctl remove took {:?}", began.elapsed());

    // An application adding a watch on the hung mount waits, as with the kernel there.
    let sub_spec = format!("CREATE:{}", hung.mounted("sub").display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let mut waiting = Client::spawn(program, &[&sub_spec], Some(&daemon), true);
    // A new instance and a watch on local disk are served meanwhile.
    let local_spec = format!("CREATE:{}", local.path().display());
    let began = Instant::now();
    let mut other = Client::inotify_client(Libc::Glibc, &[&local_spec], Some(&daemon), true);
    assert!(other.lines().iter().any(|l| l.text.ends_with(" socket")), "served by the daemon");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "a local add_watch took {:?}",
        began.elapsed()
    );
    events_keep_coming(&mut watcher, &daemon, &alive, "during-app-add");

    // rm_watch of the watch on the hung mount answers at once, with IN_IGNORED first.
    watcher.command(&format!("rm {hung_wd}"));
    watcher.expect_line("IN_IGNORED", |l| {
        EventLine::parse(&l.text).is_some_and(|e| e.wd == hung_wd && e.is(IN_IGNORED))
    });
    watcher.expect_line("RM OK", |l| l.text == format!("RM {hung_wd} OK"));
    events_keep_coming(&mut watcher, &daemon, &alive, "after-rm");
    assert!(!reload.is_finished(), "ctl reload finished while its policy path hangs");
    assert!(
        waiting.wait_for(Duration::from_millis(200), |l| l.text == "READY").is_none(),
        "an add_watch on the hung mount returned while it hangs"
    );
    let (s, _) = daemon.full_status();
    let jobs: Vec<&str> = s.slow_scans.iter().map(|j| j.job.as_str()).collect();
    assert!(jobs.contains(&"policy paths"), "status names the policy job: {:?}", s.slow_scans);

    drop(frozen);
    let reloaded = reload.join().expect("the ctl reload thread");
    assert!(reloaded.contains("reloaded"), "ctl reload after SIGCONT: {reloaded}");
    let added_out = add.join().expect("the ctl add thread");
    assert!(added_out.contains("added"), "ctl add after SIGCONT: {added_out}");
    waiting.expect_line("READY after SIGCONT", |l| l.text == "READY");
    write(&hung.backing("sub/late"), b"");
    waiting.expect_event("late", |e| e.matches(IN_CREATE, "late"));
    events_keep_coming(&mut watcher, &daemon, &alive, "after-sigcont");
    let deadline = Instant::now() + WAIT;
    while !daemon.full_status().0.slow_scans.is_empty() {
        assert!(Instant::now() < deadline, "work is still reported stuck after SIGCONT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw protocol client's instance and a directory it opened on a bindfs mount, with the
/// mount then frozen past the kernel's caches: every request about the directory waits.
struct RawOnHung {
    // Dropped in order: the mount is continued before it is unmounted.
    frozen: Option<Frozen>,
    _mount: FuseMount,
    daemon: Daemon,
    channel: Option<OwnedFd>,
    app: Option<OwnedFd>,
    object: std::fs::File,
}

impl RawOnHung {
    fn new() -> RawOnHung {
        let hung = FuseMount::new();
        std::fs::create_dir(hung.backing("dir")).expect("mkdir");
        let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
        let channel = raw_client::connect(daemon.socket());
        let app = raw_client::register(&channel).expect("register an instance");
        let object = std::fs::File::open(hung.mounted("dir")).expect("open the directory");
        let frozen = hung.freeze();
        std::thread::sleep(Duration::from_millis(1500));
        RawOnHung {
            frozen: Some(frozen),
            _mount: hung,
            daemon,
            channel: Some(channel),
            app: Some(app),
            object,
        }
    }

    /// Sends an AddWatch for the directory on a new short connection; returns the connection
    /// and the daemon's first reply.
    fn add_watch(&self) -> (OwnedFd, Reply) {
        let conn = raw_client::connect(self.daemon.socket());
        let app = self.app.as_ref().expect("the instance is open");
        raw_client::send_record(
            &conn,
            Record::AddWatch { mask: IN_CREATE },
            &[app.as_fd(), self.object.as_fd()],
        )
        .expect("send AddWatch");
        let first = raw_client::first_reply(&conn);
        (conn, first)
    }

    fn thaw(&mut self) {
        self.frozen = None;
    }
}

/// A request whose client went away while it waited on a hung mount is dropped: once the mount
/// answers, no watch remains of it.
#[test]
fn a_request_abandoned_on_a_hung_mount_leaves_no_watch() {
    let mut raw = RawOnHung::new();
    let (short, first) = raw.add_watch();
    assert!(first.is_in_progress(), "the daemon says the answer comes later: {first:?}");
    drop(short);
    std::thread::sleep(Duration::from_millis(200));

    raw.thaw();
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, _) = raw.daemon.full_status();
        if s.slow_scans.is_empty() {
            assert_eq!(s.watches, 0, "the abandoned request left a watch: {s:?}");
            assert_eq!(s.objects_polled, 0, "the abandoned request left an object: {s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "work is still reported stuck after SIGCONT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests waiting on a hung mount are bounded per uid: past 64 at once, the next gets ENOSPC
/// at once, and the daemon serves everyone else as before.
#[test]
fn requests_waiting_on_a_hung_mount_are_bounded_per_uid() {
    let mut raw = RawOnHung::new();
    let mut waiting = Vec::new();
    let mut refused = 0;
    for _ in 0..70 {
        let (conn, first) = raw.add_watch();
        if first.is_in_progress() {
            waiting.push(conn);
        } else {
            assert_eq!(first.errno, libc::ENOSPC, "past the bound: {first:?}");
            refused += 1;
        }
    }
    assert_eq!((waiting.len(), refused), (64, 6), "64 wait, the rest are refused");
    let (_, took) = raw.daemon.full_status();
    assert!(took < Duration::from_secs(1), "status took {took:?}");
    raw.thaw();
    for conn in &waiting {
        let reply = raw_client::read_reply(conn);
        assert_eq!(reply.errno, 0, "a waiting request completes after SIGCONT: {reply:?}");
    }
}

/// A request waiting on a hung mount whose instance is closed meanwhile is answered at once
/// (EBADF, as for a call on an fd closed before it), so no thread stays blocked for nothing.
#[test]
fn a_waiting_request_whose_instance_closes_is_answered_at_once() {
    let mut raw = RawOnHung::new();
    let (short, first) = raw.add_watch();
    assert!(first.is_in_progress(), "{first:?}");
    raw.app = None;
    raw.channel = None;
    let began = Instant::now();
    let answer = raw_client::read_reply(&short);
    assert_eq!(answer.errno, libc::EBADF, "the instance is gone: {answer:?}");
    assert!(began.elapsed() < Duration::from_secs(2), "answered after {:?}", began.elapsed());
}

/// A directory renamed on the server is found at its new place on its device's worker. While
/// opening it there takes seconds, another mount's events and `status` go on, and `status`
/// names the work stuck on that directory; the rename's IN_MOVED_TO waits for it (its watch
/// must follow first), and then the watch goes on at the new place.
#[test]
fn a_directory_renamed_on_a_slow_server_is_followed_without_holding_up_the_daemon() {
    const SLOW_OPEN_MS: f64 = 4000.0;
    let slow = FuseMount::delayfs_with_slow_dirs(0.0, "slow-", SLOW_OPEN_MS);
    let alive = FuseMount::new();
    std::fs::create_dir(slow.backing("a")).expect("mkdir a");
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
    let specs = [
        format!("CREATE:{}", alive.mount.display()),
        format!("CREATE|MOVED_FROM|MOVED_TO:{}", slow.mount.display()),
        format!("CREATE:{}", slow.mounted("a").display()),
    ];
    let args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let mut watcher = Client::inotify_client(Libc::Glibc, &args, Some(&daemon), true);
    let moved_wd = watcher.wd_of(&slow.mounted("a"));

    std::fs::rename(slow.backing("a"), slow.backing("slow-a")).expect("rename on the server");
    // A poll of the mount sees the rename within 300 ms; the directory is then being opened at
    // its new place, which takes seconds there.
    std::thread::sleep(Duration::from_millis(1200));
    events_keep_coming(&mut watcher, &daemon, &alive, "during-relocation");
    let (s, _) = daemon.full_status();
    let on_slow = |path: &str| path.starts_with(&slow.mount.display().to_string());
    assert!(
        s.slow_scans.iter().any(|scan| on_slow(&scan.path)),
        "status names the work stuck on the slow mount: {:?}",
        s.slow_scans
    );
    events_keep_coming(&mut watcher, &daemon, &alive, "still-during-relocation");

    watcher.expect_event("IN_MOVED_FROM a", |e| e.is(IN_MOVED_FROM) && e.name == "a");
    watcher.expect_event("IN_MOVED_TO slow-a", |e| e.is(IN_MOVED_TO) && e.name == "slow-a");
    write(&slow.backing("slow-a/inside"), b"");
    watcher.expect_event("inside, on the followed watch", |e| {
        e.wd == moved_wd && e.matches(IN_CREATE, "inside")
    });
}
