//! `fakenotify-ctl` and the daemon's admin verbs against a live daemon: every verb in text and
//! JSON, run-time policies changing a FUSE directory's poll interval, authorization of non-root
//! peers, reload of a broken configuration, `watch` on a FUSE mount, and a daemon that is not
//! running.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fakenotify_ctl::message::{PolicyInfo, Status};
use fakenotify_tests::*;
use nanoserde::DeJson;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let output = run_ctl(socket, args, false);
    assert!(output.status.success(), "fakenotify-ctl {args:?} failed: {}", stderr(&output));
    stdout(&output)
}

fn status(socket: &Path) -> Status {
    let text = ok(socket, &["status", "--json"]);
    Status::deserialize_json(&text).unwrap_or_else(|e| panic!("status --json: {e}:\n{text}"))
}

fn policies(socket: &Path) -> Vec<PolicyInfo> {
    let text = ok(socket, &["list", "--json"]);
    Vec::<PolicyInfo>::deserialize_json(&text)
        .unwrap_or_else(|e| panic!("list --json: {e}:\n{text}"))
}

#[derive(DeJson)]
struct Done {
    ok: bool,
    message: String,
}

fn done(socket: &Path, args: &[&str]) -> Done {
    let text = ok(socket, args);
    Done::deserialize_json(&text).unwrap_or_else(|e| panic!("{args:?}: {e}:\n{text}"))
}

fn config_with_policy(dir: &Path, interval: &str) -> String {
    format!(
        "[daemon]\ndefault_poll_interval = \"200ms\"\n\n[[watch]]\npath = \"{}\"\npoll_interval = \"{interval}\"\n",
        dir.display()
    )
}

#[test]
fn every_verb_answers_in_text_and_json() {
    let governed = TempDir::new("governed");
    let mut daemon = Daemon::start(&config_with_policy(governed.path(), "2s"));
    let socket = daemon.socket().to_owned();

    let text = ok(&socket, &["status"]);
    assert!(text.starts_with("fakenotifyd "), "status text: {text}");
    assert!(text.contains(&socket.display().to_string()), "status names the socket: {text}");
    let s = status(&socket);
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(s.pid, daemon.pid() as u32);
    assert_eq!(s.socket, socket.display().to_string());
    assert!(s.policies.iter().any(|p| p.path == "(default)" && p.interval_ms == 200), "{s:?}");

    let listed = policies(&socket);
    assert_eq!(listed.len(), 2, "the policy, then the default: {listed:?}");
    assert_eq!((listed[1].path.as_str(), listed[1].interval_ms), ("(default)", 200));
    assert_eq!(
        (listed[0].path.as_str(), listed[0].interval_ms, listed[0].recursive),
        (governed.path().to_str().unwrap(), 2000, true)
    );
    assert!(listed[0].found);
    assert!(ok(&socket, &["list"]).contains(governed.path().to_str().unwrap()));

    let extra = TempDir::new("extra");
    let path = extra.path().to_str().unwrap();
    let added = done(
        &socket,
        &["add", path, "--poll-interval", "750ms", "--no-recursive", "--mode", "poll", "--json"],
    );
    assert!(added.ok && added.message.contains("added"), "{}", added.message);
    let p =
        policies(&socket).into_iter().find(|p| p.path == path).expect("the added policy is listed");
    assert_eq!((p.interval_ms, p.recursive, p.mode.as_str()), (750, false, "poll"));
    assert!(ok(&socket, &["add", path, "--poll-interval", "1s"]).contains("replaced"));
    assert_eq!(policies(&socket).len(), 3, "re-adding a path replaces its policy");

    let removed = done(&socket, &["remove", path, "--json"]);
    assert!(removed.ok, "{}", removed.message);
    assert_eq!(policies(&socket).len(), 2);
    let missing = run_ctl(&socket, &["remove", path], false);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no such policy"), "{}", stderr(&missing));

    assert!(done(&socket, &["reload", "--json"]).message.contains("reloaded"));
    // The admin verbs of fakenotifyd itself are the same requests.
    let via_daemon = Command::new(artifacts().fakenotifyd())
        .args(["list", "--json", "--socket"])
        .arg(&socket)
        .output()
        .expect("run fakenotifyd list");
    assert!(via_daemon.status.success());
    assert_eq!(stdout(&via_daemon), ok(&socket, &["list", "--json"]));

    assert!(done(&socket, &["stop", "--json"]).ok);
    let exit = daemon.wait_exit(WAIT).expect("the daemon stops after `stop`");
    assert!(exit.success(), "stop ends the daemon with status 0, got {exit}");
    assert!(!socket.exists(), "the socket is removed on stop");
}

