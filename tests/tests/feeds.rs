//! Feeds from the file server (issue 17), two "hosts" on one machine: the server side is a
//! bindfs mount's backing directory with `fakenotify-ctl feed` on it, the client side the mount
//! with a daemon polling at 60 s and a `[[feed]]` running the feed (directly, or through ssh to
//! an sshd on 127.0.0.1). Changes reach a preloaded inotifywait within a second; a killed, hung
//! or garbage-printing feed is restarted and what changed meanwhile is reported; a hostile feed
//! costs bounded memory and polls; one feed fans out to two client daemons through mosquitto.

use std::path::Path;
use std::time::{Duration, Instant};

use fakenotify_tests::process;
use fakenotify_tests::*;

/// The client's normal interval: a poll alone would report a change 30 s late on average.
const SLOW: &str = "60s";
/// What "instant" means here: well under the 60 s interval, with room for a loaded machine.
const WITHIN: Duration = Duration::from_secs(1);

fn ctl() -> String {
    artifacts().fakenotify_ctl().display().to_string()
}

fn toml_string(text: &str) -> String {
    format!("{text:?}")
}

/// A configuration polling at `interval` with one `[[feed]]` running `command`, mapping
/// `remote` onto `local`.
fn config(interval: &str, command: &[String], remote: &Path, local: &Path, extra: &str) -> String {
    let argv: Vec<String> = command.iter().map(|a| toml_string(a)).collect();
    format!(
        "[daemon]\ndefault_poll_interval = \"{interval}\"\nlog_level = \"debug\"\n\n[[feed]]\ncommand = [{}]\n\
         remote = {}\nlocal = {}\nheartbeat_timeout = \"3s\"\n{extra}",
        argv.join(", "),
        toml_string(&remote.display().to_string()),
        toml_string(&local.display().to_string()),
    )
}

/// `fakenotify-ctl feed --heartbeat 1s BACKING`.
fn feed_command(backing: &Path) -> Vec<String> {
    vec![ctl(), "feed".into(), "--heartbeat".into(), "1s".into(), backing.display().to_string()]
}

