//! `fakenotify-ctl doctor [PID|COMMAND-NAME]`: why FakeNotify is or is not at work, one line per
//! check, each failure with its fix.
//!
//! Without an argument it checks the daemon (reachable, trusted by this user's preload, its
//! version), its socket's directory and the installed library; with one, a running process,
//! read from the host through `/proc/PID/{exe,maps,environ,fd,root}` (so a container's too):
//! whether the library is mapped, `LD_PRELOAD`, static or Go binaries (which cannot work), real
//! inotify fds, and the instances and polled mounts the daemon reports for it. The daemon's
//! `status` is the ground truth for instances; it names them by pid, not by fd.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fakenotify_proto::control::ControlRequest;
use fakenotify_proto::{DEFAULT_SOCKET, SOCKET_ENV};
use nanoserde::SerJson;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::message::{Response, Status};
use crate::procinfo::{
    elf_linking, environ_value, mapped_files, mount_points, preload_paths, ElfLinking,
};
use crate::render::escape_bytes;
use crate::transport::Connection;

/// `$FAKENOTIFY_DAEMON_UID`: a daemon uid the preload trusts besides 0 and its own euid.
const DAEMON_UID_ENV: &str = "FAKENOTIFY_DAEMON_UID";
/// The original FakeNotify's socket path.
const OLD_SOCKET: &str = "/run/fakenotify.sock";
/// Where install.sh (`$PREFIX/lib/fakenotify`, PREFIX=/usr/local) and packages put the library.
const LIBRARY_DIRS: [&str; 3] = ["/usr/local/lib/fakenotify", "/usr/lib/fakenotify", "/usr/lib"];
const LIBRARY: &str = "libfakenotify.so";
/// Executables larger than this are not read (their linking is reported unknown).
const MAX_EXE_BYTES: u64 = 1 << 30;
/// The length `/proc/PID/comm` keeps of a command name.
const COMM_LEN: usize = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail,
    /// A fact, or a check that could not be made (the line says why).
    Info,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Fail => "fail",
            Verdict::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    /// The process the check is about; 0 for the daemon and installation.
    pub pid: i32,
    pub verdict: Verdict,
    pub message: String,
    /// What to do about a failure; empty otherwise.
    pub fix: String,
}

/// `--json`: `{"ok", "checks": [{"pid", "verdict": "ok"|"fail"|"info", "message", "fix"}]}`.
#[derive(SerJson)]
struct Report {
    ok: bool,
    checks: Vec<CheckJson>,
}

#[derive(SerJson)]
struct CheckJson {
    pid: i32,
    verdict: String,
    message: String,
    fix: String,
}

#[derive(Default)]
struct Checks {
    pid: i32,
    list: Vec<Check>,
}

impl Checks {
    fn push(&mut self, verdict: Verdict, message: impl Into<String>, fix: impl Into<String>) {
        let (pid, message, fix) = (self.pid, message.into(), fix.into());
        self.list.push(Check { pid, verdict, message, fix });
    }
    fn ok(&mut self, message: impl Into<String>) {
        self.push(Verdict::Ok, message, "");
    }
    fn info(&mut self, message: impl Into<String>) {
        self.push(Verdict::Info, message, "");
    }
    fn fail(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Verdict::Fail, message, fix);
    }
}

/// Runs the checks and prints them; returns the exit code (0 all passed, 1 some failed, 2 a
/// usage error, whose message is in the `Err`).
pub fn run(socket_flag: Option<PathBuf>, rest: Vec<OsString>, json: bool) -> Result<u8, String> {
    if let Some(flag) = rest.iter().find(|a| a.as_bytes().starts_with(b"-")) {
        return Err(format!("doctor: unknown option '{}'", flag.to_string_lossy()));
    }
    if rest.len() > 1 {
        return Err(format!("doctor: one PID or COMMAND-NAME expected, {} given", rest.len()));
    }
    let mut checks = Checks::default();
    match rest.first() {
        None => installation(&mut checks, socket_flag),
        Some(target) => {
            let pids = resolve_target(&target.to_string_lossy());
            let target = escape_bytes(target.as_bytes());
            if pids.is_empty() {
                checks.fail(
                    format!("no process {target} (looked in /proc/*/comm)"),
                    "start it, or give its PID (`pgrep -a NAME`)",
                );
            } else if pids.len() > 1 {
                let list: Vec<String> = pids.iter().map(i32::to_string).collect();
                checks.info(format!("{} processes named {target}: {}", pids.len(), list.join(" ")));
            }
            for pid in pids {
                checks.pid = pid;
                process(&mut checks, pid, socket_flag.clone());
            }
        }
    }
    let ok = !checks.list.iter().any(|c| c.verdict == Verdict::Fail);
    if json {
        let checks = checks
            .list
            .into_iter()
            .map(|c| CheckJson {
                pid: c.pid,
                verdict: c.verdict.name().into(),
                message: c.message,
                fix: c.fix,
            })
            .collect();
        println!("{}", Report { ok, checks }.serialize_json());
    } else {
        print!("{}", text(&checks.list));
    }
    Ok(if ok { 0 } else { 1 })
}