#[test]
fn a_policy_added_at_run_time_changes_the_poll_interval_of_existing_watches() {
    let fuse = FuseMount::new();
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"3s\"\n");
    let socket = daemon.socket().to_owned();
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let mut client = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);
    let polls_of = |path: &str| -> u64 {
        status(&socket).policies.iter().find(|p| p.path == path).map_or(0, |p| p.polls)
    };

    // On the default, the directory is polled every 3 s.
    let before = polls_of("(default)");
    std::thread::sleep(Duration::from_secs(2));
    assert!(polls_of("(default)") - before <= 1, "the default polls every 3 s");

    let mount = fuse.mount.to_str().unwrap();
    ok(&socket, &["add", mount, "--poll-interval", "200ms"]);
    let governed =
        status(&socket).policies.into_iter().find(|p| p.path == mount).expect("policy in status");
    assert_eq!(
        (governed.objects, governed.interval_ms),
        (1, 200),
        "the watch moved under the new policy"
    );
    // The poll already scheduled keeps its deadline; from then on the new interval holds.
    std::thread::sleep(Duration::from_millis(3200));
    let start = polls_of(mount);
    std::thread::sleep(Duration::from_secs(2));
    let polls = polls_of(mount) - start;
    assert!(polls >= 6, "200 ms policy: {polls} polls in 2 s");
    for n in 0..3 {
        let name = format!("fast-{n}");
        let began = Instant::now();
        write(&fuse.backing(&name), b"");
        client.expect_event(&name, |e| e.matches(IN_CREATE, &name));
        let took = began.elapsed();
        assert!(took < Duration::from_millis(900), "{name} took {took:?} under a 200 ms policy");
    }

    ok(&socket, &["remove", mount]);
    let s = status(&socket);
    let default = s.policies.iter().find(|p| p.path == "(default)").expect("default policy");
    assert_eq!(default.objects, 1, "removing the policy returns the watch to the default");
    std::thread::sleep(Duration::from_millis(500));
    let before = polls_of("(default)");
    std::thread::sleep(Duration::from_secs(2));
    assert!(polls_of("(default)") - before <= 2, "back on the 3 s default");
}

