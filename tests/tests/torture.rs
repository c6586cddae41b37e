//! Model-based torture test: thousands of random changes in the backing directory of a tree of
//! watched directories on a polled bindfs mount, and a client that knows the tree only from
//! its first listing and the events it reads. At each quiet point its model must equal the
//! real tree, names and kinds.
//!
//! The client behaves as a recursive watcher does: it watches every directory, and on a new
//! directory (IN_CREATE|IN_ISDIR, or an IN_MOVED_TO without its IN_MOVED_FROM) it adds a watch
//! and lists it; a rename pair moves a subtree, a lone IN_MOVED_FROM removes one. Changes are
//! made in bursts with random pauses, so one poll sees anything from one change to dozens.
//!
//! The run is seeded: the seed is printed at the start and in any failure, and
//! `FAKENOTIFY_SEED=<seed>` replays it. `FAKENOTIFY_TORTURE_OPS` changes the number of
//! operations (default 2500); the run stops early after [`BUDGET`] on a slow machine.
//! `FAKENOTIFY_TORTURE_DEBUG=1` runs the daemon with its debug log, which a failure prints.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const CONFIG: &str = "[daemon]\ndefault_poll_interval = \"100ms\"\n";
const POLL: Duration = Duration::from_millis(100);
/// Generation stops after this, whatever the count, to keep the test well under a minute.
const BUDGET: Duration = Duration::from_secs(35);
const ROOTS: [&str; 4] = ["d0", "d1", "d2", "d3"];
const FILE_NAMES: [&str; 8] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];
const DIR_NAMES: [&str; 3] = ["s0", "s1", "s2"];
const MAX_DEPTH: usize = 3;
const MASK: &str = "CREATE|DELETE|MOVE|DELETE_SELF|MODIFY|ATTRIB|CLOSE_WRITE|ONLYDIR";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Paths relative to the backing (or mounted) root, `d0/s1/f3`.
type Tree = BTreeMap<String, Kind>;

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn depth(path: &str) -> usize {
    path.matches('/').count()
}

fn in_subtree(path: &str, root: &str) -> bool {
    path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// Moves `from` and everything below it to `to` in `tree`, replacing what was at `to`.
fn move_subtree(tree: &mut Tree, from: &str, to: &str) {
    remove_subtree(tree, to);
    let moved: Vec<(String, Kind)> =
        tree.iter().filter(|(p, _)| in_subtree(p, from)).map(|(p, k)| (p.clone(), *k)).collect();
    for (path, kind) in moved {
        tree.remove(&path);
        tree.insert(format!("{to}{}", &path[from.len()..]), kind);
    }
}

fn remove_subtree(tree: &mut Tree, root: &str) {
    tree.retain(|p, _| !in_subtree(p, root));
}

/// The real tree below `base`'s roots.
fn walk(base: &Path) -> Tree {
    fn visit(base: &Path, rel: &str, tree: &mut Tree) {
        let Ok(entries) = std::fs::read_dir(base.join(rel)) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}/{name}");
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            tree.insert(path.clone(), if is_dir { Kind::Dir } else { Kind::File });
            if is_dir {
                visit(base, &path, tree);
            }
        }
    }
    let mut tree = Tree::new();
    for root in ROOTS {
        visit(base, root, &mut tree);
    }
    tree
}

/// The changes: random operations on the backing directory, with what they did logged.
struct Changer {
    rng: Rng,
    backing: std::path::PathBuf,
    /// The tree as the changes left it (checked against a walk at quiet points).
    tree: Tree,
    log: VecDeque<String>,
    done: usize,
}