/// The report as text: `OK`, `FAIL` (and its fix) or `--` (a fact), a line each.
pub fn text(checks: &[Check]) -> String {
    let mut out = String::new();
    let mut shown_pid = 0;
    for check in checks {
        if check.pid != shown_pid {
            shown_pid = check.pid;
            out.push_str(&format!("process {}:\n", check.pid));
        }
        let tag = match check.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Fail => "FAIL",
            Verdict::Info => "--  ",
        };
        let indent = if check.pid == 0 { "" } else { "  " };
        out.push_str(&format!("{indent}{tag} {}", check.message));
        if !check.fix.is_empty() {
            out.push_str(&format!(" -- fix: {}", check.fix));
        }
        out.push('\n');
    }
    out
}

/// PIDs for a number, or the processes whose `/proc/PID/comm` is the name (cut as the kernel
/// cuts it), this one excepted.
fn resolve_target(target: &str) -> Vec<i32> {
    if let Ok(pid) = target.parse::<i32>() {
        return if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            vec![pid]
        } else {
            Vec::new()
        };
    }
    let wanted = &target.as_bytes()[..target.len().min(COMM_LEN)];
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.strip_suffix(b"\n").unwrap_or(&comm) == wanted)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The daemon as seen through one socket path.
struct Daemon {
    uid: u32,
    pid: i32,
    status: Option<Status>,
}

/// Who may serve a preload: uid 0, its own euid, or `$FAKENOTIFY_DAEMON_UID` (as the preload's
/// `check_peer`).
struct Truster {
    euid: u32,
    named: Option<u32>,
    whose: String,
}

impl Truster {
    fn trusts(&self, uid: u32) -> bool {
        uid == 0 || uid == self.euid || self.named == Some(uid)
    }
}

/// Connects to `socket` (reached as `path`, which may go through `/proc/PID/root`) and checks
/// the daemon there: answering, trusted, its version.
fn check_daemon(
    checks: &mut Checks,
    socket: &Path,
    path: &Path,
    truster: &Truster,
) -> Option<Daemon> {
    let shown = socket.display();
    let (uid, pid) = match peer(path) {
        Ok(peer) => peer,
        Err(errno) => {
            let fix = match errno {
                Errno::NOENT | Errno::CONNREFUSED => format!(
                    "start the daemon (`systemctl start fakenotifyd`, or `fakenotifyd start \
                     --socket {shown}`), or point {SOCKET_ENV} at the socket it serves"
                ),
                Errno::ACCESS | Errno::PERM => format!(
                    "{whose} may not open the socket or its directory: check their modes \
                     (`ls -ld {shown} {}`)",
                    socket.parent().unwrap_or(Path::new("/")).display(),
                    whose = truster.whose
                ),
                _ => format!("start the daemon on {shown}, or point {SOCKET_ENV} at its socket"),
            };
            checks.fail(format!("daemon socket {shown}: no daemon answers ({errno})"), fix);
            return None;
        }
    };
    if truster.trusts(uid) {
        checks.ok(format!(
            "daemon at {shown}: pid {pid}, uid {uid}; {} preload trusts it",
            truster.whose
        ));
    } else {
        checks.fail(
            format!(
                "daemon at {shown}: pid {pid}, uid {uid}; {} preload (euid {}) does not trust it",
                truster.whose, truster.euid
            ),
            format!(
                "run the daemon as root or as uid {}, or set {DAEMON_UID_ENV}={uid} in the \
                 application's environment",
                truster.euid
            ),
        );
    }
    let status = match Connection::connect(path).and_then(|c| c.control(&ControlRequest::Status)) {
        Ok(Response::Status(status)) => Some(*status),
        Ok(_) => {
            checks.fail(
                format!("daemon at {shown}: unexpected answer to status"),
                "upgrade the daemon and ctl together",
            );
            None
        }
        Err(e) => {
            checks.fail(
                format!("daemon at {shown}: status: {e}"),
                "see the daemon's log (`journalctl -u fakenotifyd`)",
            );
            None
        }
    };
    if let Some(status) = &status {
        let mine = env!("CARGO_PKG_VERSION");
        if status.version == mine {
            checks.ok(format!("daemon version {mine}, the same as fakenotify-ctl's"));
        } else {
            checks.fail(
                format!("daemon version {}, fakenotify-ctl {mine}", status.version),
                "restart the daemon after an upgrade (`systemctl restart fakenotifyd`), or use \
                 the fakenotify-ctl installed with it",
            );
        }
    }
    Some(Daemon { uid, pid, status })
}

