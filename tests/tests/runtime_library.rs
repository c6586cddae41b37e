//! The daemon copies its `libfakenotify.so` beside its socket, so a container needs one
//! read-only mount: `-v /run/fakenotify:/run/fakenotify:ro -e
//! LD_PRELOAD=/run/fakenotify/libfakenotify.so` (README "Containers"). The app here runs in a
//! mount namespace of its own whose `/run` is a fresh tmpfs holding only that read-only bind,
//! as a container's would, and gets events from a bindfs mount. A daemon restart replaces the
//! copy (a new inode, renamed into place) while the app runs: the app keeps the old inode
//! mapped, and its next instance reaches the new daemon through it.
//!
//! The test runs itself again in a private mount namespace (`fakenotify_tests::namespace`), so
//! the host's `/run/fakenotify` is never touched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const RUNTIME_DIR: &str = "/run/fakenotify";
const SOCKET: &str = "/run/fakenotify/fakenotify.sock";
const LIBRARY: &str = "/run/fakenotify/libfakenotify.so";

/// In the app's own namespace: `/run` becomes a fresh tmpfs holding only a read-only bind of
/// the daemon's `/run/fakenotify` (kept at `$1` across the tmpfs mount), then the app runs.
const CONTAINER_MOUNTS: &str = "stage=$1; shift; \
    mount --bind /run/fakenotify \"$stage\" && \
    mount -t tmpfs -o mode=0755 app-run /run && mkdir /run/fakenotify && \
    mount --bind \"$stage\" /run/fakenotify && mount -o remount,bind,ro /run/fakenotify && \
    exec \"$@\"";

/// Lines of the daemon's log about its copy of the library ("copied from" or "not placed").
fn library_lines(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("/libfakenotify.so: ")).count()
}

/// `fakenotifyd start` on the default socket with `config`, once it serves and has logged
/// what it did with the library (it places the library just after the socket accepts).
fn start_daemon(config: &Path, log_path: &Path) -> Child {
    let before = library_lines(log_path);
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
    let mut daemon = Command::new(artifacts().fakenotifyd())
        .arg("start")
        .arg("--config")
        .arg(config)
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn fakenotifyd start");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(Path::new(SOCKET)).is_err() {
        if let Some(status) = daemon.try_wait().expect("wait") {
            panic!("fakenotifyd start exited ({status}) instead of serving {SOCKET}");
        }
        assert!(Instant::now() < deadline, "nothing serves {SOCKET}");
        std::thread::sleep(Duration::from_millis(20));
    }
    while library_lines(log_path) == before {
        assert!(Instant::now() < deadline, "no line about the library in the daemon's log");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

fn stop_daemon(mut daemon: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let exit = daemon.wait().expect("wait for fakenotifyd");
    assert!(exit.success(), "SIGTERM ends it with 0: {exit}");
}

/// Whether process `pid` maps a file with inode `ino`.
fn maps_inode(pid: u32, ino: u64) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines().any(|line| line.split_whitespace().nth(4) == Some(&ino.to_string()))
}

/// Reads instance `slot` until an IN_CREATE for `name` came.
fn expect_create(app: &mut ScriptClient, slot: u32, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = app.call(&format!("read {slot}"));
        if answer.events.iter().any(|e| e.matches(IN_CREATE, name)) {
            return;
        }
        if Instant::now() > deadline {
            panic!("no IN_CREATE {name} on instance {slot}:\n{}", app.transcript());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_app_that_sees_only_the_runtime_directory_gets_events_across_a_daemon_restart() {
    if !inside_private_namespace() {
        return in_private_namespace(
            "an_app_that_sees_only_the_runtime_directory_gets_events_across_a_daemon_restart",
        );
    }
    let dir = TempDir::new("runtime-library");
    let config = dir.join("config.toml");
    let source = artifacts().preload();
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndefault_poll_interval = \"200ms\"\npreload_library = \"{}\"\n",
            source.display()
        ),
    )
    .expect("write the config");
    let log = dir.join("daemon.log");
    let daemon = start_daemon(&config, &log);

    let copy = std::fs::metadata(LIBRARY).expect("the daemon put its library beside the socket");
    assert_eq!(copy.mode() & 0o777, 0o644);
    assert_eq!(std::fs::read(LIBRARY).unwrap(), std::fs::read(&source).unwrap());
    let first_ino = copy.ino();
    let names: Vec<_> = std::fs::read_dir(RUNTIME_DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "the socket and the library, no temporary file: {names:?}");

    let fuse = FuseMount::new();
    let stage = TempDir::new("container-stage");
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        CONTAINER_MOUNTS,
        "sh",
        stage.path().to_str().unwrap(),
        "env",
        "-u",
        "FAKENOTIFY_SOCKET",
        "LD_PRELOAD=/run/fakenotify/libfakenotify.so",
    ]
    .map(String::from)
    .into();
    let mut app = ScriptClient::spawn(&wrapper, Path::new(SOCKET), false);
    let mount = fuse.mount.display().to_string();
    assert_eq!(app.call("init 1").line, "OK socket", "a FakeNotify instance");
    assert_eq!(app.call(&format!("add 1 CREATE {mount}")).line, "OK 1");
    write(&fuse.backing("before-restart"), b"x");
    expect_create(&mut app, 1, "before-restart");
    assert!(maps_inode(app.pid(), first_ino), "the app maps {LIBRARY}");

    stop_daemon(daemon);
    let daemon = start_daemon(&config, &log);
    let second_ino = std::fs::metadata(LIBRARY).expect("the copy after restart").ino();
    assert_ne!(first_ino, second_ino, "the restart renamed a new copy into place");
    assert!(maps_inode(app.pid(), first_ino), "the running app keeps the old inode mapped");

    assert_eq!(app.call("init 2").line, "OK socket", "a new instance, from the old mapping");
    assert_eq!(app.call(&format!("add 2 CREATE {mount}")).line, "OK 1");
    write(&fuse.backing("after-restart"), b"x");
    expect_create(&mut app, 2, "after-restart");
    drop(app);

    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("libfakenotify.so: copied from").count(), 2, "{text}");
    stop_daemon(daemon);
}

#[test]
fn a_missing_library_is_one_warning_and_the_daemon_serves() {
    if !inside_private_namespace() {
        return in_private_namespace("a_missing_library_is_one_warning_and_the_daemon_serves");
    }
    let dir = TempDir::new("runtime-library-missing");
    let config = dir.join("config.toml");
    let absent = dir.join("absent.so");
    std::fs::write(&config, format!("[daemon]\npreload_library = \"{}\"\n", absent.display()))
        .expect("write the config");
    let log = dir.join("daemon.log");
    let daemon = start_daemon(&config, &log);
    assert!(!Path::new(LIBRARY).exists());
    stop_daemon(daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("not placed")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains(LIBRARY) && warnings[0].contains(&absent.display().to_string()),
        "the warning names the copy and the source: {text}"
    );
}