impl Changer {
    fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = ROOTS.iter().map(|r| r.to_string()).collect();
        dirs.extend(self.tree.iter().filter(|(_, k)| **k == Kind::Dir).map(|(p, _)| p.clone()));
        dirs
    }

    fn entries(&self, kind: Kind) -> Vec<String> {
        self.tree.iter().filter(|(_, k)| **k == kind).map(|(p, _)| p.clone()).collect()
    }

    fn record(&mut self, what: String) {
        self.done += 1;
        if self.log.len() == 60 {
            self.log.pop_front();
        }
        self.log.push_back(what);
    }

    /// One random operation; operations that the filesystem refuses are skipped.
    fn step(&mut self) {
        let dirs = self.dirs();
        let files = self.entries(Kind::File);
        let subdirs = self.entries(Kind::Dir);
        let dir = self.rng.pick(&dirs).cloned().unwrap_or_else(|| ROOTS[0].into());
        let file_name = *self.rng.pick(&FILE_NAMES).expect("names");
        let roll = self.rng.below(100);
        let path = |rel: &str| self.backing.join(rel);
        let outcome: Result<String, String> = match roll {
            0..=19 => {
                let target = format!("{dir}/{file_name}");
                if self.tree.contains_key(&target) {
                    return;
                }
                let size = self.rng.below(64);
                std::fs::write(path(&target), vec![b'x'; size])
                    .map(|()| {
                        self.tree.insert(target.clone(), Kind::File);
                        format!("create {target} ({size} bytes)")
                    })
                    .map_err(|e| format!("create {target}: {e}"))
            }
            20..=49 => {
                let Some(file) = self.rng.pick(&files).cloned() else { return };
                let result = match roll {
                    20..=29 => std::fs::write(path(&file), b"rewritten").map(|()| "write"),
                    30..=39 => std::fs::OpenOptions::new()
                        .append(true)
                        .open(path(&file))
                        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
                        .map(|()| "append"),
                    40..=44 => std::fs::OpenOptions::new()
                        .write(true)
                        .open(path(&file))
                        .and_then(|f| f.set_len(1))
                        .map(|()| "truncate"),
                    _ => {
                        use std::os::unix::fs::PermissionsExt;
                        let mode = if self.rng.chance(50) { 0o600 } else { 0o644 };
                        std::fs::set_permissions(path(&file), std::fs::Permissions::from_mode(mode))
                            .map(|()| "chmod")
                    }
                };
                result.map(|verb| format!("{verb} {file}")).map_err(|e| format!("{file}: {e}"))
            }
            50..=65 => {
                // A file renamed within its directory or into another, maybe onto a file.
                let Some(file) = self.rng.pick(&files).cloned() else { return };
                let into = if self.rng.chance(50) { parent(&file).to_owned() } else { dir };
                let target = format!("{into}/{file_name}");
                if target == file || self.tree.get(&target) == Some(&Kind::Dir) {
                    return;
                }
                std::fs::rename(path(&file), path(&target))
                    .map(|()| {
                        self.tree.remove(&file);
                        self.tree.insert(target.clone(), Kind::File);
                        format!("mv {file} {target}")
                    })
                    .map_err(|e| format!("mv {file} {target}: {e}"))
            }
            66..=77 => {
                let Some(file) = self.rng.pick(&files).cloned() else { return };
                std::fs::remove_file(path(&file))
                    .map(|()| {
                        self.tree.remove(&file);
                        format!("rm {file}")
                    })
                    .map_err(|e| format!("rm {file}: {e}"))
            }
            78..=87 => {
                let name = *self.rng.pick(&DIR_NAMES).expect("names");
                let target = format!("{dir}/{name}");
                if depth(&target) > MAX_DEPTH || self.tree.contains_key(&target) {
                    return;
                }
                std::fs::create_dir(path(&target))
                    .map(|()| {
                        self.tree.insert(target.clone(), Kind::Dir);
                        format!("mkdir {target}")
                    })
                    .map_err(|e| format!("mkdir {target}: {e}"))
            }
            88..=92 => {
                // rmdir, of a whole subtree.
                let Some(sub) = self.rng.pick(&subdirs).cloned() else { return };
                std::fs::remove_dir_all(path(&sub))
                    .map(|()| {
                        remove_subtree(&mut self.tree, &sub);
                        format!("rm -r {sub}")
                    })
                    .map_err(|e| format!("rm -r {sub}: {e}"))
            }
            _ => {
                // A directory renamed within its parent or into another watched directory.
                let Some(sub) = self.rng.pick(&subdirs).cloned() else { return };
                let name = *self.rng.pick(&DIR_NAMES).expect("names");
                let into = if self.rng.chance(50) { parent(&sub).to_owned() } else { dir };
                let target = format!("{into}/{name}");
                let below: usize = self
                    .tree
                    .keys()
                    .filter(|p| in_subtree(p, &sub))
                    .map(|p| depth(p) - depth(&sub))
                    .max()
                    .unwrap_or(0);
                if in_subtree(&into, &sub)
                    || target == sub
                    || depth(&target) + below > MAX_DEPTH
                    || self.tree.get(&target) == Some(&Kind::File)
                {
                    return;
                }
                std::fs::rename(path(&sub), path(&target))
                    .map(|()| {
                        move_subtree(&mut self.tree, &sub, &target);
                        format!("mv {sub} {target}")
                    })
                    // Onto a directory that is not empty: refused, nothing changed.
                    .map_err(|e| format!("mv {sub} {target}: {e}"))
            }
        };
        match outcome {
            Ok(what) => self.record(what),
            Err(refused) => self.record(format!("(refused) {refused}")),
        }
    }
}