/// Connects and returns the listening process's uid and pid (`SO_PEERCRED`).
fn peer(path: &Path) -> Result<(u32, i32), Errno> {
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // A connect to a daemon whose backlog is full waits as long as a send may.
    let timeout = Some(crate::transport::TIMEOUT);
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Send, timeout)?;
    rustix::net::connect(&fd, &addr)?;
    let cred = rustix::net::sockopt::socket_peercred(&fd)?;
    Ok((cred.uid.as_raw(), cred.pid.as_raw_nonzero().get()))
}

/// The socket's directory must be writable only by root or the daemon's uid, or anyone could
/// put their own socket in its place.
fn check_directory(checks: &mut Checks, socket: &Path, path: &Path, daemon_uid: u32) {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let real_dir = path.parent().unwrap_or(Path::new("/"));
    let Ok(meta) = std::fs::metadata(real_dir) else {
        checks.info(format!("socket directory {}: cannot stat", dir.display()));
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    let owner_ok = meta.uid() == 0 || meta.uid() == daemon_uid;
    let what =
        format!("socket directory {}: mode {mode:04o}, owner uid {}", dir.display(), meta.uid());
    if owner_ok && mode & 0o022 == 0 {
        checks.ok(what);
    } else {
        checks.fail(
            format!("{what}: others can replace the socket"),
            format!(
                "make it owned by root or uid {daemon_uid} and not group- or world-writable \
                 (`chmod 755`); the packaged units use /run/fakenotify"
            ),
        );
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        checks.info(format!(
            "socket {}: mode {mode:04o}, owner uid {}",
            socket.display(),
            meta.uid()
        ));
    }
}

/// Without a PID: the sockets this user's applications would use, and the library.
fn installation(checks: &mut Checks, socket_flag: Option<PathBuf>) {
    let env = std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()).map(PathBuf::from);
    let mut sockets = Vec::new();
    match (&socket_flag, &env) {
        (Some(flag), _) => sockets.push(flag.clone()),
        (None, Some(env)) => {
            checks.info(format!("{SOCKET_ENV}={}", env.display()));
            sockets.push(env.clone());
            if env != Path::new(DEFAULT_SOCKET) {
                sockets.push(PathBuf::from(DEFAULT_SOCKET));
            }
        }
        (None, None) => sockets.push(PathBuf::from(DEFAULT_SOCKET)),
    }
    let truster = Truster {
        euid: rustix::process::geteuid().as_raw(),
        named: std::env::var(DAEMON_UID_ENV).ok().and_then(|v| v.trim().parse().ok()),
        whose: "this user's".into(),
    };
    let mut served = None;
    for (i, socket) in sockets.iter().enumerate() {
        if i > 0 && served.is_some() {
            break;
        }
        let before = checks.list.len();
        let daemon = check_daemon(checks, socket, socket, &truster);
        if i > 0 {
            match &daemon {
                // The preload and ctl use the variable alone: a daemon on the default helps only
                // once it is unset.
                Some(_) => {
                    for check in &mut checks.list[before..] {
                        if check.verdict == Verdict::Fail {
                            check.verdict = Verdict::Info;
                        }
                    }
                    if let Some(first) = checks.list.iter_mut().find(|c| c.verdict == Verdict::Fail)
                    {
                        first.fix = format!(
                            "a daemon answers at {DEFAULT_SOCKET}: unset {SOCKET_ENV}, or set \
                             it to that"
                        );
                    }
                }
                None => {
                    // Only the variable's socket matters; this line is a hint.
                    for check in &mut checks.list[before..] {
                        check.verdict = Verdict::Info;
                        check.fix.clear();
                    }
                }
            }
            continue;
        }
        if let Some(daemon) = daemon {
            check_directory(checks, socket, socket, daemon.uid);
            if let Some(status) = &daemon.status {
                checks.info(format!(
                    "{} instances, {} watches ({} polled, {} kernel-forwarded)",
                    status.instances_total,
                    status.watches,
                    status.objects_polled,
                    status.objects_kernel
                ));
            }
            served = Some(daemon.pid);
        }
    }
    if served.is_none()
        && Path::new(OLD_SOCKET).exists()
        && !sockets.iter().any(|s| s == Path::new(OLD_SOCKET))
    {
        checks.info(format!(
            "{OLD_SOCKET} exists (the original FakeNotify's path): if a daemon serves it, set \
             {SOCKET_ENV}={OLD_SOCKET} or move the daemon to {DEFAULT_SOCKET}"
        ));
    }
    let socket_dir = sockets.first().and_then(|s| s.parent()).map(Path::to_path_buf);
    check_library(checks, socket_dir);
}

