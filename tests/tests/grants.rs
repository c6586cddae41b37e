//! A watch is granted only where inotify_add_watch(2) would grant it (issue 14, item 1): an
//! unprivileged uid speaking the protocol directly sends fds of a root 0700 directory and a root
//! 0600 file that prove no read access (`O_PATH`, or opened write-only), on local tmpfs and on a
//! bindfs mount; each is refused with EACCES and no event ever reaches it. Through the preload,
//! the same uid's inotifywait still watches a directory of its own, a list-only (r-x) one and a
//! readable file.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fakenotify_proto::record::Record;
use fakenotify_tests::raw_client::{self, Acquire};
use fakenotify_tests::*;

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkfifo(path: &Path, mode: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0, "mkfifo {}", path.display());
    chmod(path, mode);
}

/// Root's secrets under `base`: a 0700 directory with a file in it, a 0600 file, a file others
/// may write but not read (0602), a 0600 FIFO; and what may be granted: a 0644 FIFO and a 0755
/// directory.
struct Secrets {
    dir: PathBuf,
    file: PathBuf,
    write_only: PathBuf,
    fifo: PathBuf,
    open_fifo: PathBuf,
    open_dir: PathBuf,
}

impl Secrets {
    /// Their paths under `base`.
    fn at(base: &Path) -> Secrets {
        Secrets {
            dir: base.join("secret-dir"),
            file: base.join("secret-file"),
            write_only: base.join("write-only"),
            fifo: base.join("secret-fifo"),
            open_fifo: base.join("open-fifo"),
            open_dir: base.join("open-dir"),
        }
    }

    /// Makes them under `base`.
    fn make(base: &Path) -> Secrets {
        chmod(base, 0o755);
        let s = Secrets::at(base);
        std::fs::create_dir(&s.dir).unwrap();
        std::fs::write(s.dir.join("existing"), b"x").unwrap();
        chmod(&s.dir, 0o700);
        std::fs::write(&s.file, b"secret").unwrap();
        chmod(&s.file, 0o600);
        std::fs::write(&s.write_only, b"").unwrap();
        chmod(&s.write_only, 0o602);
        mkfifo(&s.fifo, 0o600);
        mkfifo(&s.open_fifo, 0o644);
        std::fs::create_dir(&s.open_dir).unwrap();
        chmod(&s.open_dir, 0o755);
        s
    }
}

/// Makes root's changes to the secrets as seen under `backing` (the same place, or a FUSE
/// mount's backing directory): names created and deleted, the file written and read.
fn touch_secrets(backing: &Secrets) {
    write(&backing.dir.join("created-by-root"), b"new");
    std::fs::remove_file(backing.dir.join("existing")).unwrap();
    write(&backing.file, b"more secret");
    let _ = std::fs::read(&backing.file);
    write(&backing.write_only, b"w");
}

