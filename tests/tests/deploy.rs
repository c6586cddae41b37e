//! Deployment, as far as one machine without Docker, systemd or Nix can show it: the static
//! daemon alone in an empty root, socket activation as systemd does it, deploy/install.sh, the
//! systemd units (systemd-analyze verify), the LSIO mod's init script against a live daemon, and
//! the syntax of everything else (Nix files, compose file, Dockerfiles, shell scripts).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::deploy::{
    files_with_suffix, repo_root, require_tool, run, run_ok, snapshot, static_build, INSTALLED,
};
use fakenotify_tests::*;

// ---------------------------------------------------------------------------------------------
// A daemon started by hand (in a chroot, or with an inherited socket), stopped on drop.

struct Started {
    child: Option<Child>,
    log: PathBuf,
}

impl Started {
    fn spawn(mut command: Command, log: PathBuf) -> Started {
        let file = File::create(&log).expect("create the daemon's log file");
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = command.spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        Started { child: Some(child), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `socket` accepts a connection; panics with the log if the daemon exits.
    fn wait_serving(&mut self, socket: &Path) {
        let deadline = Instant::now() + WAIT;
        while seqpacket::connect(socket).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the daemon exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nothing accepts on {} within {WAIT:?}; log:\n{}",
                socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon ignored SIGTERM for {WAIT:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}---- end of log ----", self.log());
        }
    }
}

fn readelf(flag: &str, file: &Path) -> String {
    let output = run_ok(Command::new("readelf").arg(flag).arg(file));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every path under `dir` (relative), without descending into `skip`.
fn tree(dir: &Path, skip: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() && !skip.contains(&path) {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

// ---------------------------------------------------------------------------------------------
// Static build in an empty root.

#[test]
fn the_static_executables_have_no_interpreter_and_no_needed_entry() {
    let build = static_build();
    for file in [build.fakenotifyd(), build.fakenotify_ctl()] {
        let program_headers = readelf("-lW", &file);
        assert!(
            !program_headers.contains("INTERP"),
            "{} asks for a program interpreter:\n{program_headers}",
            file.display()
        );
        let dynamic = readelf("-dW", &file);
        assert!(!dynamic.contains("(NEEDED)"), "{} has NEEDED entries:\n{dynamic}", file.display());
    }
    let dynamic = readelf("-dW", &build.preload());
    assert!(!dynamic.contains("(NEEDED)"), "the static build's preload needs:\n{dynamic}");
}

/// The root holds the static daemon, its config, the socket directory, the FUSE mount bound to
/// /media and /proc (the daemon reopens and kernel-watches objects through /proc/self/fd; Docker
/// mounts it in scratch containers too): no loader, no libc. The daemon finds its policy for
/// /media (a path only it knows) on the object the client outside watches by its own path.
#[test]
fn the_static_daemon_serves_a_preloaded_client_from_an_empty_root() {
    require_tool("unshare", "apt-get install util-linux");
    require_tool("chroot", "apt-get install coreutils");
    let build = static_build();
    let fuse = FuseMount::new();
    let root = TempDir::new("empty-root");
    std::fs::copy(build.fakenotifyd(), root.join("fakenotifyd")).expect("copy fakenotifyd");
    std::fs::create_dir_all(root.join("run/fakenotify")).unwrap();
    std::fs::create_dir(root.join("media")).unwrap();
    std::fs::create_dir(root.join("proc")).unwrap();
    // Without the policy, a change would wait for the hour-long default interval.
    write(
        &root.join("config.toml"),
        b"[daemon]\ndefault_poll_interval = \"1h\"\n\n\
          [[watch]]\npath = \"/media\"\npoll_interval = \"200ms\"\n",
    );
    let logs = TempDir::new("empty-root-log");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(concat!(
            r#"mount --bind "$1" "$2/media" && mount -t proc proc "$2/proc" && "#,
            r#"exec chroot "$2" /fakenotifyd start --config /config.toml"#
        ))
        .arg("sh")
        .arg(&fuse.mount)
        .arg(root.path())
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD");
    let mut daemon = Started::spawn(command, logs.join("daemon.log"));
    // The default socket path inside the root, reached from outside through the directory.
    let socket = root.join("run/fakenotify/fakenotify.sock");
    daemon.wait_serving(&socket);

    assert_eq!(
        tree(root.path(), &[root.join("media"), root.join("proc")]),
        [
            "config.toml",
            "fakenotifyd",
            "media",
            "proc",
            "run",
            "run/fakenotify",
            "run/fakenotify/fakenotify.sock"
        ],
        "the root holds more than the daemon, its config, the socket and the mount points"
    );

    let spec = format!("CREATE:{}", fuse.mount.display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let mut client = Client::spawn_with_socket(program, &[&spec], &socket, true);
    client.expect_line("READY", |l| l.text == "READY");
    client.expect_line("INIT ... socket (served by the static daemon)", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    write(&fuse.backing("episode.mkv"), b"frames");
    client.expect_event("IN_CREATE episode.mkv", |e| e.matches(IN_CREATE, "episode.mkv"));

    let status =
        run_ok(Command::new(build.fakenotify_ctl()).arg("status").arg("--socket").arg(&socket));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("/media"), "status does not show the /media policy:\n{status}");

    drop(client);
    let exit = daemon.stop();
    assert!(exit.success(), "the static daemon exited with {exit}; log:\n{}", daemon.log());
    assert!(!socket.exists(), "the daemon left its socket behind");
}

// ---------------------------------------------------------------------------------------------
// Socket activation.

/// A listening `AF_UNIX` socket of `kind` at `path`, close-on-exec, as systemd would hold it.
fn listening_socket(path: &Path, kind: libc::c_int) -> OwnedFd {
    // SAFETY: plain syscall; the result is checked before being owned.
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long: {}", path.display());
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of len bytes; fd is a socket.
    let bound = unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const _, len) };
    assert_eq!(bound, 0, "bind {}: {}", path.display(), std::io::Error::last_os_error());
    // SAFETY: listen(2) on our socket.
    let listening = unsafe { libc::listen(fd.as_raw_fd(), 16) };
    assert_eq!(listening, 0, "listen: {}", std::io::Error::last_os_error());
    fd
}

/// `fakenotifyd start` with `inherited` as fd 3 and `LISTEN_FDS=1`; `LISTEN_PID` is the pid of
/// the shell that execs the daemon, i.e. the daemon's own (as systemd sets it).
fn activated_daemon(inherited: &OwnedFd, dir: &TempDir, listen_pid: &str) -> Command {
    let config = dir.join("config.toml");
    write(&config, FAST_CONFIG.as_bytes());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(r#"export LISTEN_PID={listen_pid}; exec "$@""#))
        .arg("sh")
        .arg(artifacts().fakenotifyd())
        .arg("start")
        .arg("--config")
        .arg(&config)
        // Where the daemon would create a socket of its own: it must not, under activation.
        .arg("--socket")
        .arg(dir.join("own.sock"))
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("LD_PRELOAD");
    let raw = inherited.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if raw == 3 {
                // dup2(3, 3) would keep FD_CLOEXEC: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    command
}

/// As with fakenotify.socket: the listening socket exists before the daemon, an application
/// started first connects and is served once the daemon is up, and the socket outlives it.
#[test]
fn an_inherited_listening_socket_serves_clients_started_before_the_daemon() {
    let dir = TempDir::new("activation");
    let socket = dir.join("activated.sock");
    let inherited = listening_socket(&socket, libc::SOCK_SEQPACKET);
    let fuse = FuseMount::new();

    // The client connects while no daemon runs; its request waits in the socket's backlog
    // (the preload waits 3 s for an answer).
    let spec = format!("CREATE:{}", fuse.mount.display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let mut client = Client::spawn_with_socket(program, &[&spec], &socket, true);
    std::thread::sleep(Duration::from_millis(300));

    let mut daemon =
        Started::spawn(activated_daemon(&inherited, &dir, "$$"), dir.join("daemon.log"));
    client.expect_line("READY", |l| l.text == "READY");
    client.expect_line("INIT ... socket (served through the inherited socket)", |l| {
        l.text.starts_with("INIT ") && l.text.ends_with(" socket")
    });
    write(&fuse.backing("early.mkv"), b"");
    client.expect_event("IN_CREATE early.mkv", |e| e.matches(IN_CREATE, "early.mkv"));

    let status = run_ok(
        Command::new(artifacts().fakenotify_ctl()).arg("status").arg("--socket").arg(&socket),
    );
    assert!(status.status.success());
    let log = daemon.log();
    assert!(
        log.contains("inherited from the service manager"),
        "the daemon does not say it serves an inherited socket:\n{log}"
    );
    assert!(!dir.join("own.sock").exists(), "the daemon created a socket of its own");

    drop(client);
    let exit = daemon.stop();
    assert!(exit.success(), "fakenotifyd exited with {exit}; log:\n{}", daemon.log());
    assert!(socket.exists(), "the daemon removed the socket that systemd owns");
}

/// LISTEN_PID names another process (the variables leaked from a parent): not ours, so the
/// daemon creates its own socket.
#[test]
fn listen_fds_meant_for_another_process_are_ignored() {
    let dir = TempDir::new("activation-other");
    let inherited = listening_socket(&dir.join("other.sock"), libc::SOCK_SEQPACKET);
    let mut daemon =
        Started::spawn(activated_daemon(&inherited, &dir, "1"), dir.join("daemon.log"));
    daemon.wait_serving(&dir.join("own.sock"));
    assert!(!daemon.log().contains("inherited"), "log:\n{}", daemon.log());
    let exit = daemon.stop();
    assert!(exit.success(), "fakenotifyd exited with {exit}");
}

/// fd 3 of the wrong type (a stream socket, as `ListenStream=` would pass): a clear error, exit 1.
#[test]
fn an_inherited_socket_of_the_wrong_type_is_refused() {
    let dir = TempDir::new("activation-stream");
    let inherited = listening_socket(&dir.join("stream.sock"), libc::SOCK_STREAM);
    let mut command = activated_daemon(&inherited, &dir, "$$");
    let output = command.output().expect("run fakenotifyd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("fd 3") && stderr.contains("SOCK_SEQPACKET"),
        "the error does not say what is wrong with fd 3:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// install.sh

fn files_in(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = snapshot(root)
        .into_iter()
        .filter(|(path, _)| !root.join(path).is_dir() || root.join(path).is_symlink())
        .map(|(path, _)| path)
        .collect();
    files.sort();
    files
}

fn install_sh(mode: &str, destdir: &Path, envs: &[(&str, &Path)]) -> std::process::Output {
    let build = artifacts();
    // The debug build holds the same three files a release build does.
    let _ = (build.fakenotifyd(), build.fakenotify_ctl(), build.preload());
    let mut command = Command::new("sh");
    command
        .arg(repo_root().join("deploy/install.sh"))
        .arg(mode)
        .env("DESTDIR", destdir)
        .env("FAKENOTIFY_BUILD", &build.profile_dir)
        .env_remove("PREFIX")
        .env_remove("SYSCONFDIR")
        .env_remove("UNITDIR");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run deploy/install.sh")
}

fn succeeded(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "install.sh failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What install.sh makes of the example: every line from the first `[[watch]]` on that is
/// neither blank nor a comment, commented out.
fn inert(example: &str) -> String {
    let mut watch = false;
    let mut out = String::new();
    for line in example.split_inclusive('\n') {
        watch |= line.starts_with("[[watch]]");
        if watch && !line.starts_with('#') && !line.trim_end_matches('\n').is_empty() {
            out.push_str("# ");
        }
        out.push_str(line);
    }
    out
}

#[test]
fn install_sh_puts_every_file_where_the_readme_says_and_a_second_run_changes_nothing() {
    let dest = TempDir::new("install");
    let first = succeeded(&install_sh("install", dest.path(), &[]));
    let installed = files_in(dest.path());
    let expected: Vec<PathBuf> = INSTALLED.iter().map(PathBuf::from).collect();
    assert_eq!(installed, expected, "install.sh output:\n{first}");

    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for path in INSTALLED {
        assert!(readme.contains(&format!("/{path}")), "the README does not mention /{path}");
    }

    let build = artifacts();
    let bin = dest.join("usr/local/bin");
    assert_eq!(
        std::fs::read(bin.join("fakenotifyd")).unwrap(),
        std::fs::read(build.fakenotifyd()).unwrap()
    );
    let mode = std::fs::metadata(bin.join("fakenotifyd")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let lib = dest.join("usr/local/lib/fakenotify");
    assert_eq!(
        std::fs::read_link(lib.join("libfakenotify_preload.so")).unwrap(),
        Path::new("libfakenotify.so")
    );
    assert_eq!(
        std::fs::read(lib.join("libfakenotify_preload.so")).unwrap(),
        std::fs::read(build.preload()).unwrap()
    );
    let unit = std::fs::read_to_string(dest.join("etc/systemd/system/fakenotify.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/local/bin/fakenotifyd start\n"), "{unit}");
    let example = std::fs::read_to_string(repo_root().join("deploy/config.example.toml")).unwrap();
    let live = std::fs::read_to_string(dest.join("etc/fakenotify/config.toml")).unwrap();
    assert_eq!(live, inert(&example), "the example with its [[watch]] tables commented out");
    assert!(live.contains("\n# [[watch]]\n") && live.contains("\n# path = \"/mnt/nas/media\"\n"));
    // So a daemon started on it warns about no path that is not there.
    let daemon = Daemon::start(&live);
    let listening = daemon.wait_for_log(WAIT, |l| l.contains("listening on"));
    let log = daemon.log();
    assert!(listening.is_some_and(|l| l.contains(" 0 watch policies")), "{log}");
    assert!(!log.contains("warn"), "{log}");

    let before = snapshot(dest.path());
    let second = succeeded(&install_sh("install", dest.path(), &[]));
    assert_eq!(snapshot(dest.path()), before, "the second run changed files:\n{second}");
    assert!(second.contains("nothing to do"), "{second}");

    // An edited configuration is the user's: kept by install and by uninstall.
    let config = dest.join("etc/fakenotify/config.toml");
    write(&config, b"[daemon]\nlog_level = \"debug\"\n");
    let third = succeeded(&install_sh("install", dest.path(), &[]));
    assert!(third.contains("kept"), "{third}");
    assert_eq!(std::fs::read(&config).unwrap(), b"[daemon]\nlog_level = \"debug\"\n");

    let removed = succeeded(&install_sh("uninstall", dest.path(), &[]));
    assert_eq!(files_in(dest.path()), [PathBuf::from("etc/fakenotify/config.toml")], "{removed}");
    assert!(removed.contains("edited"), "{removed}");

    // Unedited, it goes too, and nothing is left but empty directories.
    std::fs::write(&config, inert(&example)).unwrap();
    succeeded(&install_sh("uninstall", dest.path(), &[]));
    assert_eq!(files_in(dest.path()), Vec::<PathBuf>::new());
    assert!(!dest.join("usr/local/lib/fakenotify").exists(), "an empty lib/fakenotify stayed");
    // Uninstalling what is not there is fine.
    succeeded(&install_sh("uninstall", dest.path(), &[]));
}

#[test]
fn install_sh_honours_prefix_and_unitdir() {
    let dest = TempDir::new("install-prefix");
    succeeded(&install_sh(
        "install",
        dest.path(),
        &[("PREFIX", Path::new("/usr")), ("UNITDIR", Path::new("/usr/lib/systemd/system"))],
    ));
    for path in [
        "usr/bin/fakenotifyd",
        "usr/bin/fakenotify-ctl",
        "usr/lib/fakenotify/libfakenotify.so",
        "usr/lib/fakenotify/libfakenotify_preload.so",
        "usr/lib/systemd/system/fakenotify.socket",
        "etc/fakenotify/config.toml",
    ] {
        assert!(dest.join(path).exists(), "{path} is missing");
    }
    let unit =
        std::fs::read_to_string(dest.join("usr/lib/systemd/system/fakenotify.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/fakenotifyd start\n"), "{unit}");
}

#[test]
fn install_sh_without_a_build_says_what_to_build() {
    let dest = TempDir::new("install-unbuilt");
    let empty = TempDir::new("install-no-build");
    let output = install_sh("install", dest.path(), &[("FAKENOTIFY_BUILD", empty.path())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("build first") && stderr.contains("just release"), "{stderr}");
    assert_eq!(files_in(dest.path()), Vec::<PathBuf>::new(), "it installed something anyway");
}

// ---------------------------------------------------------------------------------------------
// systemd units

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    require_tool("systemd-analyze", "apt-get install systemd");
    let units = repo_root().join("deploy/systemd");
    let dir = TempDir::new("units");
    // verify wants ExecStart's binary to exist: point it at the one just built.
    let daemon = artifacts().fakenotifyd();
    let mut paths = Vec::new();
    for name in ["fakenotify.socket", "fakenotify.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let path = dir.join(name);
        write(
            &path,
            text.replace("/usr/local/bin/fakenotifyd", &daemon.display().to_string()).as_bytes(),
        );
        paths.push(path);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Unknown keys and bad values are only warnings (exit 0): fail on any line about our units.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("fakenotify")).collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        output.status
    );

    // systemd-analyze security rates the unit's exposure 0-10 (threshold in tenths): "OK" ends
    // at 5; the unit holds 3 at most, with its system-call filter.
    let service_path = paths.last().expect("the service");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(service_path)
        .output()
        .expect("run systemd-analyze security");
    assert!(
        security.status.success(),
        "systemd-analyze security rates fakenotify.service above 3.0:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );

    let service = std::fs::read_to_string(units.join("fakenotify.service")).unwrap();
    for line in [
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "Type=notify",
        "ExecStart=/usr/local/bin/fakenotifyd start",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RuntimeDirectory=fakenotify",
        "RuntimeDirectoryMode=0755",
        "LimitNOFILE=1048576",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ] {
        assert!(service.lines().any(|l| l == line), "fakenotify.service lacks {line}");
    }
    let socket = std::fs::read_to_string(units.join("fakenotify.socket")).unwrap();
    let listen = format!("ListenSequentialPacket={}", fakenotify_proto::DEFAULT_SOCKET);
    for line in [listen.as_str(), "SocketMode=0666", "DirectoryMode=0755"] {
        assert!(socket.lines().any(|l| l == line), "fakenotify.socket lacks {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// The LSIO mod

fn mod_dir() -> PathBuf {
    repo_root().join("deploy/docker-mod/root/etc/s6-overlay/s6-rc.d")
}

fn mod_script() -> PathBuf {
    mod_dir().join("init-mod-fakenotify-setup/run")
}

#[test]
fn the_mod_has_the_s6_overlay_layout_lsio_expects() {
    let dir = mod_dir();
    let service = dir.join("init-mod-fakenotify-setup");
    assert_eq!(std::fs::read_to_string(service.join("type")).unwrap().trim(), "oneshot");
    assert_eq!(
        std::fs::read_to_string(service.join("up")).unwrap().trim(),
        "/etc/s6-overlay/s6-rc.d/init-mod-fakenotify-setup/run"
    );
    for marker in [
        "init-mod-fakenotify-setup/dependencies.d/init-mods",
        "init-mods-end/dependencies.d/init-mod-fakenotify-setup",
        "user/contents.d/init-mod-fakenotify-setup",
    ] {
        assert!(dir.join(marker).is_file(), "{marker} is missing");
    }
    let mode = std::fs::metadata(mod_script()).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "run is not executable");
}

/// Runs the mod's script with `envs` and a temporary container environment; returns its
/// output and the LD_PRELOAD it left (None when it wrote none).
fn run_mod_script(envs: &[(&str, &Path)]) -> (String, Option<String>) {
    let env_dir = TempDir::new("container-env");
    let mut command = Command::new("sh");
    command
        .arg(mod_script())
        .env("FAKENOTIFY_CONTAINER_ENV", env_dir.path())
        .env("FAKENOTIFY_CTL", artifacts().fakenotify_ctl())
        .env_remove("LD_PRELOAD");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = run_ok(&mut command);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let preload = std::fs::read_to_string(env_dir.join("LD_PRELOAD")).ok();
    (text, preload)
}

#[test]
fn the_mod_preloads_the_library_only_when_the_daemon_answers() {
    let library = artifacts().preload();
    let daemon = Daemon::fast();
    let (said, preload) =
        run_mod_script(&[("FAKENOTIFY_LIBRARY", &library), ("FAKENOTIFY_SOCKET", daemon.socket())]);
    assert_eq!(preload.as_deref(), Some(library.to_str().unwrap()), "{said}");
    assert!(said.contains("[mod-fakenotify] enabled"), "{said}");

    let dir = TempDir::new("mod");
    let missing_socket = dir.join("missing.sock");
    let (said, preload) =
        run_mod_script(&[("FAKENOTIFY_LIBRARY", &library), ("FAKENOTIFY_SOCKET", &missing_socket)]);
    assert_eq!(preload, None, "{said}");
    assert!(said.contains("not enabled: no socket at"), "{said}");

    // A socket file nobody serves, as a stopped daemon's directory may hold.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (said, preload) =
        run_mod_script(&[("FAKENOTIFY_LIBRARY", &library), ("FAKENOTIFY_SOCKET", &stale)]);
    assert_eq!(preload, None, "{said}");
    assert!(said.contains("does not answer"), "{said}");

    let (said, preload) = run_mod_script(&[
        ("FAKENOTIFY_LIBRARY", &dir.join("libfakenotify.so")),
        ("FAKENOTIFY_SOCKET", daemon.socket()),
    ]);
    assert_eq!(preload, None, "{said}");
    assert!(said.contains("not enabled: no library at"), "{said}");

    // Unset, the library is the daemon's copy beside the socket: one mount serves both.
    let copied = daemon.wait_for_log(WAIT, |l| l.contains("libfakenotify.so: copied from"));
    assert!(copied.is_some(), "the daemon copies its library:\n{}", daemon.log());
    let (said, preload) = run_mod_script(&[("FAKENOTIFY_SOCKET", daemon.socket())]);
    let beside = daemon.dir().join("libfakenotify.so");
    assert_eq!(preload.as_deref(), Some(beside.to_str().unwrap()), "{said}");
}

// ---------------------------------------------------------------------------------------------
// Syntax of the rest

#[test]
fn the_shell_scripts_pass_sh_n_and_shellcheck() {
    require_tool("shellcheck", "apt-get install shellcheck");
    let root = repo_root();
    let scripts = [
        ("sh", root.join("deploy/install.sh")),
        ("sh", mod_script()),
        ("bash", root.join("scripts/static-build.sh")),
    ];
    for (shell, script) in &scripts {
        run_ok(Command::new(shell).arg("-n").arg(script));
        run_ok(Command::new("shellcheck").arg(script));
    }
}

#[test]
fn every_nix_file_parses() {
    require_tool("nix-instantiate", "apt-get install nix-bin");
    let files = files_with_suffix(&repo_root(), ".nix");
    for expected in ["flake.nix", "nix/package.nix", "nix/module.nix", "nix/test.nix"] {
        assert!(files.contains(&repo_root().join(expected)), "{expected} is missing");
    }
    for file in &files {
        run_ok(Command::new("nix-instantiate").arg("--parse").arg(file).stdout(Stdio::null()));
    }
}

#[test]
fn the_compose_file_parses_and_wires_the_preload() {
    require_tool("python3", "apt-get install python3 python3-yaml");
    let compose = repo_root().join("deploy/docker/compose.yml");
    let check = r#"
import os, sys
try:
    import yaml
except ImportError:
    sys.exit("python3 has no yaml module: apt-get install python3-yaml")
path = sys.argv[1]
doc = yaml.safe_load(open(path))
services = doc["services"]
daemon, app = services["fakenotifyd"], services["jellyfin"]
context = os.path.normpath(os.path.join(os.path.dirname(path), daemon["build"]["context"]))
dockerfile = os.path.join(context, daemon["build"]["dockerfile"])
assert os.path.isfile(dockerfile), dockerfile
assert "/run/fakenotify:/run/fakenotify" in daemon["volumes"], daemon["volumes"]
env = app["environment"]
assert env == {"LD_PRELOAD": "/run/fakenotify/libfakenotify.so"}, env
assert "/run/fakenotify:/run/fakenotify:ro" in app["volumes"], app["volumes"]
print("ok")
"#;
    let output = run(Command::new("python3").arg("-c").arg(check).arg(&compose));
    if let Err(e) = output {
        panic!("{}: {e}", compose.display());
    }
}

/// The Dockerfiles cannot be built here (no Docker engine): check their structure instead.
#[test]
fn the_dockerfiles_build_from_scratch_with_stages_that_exist() {
    let root = repo_root();
    for (file, entrypoint) in [
        ("deploy/docker/Dockerfile", Some(r#"ENTRYPOINT ["/usr/bin/fakenotifyd", "start"]"#)),
        ("deploy/docker-mod/Dockerfile", None),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let instructions: Vec<String> = text
            .replace("\\\n", " ")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let known = [
            "FROM",
            "RUN",
            "COPY",
            "WORKDIR",
            "LABEL",
            "VOLUME",
            "HEALTHCHECK",
            "STOPSIGNAL",
            "ENTRYPOINT",
            "CMD",
            "ENV",
            "ARG",
            "USER",
            "EXPOSE",
        ];
        let mut stages = Vec::new();
        for line in &instructions {
            let keyword = line.split_whitespace().next().unwrap_or("");
            assert!(known.contains(&keyword), "{file}: unknown instruction: {line}");
            if let Some(from) = line.strip_prefix("FROM ") {
                if let Some((_, name)) = from.split_once(" AS ") {
                    stages.push(name.trim().to_owned());
                }
            }
            if let Some(rest) = line.strip_prefix("COPY --from=") {
                let stage = rest.split_whitespace().next().unwrap();
                assert!(
                    stages.iter().any(|s| s == stage),
                    "{file}: COPY from unknown stage {stage}"
                );
            } else if let Some(rest) = line.strip_prefix("COPY ") {
                let source = rest.split_whitespace().next().unwrap();
                assert!(root.join(source).exists(), "{file}: COPY source {source} does not exist");
            }
        }
        let last_from = instructions.iter().rev().find(|l| l.starts_with("FROM ")).unwrap();
        assert_eq!(last_from, "FROM scratch", "{file}: the final stage is not scratch");
        assert!(text.contains("scripts/static-build.sh"), "{file} does not use the static build");
        if let Some(entrypoint) = entrypoint {
            assert!(instructions.iter().any(|l| l == entrypoint), "{file}: no {entrypoint}");
        }
        let ignore = std::fs::read_to_string(root.join(format!("{file}.dockerignore"))).unwrap();
        assert!(ignore.lines().any(|l| l == "**/target"), "{file}.dockerignore lets target/ in");
    }
}

#[test]
fn just_lists_the_deployment_recipes() {
    require_tool("just", "cargo install --locked just");
    let output = run_ok(
        Command::new("just").arg("--justfile").arg(repo_root().join("justfile")).arg("--list"),
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    for recipe in ["build", "test", "lint", "release", "static", "install", "uninstall", "docker"] {
        assert!(
            listed.lines().any(|l| l.split_whitespace().next() == Some(recipe)),
            "just --list lacks {recipe}:\n{listed}"
        );
    }
}
