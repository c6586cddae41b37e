//! `fakenotify-ctl doctor` against real processes: a preloaded client (all good), the same
//! client without the preload, a statically linked program, wrong socket paths and a process in
//! a mount namespace of its own (a container's view), each verdict asserted; and the daemon's
//! info line naming each new instance's pid and command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fakenotify_tests::client::NO_DAEMON_SOCKET;
use fakenotify_tests::*;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `fakenotify-ctl doctor ARGS` (no `--socket`), with `$FAKENOTIFY_SOCKET` set to `socket`.
fn doctor_with_env(socket: &Path, args: &[&str]) -> Output {
    Command::new(artifacts().fakenotify_ctl())
        .arg("doctor")
        .args(args)
        .env("FAKENOTIFY_SOCKET", socket)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run fakenotify-ctl doctor")
}

fn assert_has(output: &Output, code: i32, wanted: &[&str]) {
    let shown = text(output);
    eprintln!("{shown}");
    assert_eq!(output.status.code(), Some(code), "doctor's exit code:\n{shown}");
    for line in wanted {
        assert!(shown.contains(line), "doctor's report lacks {line:?}:\n{shown}");
    }
}

#[test]
fn a_preloaded_client_is_all_good_and_the_daemon_logs_its_command() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let client = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);
    let pid = client.pid().to_string();

    let output = run_ctl(daemon.socket(), &["doctor", &pid], false);
    let preload = format!("OK   LD_PRELOAD={}", artifacts().preload().display());
    let instances =
        format!("1 FakeNotify instance(s) known to the daemon for pid {pid}, 1 watches");
    assert_has(
        &output,
        0,
        &[
            "OK   dynamically linked",
            "OK   libfakenotify mapped: ",
            &preload,
            "preload trusts it",
            &instances,
            &format!(
                "objects of all instances, listed on-change; the process sees it at {}",
                fuse.mount.display()
            ),
        ],
    );
    assert!(!text(&output).contains("FAIL"), "{}", text(&output));

    // Another user sees what /proc shows them, and is told so.
    let output = run_ctl(daemon.socket(), &["doctor", &pid], true);
    let hidden = format!("FAIL cannot read /proc/{pid}/: ");
    let fix = format!(
        "needs root or uid 0 -- fix: run doctor as root (`sudo fakenotify-ctl doctor {pid}`)"
    );
    assert_has(&output, 1, &[&hidden, "environ (", &fix, "its preload trusts it"]);

    // The same by command name (the client through a symbolic link of a name of its own: the
    // kernel names a process after the path it was started by; a copy could meet ETXTBSY when
    // another test's fork inherits the copy's open fd), as JSON.
    let dir = TempDir::new("doctor-named");
    let name = format!("dr{}", std::process::id());
    let copy = dir.join(&name);
    std::os::unix::fs::symlink(artifacts().inotify_client(Libc::Glibc), &copy)
        .expect("link the client");
    let mut named = Client::spawn(&copy, &["-n", &spec], Some(&daemon), true);
    named.expect_line("READY", |l| l.text == "READY");
    let output = run_ctl(daemon.socket(), &["doctor", &name, "--json"], false);
    let named_pid = format!("\"pid\":{},", named.pid());
    assert_has(&output, 0, &["{\"ok\":true,", &named_pid, "\"verdict\":\"ok\""]);
    assert!(!text(&output).contains(&format!("\"pid\":{pid},")), "only the named process");

    let logged = format!("registered by pid {pid} (inotify_client-) uid");
    assert!(
        daemon.wait_for_log(WAIT, |log| log.contains(&logged)).is_some(),
        "the daemon's log lacks {logged:?}:\n{}",
        daemon.log()
    );
}

#[test]
fn a_client_without_the_preload_is_not_mapped_and_shows_its_kernel_inotify_fd() {
    let dir = TempDir::new("doctor-plain");
    let daemon = Daemon::fast();
    let spec = format!("IN_CREATE:{}", dir.path().display());
    let client = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), false);
    let pid = client.pid();

    let output = run_ctl(daemon.socket(), &["doctor", &pid.to_string()], false);
    let fd = kernel_inotify_fd(pid);
    let kernel = format!("FAIL fd {fd}: the kernel's inotify: FakeNotify is not in use for it");
    assert_has(
        &output,
        1,
        &[
            "FAIL libfakenotify is not mapped -- fix: restart it with LD_PRELOAD=",
            "FAIL LD_PRELOAD is not set -- fix: ",
            &kernel,
        ],
    );
}

