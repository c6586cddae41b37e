//! Differential runs: one script of inotify calls and filesystem operations, run against the
//! kernel on a local directory and through FakeNotify on a bindfs mount, compared step by step.
//!
//! A script has one step per line (`#` starts a comment):
//!
//! - inotify calls, sent to `inotify_script` (see `tests/clients/inotify_script.c`): `init`,
//!   `init1`, `open`, `socket`, `close`, `add`, `rm`; `{}` stands for the watched root (the local
//!   directory, or the mount);
//! - filesystem operations on the changed root (the local directory, or the mount's backing
//!   directory, which the kernel never reports on the mount): `mkdir P`, `rmdir P`,
//!   `write P TEXT`, `append P TEXT`, `truncate P LEN`, `chmod P OCTAL`, `mv A B`, `unlink P`,
//!   `symlink TARGET P`, `link A B`, `lchown P UID`, `touch P SECONDS` (sets atime and mtime),
//!   `hold P` / `put P TEXT` / `release P` (a file kept open for writing), and `pause MS`
//!   (waits, on either side);
//! - `sync`: read every instance. Against the kernel the events are there at once; through
//!   FakeNotify the run waits (bounded) until the same events came, then one more settle time
//!   for extra ones.
//!
//! Calls compare their answers (`OK <wd>`, `ERR <ERRNO>`). Syncs compare the events after
//! coalescing what a poll merges: events are grouped by instance, wd and name (the order
//! across names within one sync is not compared, the order within one name is), IN_OPEN,
//! IN_ACCESS, IN_CLOSE_NOWRITE and IN_MOVE_SELF are dropped (no poll can see them), repeated
//! IN_MODIFY/IN_CLOSE_WRITE runs are one, an IN_MODIFY right after an IN_CREATE is part of the
//! create, and cookies are compared by which events share them, not by value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::NO_DAEMON_SOCKET;
use crate::masks::mask_names;
use crate::script::ScriptClient;
use crate::{
    Daemon, EventLine, FuseMount, TempDir, FAST_CONFIG, IN_ACCESS, IN_CLOSE_NOWRITE,
    IN_CLOSE_WRITE, IN_CREATE, IN_MODIFY, IN_MOVE_SELF, IN_OPEN, WAIT,
};

/// The daemon's poll interval in [`FAST_CONFIG`].
pub const POLL: Duration = Duration::from_millis(200);

/// Kinds that only the kernel can report: a poll sees no open, read or move of the object.
const UNPOLLABLE: u32 = IN_OPEN | IN_ACCESS | IN_CLOSE_NOWRITE | IN_MOVE_SELF;

/// Events of one sync after coalescing: per `(slot, wd, name)`, the event kinds in order, each
/// with its cookie's label.
pub type Coalesced = BTreeMap<(usize, i32, String), Vec<String>>;

/// What one step gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Call(String),
    Sync(Coalesced),
    Fs,
}

/// A script and how to run each side of it.
pub struct Differential {
    script: String,
    config: String,
    kernel_wrapper: Vec<String>,
    client_wrapper: Vec<String>,
    fuse_options: Vec<String>,
}

impl Differential {
    pub fn new(script: &str) -> Differential {
        Differential {
            script: script.to_owned(),
            config: FAST_CONFIG.to_owned(),
            kernel_wrapper: Vec::new(),
            client_wrapper: Vec::new(),
            fuse_options: Vec::new(),
        }
    }

    /// Lines added to the daemon's `[daemon]` table (`max_user_watches = 3`).
    pub fn daemon_settings(mut self, lines: &str) -> Differential {
        self.config.push_str(lines);
        self.config.push('\n');
        self
    }

    /// Runs the client of both sides as uid and gid 65534 with no supplementary groups (the
    /// mount then allows other users).
    pub fn as_nobody(mut self) -> Differential {
        self.client_wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            .map(String::from)
            .to_vec();
        self.fuse_options = ["-o", "allow_other"].map(String::from).to_vec();
        self
    }