/// The library where install.sh, packages, the daemon's runtime directory or a source build
/// put it; each one found must be an ELF with no NEEDED entry.
fn check_library(checks: &mut Checks, socket_dir: Option<PathBuf>) {
    let mut places: Vec<PathBuf> = socket_dir.into_iter().collect();
    places.extend(LIBRARY_DIRS.iter().map(PathBuf::from));
    // A source build: target/release/ holds fakenotify-ctl and libfakenotify.so.
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf))
    {
        places.push(dir);
    }
    let mut found = 0;
    for dir in places {
        let path = dir.join(LIBRARY);
        if found > 0 && !path.exists() || places_seen(checks, &path) {
            continue;
        }
        match library_verdict(&path) {
            None => {}
            Some(Ok(message)) => {
                found += 1;
                checks.ok(message);
            }
            Some(Err((message, fix))) => {
                found += 1;
                checks.fail(message, fix);
            }
        }
    }
    if found == 0 {
        checks.fail(
            format!("{LIBRARY} not found in the socket's directory, {}", LIBRARY_DIRS.join(", ")),
            "install it (`sudo deploy/install.sh`, to /usr/local/lib/fakenotify) or build it \
             (`cargo build --release` puts it in target/release)",
        );
    }
}

fn places_seen(checks: &Checks, path: &Path) -> bool {
    let shown = path.display().to_string();
    checks.list.iter().any(|c| c.message.starts_with(&format!("{shown}:")))
}

/// None when absent; else whether it is a library the preload can be.
fn library_verdict(path: &Path) -> Option<Result<String, (String, String)>> {
    let bytes = std::fs::read(path).ok()?;
    let shown = path.display();
    let reinstall =
        "reinstall it from a release or `cargo build --release` (the preload is its own \
                     workspace: `cd preload && cargo build --release`)";
    Some(match elf_linking(&bytes) {
        Ok(ElfLinking { dynamic: true, needed: 0, .. }) => {
            Ok(format!("{shown}: an ELF library with no NEEDED entries"))
        }
        Ok(ElfLinking { dynamic: false, .. }) => {
            Err((format!("{shown}: not a shared library (no dynamic section)"), reinstall.into()))
        }
        Ok(linking) => Err((
            format!(
                "{shown}: needs {} other libraries; one build must serve glibc and musl",
                linking.needed
            ),
            reinstall.into(),
        )),
        Err(why) => Err((format!("{shown}: {why}"), reinstall.into())),
    })
}