#[test]
fn non_root_peers_may_look_but_not_change() {
    let governed = TempDir::new("nobody-governed");
    let daemon = Daemon::start(&config_with_policy(governed.path(), "1s"));
    let socket = daemon.socket().to_owned();
    // Let uid 65534 reach the socket (0666) through the test's private directory.
    std::fs::set_permissions(daemon.dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let watched = TempDir::new("nobody-watched");
    std::fs::set_permissions(watched.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let path = governed.path().to_str().unwrap();

    for args in [
        vec!["add", path, "--poll-interval", "5s"],
        vec!["remove", path],
        vec!["reload"],
        vec!["stop"],
    ] {
        let output = run_ctl(&socket, &args, true);
        assert_eq!(output.status.code(), Some(1), "{args:?} as uid 65534: {}", stderr(&output));
        assert!(stderr(&output).contains("permission denied"), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(policies(&socket)[0].interval_ms, 1000, "nothing changed");
    for args in [vec!["status", "--json"], vec!["list"]] {
        let output = run_ctl(&socket, &args, true);
        assert!(output.status.success(), "{args:?} as uid 65534: {}", stderr(&output));
    }
    let ctl_path = artifacts().fakenotify_ctl();
    let watch_args = [
        "--reuid=65534".to_string(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        ctl_path.display().to_string(),
        "watch".into(),
        "--socket".into(),
        socket.display().to_string(),
        watched.path().display().to_string(),
    ];
    let mut watcher = Client::spawn("setpriv", &watch_args, Some(&daemon), false);
    watcher.expect_line("Watches established.", |l| l.text == "Watches established.");
    write(&watched.join("hello"), b"");
    watcher.expect_line("a CREATE line", |l| l.text.contains("CREATE hello"));
}

#[test]
fn a_broken_config_on_reload_keeps_the_running_policies() {
    let governed = TempDir::new("reload-governed");
    let daemon = Daemon::start(&config_with_policy(governed.path(), "1s"));
    let socket = daemon.socket().to_owned();
    let config = daemon.dir().join("config.toml");

    std::fs::write(&config, "[daemon]\ndefault_poll_interval = \"5x\"\n").expect("write config");
    let output = run_ctl(&socket, &["reload"], false);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("daemon.default_poll_interval") && message.contains("unknown unit"),
        "{message}"
    );
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while daemon.log().matches("reload rejected").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP with a broken file is logged:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = policies(&socket);
    assert_eq!((listed.len(), listed[0].interval_ms), (2, 1000), "the old policies stay");

    let other = TempDir::new("reload-other");
    std::fs::write(&config, config_with_policy(other.path(), "3s")).expect("write config");
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while policies(&socket)[0].path != other.path().to_str().unwrap() {
        assert!(Instant::now() < deadline, "SIGHUP with a valid file replaces the policies");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(DeJson)]
struct EventJson {
    path: String,
    wd: i32,
    events: Vec<String>,
    cookie: u32,
    name: String,
}

#[test]
fn ctl_watch_prints_remote_changes_as_text_and_json() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    write(&fuse.backing("old"), b"1");
    let ctl_path = artifacts().fakenotify_ctl();
    let mount = fuse.mount.display().to_string();
    let socket = daemon.socket().display().to_string();
    let mut text = Client::spawn(
        &ctl_path,
        &["watch", "-m", "--socket", &socket, &mount],
        Some(&daemon),
        false,
    );
    let mut json = Client::spawn(
        &ctl_path,
        &["watch", "-m", "--json", "--socket", &socket, &mount],
        Some(&daemon),
        false,
    );
    for client in [&mut text, &mut json] {
        client.expect_line("Watches established.", |l| l.text == "Watches established.");
    }

    write(&fuse.backing("new"), b"");
    text.expect_line("CREATE", |l| l.text == format!("{mount}/ CREATE new"));
    append(&fuse.backing("old"), b"2");
    text.expect_line("MODIFY", |l| l.text == format!("{mount}/ MODIFY old"));
    std::fs::rename(fuse.backing("new"), fuse.backing("renamed")).expect("rename");
    // inotifywait's lines: no cookie (the JSON lines below carry it).
    text.expect_line("MOVED_FROM", |l| l.text == format!("{mount}/ MOVED_FROM new"));
    text.expect_line("MOVED_TO", |l| l.text == format!("{mount}/ MOVED_TO renamed"));
    std::fs::remove_file(fuse.backing("renamed")).expect("remove");
    text.expect_line("DELETE", |l| l.text == format!("{mount}/ DELETE renamed"));

    json.expect_line("the last JSON event", |l| l.text.contains("\"DELETE\""));
    let events: Vec<EventJson> = json
        .lines()
        .into_iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| {
            EventJson::deserialize_json(&l.text)
                .unwrap_or_else(|e| panic!("JSON line {:?}: {e}", l.text))
        })
        .collect();
    let kinds: Vec<(String, String)> =
        events.iter().map(|e| (e.events.join(","), e.name.clone())).collect();
    for want in [
        ("CREATE", "new"),
        ("MODIFY", "old"),
        ("MOVED_FROM", "new"),
        ("MOVED_TO", "renamed"),
        ("DELETE", "renamed"),
    ] {
        assert!(kinds.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} in {kinds:?}");
    }
    assert!(events.iter().all(|e| e.path == mount && e.wd == 1));
    let moved: Vec<u32> =
        events.iter().filter(|e| e.events[0].starts_with("MOVED")).map(|e| e.cookie).collect();
    assert!(moved.len() == 2 && moved[0] == moved[1] && moved[0] != 0, "{moved:?}");
}

#[test]
fn every_verb_fails_fast_when_no_daemon_runs() {
    let dir = TempDir::new("no-daemon");
    let socket = dir.join("absent.sock");
    let watched = dir.path().to_str().unwrap().to_owned();
    for args in [
        vec!["status"],
        vec!["list", "--json"],
        vec!["add", "/mnt", "--poll-interval", "1s"],
        vec!["remove", "/mnt"],
        vec!["reload"],
        vec!["stop"],
        vec!["watch", &watched],
    ] {
        let began = Instant::now();
        let output = run_ctl(&socket, &args, false);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("daemon not running at {}", socket.display())),
            "{args:?}: {message}"
        );
        assert_eq!(message.lines().count(), 1, "{args:?}: one line: {message}");
        assert!(began.elapsed() < Duration::from_secs(2), "{args:?} took {:?}", began.elapsed());
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = TempDir::new("usage");
    let socket = dir.join("absent.sock");
    for args in [
        vec!["frobnicate"],
        vec!["add"],
        vec!["add", "/x", "--poll-interval", "5x"],
        vec!["status", "--bogus"],
        vec!["watch", "--events", "nope", "/tmp"],
    ] {
        let output = run_ctl(&socket, &args, false);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
    for verb in ["status", "list", "add", "remove", "reload", "stop", "watch"] {
        let output = run_ctl(&socket, &[verb, "--help"], false);
        assert!(output.status.success() && !stdout(&output).is_empty(), "{verb} --help");
    }
    // `fakenotifyd VERB --help` is the verb's help, not the general one.
    for verb in ["start", "status", "add"] {
        let output = Command::new(artifacts().fakenotifyd())
            .args([verb, "--help"])
            .output()
            .expect("run fakenotifyd VERB --help");
        let text = stdout(&output);
        assert!(output.status.success() && text.starts_with(verb), "fakenotifyd {verb}: {text}");
    }
}

#[test]
fn options_take_their_value_after_an_equals_sign_too() {
    let daemon = Daemon::fast();
    let dir = TempDir::new("eq-options");
    let socket = format!("--socket={}", daemon.socket().display());
    let path = dir.path().display().to_string();
    let added = Command::new(artifacts().fakenotify_ctl())
        .args(["add", &path, "--poll-interval=1m30s", "--mode=poll", &socket])
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run fakenotify-ctl add");
    assert!(added.status.success(), "{}", stderr(&added));
    let listed = Command::new(artifacts().fakenotifyd())
        .args(["list", "--json", &socket])
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run fakenotifyd list");
    let text = stdout(&listed);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(text.contains("\"interval_ms\":90000") && text.contains("\"mode\":\"poll\""), "{text}");
}

#[test]
fn list_on_defaults_shows_the_default_row() {
    let daemon = Daemon::fast();
    let socket = daemon.socket().to_owned();
    let listed = policies(&socket);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].path.as_str(), listed[0].interval_ms), ("(default)", 200));
    for program in [artifacts().fakenotify_ctl(), artifacts().fakenotifyd()] {
        let output = Command::new(&program)
            .args(["list", "--socket"])
            .arg(&socket)
            .env_remove("LD_PRELOAD")
            .output()
            .expect("run list");
        let text = stdout(&output);
        assert!(output.status.success(), "{}: {}", program.display(), stderr(&output));
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 1, "{}: a header and the default row:\n{text}", program.display());
        assert!(rows[0].starts_with("(default)") && rows[0].contains("200ms"), "{text}");
    }
}