    /// Runs the kernel side's client through `wrapper` (after the user wrapper, if any).
    pub fn kernel_wrapper(mut self, wrapper: &[&str]) -> Differential {
        self.kernel_wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Runs the script on both sides and panics with both transcripts if any step differs.
    pub fn run(self) {
        let steps = parse(&self.script);

        let local = TempDir::new("differential-kernel");
        let mut wrapper = self.client_wrapper.clone();
        wrapper.extend(self.kernel_wrapper.iter().cloned());
        let mut kernel = Side {
            client: ScriptClient::spawn(&wrapper, Path::new(NO_DAEMON_SOCKET), false),
            watched: local.path().to_owned(),
            changed: local.path().to_owned(),
            held: HashMap::new(),
            instances: BTreeSet::new(),
        };
        let expected: Vec<Outcome> = steps.iter().map(|step| kernel.step(step, None)).collect();
        let kernel_transcript = kernel.client.transcript();
        drop(kernel);

        let options: Vec<&str> = self.fuse_options.iter().map(String::as_str).collect();
        let fuse = FuseMount::with_options(&options);
        let daemon = Daemon::start(&self.config);
        let mut fake = Side {
            client: ScriptClient::spawn(&self.client_wrapper, daemon.socket(), true),
            watched: fuse.mount.clone(),
            changed: fuse.backing.clone(),
            held: HashMap::new(),
            instances: BTreeSet::new(),
        };
        let mut got = Vec::new();
        for (step, want) in steps.iter().zip(&expected) {
            got.push(fake.step(step, Some(want)));
        }
        // Anything late after the last step shows up here.
        let tail = Step { line: 0, text: "sync (after the script)".into(), kind: Kind::Sync };
        let late = fake.step(&tail, Some(&Outcome::Sync(Coalesced::new())));
        let fake_transcript = fake.client.transcript();
        drop(fake);

        let mut report = String::new();
        for ((step, want), got) in steps.iter().zip(&expected).zip(&got) {
            if want != got {
                let _ = writeln!(
                    report,
                    "line {} `{}`:\n  kernel:     {}\n  FakeNotify: {}",
                    step.line,
                    step.text,
                    show(want),
                    show(got)
                );
            }
        }
        if late != Outcome::Sync(Coalesced::new()) {
            let _ = writeln!(report, "after the last step, FakeNotify delivered {}", show(&late));
        }
        if !report.is_empty() {
            panic!(
                "FakeNotify differs from the kernel:\n{report}\n\
                 ---- kernel side ----\n{kernel_transcript}\
                 ---- FakeNotify side ----\n{fake_transcript}\
                 ---- fakenotifyd log ----\n{}",
                daemon.log()
            );
        }
    }
}

fn show(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Call(answer) => answer.clone(),
        Outcome::Fs => "(filesystem operation)".into(),
        Outcome::Sync(events) if events.is_empty() => "no events".into(),
        Outcome::Sync(events) => {
            let mut out = String::new();
            for ((slot, wd, name), kinds) in events {
                let name = if name.is_empty() { "-" } else { name };
                let _ = write!(out, "\n      slot {slot} wd {wd} {name}: {}", kinds.join(", "));
            }
            out
        }
    }
}

struct Step {
    line: usize,
    text: String,
    kind: Kind,
}

enum Kind {
    Call,
    Fs,
    Sync,
}

const CALLS: [&str; 7] = ["init", "init1", "open", "socket", "close", "add", "rm"];

fn parse(script: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for (index, raw) in script.lines().enumerate() {
        let text = raw.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let verb = text.split(' ').next().unwrap_or("");
        let kind = if verb == "sync" {
            Kind::Sync
        } else if CALLS.contains(&verb) {
            Kind::Call
        } else {
            Kind::Fs
        };
        steps.push(Step { line: index + 1, text: text.to_owned(), kind });
    }
    steps
}

/// One side of the comparison: the client and the two roots.
struct Side {
    client: ScriptClient,
    /// Where watches are added: the local directory, or the mount.
    watched: PathBuf,
    /// Where changes are made: the local directory, or the backing directory.
    changed: PathBuf,
    held: HashMap<String, File>,
    /// Slots holding an instance, read at each sync.
    instances: BTreeSet<usize>,
}

