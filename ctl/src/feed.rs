//! `fakenotify-ctl feed PATH...`: runs on the file server, where the kernel's inotify sees
//! every change, and prints one JSON line per changed directory for a client's fakenotifyd to
//! take as a hint (README "Feeds"). No daemon is needed here. A watch per directory, added as
//! directories appear; fanotify's one filesystem mark would spare `max_user_watches` on big
//! trees but needs CAP_SYS_ADMIN, and is future work.
//!
//! Lines (version 1), one JSON object each, flushed as written:
//! `{"v":1,"dir":"/abs/dir","name":"file"}` a change in `dir` (`name` when one name alone
//! changed), `{"v":1,"heartbeat":N}` every `--heartbeat` (N counts from 0, which is printed once
//! the watches are in place), `{"v":1,"overflow":"/root"}` when changes under `root` may have
//! been missed (the kernel's queue overflowed, a watch could not be added, a path is not UTF-8).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fakenotify_proto::inotify::*;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use rustix::io::Errno;

use crate::feed_coalesce::{Change, Coalescer, Noted};

/// The version every line carries in `"v"`.
pub const LINE_VERSION: u32 = 1;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
const DEFAULT_COALESCE: Duration = Duration::from_millis(100);

/// What a directory watch listens for: changes of names and contents, and the directory's own
/// removal or move.
const WATCH_MASK: u32 = IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW;

pub const FEED_HELP: &str = "\
feed [--heartbeat DURATION] [--coalesce DURATION] PATH...: watch PATH and every directory
below it with the kernel's inotify and print one JSON line per change, for a client's
fakenotifyd ([[feed]] in its configuration). Run it on the file server; no daemon is needed.
  --heartbeat DURATION  a heartbeat line this often (default 5s)
  --coalesce DURATION   changes in one directory within this window make one line (default 100ms)
Lines, version 1:
  {\"v\":1,\"dir\":\"/abs/dir\",\"name\":\"file\"}   a change in dir (name: when one name alone changed)
  {\"v\":1,\"heartbeat\":N}                    alive; N counts from 0, printed once watching
  {\"v\":1,\"overflow\":\"/root\"}               changes under root may have been missed
Exit codes: 0 standard output closed, 1 a root is gone or an error, 2 usage error.
";

/// Why `feed` stopped.
#[derive(Debug)]
pub enum FeedError {
    Usage(String),
    /// A syscall failed: the operation, the path it was about, the errno.
    Io {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    /// A root was deleted or moved away.
    RootGone(PathBuf),
    /// Standard output was closed (the reader went away): the end of the job, exit 0.
    Closed,
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Usage(message) => f.write_str(message),
            FeedError::Io { op, path, errno } => write!(f, "{}: {op}: {errno}", path.display()),
            FeedError::RootGone(path) => write!(f, "{}: deleted or moved away", path.display()),
            FeedError::Closed => f.write_str("standard output closed"),
        }
    }
}

struct Options {
    heartbeat: Duration,
    coalesce: Duration,
    roots: Vec<PathBuf>,
}

fn parse_options(args: Vec<OsString>) -> Result<Options, FeedError> {
    let mut args = pico_args::Arguments::from_vec(args);
    let duration = |args: &mut pico_args::Arguments, name: &'static str, default| {
        let text: Option<String> =
            args.opt_value_from_str(name).map_err(|e| FeedError::Usage(e.to_string()))?;
        match text {
            None => Ok(default),
            Some(text) => match crate::duration::parse_duration(&text) {
                Ok(d) if d >= Duration::from_millis(1) => Ok(d),
                Ok(_) => Err(FeedError::Usage(format!("{name}: at least 1ms"))),
                Err(e) => Err(FeedError::Usage(format!("{name}: {e}"))),
            },
        }
    };
    let heartbeat = duration(&mut args, "--heartbeat", DEFAULT_HEARTBEAT)?;
    let coalesce = duration(&mut args, "--coalesce", DEFAULT_COALESCE)?;
    let rest = args.finish();
    if let Some(flag) = rest.iter().find(|a| a.as_bytes().starts_with(b"-")) {
        return Err(FeedError::Usage(format!("feed: unknown option '{}'", flag.to_string_lossy())));
    }
    if rest.is_empty() {
        return Err(FeedError::Usage("feed: missing PATH".into()));
    }
    let cwd = std::env::current_dir();
    let mut roots = Vec::new();
    for arg in rest {
        let path = PathBuf::from(arg);
        let path = if path.is_absolute() {
            path
        } else {
            match &cwd {
                Ok(cwd) => cwd.join(path),
                Err(e) => return Err(FeedError::Usage(format!("current directory: {e}"))),
            }
        };
        // One spelling per directory: no `.`, doubled or trailing slashes.
        roots.push(path.components().collect());
    }
    Ok(Options { heartbeat, coalesce, roots })
}

/// Runs the verb; returns only on an error or when standard output is closed.
pub fn run(args: Vec<OsString>) -> Result<(), FeedError> {
    let options = parse_options(args)?;
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .map_err(|errno| FeedError::Io { op: "inotify_init1", path: PathBuf::from("/"), errno })?;
    let mut feed = Feed {
        fd,
        dirs: HashMap::new(),
        roots: options.roots.clone(),
        coalescer: Coalescer::new(options.coalesce),
        out: std::io::stdout().lock(),
        warned_no_space: false,
    };
    for root in &options.roots {
        match rustix::fs::stat(root) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {}
            Ok(_) => {
                return Err(FeedError::Io { op: "stat", path: root.clone(), errno: Errno::NOTDIR })
            }
            Err(errno) => return Err(FeedError::Io { op: "stat", path: root.clone(), errno }),
        }
        feed.watch_tree(root, Announce::No)?;
    }
    let start = monotonic();
    let mut beats: u64 = 0;
    let mut next_beat = start;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = monotonic();
        if now >= next_beat {
            feed.print(&format!("{{\"v\":{LINE_VERSION},\"heartbeat\":{beats}}}"))?;
            beats += 1;
            next_beat = start + options.heartbeat.saturating_mul(beats as u32);
            if next_beat <= now {
                // Asleep for several periods (a stopped process): the next one from now.
                next_beat = now + options.heartbeat;
            }
        }
        for change in feed.coalescer.due(now) {
            feed.print_change(&change)?;
        }
        let deadline = feed.coalescer.next_deadline().map_or(next_beat, |d| d.min(next_beat));
        let wait = deadline.saturating_sub(monotonic());
        let timeout =
            Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: wait.subsec_nanos() as i64 };
        let mut fds = [PollFd::new(&feed.fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(errno) => {
                return Err(FeedError::Io { op: "poll", path: PathBuf::from("/"), errno })
            }
        }
        loop {
            let n = match rustix::io::read(&feed.fd, &mut buf) {
                Ok(n) => n,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(FeedError::Io {
                        op: "read inotify",
                        path: PathBuf::from("/"),
                        errno,
                    })
                }
            };
            let events: Vec<(i32, u32, Vec<u8>)> = Events::new(&buf[..n])
                .filter_map(Result::ok)
                .map(|e| (e.wd, e.mask, e.name.to_vec()))
                .collect();
            for (wd, mask, name) in events {
                feed.event(wd, mask, &name, monotonic())?;
            }
        }
    }
}