/// What `/proc/PID/...` shows of a process, and the daemon it would use.
fn process(checks: &mut Checks, pid: i32, socket_flag: Option<PathBuf>) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read(proc_dir.join("comm")).unwrap_or_default();
    let comm = escape_bytes(comm.strip_suffix(b"\n").unwrap_or(&comm));
    let (ruid, euid) = ids(&proc_dir);
    let exe = std::fs::read_link(proc_dir.join("exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("? ({})", io_cause(&e)));
    checks.info(format!("pid {pid} ({comm}), uid {ruid}, executable {exe}"));
    // What /proc hides from another user (ptrace access): reported once, as one failure.
    let mut hidden: Vec<String> = Vec::new();
    let unreadable = |what: &str, e: &std::io::Error| format!("{what} ({})", io_cause(e));

    // Static and Go programs: the preload never comes into play.
    let cannot_work = match read_exe(&proc_dir.join("exe")) {
        Err(e) => {
            hidden.push(unreadable("exe", &e));
            false
        }
        Ok(None) => {
            checks.info("executable larger than 1 GiB: linking not checked");
            false
        }
        Ok(Some(Err(why))) => {
            checks.info(format!("executable: {why}"));
            false
        }
        Ok(Some(Ok(linking))) => {
            if linking.go {
                checks.fail(
                    "Go binary: cannot work: Go makes its inotify system calls itself, not \
                     through libc, so LD_PRELOAD has nothing to replace",
                    "let the application poll (its own periodic rescan), or drive its rescans \
                     from `fakenotify-ctl watch -m -r DIR`",
                );
                true
            } else if linking.interpreter.is_none() {
                checks.fail(
                    "static: cannot work: the program is statically linked, so no dynamic \
                     loader runs and LD_PRELOAD is ignored",
                    "use a dynamically linked build of the application, or let it poll",
                );
                true
            } else {
                let interp = linking.interpreter.unwrap_or_default();
                checks.ok(format!("dynamically linked (loader {interp})"));
                false
            }
        }
    };

    let environ = std::fs::read(proc_dir.join("environ"));
    let preload = match &environ {
        Ok(env) => environ_value(env, "LD_PRELOAD").map(<[u8]>::to_vec),
        Err(_) => None,
    };
    let ours: Vec<Vec<u8>> = preload
        .as_deref()
        .map(preload_paths)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| is_fakenotify(p))
        .map(<[u8]>::to_vec)
        .collect();

    let mapped = match std::fs::read(proc_dir.join("maps")) {
        Ok(maps) => {
            let files = mapped_files(&maps);
            match files.iter().find(|m| is_fakenotify(m.path)) {
                Some(m) => {
                    checks.ok(format!("libfakenotify mapped: {}", escape_bytes(m.path)));
                    Some(true)
                }
                None => {
                    let fix = if cannot_work {
                        "none for this program (see above)".to_string()
                    } else if ours_missing(&proc_dir, &ours).is_some() {
                        "make the library visible at that path inside the process's root \
                         (containers: -v /run/fakenotify:/run/fakenotify:ro), then restart it"
                            .to_string()
                    } else {
                        format!(
                            "restart it with LD_PRELOAD={}",
                            installed_library()
                                .unwrap_or_else(|| format!("/usr/local/lib/fakenotify/{LIBRARY}"))
                        )
                    };
                    checks.fail("libfakenotify is not mapped", fix);
                    Some(false)
                }
            }
        }
        Err(e) => {
            hidden.push(unreadable("maps", &e));
            None
        }
    };

    match &environ {
        Err(e) => hidden.push(unreadable("environ", e)),
        Ok(_) => match (&preload, ours.is_empty()) {
            (None, _) => {
                if mapped != Some(true) {
                    let fix = format!("start it with LD_PRELOAD=<path of {LIBRARY}>");
                    checks.fail("LD_PRELOAD is not set", fix);
                } else {
                    checks.info("LD_PRELOAD is not set (the library was loaded another way)");
                }
            }
            (Some(value), true) => checks.fail(
                format!("LD_PRELOAD={} names no {LIBRARY}", escape_bytes(value)),
                format!("add the path of {LIBRARY} to LD_PRELOAD"),
            ),
            (Some(value), false) => match ours_missing(&proc_dir, &ours) {
                Some((missing, why)) => checks.fail(
                    format!(
                        "LD_PRELOAD={}, but {} {why}: ld.so ignored it",
                        escape_bytes(value),
                        escape_bytes(&missing)
                    ),
                    "mount or copy the library to that path (containers: \
                     -v /run/fakenotify:/run/fakenotify:ro)",
                ),
                None => checks.ok(format!("LD_PRELOAD={}", escape_bytes(value))),
            },
        },
    }

    // The daemon the process would reach: its own $FAKENOTIFY_SOCKET, through its root.
    let env_socket =
        environ.as_ref().ok().and_then(|e| environ_value(e, SOCKET_ENV)).filter(|v| !v.is_empty());
    let socket = match (&socket_flag, env_socket) {
        (Some(flag), _) => flag.clone(),
        (None, Some(value)) => PathBuf::from(std::ffi::OsStr::from_bytes(value)),
        (None, None) => PathBuf::from(DEFAULT_SOCKET),
    };
    let path = through_root(&proc_dir, &socket);
    let named = environ
        .as_ref()
        .ok()
        .and_then(|e| environ_value(e, DAEMON_UID_ENV))
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
    let truster = Truster { euid, named, whose: "its".into() };
    let daemon = check_daemon(checks, &socket, &path, &truster);

    // Its inotify fds: the kernel's (FakeNotify not in use) and sockets (possible instances).
    let mut kernel_fds = Vec::new();
    let mut socket_fds = Vec::new();
    match std::fs::read_dir(proc_dir.join("fd")) {
        Err(e) => hidden.push(unreadable("fd", &e)),
        Ok(entries) => {
            for entry in entries.flatten() {
                let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
                let Ok(target) = std::fs::read_link(entry.path()) else { continue };
                let target = target.as_os_str().as_bytes();
                if target == b"anon_inode:inotify" {
                    kernel_fds.push(fd);
                } else if target.starts_with(b"socket:") {
                    socket_fds.push(fd);
                }
            }
        }
    }
    kernel_fds.sort_unstable();
    socket_fds.sort_unstable();
    if !hidden.is_empty() {
        checks.fail(
            format!("cannot read /proc/{pid}/: {}: needs root or uid {ruid}", hidden.join(", ")),
            format!("run doctor as root (`sudo fakenotify-ctl doctor {pid}`) or as uid {ruid}"),
        );
    }
    for fd in &kernel_fds {
        let fix = if cannot_work {
            "none for this program (see above)"
        } else if mapped == Some(true) {
            "the daemon did not answer (or was not trusted) when the application called \
             inotify_init: restart the application once the checks above pass"
        } else {
            "start the application with the preload (see above)"
        };
        checks.fail(
            format!(
                "fd {fd}: the kernel's inotify: FakeNotify is not in use for it (changes made \
                 on NFS/FUSE servers are missed)"
            ),
            fix,
        );
    }

    let Some(status) = daemon.and_then(|d| d.status) else { return };
    let instances: Vec<_> = status.instances.iter().filter(|i| i.pid == pid).collect();
    if instances.is_empty() {
        if !status.all_users && ruid != rustix::process::getuid().as_raw() {
            checks.info(
                "the daemon shows a user only their own instances: run doctor as root to see \
                 this process's",
            );
        } else if mapped == Some(true) && kernel_fds.is_empty() {
            checks.info("no inotify instance yet: the application has not called inotify_init");
        } else if mapped == Some(true) {
            checks.fail(
                format!("the daemon knows no instance of pid {pid}"),
                "restart the application once the daemon runs",
            );
        }
        return;
    }
    let watches: u64 = instances.iter().map(|i| i.watches).sum();
    let fds: Vec<String> = socket_fds.iter().map(i32::to_string).collect();
    checks.ok(format!(
        "{} FakeNotify instance(s) known to the daemon for pid {pid}, {watches} watches; its \
         sockets (the instances among them): fd {}",
        instances.len(),
        if fds.is_empty() { "?".into() } else { fds.join(" ") }
    ));
    for i in &instances {
        checks.info(format!(
            "instance of uid {}: {} watches, {} events delivered, {} queued, {} overflows",
            i.uid, i.watches, i.delivered, i.queued, i.overflows
        ));
    }
    // Which polled mounts the process sees, and where: status counts watches per instance and
    // objects per mount, not which watch is on which mount.
    let mountinfo = std::fs::read(proc_dir.join("mountinfo")).unwrap_or_default();
    let mut elsewhere = 0;
    for mount in &status.mounts {
        let points = u64::from_str_radix(&mount.device, 16)
            .map(|dev| mount_points(&mountinfo, dev))
            .unwrap_or_default();
        if points.is_empty() {
            elsewhere += 1;
            continue;
        }
        let points: Vec<String> = points.iter().map(|p| escape_bytes(p)).collect();
        checks.info(format!(
            "polled mount {} (device {}), {} objects of all instances, listed {}; the process \
             sees it at {}",
            mount.fs_type,
            mount.device,
            mount.objects,
            mount.listing,
            points.join(" ")
        ));
    }
    if status.mounts.len() == elsewhere {
        checks.info(
            "no polled mount in the process's view: its watches are kernel-forwarded (local \
             filesystems)",
        );
    } else if elsewhere > 0 {
        checks.info(format!("{elsewhere} other polled mounts, not in the process's view"));
    }
}