impl Side {
    /// Runs one step. `want` is the kernel's outcome, given on the FakeNotify side, where a
    /// sync waits for it.
    fn step(&mut self, step: &Step, want: Option<&Outcome>) -> Outcome {
        match step.kind {
            Kind::Call => {
                let command = step.text.replace("{}", &self.watched.display().to_string());
                let answer = self.client.call(&command).line;
                let mut words = step.text.split(' ');
                let (verb, slot) = (words.next(), words.next().and_then(|s| s.parse().ok()));
                match (verb, slot) {
                    (Some("init" | "init1"), Some(slot)) if answer.starts_with("OK") => {
                        self.instances.insert(slot);
                        if want.is_some() {
                            assert_eq!(
                                answer, "OK socket",
                                "line {}: the preloaded instance is not served by fakenotifyd",
                                step.line
                            );
                        }
                        return Outcome::Call("OK".into());
                    }
                    (Some("close"), Some(slot)) if answer == "OK" => {
                        self.instances.remove(&slot);
                    }
                    _ => {}
                }
                Outcome::Call(answer)
            }
            Kind::Fs => {
                fs_op(&self.changed, &mut self.held, &step.text);
                Outcome::Fs
            }
            Kind::Sync => match want {
                None => Outcome::Sync(coalesce(&self.read_all())),
                Some(Outcome::Sync(want)) => Outcome::Sync(self.sync_until(want)),
                Some(other) => panic!("a sync step cannot expect {other:?}"),
            },
        }
    }

    /// Every event ready on every instance, with its slot.
    fn read_all(&mut self) -> Vec<(usize, EventLine)> {
        let mut events = Vec::new();
        for &slot in &self.instances {
            let answer = self.client.call(&format!("read {slot}"));
            events.extend(answer.events.into_iter().map(|e| (slot, e)));
            if !answer.line.starts_with("OK") {
                // EOF or a read error: something real inotify never gives. Shown as an event.
                let name = format!("<{}>", answer.line);
                events.push((slot, EventLine { wd: 0, mask: 0, cookie: 0, name }));
            }
        }
        events
    }