/// The attacker: as uid 65534, two connections and each object opened in every way it can.
/// Returns the connections and the unproven fds (each named), after checking the uid really
/// cannot open the secrets for reading.
fn attacker_fds(daemon: &Daemon, s: &Secrets) -> (OwnedFd, OwnedFd, Vec<(&'static str, OwnedFd)>) {
    let what = [
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Open(s.dir.clone(), libc::O_PATH),
        Acquire::Open(s.dir.clone(), libc::O_PATH | libc::O_DIRECTORY),
        Acquire::Open(s.file.clone(), libc::O_PATH),
        Acquire::Open(s.write_only.clone(), libc::O_WRONLY),
        Acquire::Open(s.fifo.clone(), libc::O_PATH),
        Acquire::Open(s.dir.clone(), libc::O_RDONLY),
        Acquire::Open(s.file.clone(), libc::O_RDONLY),
    ];
    let mut got = raw_client::acquire_as(NOBODY, NOBODY, &what).into_iter();
    let mut next = |what: &str| got.next().unwrap().unwrap_or_else(|e| panic!("{what}: errno {e}"));
    let channel = next("connect");
    let short = next("connect");
    let fds = vec![
        ("O_PATH of a 0700 directory", next("O_PATH dir")),
        ("O_PATH|O_DIRECTORY of a 0700 directory", next("O_PATH dir")),
        ("O_PATH of a 0600 file", next("O_PATH file")),
        ("O_WRONLY of a 0602 file", next("O_WRONLY file")),
        ("O_PATH of a 0600 FIFO", next("O_PATH fifo")),
    ];
    let refused = |r: Option<Result<OwnedFd, i32>>| r.and_then(Result::err);
    assert_eq!(refused(got.next()), Some(libc::EACCES), "uid 65534 cannot read the 0700 directory");
    assert_eq!(refused(got.next()), Some(libc::EACCES), "uid 65534 cannot read the 0600 file");
    (channel, short, fds)
}

/// Every unproven fd, on the request channel and on a short connection: EACCES, and the
/// instance hears nothing of root's changes.
fn unproven_fds_are_refused(daemon: &Daemon, seen: &Secrets, backing: &Secrets, settle: Duration) {
    let (channel, short, fds) = attacker_fds(daemon, seen);
    let app = raw_client::register(&channel).expect("uid 65534 may register an instance");
    for (what, fd) in &fds {
        for mask in [IN_ALL_EVENTS, IN_CREATE | IN_DELETE, IN_OPEN | IN_MODIFY | IN_CLOSE] {
            let reply = raw_client::request(&channel, Record::AddWatch { mask }, &[fd.as_fd()]);
            assert_eq!(
                reply.errno,
                libc::EACCES,
                "{what} on the channel, mask {mask:#x}: {reply:?}"
            );
            let reply =
                raw_client::request(&short, Record::AddWatch { mask }, &[app.as_fd(), fd.as_fd()]);
            assert_eq!(reply.errno, libc::EACCES, "{what} on a connection: {reply:?}");
        }
    }
    touch_secrets(backing);
    if let Err(got) = raw_client::silent_for(&app, settle) {
        panic!("the refused instance received {got:?}\n{}", daemon.log());
    }

    // The same client is served where the kernel would serve it.
    let granted = [
        Acquire::Open(seen.open_fifo.clone(), libc::O_PATH),
        Acquire::Open(seen.open_dir.clone(), libc::O_RDONLY | libc::O_DIRECTORY),
    ];
    let granted: Vec<OwnedFd> = raw_client::acquire_as(NOBODY, NOBODY, &granted)
        .into_iter()
        .map(|fd| fd.expect("uid 65534 opens what it may read"))
        .collect();
    let add = |mask, fd: &OwnedFd| {
        raw_client::request(&channel, Record::AddWatch { mask }, &[fd.as_fd()])
    };
    let fifo = add(IN_ALL_EVENTS, &granted[0]);
    assert!(fifo.errno == 0 && fifo.value > 0, "a 0644 FIFO by O_PATH: {fifo:?}");
    let dir = add(IN_CREATE, &granted[1]);
    assert!(dir.errno == 0 && dir.value > 0, "a readable directory: {dir:?}");
    write(&backing.open_dir.join("visible"), b"");
    match seqpacket::receive(&app, WAIT).expect("poll") {
        seqpacket::Answer::Message(bytes) => {
            let name = String::from_utf8_lossy(&bytes);
            assert!(name.contains("visible"), "the readable directory's event: {bytes:?}");
        }
        other => panic!("no event from the readable directory: {other:?}"),
    }
    if let Err(got) = raw_client::silent_for(&app, Duration::from_millis(300)) {
        panic!("after the readable directory's event: {got:?}");
    }
}

#[test]
fn unproven_fds_on_local_tmpfs_are_refused_and_hear_nothing() {
    let base = TempDir::new_in(Path::new("/dev/shm"), "grants-local");
    let secrets = Secrets::make(base.path());
    let daemon = Daemon::fast();
    unproven_fds_are_refused(&daemon, &secrets, &secrets, Duration::from_secs(1));
}

#[test]
fn unproven_fds_on_a_fuse_mount_are_refused_and_hear_nothing() {
    let fuse = FuseMount::with_options(&["-o", "allow_other"]);
    let backing = Secrets::make(&fuse.backing);
    let seen = Secrets::at(&fuse.mount);
    let daemon = Daemon::fast();
    // Polled every 200 ms: a few polls.
    unproven_fds_are_refused(&daemon, &seen, &backing, Duration::from_secs(2));
}

/// Watchable by uid 65534 under `base`: a directory of its own (0700), a list-only one (root's
/// r-x), a readable file (root's 0644).
fn nobodys_view(base: &Path) -> [PathBuf; 3] {
    chmod(base, 0o755);
    let (own, list_only, file) = (base.join("own"), base.join("list-only"), base.join("file"));
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&own, 0o700);
    std::fs::create_dir(&list_only).unwrap();
    chmod(&list_only, 0o555);
    std::fs::write(&file, b"").unwrap();
    chmod(&file, 0o644);
    [own, list_only, file]
}

#[test]
fn through_the_preload_nobody_still_watches_what_it_may_read() {
    let local = TempDir::new_in(Path::new("/dev/shm"), "grants-preload");
    let fuse = FuseMount::with_options(&["-o", "allow_other"]);
    let local_paths = nobodys_view(local.path());
    let backing = nobodys_view(&fuse.backing);
    let mounted = ["own", "list-only", "file"].map(|name| fuse.mounted(name));
    let daemon = Daemon::fast();

    let mut args: Vec<std::ffi::OsString> =
        ["--reuid=65534", "--regid=65534", "--clear-groups", "inotifywait", "-m"]
            .iter()
            .map(Into::into)
            .collect();
    args.extend(["--format", "EVENT 0 %|e 0 %f"].iter().map(Into::into));
    args.extend(local_paths.iter().chain(&mounted).map(|p| p.as_os_str().to_owned()));
    let mut watcher = Client::spawn("setpriv", &args, Some(&daemon), true);
    watcher.expect_line("Watches established.", |l| l.text.contains("Watches established"));
    assert_eq!(daemon.status().watches, 6, "the daemon serves all six watches");

    for (i, paths) in [&local_paths, &backing].into_iter().enumerate() {
        let (own, list_only, file) = (&paths[0], &paths[1], &paths[2]);
        let own_name = format!("mine-{i}");
        write(&own.join(&own_name), b"");
        watcher.expect_line("CREATE in its own directory", |l| {
            l.text.contains("CREATE") && l.text.ends_with(&own_name)
        });
        let root_name = format!("roots-{i}");
        write(&list_only.join(&root_name), b"");
        watcher.expect_line("CREATE in the list-only directory", |l| {
            l.text.contains("CREATE") && l.text.ends_with(&root_name)
        });
        append(file, b"more");
        watcher.expect_line("MODIFY of the readable file", |l| l.text.contains("MODIFY"));
    }
}