/// A subtree an IN_MOVED_FROM took away: its old path, its entries and its watches.
type Detached = (String, Tree, Vec<(i32, String)>);

/// The client's view: the tree as its events say, and what each wd watches.
struct Watcher {
    client: ScriptClient,
    mount: std::path::PathBuf,
    tree: Tree,
    wds: HashMap<i32, String>,
    /// Subtrees detached by an IN_MOVED_FROM, by cookie, until their IN_MOVED_TO.
    moving: HashMap<u32, Detached>,
    log: VecDeque<String>,
    problems: Vec<String>,
}

impl Watcher {
    /// Watches `mount` through `daemon` (preloaded), or with the kernel's inotify.
    fn start(mount: &Path, daemon: Option<&Daemon>) -> Watcher {
        let socket = daemon.map_or(Path::new(client::NO_DAEMON_SOCKET), Daemon::socket);
        let mut client = ScriptClient::spawn(&[], socket, daemon.is_some());
        let init = client.call("init1 0 NONBLOCK").line;
        let kind = if daemon.is_some() { "OK socket" } else { "OK inotify" };
        assert_eq!(init, kind, "the instance is not the kind under test");
        let mut watcher = Watcher {
            client,
            mount: mount.to_owned(),
            tree: Tree::new(),
            wds: HashMap::new(),
            moving: HashMap::new(),
            log: VecDeque::new(),
            problems: Vec::new(),
        };
        for root in ROOTS {
            watcher.watch_and_list(root);
        }
        watcher
    }

    fn note(&mut self, what: String) {
        if self.log.len() == 120 {
            self.log.pop_front();
        }
        self.log.push_back(what);
    }

    /// Adds a watch on `dir` and lists it, recursively, as a recursive watcher does.
    fn watch_and_list(&mut self, dir: &str) {
        let answer = self.client.call(&format!("add 0 {MASK} {}", self.mount.join(dir).display()));
        self.note(format!("add {dir} -> {}", answer.line));
        match answer.line.strip_prefix("OK ").and_then(|wd| wd.parse().ok()) {
            Some(wd) => {
                self.wds.insert(wd, dir.to_owned());
            }
            // Gone again already: its parent's IN_DELETE or IN_MOVED_FROM follows.
            None => return,
        }
        let Ok(entries) = std::fs::read_dir(self.mount.join(dir)) else { return };
        let mut subdirs = Vec::new();
        for entry in entries.flatten() {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            self.tree.insert(path.clone(), if is_dir { Kind::Dir } else { Kind::File });
            if is_dir {
                subdirs.push(path);
            }
        }
        for sub in subdirs {
            self.watch_and_list(&sub);
        }
    }

    /// Forgets the wds of `root` and below: their late events (IN_DELETE of what the removed
    /// directory held, IN_DELETE_SELF, IN_IGNORED) no longer speak for any path.
    fn detach_wds(&mut self, root: &str) -> Vec<(i32, String)> {
        let detached: Vec<(i32, String)> = self
            .wds
            .iter()
            .filter(|(_, p)| in_subtree(p, root))
            .map(|(wd, p)| (*wd, p.clone()))
            .collect();
        for (wd, _) in &detached {
            self.wds.remove(wd);
        }
        detached
    }

