//! What a user's local watches cost the kernel is charged to that user, never to root (issue
//! 14, item 2). Several uids each fill their own `fs.inotify.max_user_watches` through the
//! daemon, each getting the kernel's ENOSPC past it; root's plain `inotifywait` still adds a
//! watch. Before, every local watch was on the daemon's one inotify fd, charged to root.
//!
//! This lowers the system-wide limit for its duration, so it is a test binary of its own with
//! one test, and puts the old value back however the test ends.

use std::path::Path;

use fakenotify_tests::*;

const LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";

/// `fs.inotify.max_user_watches` lowered until dropped.
struct WatchLimit {
    old: String,
}

impl WatchLimit {
    fn set(limit: usize) -> WatchLimit {
        let old = std::fs::read_to_string(LIMIT_FILE).expect("read max_user_watches");
        std::fs::write(LIMIT_FILE, limit.to_string()).expect("lower max_user_watches (as root)");
        WatchLimit { old }
    }
}

impl Drop for WatchLimit {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(LIMIT_FILE, self.old.trim()) {
            eprintln!("could not restore {LIMIT_FILE} to {}: {e}", self.old.trim());
        }
    }
}

/// Inotify watches that root's processes hold now.
fn roots_watches() -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    let mut watches = 0;
    for entry in procs.flatten() {
        let owned_by_root = std::os::unix::fs::MetadataExt::uid(
            &entry
                .metadata()
                .unwrap_or_else(|_| std::fs::metadata("/proc/self").expect("stat /proc/self")),
        ) == 0;
        if !owned_by_root
            || !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fdinfo")) else { continue };
        for fd in fds.flatten() {
            let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
            watches += text.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    watches
}

#[test]
fn each_user_fills_its_own_watch_limit_and_roots_inotifywait_still_works() {
    const USERS: [u32; 3] = [65534, 65533, 65532];
    let base = TempDir::new_in(Path::new("/dev/shm"), "charges");
    // High enough that root's own watches fit, low enough that the users' together do not.
    let limit = 64 + roots_watches();
    let dirs: Vec<_> = (0..=limit)
        .map(|i| {
            let dir = base.join(format!("d{i}"));
            std::fs::create_dir(&dir).unwrap();
            dir
        })
        .collect();
    let specs: Vec<String> = dirs.iter().map(|d| format!("IN_CREATE:{}", d.display())).collect();
    let daemon = Daemon::start("[daemon]\nmax_user_watches = 100000\n");

    let _limit = WatchLimit::set(limit);
    let mut users = Vec::new();
    for uid in USERS {
        let mut args = vec![
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            artifacts().inotify_client(Libc::Glibc).display().to_string(),
        ];
        args.extend(specs.iter().cloned());
        let mut client = Client::spawn("setpriv", &args, Some(&daemon), true);
        client.expect_line("INIT served by the daemon", |l| {
            l.text.starts_with("INIT ") && l.text.ends_with(" socket")
        });
        client.expect_line("ENOSPC past the user's own limit", |l| {
            l.text.starts_with("ERROR add_watch") && l.text.contains("ENOSPC")
        });
        client.expect_line("READY", |l| l.text == "READY");
        let added = client.lines().iter().filter(|l| l.text.starts_with("WATCH ")).count();
        assert_eq!(added, limit, "uid {uid} gets exactly its own max_user_watches");
        users.push(client);
    }

    let mut root = Client::inotifywait(&[base.path()], None, false);
    write(&base.join("roots"), b"");
    root.expect_line("root's inotifywait sees its event", |l| l.text.contains("roots"));

    // And the users' watches work: the last directory each could watch.
    write(&dirs[limit - 1].join("late"), b"");
    for client in &mut users {
        client.expect_event("IN_CREATE in the user's last watch", |e| e.matches(IN_CREATE, "late"));
    }
}