#[test]
fn a_reload_keeps_the_policies_added_at_run_time_and_says_so() {
    let governed = TempDir::new("reload-file");
    let daemon = Daemon::start(&config_with_policy(governed.path(), "1s"));
    let socket = daemon.socket().to_owned();
    let added = TempDir::new("reload-added");
    let added_path = added.path().to_str().unwrap();
    ok(&socket, &["add", added_path, "--poll-interval", "750ms"]);

    let reloaded = done(&socket, &["reload", "--json"]);
    assert!(reloaded.ok, "{}", reloaded.message);
    assert!(
        reloaded.message.contains(&format!("kept 1 added at run time: {added_path}")),
        "the reply names the kept policy: {}",
        reloaded.message
    );
    let kept = policies(&socket).into_iter().find(|p| p.path == added_path);
    assert_eq!(kept.map(|p| p.interval_ms), Some(750), "the run-time policy survives ctl reload");

    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while daemon.log().matches(&format!("kept 1 added at run time: {added_path}")).count() < 2 {
        assert!(Instant::now() < deadline, "SIGHUP logs the kept policy:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = policies(&socket);
    assert_eq!(listed.len(), 3, "the file's, the run-time one, the default: {listed:?}");
    assert!(listed.iter().any(|p| p.path == added_path && p.interval_ms == 750), "{listed:?}");

    // The file now names the same path: its policy replaces the run-time one, and says so.
    let config = daemon.dir().join("config.toml");
    std::fs::write(&config, config_with_policy(added.path(), "3s")).expect("write config");
    let reloaded = done(&socket, &["reload", "--json"]);
    assert!(
        reloaded
            .message
            .contains(&format!("replaced by the file's policy for the same path: {added_path}")),
        "{}",
        reloaded.message
    );
    let listed = policies(&socket);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!((listed[0].path.as_str(), listed[0].interval_ms), (added_path, 3000));
    // Now the file's own, it is no run-time policy: the next reload names none.
    let again = done(&socket, &["reload", "--json"]);
    assert!(
        !again.message.contains("run time") && !again.message.contains("replaced"),
        "{}",
        again.message
    );
}
