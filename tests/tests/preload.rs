//! `libfakenotify.so` on its own: what it links to, what a preloaded program does when no
//! daemon answers or the daemon goes away, and the errors its hooks give.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fakenotify_tests::*;

fn needed_entries(library: &Path) -> Vec<String> {
    let output =
        Command::new("readelf").arg("-d").arg(library).output().expect("run readelf (binutils)");
    assert!(
        output.status.success(),
        "readelf -d {}: {}",
        library.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_debug_preload_needs_no_library() {
    let library = artifacts().preload();
    let needed = needed_entries(&library);
    assert!(
        needed.is_empty(),
        "{} has NEEDED entries (it must serve glibc and musl alike):\n{}",
        library.display(),
        needed.join("\n")
    );
}

#[test]
fn the_release_preload_needs_no_library() {
    let target_dir =
        artifacts().profile_dir.parent().expect("the profile directory has a parent").to_owned();
    let library = fakenotify_tests::artifacts::build_release_preload(&target_dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let needed = needed_entries(&library);
    assert!(needed.is_empty(), "{} has NEEDED entries:\n{}", library.display(), needed.join("\n"));
}

#[test]
fn with_no_daemon_a_preloaded_client_uses_real_inotify() {
    let dir = TempDir::new("no-daemon");
    for libc in [Libc::Glibc, Libc::Musl] {
        for flags in [&[][..], &["-n"][..], &["-i"][..]] {
            let spec = format!("all:{}", dir.path().display());
            let mut args = flags.to_vec();
            args.push(&spec);
            let mut client = Client::inotify_client(libc, &args, None, true);
            client.expect_line("INIT ... inotify (the real one)", |l| {
                l.text.starts_with("INIT ") && l.text.ends_with(" inotify")
            });
            let name = format!("{libc:?}{}", flags.join(""));
            write(&dir.join(&name), b"");
            client.expect_event(&format!("IN_CREATE {name}"), |e| e.matches(IN_CREATE, &name));
            client.expect_event(&format!("IN_CLOSE_WRITE {name}"), |e| {
                e.matches(IN_CLOSE_WRITE, &name)
            });
        }
    }
}

#[test]
fn with_a_stale_socket_a_preloaded_client_uses_real_inotify() {
    let dir = TempDir::new("stale-socket");
    let socket = dir.join("fakenotify.sock");
    // A socket file nobody listens on, as a killed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let watched = TempDir::new("stale-socket-watched");
    let spec = format!("CREATE:{}", watched.path().display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let mut client = Client::spawn_with_socket(program, &[&spec], &socket, true);
    client.expect_line("READY", |l| l.text == "READY");
    client.expect_line("INIT ... inotify (the real one)", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" inotify")
    });
    write(&watched.join("seen"), b"");
    client.expect_event("IN_CREATE seen", |e| e.matches(IN_CREATE, "seen"));
}

#[test]
fn programs_that_do_not_use_inotify_are_unaffected() {
    let dir = TempDir::new("unaffected");
    write(&dir.join("file"), b"contents\n");
    let daemon = Daemon::fast();
    let output = Command::new("cat")
        .arg(dir.join("file"))
        .env("LD_PRELOAD", artifacts().preload())
        .env("FAKENOTIFY_SOCKET", daemon.socket())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cat under the preload failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"contents\n");
    assert!(
        output.stderr.is_empty(),
        "the preload is quiet by default, yet printed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn add_watch_errors_match_real_inotify() {
    let dir = TempDir::new("errors");
    write(&dir.join("file"), b"");
    let daemon = Daemon::fast();
    let path = |name: &str| dir.join(name).display().to_string();
    let cases = [
        format!("all:{}", path("missing")),
        format!("all|ONLYDIR:{}", path("file")),
        format!("0:{}", path("")),
        format!("all:{}", path("file/below")),
        format!("all:{}", path("")),
        format!("all|MASK_CREATE:{}", path("")),
        format!("CREATE|MASK_ADD|MASK_CREATE:{}", path("")),
    ];
    let args: Vec<&str> = cases.iter().map(String::as_str).collect();
    let answers = |client: &mut Client| -> Vec<String> {
        client
            .lines()
            .into_iter()
            .map(|l| l.text)
            .filter(|t| t.starts_with("WATCH ") || t.starts_with("ERROR "))
            .collect()
    };
    let mut real = Client::inotify_client(Libc::Glibc, &args, None, false);
    let mut served = Client::inotify_client(Libc::Glibc, &args, Some(&daemon), true);
    served.expect_line("INIT ... socket", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    assert_eq!(
        answers(&mut served),
        answers(&mut real),
        "the preload's answers differ from real inotify's"
    );
}

#[test]
fn rm_watch_of_an_unknown_wd_is_einval() {
    let dir = TempDir::new("rm-unknown");
    let daemon = Daemon::fast();
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", dir.path().display())],
        Some(&daemon),
        true,
    );
    client.command("rm 42");
    client.expect_line("RM 42 EINVAL", |l| l.text == "RM 42 EINVAL");
    client.command("rm -1");
    client.expect_line("RM -1 EINVAL", |l| l.text == "RM -1 EINVAL");
}

#[test]
fn when_the_daemon_stops_the_stream_goes_quiet() {
    let dir = TempDir::new("daemon-gone");
    let mut daemon = Daemon::fast();
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &["-n", &format!("all:{}", dir.path().display())],
        Some(&daemon),
        true,
    );
    assert_eq!(daemon.stop().code(), Some(0));
    // A reader would see EOF or an error at once if the daemon's exit ended the fd; later
    // changes simply go unreported, as on NFS without FakeNotify.
    write(&dir.join("unseen"), b"");
    let after = client.collect_for(Duration::from_millis(500));
    let ended: Vec<_> =
        after.iter().filter(|l| l.text == "EOF" || l.text.starts_with("ERROR")).collect();
    assert!(
        ended.is_empty(),
        "the application saw its inotify fd end when the daemon stopped: {ended:?}"
    );
    assert!(client.is_running(), "the client exited when the daemon stopped");
}

#[test]
fn watches_are_requested_over_the_instances_channel() {
    let dir = TempDir::new("channel");
    for name in ["a", "b"] {
        std::fs::create_dir(dir.join(name)).expect("mkdir");
    }
    let daemon = Daemon::fast();
    // inotifywait adds both watches, waits a second for events and exits.
    let output = Command::new("inotifywait")
        .args(["-t", "1", "-e", "create"])
        .arg(dir.join("a"))
        .arg(dir.join("b"))
        .env("LD_PRELOAD", artifacts().preload())
        .env("FAKENOTIFY_SOCKET", daemon.socket())
        .env("FAKENOTIFY_DEBUG", "1")
        .output()
        .expect("run inotifywait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let adds: Vec<&str> = stderr.lines().filter(|l| l.contains("inotify_add_watch(")).collect();
    assert_eq!(adds.len(), 2, "two add_watch lines:\n{stderr}");
    for line in adds {
        assert!(line.ends_with("(daemon, channel)"), "not over the channel: {line}\n{stderr}");
    }
}