    /// Reads every event ready and applies it.
    fn read(&mut self) {
        let answer = self.client.call("read 0");
        if !answer.line.starts_with("OK") {
            self.problems.push(format!("read gave {}", answer.line));
        }
        for event in answer.events {
            self.apply(&event);
        }
    }

    fn apply(&mut self, e: &EventLine) {
        self.note(format!("event {e}"));
        if e.is(IN_Q_OVERFLOW) {
            self.problems.push("IN_Q_OVERFLOW: events were lost".into());
            return;
        }
        if e.is(IN_IGNORED) {
            self.wds.remove(&e.wd);
            return;
        }
        let Some(dir) = self.wds.get(&e.wd).cloned() else { return };
        if e.name.is_empty() {
            return;
        }
        let path = format!("{dir}/{}", e.name);
        let kind = if e.is(IN_ISDIR) { Kind::Dir } else { Kind::File };
        if e.is(IN_CREATE) {
            remove_subtree(&mut self.tree, &path);
            self.detach_wds(&path);
            self.tree.insert(path.clone(), kind);
            if kind == Kind::Dir {
                self.watch_and_list(&path);
            }
        } else if e.is(IN_DELETE) {
            remove_subtree(&mut self.tree, &path);
            self.detach_wds(&path);
        } else if e.is(IN_MOVED_FROM) {
            let subtree: Tree = self
                .tree
                .iter()
                .filter(|(p, _)| in_subtree(p, &path))
                .map(|(p, k)| (p.clone(), *k))
                .collect();
            remove_subtree(&mut self.tree, &path);
            let wds = self.detach_wds(&path);
            if e.cookie == 0 {
                self.problems.push(format!("IN_MOVED_FROM without a cookie: {e}"));
            }
            self.moving.insert(e.cookie, (path, subtree, wds));
        } else if e.is(IN_MOVED_TO) {
            remove_subtree(&mut self.tree, &path);
            self.detach_wds(&path);
            match self.moving.remove(&e.cookie).filter(|_| e.cookie != 0) {
                Some((from, subtree, wds)) => {
                    // Directories renamed before the client could watch them (their IN_CREATE
                    // was read after the rename, so the add found nothing) are watched now.
                    let mut unwatched: Vec<String> = Vec::new();
                    for (p, k) in subtree {
                        let moved = format!("{path}{}", &p[from.len()..]);
                        if k == Kind::Dir && !wds.iter().any(|(_, w)| *w == p) {
                            unwatched.push(moved.clone());
                        }
                        self.tree.insert(moved, k);
                    }
                    for (wd, p) in wds {
                        self.wds.insert(wd, format!("{path}{}", &p[from.len()..]));
                    }
                    self.tree.insert(path, kind);
                    for dir in unwatched {
                        if !self.wds.values().any(|w| *w == dir) {
                            self.watch_and_list(&dir);
                        }
                    }
                }
                None => {
                    // Moved in from outside what this client knows: new to it.
                    self.tree.insert(path.clone(), kind);
                    if kind == Kind::Dir {
                        self.watch_and_list(&path);
                    }
                }
            }
        }
    }
}

/// Lines of what differs between the model and the real tree.
fn differences(model: &Tree, real: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, kind) in real {
        match model.get(path) {
            None => out.push(format!("missing from the model: {path} ({kind:?})")),
            Some(k) if k != kind => out.push(format!("{path} is a {kind:?}, the model says {k:?}")),
            _ => {}
        }
    }
    for (path, kind) in model {
        if !real.contains_key(path) {
            out.push(format!("in the model but not on disk: {path} ({kind:?})"));
        }
    }
    out
}

/// The backing directory is on tmpfs, which never reuses an inode number: see the next test.
#[test]
fn a_client_that_applies_only_events_keeps_an_exact_model_of_a_randomly_changed_tree() {
    fakenotify_torture(FuseMount::on_tmpfs());
}

