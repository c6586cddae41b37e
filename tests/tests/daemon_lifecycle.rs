//! The daemon as a process: configuration and usage errors exit 2 with one clear line, signals
//! stop it cleanly, and a client speaking garbage loses only its own connection.

use std::time::Duration;

use fakenotify_tests::seqpacket::{self, Answer};
use fakenotify_tests::*;

/// Runs `fakenotifyd start` with `config` on a temporary socket and returns how it ended.
fn start_with_config(config: &str) -> (Finished, TempDir) {
    let dir = TempDir::new("bad-config");
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let socket = dir.join("fakenotify.sock").display().to_string();
    let config_path = dir.join("config.toml").display().to_string();
    let finished = run_fakenotifyd(&["start", "--socket", &socket, "--config", &config_path]);
    (finished, dir)
}

/// The lines of a usage or configuration failure, without the `Try '... --help'` hint.
fn message_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("Try ")).collect()
}

/// Exit code 2 and exactly one message line that contains every one of `words`.
fn assert_config_error(config: &str, words: &[&str]) {
    let (finished, dir) = start_with_config(config);
    assert_eq!(
        finished.status.code(),
        Some(2),
        "config {config:?} should exit 2; stderr:\n{}",
        finished.stderr
    );
    let lines = message_lines(&finished.stderr);
    assert_eq!(
        lines.len(),
        1,
        "one line expected for config {config:?}, got:\n{}",
        finished.stderr
    );
    for word in words {
        assert!(lines[0].contains(word), "the message should name {word:?}: {}", lines[0]);
    }
    assert!(!dir.join("fakenotify.sock").exists(), "a rejected config must not leave a socket");
}

#[test]
fn a_bad_duration_exits_2_naming_the_key() {
    assert_config_error(
        "[daemon]\ndefault_poll_interval = \"fast\"\n",
        &["default_poll_interval", "fast"],
    );
}

#[test]
fn a_bad_duration_in_a_watch_policy_exits_2_naming_the_key() {
    assert_config_error(
        "[daemon]\n\n[[watch]]\npath = \"/srv\"\npoll_interval = \"5 parsecs\"\n",
        &["poll_interval"],
    );
}

#[test]
fn a_bad_mode_exits_2_naming_the_key() {
    assert_config_error(
        "[[watch]]\npath = \"/srv\"\nmode = \"sometimes\"\n",
        &["mode", "sometimes"],
    );
}

#[test]
fn a_wrongly_typed_limit_exits_2_naming_the_key() {
    assert_config_error("[daemon]\nmax_queued_events = \"lots\"\n", &["max_queued_events"]);
}

#[test]
fn malformed_toml_exits_2() {
    let (finished, _dir) = start_with_config("[daemon\ndefault_poll_interval = \"1s\"\n");
    assert_eq!(finished.status.code(), Some(2), "stderr:\n{}", finished.stderr);
    assert_eq!(
        message_lines(&finished.stderr).len(),
        1,
        "one line expected, got:\n{}",
        finished.stderr
    );
}

#[test]
fn an_unknown_flag_exits_2() {
    let dir = TempDir::new("flag");
    let socket = dir.join("s.sock").display().to_string();
    let finished = run_fakenotifyd(&["start", "--socket", &socket, "--frobnicate"]);
    assert_eq!(finished.status.code(), Some(2), "stderr:\n{}", finished.stderr);
    assert!(
        finished.stderr.contains("--frobnicate"),
        "the message should name the flag:\n{}",
        finished.stderr
    );
}

#[test]
fn an_unknown_command_exits_2() {
    let finished = run_fakenotifyd(&["frobnicate"]);
    assert_eq!(finished.status.code(), Some(2), "stderr:\n{}", finished.stderr);
    assert!(
        finished.stderr.contains("frobnicate"),
        "the message should name the command:\n{}",
        finished.stderr
    );
}

#[test]
fn sigterm_exits_0_and_removes_the_socket() {
    let mut daemon = Daemon::fast();
    let socket = daemon.socket().to_owned();
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!socket.exists(), "the socket {} is left behind", socket.display());
}