#[test]
fn a_statically_linked_program_cannot_work_and_doctor_says_so() {
    let dir = TempDir::new("doctor-static");
    let program = static_program(dir.path());
    let daemon = Daemon::fast();
    let mut client = Client::spawn(&program, &[] as &[&str], Some(&daemon), true);
    client.expect_line("READY", |l| l.text == "READY");
    let pid = client.pid();

    let output = run_ctl(daemon.socket(), &["doctor", &pid.to_string()], false);
    let fd = kernel_inotify_fd(pid);
    assert_has(
        &output,
        1,
        &[
            "FAIL static: cannot work: the program is statically linked",
            "FAIL libfakenotify is not mapped -- fix: none for this program",
            &format!("FAIL fd {fd}: the kernel's inotify"),
        ],
    );
}

#[test]
fn a_wrong_socket_path_is_named_with_its_fix() {
    let daemon = Daemon::fast();

    // The checks of the installation, with the flag and with the variable.
    let output = run_ctl(Path::new(NO_DAEMON_SOCKET), &["doctor"], false);
    let verdict = format!("FAIL daemon socket {NO_DAEMON_SOCKET}: no daemon answers");
    assert_has(&output, 1, &[&verdict, "fix: start the daemon"]);
    let output = doctor_with_env(Path::new(NO_DAEMON_SOCKET), &[]);
    assert_has(&output, 1, &[&verdict, &format!("FAKENOTIFY_SOCKET={NO_DAEMON_SOCKET}")]);
    let output = doctor_with_env(daemon.socket(), &[]);
    let served = format!("OK   daemon at {}: pid {}", daemon.socket().display(), daemon.pid());
    let directory = format!("OK   socket directory {}: mode 0755", daemon.dir().display());
    assert_has(&output, if library_installed() { 0 } else { 1 }, &[&served, &directory]);

    // A preloaded client whose $FAKENOTIFY_SOCKET names no daemon fell back to the kernel's
    // inotify; doctor reads the socket from its environment.
    let dir = TempDir::new("doctor-wrong-socket");
    let spec = format!("IN_CREATE:{}", dir.path().display());
    let client = Client::inotify_client(Libc::Glibc, &["-n", &spec], None, true);
    let pid = client.pid();
    let output = doctor_with_env(daemon.socket(), &[&pid.to_string()]);
    let fd = kernel_inotify_fd(pid);
    assert_has(
        &output,
        1,
        &[
            "OK   libfakenotify mapped: ",
            &verdict,
            "or point FAKENOTIFY_SOCKET at the socket it serves",
            &format!("FAIL fd {fd}: the kernel's inotify"),
            "the daemon did not answer (or was not trusted)",
        ],
    );
}

/// A process in a mount namespace of its own, as in a container: the library and the socket at
/// `/run/fakenotify/` exist only there, and doctor finds both through `/proc/PID/root`.
#[test]
fn a_process_in_its_own_mount_namespace_is_checked_through_its_root() {
    let daemon = Daemon::fast();
    let dir = TempDir::new("doctor-container");
    let copy = format!("cp {} /run/fakenotify/libfakenotify.so", artifacts().preload().display());
    let client = in_mount_namespace(&daemon, dir.path(), &copy);
    let pid = client.pid();

    let output = Command::new(artifacts().fakenotify_ctl())
        .args(["doctor", &pid.to_string()])
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run fakenotify-ctl doctor");
    let served = format!("OK   daemon at /run/fakenotify/fakenotify.sock: pid {}", daemon.pid());
    assert_has(
        &output,
        0,
        &[
            "OK   libfakenotify mapped: /run/fakenotify/libfakenotify.so",
            "OK   LD_PRELOAD=/run/fakenotify/libfakenotify.so",
            &served,
            &format!("1 FakeNotify instance(s) known to the daemon for pid {pid}"),
        ],
    );
}