/// Real and effective uid from `/proc/PID/status`.
fn ids(proc_dir: &Path) -> (u32, u32) {
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| l.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    (uids.first().copied().unwrap_or(u32::MAX), uids.get(1).copied().unwrap_or(u32::MAX))
}

fn read_exe(path: &Path) -> std::io::Result<Option<Result<ElfLinking, &'static str>>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > MAX_EXE_BYTES {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_EXE_BYTES), &mut bytes)?;
    Ok(Some(elf_linking(&bytes)))
}

fn is_fakenotify(path: &[u8]) -> bool {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    name.starts_with(b"libfakenotify")
}

/// The first of `paths` that the process's root lacks.
fn ours_missing(proc_dir: &Path, paths: &[Vec<u8>]) -> Option<(Vec<u8>, &'static str)> {
    paths.iter().find_map(|p| {
        let path = Path::new(std::ffi::OsStr::from_bytes(p));
        let seen = in_root(proc_dir, path);
        let why = if !path.is_absolute() {
            return None;
        } else if !seen.exists() {
            "is missing in the process's root"
        } else if seen.is_dir() {
            // Docker creates a missing host path of a bind mount as an empty directory.
            "is a directory in the process's root (a bind mount of a host path that was missing?)"
        } else if let Some(Err(_)) = library_verdict(&seen) {
            "is not a library the preload can be (see `fakenotify-ctl doctor` on the host)"
        } else {
            return None;
        };
        Some((p.clone(), why))
    })
}