/// Whether directories found by a walk are printed (they are new to the client: a directory
/// moved in or made with files already in it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announce {
    No,
    Yes,
}

struct Feed {
    fd: OwnedFd,
    /// The path of each watched directory, by wd.
    dirs: HashMap<i32, PathBuf>,
    roots: Vec<PathBuf>,
    coalescer: Coalescer,
    out: std::io::StdoutLock<'static>,
    warned_no_space: bool,
}

impl Feed {
    fn event(&mut self, wd: i32, mask: u32, name: &[u8], now: Duration) -> Result<(), FeedError> {
        if mask & IN_Q_OVERFLOW != 0 {
            // Events were lost, new directories among them maybe: watch them, then say so.
            for root in self.roots.clone() {
                self.watch_tree(&root, Announce::No)?;
                self.print_overflow(&root)?;
            }
            return Ok(());
        }
        let Some(dir) = self.dirs.get(&wd).cloned() else { return Ok(()) };
        if mask & IN_IGNORED != 0 {
            self.dirs.remove(&wd);
            return Ok(());
        }
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
            if self.roots.contains(&dir) {
                return Err(FeedError::RootGone(dir));
            }
            // Its parent's watch reports the delete or move; a directory moved within the
            // tree is watched again under its new name (IN_MOVED_TO).
            return Ok(());
        }
        if mask & IN_ISDIR != 0 && mask & IN_MOVED_FROM != 0 {
            self.unwatch_below(&dir.join(std::ffi::OsStr::from_bytes(name)));
        }
        if mask & IN_ISDIR != 0 && mask & (IN_CREATE | IN_MOVED_TO) != 0 {
            self.watch_tree(&dir.join(std::ffi::OsStr::from_bytes(name)), Announce::Yes)?;
        }
        self.note(&dir, name, now)
    }

    fn note(&mut self, dir: &Path, name: &[u8], now: Duration) -> Result<(), FeedError> {
        match self.coalescer.note(dir.as_os_str().as_bytes(), name, now) {
            Noted::Send(change) => self.print_change(&change),
            Noted::Held => Ok(()),
            Noted::Overflow => {
                for root in self.roots.clone() {
                    self.print_overflow(&root)?;
                }
                Ok(())
            }
        }
    }

    /// Watches `top` and every directory below it (not following symlinks). Directories
    /// that vanish during the walk are skipped: their parent's watch reported them.
    fn watch_tree(&mut self, top: &Path, announce: Announce) -> Result<(), FeedError> {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            // A root given as a symbolic link is followed (its lines keep the name given);
            // links below it are not, as a recursive watch should not leave the tree.
            let is_root = self.roots.contains(&dir);
            let mask = if is_root { WATCH_MASK & !IN_DONT_FOLLOW } else { WATCH_MASK };
            match inotify::add_watch(&self.fd, &dir, inotify::WatchFlags::from_bits_retain(mask)) {
                Ok(wd) => {
                    self.dirs.insert(wd, dir.clone());
                }
                Err(errno) if is_root && errno != Errno::NOSPC => {
                    return Err(FeedError::Io { op: "inotify_add_watch", path: dir, errno })
                }
                Err(Errno::NOENT | Errno::NOTDIR | Errno::ACCESS | Errno::LOOP) => continue,
                Err(errno @ Errno::NOSPC) => {
                    if !self.warned_no_space {
                        self.warned_no_space = true;
                        eprintln!(
                            "fakenotify-ctl feed: {}: inotify_add_watch: {errno}: raise \
                             fs.inotify.max_user_watches; directories beyond it are not watched",
                            dir.display()
                        );
                    }
                    let root = self.root_of(&dir);
                    self.print_overflow(&root)?;
                    return Ok(());
                }
                Err(errno) => {
                    return Err(FeedError::Io { op: "inotify_add_watch", path: dir, errno })
                }
            }
            if announce == Announce::Yes {
                self.note(&dir, b"", monotonic())?;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Stops watching `dir` and what is below it: moved away, it would be reported under its
    /// old path. Moved within the tree, it is watched again from its `IN_MOVED_TO`.
    fn unwatch_below(&mut self, dir: &Path) {
        let gone: Vec<i32> =
            self.dirs.iter().filter(|(_, path)| path.starts_with(dir)).map(|(wd, _)| *wd).collect();
        for wd in gone {
            let _ = inotify::remove_watch(&self.fd, wd);
            self.dirs.remove(&wd);
        }
    }

    fn root_of(&self, dir: &Path) -> PathBuf {
        self.roots.iter().find(|root| dir.starts_with(root)).cloned().unwrap_or_else(|| dir.into())
    }

    fn print_change(&mut self, change: &Change) -> Result<(), FeedError> {
        let Ok(dir) = std::str::from_utf8(&change.dir) else {
            // A line carries UTF-8 only; the client learns of the change by a catch-up.
            let root = self.root_of(Path::new(std::ffi::OsStr::from_bytes(&change.dir)));
            return self.print_overflow(&root);
        };
        let mut line = format!("{{\"v\":{LINE_VERSION},\"dir\":");
        push_json_string(&mut line, dir);
        if let Some(name) = change.name.as_deref().and_then(|n| std::str::from_utf8(n).ok()) {
            line.push_str(",\"name\":");
            push_json_string(&mut line, name);
        }
        line.push('}');
        self.print(&line)
    }

    fn print_overflow(&mut self, root: &Path) -> Result<(), FeedError> {
        let mut line = format!("{{\"v\":{LINE_VERSION},\"overflow\":");
        push_json_string(&mut line, &root.to_string_lossy());
        line.push('}');
        self.print(&line)
    }

    fn print(&mut self, line: &str) -> Result<(), FeedError> {
        let written = self.out.write_all(line.as_bytes()).and_then(|()| {
            self.out.write_all(b"\n")?;
            self.out.flush()
        });
        if written.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            return Err(FeedError::Closed);
        }
        written.map_err(|e| FeedError::Io {
            op: "write",
            path: PathBuf::from("/dev/stdout"),
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        })
    }
}

/// Appends `text` as a JSON string: quotes, backslashes and control characters escaped, the
/// rest as it is (UTF-8).
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Time since the feed started.
fn monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_needs() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn options_take_durations_and_make_roots_absolute() {
        let args = ["--heartbeat", "2s", "--coalesce", "50ms", "/a/./b/", "rel"];
        let options = parse_options(args.iter().map(OsString::from).collect()).ok().unwrap();
        assert_eq!(options.heartbeat, Duration::from_secs(2));
        assert_eq!(options.coalesce, Duration::from_millis(50));
        assert_eq!(options.roots[0], PathBuf::from("/a/b"));
        assert!(options.roots[1].is_absolute());
        assert!(matches!(parse_options(vec![]), Err(FeedError::Usage(_))));
        let bad = vec![OsString::from("--heartbeat"), OsString::from("0s"), OsString::from("/")];
        assert!(matches!(parse_options(bad), Err(FeedError::Usage(_))));
        let unknown = vec![OsString::from("--what"), OsString::from("/")];
        assert!(matches!(parse_options(unknown), Err(FeedError::Usage(_))));
    }
}