/// Docker makes a missing host path of a bind mount an empty directory: ld.so ignores the
/// preload with a message on stderr only, and doctor names the directory.
#[test]
fn a_preload_path_that_is_a_directory_in_the_container_is_named() {
    let daemon = Daemon::fast();
    let dir = TempDir::new("doctor-container-dir");
    let client = in_mount_namespace(&daemon, dir.path(), "mkdir /run/fakenotify/libfakenotify.so");
    let pid = client.pid();

    let output = Command::new(artifacts().fakenotify_ctl())
        .args(["doctor", &pid.to_string()])
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run fakenotify-ctl doctor");
    assert_has(
        &output,
        1,
        &[
            "FAIL libfakenotify is not mapped -- fix: make the library visible at that path",
            "FAIL LD_PRELOAD=/run/fakenotify/libfakenotify.so, but \
             /run/fakenotify/libfakenotify.so is a directory in the process's root",
            "FAIL fd ",
        ],
    );
}

/// The C client watching `watched`, in a mount namespace of its own whose `/run/fakenotify`
/// (a tmpfs, invisible from here) holds `daemon`'s socket and what `library_setup` put at
/// `libfakenotify.so`, with `LD_PRELOAD=/run/fakenotify/libfakenotify.so` and no
/// `$FAKENOTIFY_SOCKET`, as in a container.
fn in_mount_namespace(daemon: &Daemon, watched: &Path, library_setup: &str) -> Client {
    let script = format!(
        "mount -t tmpfs -o mode=0755 doctor-test-run /run && mkdir /run/fakenotify && \
         {library_setup} && touch /run/fakenotify/fakenotify.sock && \
         mount --bind {socket} /run/fakenotify/fakenotify.sock && \
         exec env -u FAKENOTIFY_SOCKET LD_PRELOAD=/run/fakenotify/libfakenotify.so {client} -n \
         IN_CREATE:{watched}",
        socket = daemon.socket().display(),
        client = artifacts().inotify_client(Libc::Glibc).display(),
        watched = watched.display(),
    );
    let args = ["--mount", "--propagation", "private", "sh", "-c", &script];
    let mut client = Client::spawn_with_socket("unshare", &args, daemon.socket(), false);
    client.expect_line("READY", |l| l.text == "READY");
    client
}

#[test]
fn usage_errors_exit_2() {
    let output = run_ctl(Path::new(NO_DAEMON_SOCKET), &["doctor", "1", "2"], false);
    assert_has(&output, 2, &["doctor: one PID or COMMAND-NAME expected, 2 given"]);
    let output = run_ctl(Path::new(NO_DAEMON_SOCKET), &["doctor", "--bogus"], false);
    assert_has(&output, 2, &["doctor: unknown option '--bogus'"]);
    let output = run_ctl(Path::new(NO_DAEMON_SOCKET), &["doctor", "no-such-command-x"], false);
    assert_has(&output, 1, &["FAIL no process no-such-command-x"]);
}

/// The fd of `pid` that is the kernel's inotify (the test clients have one).
fn kernel_inotify_fd(pid: u32) -> i32 {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd");
    entries
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.as_os_str() == std::ffi::OsStr::new("anon_inode:inotify"))
        })
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .unwrap_or_else(|| panic!("pid {pid} has no kernel inotify fd"))
}

fn library_installed() -> bool {
    ["/usr/local/lib/fakenotify", "/usr/lib/fakenotify", "/usr/lib"]
        .iter()
        .any(|d| Path::new(d).join("libfakenotify.so").exists())
        || artifacts().fakenotify_ctl().with_file_name("libfakenotify.so").exists()
}

/// A statically linked program that makes one inotify instance, prints READY and waits.
fn static_program(dir: &Path) -> PathBuf {
    let source = dir.join("static_inotify.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <unistd.h>\n#include <sys/inotify.h>\n\
         int main(void) {\n  if (inotify_init1(IN_CLOEXEC) < 0) return 1;\n\
         puts(\"READY\");\n  fflush(stdout);\n  pause();\n  return 0;\n}\n",
    )
    .expect("write the static program's source");
    let program = dir.join("static_inotify");
    let output = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .expect("run musl-gcc (install musl-tools)");
    assert!(output.status.success(), "musl-gcc -static: {}", text(&output));
    program
}