    /// Reads until the coalesced events equal `want` (or [`WAIT`] passed), then waits two
    /// more polls for extra events.
    fn sync_until(&mut self, want: &Coalesced) -> Coalesced {
        let start = Instant::now();
        let mut events = Vec::new();
        loop {
            events.extend(self.read_all());
            let so_far = coalesce(&events);
            let waited = start.elapsed();
            let minimum = if want.is_empty() { 3 * POLL } else { Duration::ZERO };
            if (&so_far == want && waited >= minimum) || waited > WAIT {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(2 * POLL);
        events.extend(self.read_all());
        coalesce(&events)
    }
}

/// Coalesces one sync's events; see the module documentation.
pub fn coalesce(events: &[(usize, EventLine)]) -> Coalesced {
    let mut pairs: HashMap<u32, Vec<String>> = HashMap::new();
    for (slot, e) in events {
        if e.cookie != 0 {
            pairs.entry(e.cookie).or_default().push(format!(
                "{slot}/{}/{}/{}",
                e.wd,
                mask_names(e.mask),
                e.name
            ));
        }
    }
    let mut out = Coalesced::new();
    for (slot, e) in events {
        let mask = e.mask & !UNPOLLABLE;
        if mask == 0 && e.mask != 0 {
            continue;
        }
        let kinds = out.entry((*slot, e.wd, e.name.clone())).or_default();
        let label = match pairs.get_mut(&e.cookie) {
            Some(members) => {
                members.sort();
                format!("{} cookie[{}]", mask_names(mask), members.join(" "))
            }
            None => mask_names(mask),
        };
        let last = kinds.last().map(String::as_str);
        let second_last = kinds.len().checked_sub(2).and_then(|i| kinds.get(i)).map(String::as_str);
        let (modify, close_write, create) =
            (mask_names(IN_MODIFY), mask_names(IN_CLOSE_WRITE), mask_names(IN_CREATE));
        if last == Some(label.as_str()) {
            continue;
        }
        if mask == IN_MODIFY {
            if last == Some(&close_write)
                && (second_last == Some(&modify) || second_last == Some(&create))
            {
                // MODIFY, CLOSE_WRITE, MODIFY: one write as a poll sees it; the close comes again.
                kinds.pop();
                continue;
            }
            if last == Some(&create) || last == Some(&modify) {
                continue;
            }
        }
        kinds.push(label);
    }
    out.retain(|_, kinds| !kinds.is_empty());
    out
}

/// Runs one filesystem step under `root`; panics if it fails (the script is wrong).
fn fs_op(root: &Path, held: &mut HashMap<String, File>, text: &str) {
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    let (first, second) = rest.split_once(' ').unwrap_or((rest, ""));
    let path = root.join(first);
    let result: std::io::Result<()> = match verb {
        "mkdir" => std::fs::create_dir(&path),
        "rmdir" => std::fs::remove_dir(&path),
        "write" => std::fs::write(&path, second),
        "append" => std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(second.as_bytes())),
        "truncate" => std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(second.parse().expect("truncate P LEN"))),
        "chmod" => std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(u32::from_str_radix(second, 8).expect("chmod P OCTAL")),
        ),
        "mv" => std::fs::rename(&path, root.join(second)),
        "unlink" => std::fs::remove_file(&path),
        "symlink" => std::os::unix::fs::symlink(first, root.join(second)),
        "link" => std::fs::hard_link(&path, root.join(second)),
        "lchown" => {
            std::os::unix::fs::lchown(&path, Some(second.parse().expect("lchown P UID")), None)
        }
        "pause" => {
            let ms: u64 = first.parse().expect("pause MS");
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(())
        }
        "touch" => {
            let seconds: i64 = second.parse().expect("touch P SECONDS");
            set_times(&path, seconds)
        }
        "hold" => std::fs::OpenOptions::new().create(true).append(true).open(&path).map(|f| {
            held.insert(first.to_owned(), f);
        }),
        "put" => match held.get_mut(first) {
            Some(file) => file.write_all(second.as_bytes()),
            None => panic!("`{text}`: {first} is not held"),
        },
        "release" => {
            held.remove(first);
            Ok(())
        }
        _ => panic!("unknown script step `{text}`"),
    };
    result.unwrap_or_else(|e| panic!("`{text}` in {}: {e}", root.display()));
}

/// Sets the access and modification times of `path` (not following a symlink) to `seconds`.
fn set_times(path: &Path, seconds: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let time = libc::timespec { tv_sec: seconds, tv_nsec: 0 };
    let times = [time, time];
    // SAFETY: a valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO};

    fn e(wd: i32, mask: u32, cookie: u32, name: &str) -> (usize, EventLine) {
        (0, EventLine { wd, mask, cookie, name: name.into() })
    }

    #[test]
    fn what_a_poll_merges_is_coalesced() {
        let kernel = coalesce(&[
            e(1, IN_CREATE, 0, "f"),
            e(1, IN_OPEN, 0, "f"),
            e(1, IN_MODIFY, 0, "f"),
            e(1, IN_CLOSE_WRITE, 0, "f"),
            e(1, IN_OPEN, 0, "f"),
            e(1, IN_MODIFY, 0, "f"),
            e(1, IN_CLOSE_WRITE, 0, "f"),
            e(1, IN_MOVED_FROM, 7, "a"),
            e(1, IN_DELETE, 0, "g"),
            e(1, IN_MOVED_TO, 7, "b"),
        ]);
        let poll = coalesce(&[
            e(1, IN_DELETE, 0, "g"),
            e(1, IN_MOVED_FROM, 3, "a"),
            e(1, IN_MOVED_TO, 3, "b"),
            e(1, IN_CREATE, 0, "f"),
            e(1, IN_CLOSE_WRITE, 0, "f"),
        ]);
        assert_eq!(kernel, poll);
        let paired = coalesce(&[e(1, IN_MOVED_FROM, 3, "a"), e(2, IN_MOVED_TO, 3, "b")]);
        let unpaired = coalesce(&[e(1, IN_MOVED_FROM, 3, "a"), e(2, IN_MOVED_TO, 4, "b")]);
        assert_ne!(paired, unpaired);
    }
}