fn wait_healthy(daemon: &Daemon, starts: u64) -> fakenotify_ctl::message::FeedInfo {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        // A reload applies once a worker found the policies' paths: the feed may not be there yet.
        let (status, _) = daemon.full_status();
        let feed = status.feeds.first().cloned();
        if let Some(feed) = feed.as_ref().filter(|f| f.healthy && f.starts >= starts) {
            return feed.clone();
        }
        assert!(Instant::now() < deadline, "the feed is not healthy: {feed:?}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `within` for an event with all of `bits` on `name`; returns how long it took.
/// Only events after the client's mark count: call [`Client::mark`] before the change.
fn expect_within(client: &mut Client, within: Duration, bits: u32, name: &str) -> Duration {
    let began = Instant::now();
    let found = client.wait_for(within, |l| {
        EventLine::parse(&l.text).is_some_and(|e| e.is(bits) && e.name == name)
    });
    let took = began.elapsed();
    assert!(
        found.is_some(),
        "no {} {name} within {within:?}; events: {:?}",
        mask_names(bits),
        client.events()
    );
    took
}

#[test]
fn changes_on_the_server_reach_a_client_within_a_second_and_polling_alone_misses_them() {
    let fuse = FuseMount::new();
    std::fs::create_dir(fuse.backing("sub")).expect("mkdir sub");
    let daemon = Daemon::start(&config(
        SLOW,
        &feed_command(&fuse.backing),
        &fuse.backing,
        &fuse.mount,
        "safety_interval = \"10m\"\n",
    ));
    // The same mount polled at the same interval without a feed: the control.
    let plain = Daemon::start(&format!("[daemon]\ndefault_poll_interval = \"{SLOW}\"\n"));
    wait_healthy(&daemon, 1);
    let sub = fuse.mount.join("sub");
    let mut client = Client::inotifywait(&[&fuse.mount, &sub], Some(&daemon), true);
    let mut control = Client::inotifywait(&[&fuse.mount], Some(&plain), true);

    let mut took = Vec::new();
    client.mark();
    write(&fuse.backing("new.mkv"), b"data");
    took.push(("create", expect_within(&mut client, WITHIN, IN_CREATE, "new.mkv")));
    took.push(("close_write", expect_within(&mut client, WITHIN, IN_CLOSE_WRITE, "new.mkv")));
    client.mark();
    append(&fuse.backing("new.mkv"), b"more");
    took.push(("modify", expect_within(&mut client, WITHIN, IN_MODIFY, "new.mkv")));
    client.mark();
    std::fs::rename(fuse.backing("new.mkv"), fuse.backing("renamed.mkv")).expect("rename");
    took.push(("moved_from", expect_within(&mut client, WITHIN, IN_MOVED_FROM, "new.mkv")));
    took.push(("moved_to", expect_within(&mut client, WITHIN, IN_MOVED_TO, "renamed.mkv")));
    client.mark();
    write(&fuse.backing("sub/deep.txt"), b"x");
    took.push(("create in sub", expect_within(&mut client, WITHIN, IN_CREATE, "deep.txt")));
    client.mark();
    std::fs::remove_file(fuse.backing("renamed.mkv")).expect("rm");
    took.push(("delete", expect_within(&mut client, WITHIN, IN_DELETE, "renamed.mkv")));
    eprintln!("latency per event with the feed: {took:?}");

    let seen = control.collect_for(Duration::from_millis(200));
    let events: Vec<_> = seen.iter().filter_map(|l| EventLine::parse(&l.text)).collect();
    assert!(events.is_empty(), "a 60 s poll reported changes already: {events:?}");

    let (status, _) = daemon.full_status();
    let feed = &status.feeds[0];
    assert!(feed.lines >= 6 && feed.bad_lines == 0 && feed.polls_caused >= 5, "{feed:?}");
    assert_eq!(feed.state, "running");
    assert!(feed.pid > 0);
    let text =
        String::from_utf8_lossy(&run_ctl(daemon.socket(), &["status"], false).stdout).into_owned();
    assert!(text.contains("FEED (LOCAL)") && text.contains("running+"), "{text}");
}

#[test]
fn a_feed_over_ssh_with_a_forced_command() {
    let fuse = FuseMount::new();
    let ssh_dir = TempDir::new("feed-ssh");
    let sshd = Sshd::start(ssh_dir.path());
    // The key may run the feed and nothing else, as the README's walkthrough sets it up.
    let authorized = ssh_dir.path().join("authorized_keys");
    let key = std::fs::read_to_string(&authorized).expect("read authorized_keys");
    let forced = format!(
        "command=\"{} feed --heartbeat 1s {}\",no-pty,no-port-forwarding,no-agent-forwarding,\
         no-X11-forwarding {key}",
        ctl(),
        fuse.backing.display()
    );
    std::fs::write(&authorized, forced).expect("write authorized_keys");
    let command: Vec<String> = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        &sshd.identity.display().to_string(),
        "-p",
        &sshd.port.to_string(),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "root@127.0.0.1",
        "anything: the forced command runs instead",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let daemon = Daemon::start(&config(SLOW, &command, &fuse.backing, &fuse.mount, ""));
    wait_healthy(&daemon, 1);
    let mut client = Client::inotifywait(&[&fuse.mount], Some(&daemon), true);
    write(&fuse.backing("over-ssh"), b"x");
    let took = expect_within(&mut client, WITHIN, IN_CREATE, "over-ssh");
    eprintln!("over ssh: IN_CREATE after {took:?}");
}

/// A feed that misbehaves on its first run (`first`, a shell snippet) and is the real feed
/// from its second: after the restart, a change made meanwhile is reported.
fn misbehaving_first_run(first: &str, interval: &str) -> (FuseMount, Daemon, TempDir) {
    let fuse = FuseMount::new();
    let marks = TempDir::new("feed-marks");
    let mark = marks.path().join("ran");
    let script = format!(
        "if [ -e '{mark}' ]; then exec '{ctl}' feed --heartbeat 1s '{backing}'; fi; \
         touch '{mark}'; {first}",
        mark = mark.display(),
        ctl = ctl(),
        backing = fuse.backing.display(),
    );
    let command = vec!["sh".to_owned(), "-c".to_owned(), script];
    let daemon = Daemon::start(&config(interval, &command, &fuse.backing, &fuse.mount, ""));
    (fuse, daemon, marks)
}

#[test]
fn a_killed_feed_is_restarted_and_what_changed_meanwhile_is_reported() {
    let fuse = FuseMount::new();
    let daemon =
        Daemon::start(&config(SLOW, &feed_command(&fuse.backing), &fuse.backing, &fuse.mount, ""));
    let feed = wait_healthy(&daemon, 1);
    let mut client = Client::inotifywait(&[&fuse.mount], Some(&daemon), true);
    // SAFETY: kill(2) on the feed's pid, which the daemon has not reaped (it is running).
    assert_eq!(unsafe { libc::kill(feed.pid as i32, libc::SIGKILL) }, 0);
    write(&fuse.backing("while-down"), b"x");
    daemon
        .wait_for_log(WAIT, |l| l.contains("exited") && l.contains("restarting in 1s"))
        .unwrap_or_else(|| panic!("no restart logged:\n{}", daemon.log()));
    let back = wait_healthy(&daemon, 2);
    assert_ne!(back.pid, feed.pid);
    expect_within(&mut client, WAIT, IN_CREATE, "while-down");
    write(&fuse.backing("after"), b"x");
    expect_within(&mut client, WITHIN, IN_CREATE, "after");
}

#[test]
fn a_hung_feed_is_killed_and_its_objects_poll_at_their_interval_meanwhile() {
    // The first run says one heartbeat and then nothing, as a stuck ssh would.
    let first = "echo '{\"v\":1,\"heartbeat\":0}'; exec sleep 1000";
    let (fuse, daemon, _marks) = misbehaving_first_run(first, "2s");
    let mut client = Client::inotifywait(&[&fuse.mount], Some(&daemon), true);
    write(&fuse.backing("while-hung"), b"x");
    // Reported by the normal 2 s polls or by the catch-up after the restart.
    expect_within(&mut client, WAIT, IN_CREATE, "while-hung");
    daemon
        .wait_for_log(WAIT, |l| l.contains("no line for 3s; restarting it"))
        .unwrap_or_else(|| panic!("the hung feed was not killed:\n{}", daemon.log()));
    wait_healthy(&daemon, 2);
    write(&fuse.backing("after"), b"x");
    expect_within(&mut client, WITHIN, IN_CREATE, "after");
}

#[test]
fn a_feed_printing_garbage_is_restarted_and_a_change_made_meanwhile_is_reported() {
    let first = "while :; do echo 'not json'; printf '\\001\\377\\n'; sleep 0.05; done";
    let (fuse, daemon, _marks) = misbehaving_first_run(first, SLOW);
    let mut client = Client::inotifywait(&[&fuse.mount], Some(&daemon), true);
    write(&fuse.backing("during-garbage"), b"x");
    let feed = wait_healthy(&daemon, 2);
    assert!(feed.bad_lines >= 10, "{feed:?}");
    expect_within(&mut client, WAIT, IN_CREATE, "during-garbage");
    assert!(daemon.log().contains("bad line(s) dropped"), "{}", daemon.log());
}

#[test]
fn a_hostile_feed_costs_bounded_memory_and_polls() {
    let fuse = FuseMount::new();
    let other = FuseMount::new();
    let mount = fuse.mount.display().to_string();
    // Five seconds of: huge lines, binary, paths outside the mapping and with '..', and
    // 10 000 valid lines a second naming directories (watched and not), with heartbeats, and a
    // flood on stderr.
    let script = format!(
        r#"
import sys, time
out = sys.stdout.buffer
remote = {remote:?}
end = time.time() + 5
n = 0
while time.time() < end:
    out.write(b'{{"v":1,"dir":"' + remote.encode() + b'/' + b'x' * 100000 + b'"}}\n')
    out.write(bytes(range(256)) + b'\n')
    out.write(b'{{"v":1,"dir":"/etc"}}\n')
    out.write(b'{{"v":1,"dir":"' + remote.encode() + b'/../etc"}}\n')
    out.write(b'{{"v":1,"overflow":"/"}}\n')
    out.write(b'{{"v":1,"heartbeat":1}}\n')
    sys.stderr.write('noise on stderr\n' * 50)
    for i in range(100):
        out.write(b'{{"v":1,"dir":"' + remote.encode() + (b'' if i % 2 else b'/nowhere%d' % i) + b'"}}\n')
        n += 1
    out.flush()
    time.sleep(0.01)
sys.stderr.write('hostile feed wrote %d valid lines\n' % n)
time.sleep(1000)
"#,
        remote = fuse.backing.display().to_string()
    );
    // In a file: the configuration's strings take no newlines.
    let scripts = TempDir::new("hostile-feed");
    let path = scripts.path().join("hostile.py");
    std::fs::write(&path, script).expect("write the hostile feed");
    let command = vec!["python3".to_owned(), path.display().to_string()];
    let daemon = Daemon::start(&config("2s", &command, &fuse.backing, &fuse.mount, ""));
    let rss_before = rss_kib(daemon.pid());
    let mut client = Client::inotifywait(&[Path::new(&mount)], Some(&daemon), true);
    let mut bystander = Client::inotifywait(&[&other.mount], Some(&daemon), true);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    write(&other.backing("unaffected"), b"x");
    expect_within(&mut bystander, WAIT, IN_CREATE, "unaffected");
    write(&fuse.backing("still-seen"), b"x");
    expect_within(&mut client, WAIT, IN_CREATE, "still-seen");
    let (status, took) = daemon.full_status();
    let elapsed = began.elapsed().as_secs_f64() + 1.0;
    let feed = &status.feeds[0];
    eprintln!("hostile feed after {elapsed:.1}s: {feed:?}; status answered in {took:?}");
    assert!(feed.bad_lines > 1000, "{feed:?}");
    // Polled every 2 s without the feed; with it, on the long interval despite the flood.
    assert!(feed.long_interval_paths.contains(&mount), "{feed:?}");
    // 100 polls a second at most, plus the burst; the 10 000 lines a second name one object.
    assert!(
        (feed.polls_caused as f64) < 100.0 * elapsed + 100.0,
        "polls caused: {} in {elapsed:.1}s",
        feed.polls_caused
    );
    assert!(took < Duration::from_secs(1), "status took {took:?}");
    let logged = daemon.log().matches("stderr: noise").count();
    assert!((1..=10).contains(&logged), "{logged} stderr lines logged");
    let rss_after = rss_kib(daemon.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

const MQTT_PACKAGES: &str = "Debian/Ubuntu: apt-get install mosquitto mosquitto-clients";

/// Children killed on drop (a test's publisher pipeline).
struct Killed(Vec<std::process::Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn one_feed_fans_out_to_two_client_daemons_through_an_mqtt_broker() {
    use std::process::{Command, Stdio};
    let fuse = FuseMount::new();
    let second = FuseMount::bindfs_of(&fuse.backing);
    let dir = TempDir::new("mqtt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n"))
        .expect("write mosquitto.conf");
    let broker = process::Background::spawn(
        "mosquitto",
        Command::new("mosquitto").arg("-c").arg(&conf),
        dir.path().join("mosquitto.log"),
        MQTT_PACKAGES,
    );
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto does not listen: {}", broker.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let topic = format!("fakenotify/test-{}", std::process::id());
    let port_text = port.to_string();
    // Each client host subscribes; the broker fans the one feed out.
    let subscribe: Vec<String> =
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", &port_text, "-t", &topic]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let first = Daemon::start(&config(SLOW, &subscribe, &fuse.backing, &fuse.mount, ""));
    let other = Daemon::start(&config(SLOW, &subscribe, &fuse.backing, &second.mount, ""));
    // The file server: fakenotify-ctl feed | mosquitto_pub -l.
    let mut feed = Command::new(artifacts().fakenotify_ctl())
        .args(["feed", "--heartbeat", "1s"])
        .arg(&fuse.backing)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fakenotify-ctl feed");
    let feed_out = feed.stdout.take().expect("the feed's stdout");
    let mut children = Killed(vec![feed]);
    let publish = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port_text, "-t", &topic, "-l"])
        .stdin(feed_out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mosquitto_pub: {e} ({MQTT_PACKAGES})"));
    children.0.push(publish);
    wait_healthy(&first, 1);
    wait_healthy(&other, 1);
    let mut a = Client::inotifywait(&[&fuse.mount], Some(&first), true);
    let mut b = Client::inotifywait(&[&second.mount], Some(&other), true);
    a.mark();
    b.mark();
    write(&fuse.backing("via-mqtt"), b"x");
    let took_a = expect_within(&mut a, WITHIN, IN_CREATE, "via-mqtt");
    let took_b = expect_within(&mut b, WITHIN, IN_CREATE, "via-mqtt");
    eprintln!("through mosquitto: IN_CREATE after {took_a:?} and {took_b:?}");
    drop(children);
}

#[test]
fn a_reload_starts_and_stops_feeds() {
    let fuse = FuseMount::new();
    let daemon = Daemon::start(&format!("[daemon]\ndefault_poll_interval = \"{SLOW}\"\n"));
    assert!(daemon.full_status().0.feeds.is_empty());
    let with_feed = config(SLOW, &feed_command(&fuse.backing), &fuse.backing, &fuse.mount, "");
    std::fs::write(daemon.dir().join("config.toml"), with_feed).expect("rewrite the config");
    daemon.signal(libc::SIGHUP);
    let feed = wait_healthy(&daemon, 1);
    let mut client = Client::inotifywait(&[&fuse.mount], Some(&daemon), true);
    client.mark();
    write(&fuse.backing("after-reload"), b"x");
    expect_within(&mut client, WITHIN, IN_CREATE, "after-reload");
    // The same feeds again: the command runs on (once the reload is applied, as logged).
    let applied = |daemon: &Daemon| daemon.log().matches("watch policies").count();
    let before = applied(&daemon);
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while applied(&daemon) == before {
        assert!(Instant::now() < deadline, "the reload was not applied:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(daemon.full_status().0.feeds[0].pid, feed.pid);
    std::fs::write(daemon.dir().join("config.toml"), "[daemon]\n").expect("rewrite the config");
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_log(WAIT, |l| l.contains("reload: 1 feeds replaced by 0"))
        .unwrap_or_else(|| panic!("the feed was not stopped:\n{}", daemon.log()));
    assert!(daemon.full_status().0.feeds.is_empty());
    // SAFETY: kill(pid, 0) only asks whether the process exists; the feed was reaped.
    assert_ne!(unsafe { libc::kill(feed.pid as i32, 0) }, 0, "the old feed still runs");
}

/// `fakenotify-ctl feed` alone, its lines read as a client daemon would.
struct FeedProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl FeedProcess {
    fn start(args: &[&Path]) -> FeedProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(artifacts().fakenotify_ctl())
            .args(["feed", "--heartbeat", "1s"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start fakenotify-ctl feed");
        let out = child.stdout.take().expect("the feed's stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let feed = FeedProcess { child, lines };
        let first = feed.lines.recv_timeout(WAIT).expect("a first line");
        assert_eq!(first, r#"{"v":1,"heartbeat":0}"#);
        feed
    }

    /// The lines that come within `window`, heartbeats left out.
    fn changes_within(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(line) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if !line.contains("heartbeat") {
                out.push(line);
            }
        }
        out
    }
}

impl Drop for FeedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_feed_follows_a_root_given_as_a_symlink_and_coalesces_a_writer() {
    let dir = TempDir::new("feed-alone");
    let real = dir.path().join("real");
    std::fs::create_dir_all(real.join("sub")).expect("mkdir");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let feed = FeedProcess::start(&[&link]);
    write(&real.join("sub/a"), b"x");
    let lines = feed.changes_within(Duration::from_millis(500));
    let expected = format!(r#"{{"v":1,"dir":"{}/sub","name":"a"}}"#, link.display());
    assert!(lines.contains(&expected), "{lines:?}");
    // A second of writes to one file: about a line per 100 ms window, not one per write.
    let began = Instant::now();
    let mut writes = 0;
    while began.elapsed() < Duration::from_secs(1) {
        append(&real.join("sub/a"), b"more");
        writes += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let lines = feed.changes_within(Duration::from_millis(500));
    assert!(
        (5..=15).contains(&lines.len()),
        "{} lines for {writes} writes: {lines:?}",
        lines.len()
    );
    // A directory made with files in it: each of its directories is named.
    std::fs::create_dir_all(real.join("new/deeper")).expect("mkdir -p");
    let lines = feed.changes_within(Duration::from_millis(500));
    for dir in ["new", "new/deeper"] {
        let named = format!(r#""dir":"{}/{dir}""#, link.display());
        assert!(lines.iter().any(|l| l.contains(&named)), "{dir} not named: {lines:?}");
    }
}