/// `path` as the process sees it, reached from here through `/proc/PID/root`: its own root
/// and mount namespace (a container's), which `stat` of the root alone cannot tell from ours.
fn in_root(proc_dir: &Path, path: &Path) -> PathBuf {
    proc_dir.join("root").join(path.strip_prefix("/").unwrap_or(path))
}

/// The socket `path` of the process, to connect to from here: through its root where that can
/// be read (root, or the same uid) and the result fits in a socket address; else as it is.
fn through_root(proc_dir: &Path, path: &Path) -> PathBuf {
    let joined = in_root(proc_dir, path);
    let readable = std::fs::read_dir(proc_dir.join("root")).is_ok();
    if readable && joined.as_os_str().len() < 108 {
        joined
    } else {
        path.to_path_buf()
    }
}

fn installed_library() -> Option<String> {
    let dirs = std::iter::once(Path::new(DEFAULT_SOCKET).parent().map(Path::to_path_buf))
        .flatten()
        .chain(LIBRARY_DIRS.iter().map(PathBuf::from));
    dirs.map(|d| d.join(LIBRARY)).find(|p| p.exists()).map(|p| p.display().to_string())
}

fn io_cause(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), |n| Errno::from_raw_os_error(n).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_report_groups_by_process_and_puts_each_fix_on_its_line() {
        let check = |pid, verdict, message: &str, fix: &str| Check {
            pid,
            verdict,
            message: message.into(),
            fix: fix.into(),
        };
        let report = text(&[
            check(0, Verdict::Ok, "daemon", ""),
            check(7, Verdict::Info, "pid 7", ""),
            check(7, Verdict::Fail, "static: cannot work", "none"),
        ]);
        assert_eq!(
            report,
            "OK   daemon\nprocess 7:\n  --   pid 7\n  FAIL static: cannot work -- fix: none\n"
        );
    }

    #[test]
    fn the_preload_trusts_root_itself_and_the_named_uid() {
        let truster = Truster { euid: 1000, named: Some(997), whose: String::new() };
        assert!(truster.trusts(0) && truster.trusts(1000) && truster.trusts(997));
        assert!(!truster.trusts(998));
        assert!(is_fakenotify(b"/run/fakenotify/libfakenotify.so"));
        assert!(is_fakenotify(b"/usr/lib/libfakenotify_preload.so (deleted)"));
        assert!(!is_fakenotify(b"/opt/libfakenotify/other.so"));
    }
}
