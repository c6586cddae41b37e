//! The daemon's log: journald priority prefixes when `$JOURNAL_STREAM` names stderr (and only
//! then), and the level from `--log-level`, then `$FAKENOTIFY_LOG`, then the configuration.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

/// `fakenotifyd start` on a socket in `dir`, stderr to `dir/log`, with `env` and `args`; waits
/// until it serves and returns the log so far.
fn start(dir: &TempDir, config: &str, env: &[(&str, String)], args: &[&str]) -> (Child, String) {
    let log_path = dir.join("log");
    let log = File::create(&log_path).expect("create the log file");
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config).expect("write the config");
    let socket = dir.join("fakenotify.sock");
    let mut command = Command::new(artifacts().fakenotifyd());
    command
        .arg("start")
        .arg("--socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config_path)
        .args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("JOURNAL_STREAM")
        .env_remove("FAKENOTIFY_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn fakenotifyd");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(&socket).is_err() {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "fakenotifyd did not serve {}", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, std::fs::read_to_string(&log_path).unwrap_or_default())
}

/// Something the daemon logs at debug: an instance (`fakenotify-ctl watch -t`) comes and goes.
fn activity(dir: &TempDir) {
    let quiet = dir.join("quiet");
    std::fs::create_dir_all(&quiet).expect("mkdir");
    let status = Command::new(artifacts().fakenotify_ctl())
        .args(["watch", "-q", "-t", "0.2", "--socket"])
        .arg(dir.join("fakenotify.sock"))
        .arg(&quiet)
        .env_remove("LD_PRELOAD")
        .status()
        .expect("run fakenotify-ctl watch");
    assert_eq!(status.code(), Some(2), "watch -t ends by its timeout");
    std::thread::sleep(Duration::from_millis(100));
}

fn stop(mut child: Child, log_path: &Path) -> String {
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    std::fs::read_to_string(log_path).unwrap_or_default()
}

/// `$JOURNAL_STREAM` as systemd sets it for the log file `path`: `DEV:INODE`.
fn journal_stream(path: &Path) -> String {
    let meta = std::fs::metadata(path).expect("stat the log file");
    format!("{}:{}", meta.dev(), meta.ino())
}

#[test]
fn lines_carry_journald_priorities_when_stderr_is_the_journal() {
    let dir = TempDir::new("log-journal");
    let missing = dir.join("no-such-dir");
    let config = format!("[[watch]]\npath = \"{}\"\n", missing.display());
    // The log file exists before the daemon starts, so its inode is known.
    File::create(dir.join("log")).expect("create the log file");
    let stream = journal_stream(&dir.join("log"));
    let (child, _) =
        start(&dir, &config, &[("JOURNAL_STREAM", stream.clone())], &["--log-level=debug"]);
    activity(&dir);
    let log = stop(child, &dir.join("log"));
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("<6>fakenotifyd: info: listening on")), "{log}");
    assert!(
        lines.iter().any(|l| l.starts_with("<4>fakenotifyd: warn: ") && l.contains("not found")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<7>fakenotifyd: debug: ")), "{log}");
    assert!(lines.iter().all(|l| l.starts_with('<')), "every line has a priority: {log}");

    // A failure at start is an error line.
    let output = Command::new(artifacts().fakenotifyd())
        .args(["start", "--socket", "/proc/fakenotify-test/none.sock", "--config"])
        .arg(dir.join("config.toml"))
        .env("JOURNAL_STREAM", &stream)
        .stderr(File::options().append(true).open(dir.join("log")).expect("open the log"))
        .status()
        .expect("run fakenotifyd");
    assert_eq!(output.code(), Some(1));
    let log = std::fs::read_to_string(dir.join("log")).expect("read the log");
    assert!(log.lines().last().is_some_and(|l| l.starts_with("<3>fakenotifyd: ")), "{log}");
}

#[test]
fn no_priorities_when_journal_stream_names_another_file() {
    let dir = TempDir::new("log-plain");
    let (child, _) = start(&dir, FAST_CONFIG, &[("JOURNAL_STREAM", "1:2".into())], &[]);
    let log = stop(child, &dir.join("log"));
    assert!(log.starts_with("fakenotifyd: info: listening on"), "{log}");
}

#[test]
fn the_level_comes_from_the_flag_then_the_environment_then_the_config() {
    let debug_config = "[daemon]\nlog_level = \"debug\"\n";
    /// (config, environment, arguments, info lines expected, debug lines expected)
    type Case<'a> = (&'a str, &'a [(&'a str, String)], &'a [&'a str], bool, bool);
    let cases: [Case; 4] = [
        (debug_config, &[], &[], true, true),
        (debug_config, &[("FAKENOTIFY_LOG", "warn".into())], &[], false, false),
        ("", &[("FAKENOTIFY_LOG", "debug".into())], &["--log-level", "info"], true, false),
        ("", &[("FAKENOTIFY_LOG", "debug".into())], &[], true, true),
    ];
    for (i, (config, env, args, info, debug)) in cases.into_iter().enumerate() {
        let dir = TempDir::new("log-level");
        let (child, _) = start(&dir, config, env, args);
        activity(&dir);
        let log = stop(child, &dir.join("log"));
        assert_eq!(log.contains(": info: "), info, "case {i}: {log}");
        assert_eq!(log.contains(": debug: "), debug, "case {i}: {log}");
    }
    let bad = run_fakenotifyd(&["start", "--log-level", "loud"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stderr.starts_with("fakenotifyd: --log-level: \"loud\": unknown log level"));
}