/// The same with the backing directory under `TMPDIR` (ext4 here), which hands a freed inode
/// number out again at once.
#[test]
#[ignore = "fails about 1 run in 25 on ext4 (2 of 49): a directory removed and another made elsewhere within one poll that takes its inode number looks like a rename (README Limitations); run it with --include-ignored"]
fn the_same_where_the_backing_filesystem_reuses_inode_numbers() {
    fakenotify_torture(FuseMount::new());
}

/// The FakeNotify run: a daemon polling `fuse`'s mount, the changes made in its backing.
fn fakenotify_torture(fuse: FuseMount) {
    let debug = std::env::var_os("FAKENOTIFY_TORTURE_DEBUG").is_some();
    let daemon =
        Daemon::start(&format!("{CONFIG}{}", if debug { "log_level = \"debug\"\n" } else { "" }));
    torture(&fuse.backing, &fuse.mount, Some(&daemon), 2500);
}

/// The same client and changes against the kernel's inotify on a local directory: what the
/// model and the client's rules are checked against.
#[test]
fn the_same_client_keeps_an_exact_model_with_the_kernels_inotify() {
    let dir = TempDir::new("torture-kernel");
    torture(dir.path(), dir.path(), None, 1000);
}

/// Random changes in `changed`, a client watching `watched` (through `daemon` with the
/// preload, or the kernel without), `ops` operations by default.
fn torture(changed: &Path, watched: &Path, daemon: Option<&Daemon>, ops: usize) {
    let seed =
        std::env::var("FAKENOTIFY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let target: usize =
        std::env::var("FAKENOTIFY_TORTURE_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(ops);
    eprintln!("torture seed {seed} (replay with FAKENOTIFY_SEED={seed})");

    for root in ROOTS {
        std::fs::create_dir(changed.join(root)).expect("mkdir a watched root");
    }
    let mut watcher = Watcher::start(watched, daemon);
    let mut changer = Changer {
        rng: Rng(seed),
        backing: changed.to_owned(),
        tree: Tree::new(),
        log: VecDeque::new(),
        done: 0,
    };
    let started = Instant::now();
    let mut quiet_points = 0;
    let mut slowest = Duration::ZERO;
    while changer.done < target && started.elapsed() < BUDGET {
        let burst = 1 + changer.rng.below(40);
        for _ in 0..burst {
            changer.step();
            watcher.read();
            if changer.rng.chance(8) {
                std::thread::sleep(Duration::from_millis(changer.rng.below(150) as u64));
            }
        }
        // A quiet point: more than two polls without changes, then the model must match.
        std::thread::sleep(2 * POLL + POLL / 2);
        let real = walk(changed);
        assert_eq!(
            differences(&changer.tree, &real),
            Vec::<String>::new(),
            "seed {seed}: the test's own record of its changes is wrong"
        );
        let quiet = Instant::now();
        loop {
            watcher.read();
            let diff = differences(&watcher.tree, &real);
            if diff.is_empty() && watcher.problems.is_empty() {
                break;
            }
            if quiet.elapsed() > WAIT {
                panic!(
                    "seed {seed} (replay with FAKENOTIFY_SEED={seed}): after {} operations and \
                     {quiet_points} quiet points, the client's model differs from the real tree \
                     {WAIT:?} into a quiet point:\n  {}\nproblems: {:?}\n\
                     last operations:\n  {}\nlast client steps:\n  {}\ndaemon log:\n{}",
                    changer.done,
                    diff.join("\n  "),
                    watcher.problems,
                    changer.log.iter().cloned().collect::<Vec<_>>().join("\n  "),
                    watcher.log.iter().cloned().collect::<Vec<_>>().join("\n  "),
                    daemon.map(Daemon::log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        slowest = slowest.max(quiet.elapsed());
        quiet_points += 1;
    }
    eprintln!(
        "seed {seed}: {} operations, {quiet_points} quiet points, {} paths at the end, \
         {:?} in all, slowest catch-up {slowest:?} after the quiet wait",
        changer.done,
        changer.tree.len(),
        started.elapsed()
    );
    assert!(changer.done >= 500, "seed {seed}: only {} operations ran", changer.done);
}