#[test]
fn sigint_exits_0_and_removes_the_socket() {
    let mut daemon = Daemon::fast();
    daemon.signal(libc::SIGINT);
    let status = daemon.wait_exit(WAIT).expect("fakenotifyd should exit on SIGINT");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket().exists(), "the socket is left behind");
}

#[test]
fn sigterm_with_clients_connected_still_exits_0() {
    let dir = TempDir::new("busy");
    let mut daemon = Daemon::fast();
    let _client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("all:{}", dir.path().display())],
        Some(&daemon),
        true,
    );
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket().exists(), "the socket is left behind");
}

#[test]
fn a_second_daemon_on_a_live_socket_is_refused() {
    let daemon = Daemon::fast();
    let socket = daemon.socket().display().to_string();
    let finished = run_fakenotifyd(&["start", "--socket", &socket]);
    assert_eq!(finished.status.code(), Some(1), "stderr:\n{}", finished.stderr);
    assert!(
        finished.stderr.contains(&socket),
        "the message should name the socket:\n{}",
        finished.stderr
    );
    assert!(seqpacket::connect(daemon.socket()).is_ok(), "the first daemon must keep serving");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TempDir::new("stale");
    let socket = dir.join("fakenotify.sock");
    // A socket file that nobody listens on, as a killed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let config = dir.join("config.toml");
    std::fs::write(&config, FAST_CONFIG).unwrap();
    let mut child = std::process::Command::new(artifacts().fakenotifyd())
        .arg("start")
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while seqpacket::connect(&socket).is_err() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "fakenotifyd did not take over a stale socket; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn garbage_on_the_socket_closes_only_that_connection() {
    let dir = TempDir::new("garbage");
    let daemon = Daemon::fast();
    let mut client = Client::inotify_client(
        Libc::Glibc,
        &[&format!("CREATE:{}", dir.path().display())],
        Some(&daemon),
        true,
    );

    let mut header = Vec::new();
    header.extend_from_slice(b"FNTF");
    header.extend_from_slice(&fakenotify_proto::record::VERSION.to_le_bytes());
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("a short header", b"FNTF\x01".to_vec()),
        (
            "an unknown kind",
            [header.clone(), 99u16.to_le_bytes().to_vec(), 0u32.to_le_bytes().to_vec()].concat(),
        ),
        (
            "a lying length",
            [header.clone(), 2u16.to_le_bytes().to_vec(), 4000u32.to_le_bytes().to_vec()].concat(),
        ),
        (
            "an AddWatch without its fds",
            [header.clone(), 2u16.to_le_bytes().to_vec(), 4u32.to_le_bytes().to_vec(), vec![0; 4]]
                .concat(),
        ),
        (
            "a control request with a garbled body",
            [
                header.clone(),
                5u16.to_le_bytes().to_vec(),
                10u32.to_le_bytes().to_vec(),
                vec![0xff; 10],
            ]
            .concat(),
        ),
        ("an empty message", Vec::new()),
    ];
    for (what, bytes) in &garbage {
        let connection = seqpacket::connect(daemon.socket())
            .unwrap_or_else(|e| panic!("connect for {what}: {e}"));
        seqpacket::send(&connection, bytes).unwrap_or_else(|e| panic!("send {what}: {e}"));
        // Any answer (an error record, or a hang-up) will do, as long as it comes.
        let answer = seqpacket::receive(&connection, WAIT).unwrap();
        assert_ne!(
            answer,
            Answer::Silent,
            "the daemon neither answered nor closed a connection that sent {what}"
        );
    }

    write(&dir.join("still-served"), b"");
    client.expect_event("IN_CREATE still-served", |e| e.matches(IN_CREATE, "still-served"));
    let mut late = Client::inotify_client(
        Libc::Glibc,
        &[&format!("CREATE:{}", dir.path().display())],
        Some(&daemon),
        true,
    );
    late.expect_line("INIT ... socket for a client after the garbage", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    write(&dir.join("new-client"), b"");
    late.expect_event("IN_CREATE new-client", |e| e.matches(IN_CREATE, "new-client"));
}
