//! Finding polled directories again after a rename on the file server.
//!
//! Behind a path-based FUSE server (bindfs, rclone, sshfs, mergerfs) the daemon's fd of a
//! directory names a path, and a rename on the server of that directory or of any directory
//! above it leaves the fd dangling. The directory is opened again by its name in a polled
//! listing that holds its inode, and so is every watched directory below it.
//!
//! Three steps, one per side of the thread boundary: the event loop plans from the registry,
//! which makes no system call but duplicating fds ([`plan_refind`], [`plan_follow`]); the
//! device's worker opens ([`run`]), so that a hung server stops only its own device; the loop
//! applies what was found ([`apply`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;

use crate::policy::Identity;
use crate::poller;
use crate::registry::Registry;
use crate::watch::{PollState, Source};

/// How many dangling ancestors a directory found missing may reopen to find itself again.
pub const REFIND_DEPTH: u32 = 16;

/// A directory the job may reopen or open through.
pub struct Dir {
    pub identity: Identity,
    /// A duplicate of its fd, for the directories the job opens names in.
    pub fd: Option<OwnedFd>,
    /// Where it may be now, `(directory, name)`, its own parent's listing first.
    pub candidates: Vec<(usize, Vec<u8>)>,
    /// The watched directories below it, by their names in its last listing.
    pub children: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    /// A poll could not reach `object`: find it again.
    Refind { object: usize },
    /// The directory `object` watches appeared as `name` in the listing of `parent`: its
    /// watch follows it, as a kernel watch does.
    Follow { object: usize, parent: usize, name: Vec<u8> },
}

impl Task {
    /// The directory the task is about.
    pub fn object(&self) -> usize {
        match self {
            Task::Refind { object } | Task::Follow { object, .. } => *object,
        }
    }
}

/// One relocation for a device's worker, by object id.
pub struct RelocateJob {
    /// The device, whose worker runs it.
    pub dev: u64,
    pub task: Task,
    pub dirs: HashMap<usize, Dir>,
}

/// A directory opened at its new place.
pub struct Reopened {
    pub object: usize,
    pub identity: Identity,
    pub parent: usize,
    pub parent_identity: Identity,
    pub name: Vec<u8>,
    pub fd: OwnedFd,
}

/// What a relocation found, in the order it was found.
pub struct Relocated {
    pub dev: u64,
    pub task: Task,
    /// The identity of the task's directory: its slot may hold another object by the time
    /// this comes back.
    pub identity: Option<Identity>,
    pub found: Vec<Reopened>,
}

impl Relocated {
    /// Whether the task's directory was found.
    pub fn found_it(&self) -> bool {
        let object = self.task.object();
        self.found.iter().any(|r| r.object == object)
    }

    /// A duplicate of the new fd of `object`, if it was found.
    pub fn fd_of(&self, object: usize) -> Option<OwnedFd> {
        let reopened = self.found.iter().rev().find(|r| r.object == object)?;
        reopened.fd.try_clone().ok()
    }
}

/// Plans finding the polled directory `object` again: where its inode is listed, and the same
/// for each of those directories in case it dangles too, `REFIND_DEPTH` levels up at most.
/// None when `object` is no polled directory.
pub fn plan_refind(registry: &Registry, object: usize) -> Option<RelocateJob> {
    let watched = registry.get(object)?;
    if !watched.is_dir || !watched.is_polled() {
        return None;
    }
    let mut dirs = HashMap::new();
    let mut found_later = Vec::new();
    add_candidates(registry, &mut dirs, object, REFIND_DEPTH, &mut found_later);
    add_children(registry, &mut dirs, found_later);
    Some(RelocateJob { dev: watched.id.0, task: Task::Refind { object }, dirs })
}

/// Plans following the directory whose inode `ino` appeared as `name` in the listing of the
/// polled directory `parent`. None when no polled directory has that inode.
pub fn plan_follow(
    registry: &Registry,
    parent: usize,
    ino: u64,
    name: &[u8],
) -> Option<RelocateJob> {
    let parent_object = registry.get(parent)?;
    let object = registry.find_polled((parent_object.id.0, ino))?;
    if !registry.get(object)?.is_dir {
        return None;
    }
    let mut dirs = HashMap::new();
    dirs.insert(parent, dir(registry, parent, true)?);
    dirs.insert(object, dir(registry, object, false)?);
    add_children(registry, &mut dirs, vec![object]);
    let task = Task::Follow { object, parent, name: name.to_vec() };
    Some(RelocateJob { dev: parent_object.id.0, task, dirs })
}

/// A directory of the plan, with a duplicate of its fd if `open_in` (a failed duplicate leaves
/// it without: nothing is opened in it).
fn dir(registry: &Registry, id: usize, open_in: bool) -> Option<Dir> {
    let object = registry.get(id)?;
    let Source::Polled(state) = &object.source else { return None };
    Some(Dir {
        identity: object.id,
        fd: if open_in { state.fd.try_clone().ok() } else { None },
        candidates: Vec::new(),
        children: Vec::new(),
    })
}

/// Where `id` may be found, as `Server::refind` looked before it ran on a worker: its own
/// parent's listing first, since another listing that holds the inode number may hold a
/// directory that reused it; others only when the parent, still watched, no longer lists it
/// (it moved, and the move was not paired); none when the parent is gone, as it is when a tree
/// is removed and its inode numbers taken again.
fn add_candidates(
    registry: &Registry,
    dirs: &mut HashMap<usize, Dir>,
    id: usize,
    depth: u32,
    found_later: &mut Vec<usize>,
) {
    // `found_later` holds the directories already planned.
    if depth == 0 || found_later.contains(&id) {
        return;
    }
    let Some(object) = registry.get(id) else { return };
    let Source::Polled(state) = &object.source else { return };
    if !object.is_dir {
        return;
    }
    let mut candidates = registry.listed_in(object.id);
    if let Some(identity) = state.parent {
        match registry.find(identity) {
            None => candidates.clear(),
            Some(known) if candidates.iter().any(|(parent, _)| *parent == known) => {
                candidates.retain(|(parent, _)| *parent == known)
            }
            Some(_) => {}
        }
    }
    if let Entry::Vacant(vacant) = dirs.entry(id) {
        let Some(entry) = dir(registry, id, false) else { return };
        vacant.insert(entry);
    }
    found_later.push(id);
    for (parent, _) in &candidates {
        match dirs.get_mut(parent) {
            Some(known) if known.fd.is_none() => {
                if let Some(Source::Polled(state)) = registry.get(*parent).map(|o| &o.source) {
                    known.fd = state.fd.try_clone().ok();
                }
            }
            Some(_) => {}
            None => {
                if let Some(entry) = dir(registry, *parent, true) {
                    dirs.insert(*parent, entry);
                }
            }
        }
        add_candidates(registry, dirs, *parent, depth - 1, found_later);
    }
    if let Some(entry) = dirs.get_mut(&id) {
        entry.candidates = candidates;
    }
}

/// The watched directories below each of `roots`, with their names in their parents' last
/// listings: a directory found at a new place reopens them all.
fn add_children(registry: &Registry, dirs: &mut HashMap<usize, Dir>, roots: Vec<usize>) {
    let mut below: HashMap<Identity, Vec<usize>> = HashMap::new();
    for (id, object) in registry.iter() {
        if let Source::Polled(PollState { parent: Some(parent), .. }) = &object.source {
            below.entry(*parent).or_default().push(id);
        }
    }
    let mut seen: HashSet<usize> = HashSet::new();
    let mut queue = roots;
    while let Some(id) = queue.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(object) = registry.get(id) else { continue };
        let Source::Polled(PollState { scan: Some(scan), .. }) = &object.source else { continue };
        let children: Vec<(usize, Vec<u8>)> = below
            .get(&object.id)
            .into_iter()
            .flatten()
            .filter_map(|&child| {
                let ino = registry.get(child)?.id.1;
                Some((child, scan.snapshot.dir_name(ino)?.to_vec()))
            })
            .collect();
        for (child, _) in &children {
            if !dirs.contains_key(child) {
                if let Some(entry) = dir(registry, *child, false) {
                    dirs.insert(*child, entry);
                }
            }
            queue.push(*child);
        }
        if let Some(entry) = dirs.get_mut(&id) {
            entry.children = children;
        }
    }
}

/// Runs a relocation on the device's worker: every system call of it is here.
pub fn run(job: RelocateJob) -> Relocated {
    let RelocateJob { dev, task, mut dirs } = job;
    let identity = dirs.get(&task.object()).map(|d| d.identity);
    let mut found = Vec::new();
    match &task {
        Task::Refind { object } => {
            refind(&mut dirs, *object, REFIND_DEPTH, &mut found);
        }
        Task::Follow { object, parent, name } => {
            if reopen_under(&mut dirs, *object, *parent, name, &mut found) == Ok(true) {
                reopen_below(&mut dirs, *object, &mut found);
            }
        }
    }
    // A directory reopened twice keeps the fd it was found with last.
    let mut kept: HashSet<usize> = HashSet::new();
    let mut reopened = Vec::new();
    for (object, parent, name) in found.into_iter().rev() {
        if !kept.insert(object) {
            continue;
        }
        let (Some(fd), Some(identity), Some(parent_identity)) = (
            dirs.get_mut(&object).and_then(|d| d.fd.take()),
            dirs.get(&object).map(|d| d.identity),
            dirs.get(&parent).map(|d| d.identity),
        ) else {
            continue;
        };
        reopened.push(Reopened { object, identity, parent, parent_identity, name, fd });
    }
    reopened.reverse();
    Relocated { dev, task, identity, found: reopened }
}

/// What was found, as `(directory, its parent, its name)`, in order.
type Found = Vec<(usize, usize, Vec<u8>)>;

/// Looks for `id` under each of its candidates, reopening a candidate that dangles too.
fn refind(dirs: &mut HashMap<usize, Dir>, id: usize, depth: u32, found: &mut Found) -> bool {
    if depth == 0 {
        return false;
    }
    let candidates = dirs.get(&id).map(|d| d.candidates.clone()).unwrap_or_default();
    for (parent, name) in candidates {
        let reached = match reopen_under(dirs, id, parent, &name, found) {
            Err(errno) if poller::is_gone(errno) && refind(dirs, parent, depth - 1, found) => {
                reopen_under(dirs, id, parent, &name, found)
            }
            other => other,
        };
        if reached == Ok(true) {
            reopen_below(dirs, id, found);
            return true;
        }
    }
    false
}

/// Reopens the watched directories below `root`, which was just found at a new place: their
/// fds name their old paths. Each is opened by its name in its parent's listing at once,
/// rather than when its own poll finds its fd dangling, which may come before or long after.
fn reopen_below(dirs: &mut HashMap<usize, Dir>, root: usize, found: &mut Found) {
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        let children = dirs.get(&parent).map(|d| d.children.clone()).unwrap_or_default();
        for (child, name) in children {
            if reopen_under(dirs, child, parent, &name, found) == Ok(true) {
                queue.push(child);
            }
        }
    }
}

/// Opens `name` in `parent` and, when it is `child`'s inode, makes it `child`'s fd. `Ok(false)`
/// when it is another inode or the plan cannot open there; an error is `openat`'s.
fn reopen_under(
    dirs: &mut HashMap<usize, Dir>,
    child: usize,
    parent: usize,
    name: &[u8],
    found: &mut Found,
) -> Result<bool, Errno> {
    let Some(parent_fd) = dirs.get(&parent).and_then(|d| d.fd.as_ref()) else { return Ok(false) };
    let Some(identity) = dirs.get(&child).map(|d| d.identity) else { return Ok(false) };
    let Ok(c_name) = CString::new(name) else { return Ok(false) };
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let fd =
        rustix::fs::openat(parent_fd.as_fd(), c_name.as_c_str(), flags, rustix::fs::Mode::empty())?;
    if rustix::fs::fstat(&fd).map(|st| (st.st_dev, st.st_ino)) != Ok(identity) {
        return Ok(false);
    }
    if let Some(entry) = dirs.get_mut(&child) {
        entry.fd = Some(fd);
    }
    found.push((child, parent, name.to_vec()));
    Ok(true)
}

/// Gives each directory found its new fd, parent and path. A slot that holds another object
/// by now is left alone.
pub fn apply(registry: &mut Registry, found: Vec<Reopened>) {
    for reopened in found {
        let Some(parent) = registry.get(reopened.parent) else { continue };
        if parent.id != reopened.parent_identity {
            continue;
        }
        let path = format!("{}/{}", parent.path, String::from_utf8_lossy(&reopened.name));
        let Some(object) = registry.get_mut(reopened.object) else { continue };
        if object.id != reopened.identity {
            continue;
        }
        let Source::Polled(state) = &mut object.source else { continue };
        state.fd = reopened.fd;
        state.parent = Some(reopened.parent_identity);
        state.misses = 0;
        state.missing_since = None;
        object.path = path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-relocate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn open(path: &Path) -> OwnedFd {
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
        rustix::fs::open(path, flags, rustix::fs::Mode::empty()).expect("open a directory")
    }

    fn identity(path: &Path) -> Identity {
        let st = rustix::fs::stat(path).expect("stat");
        (st.st_dev, st.st_ino)
    }

    fn entry(path: &Path, fd: Option<OwnedFd>) -> Dir {
        Dir { identity: identity(path), fd, candidates: Vec::new(), children: Vec::new() }
    }

    fn found(relocated: &Relocated) -> Vec<(usize, usize, &[u8])> {
        relocated.found.iter().map(|r| (r.object, r.parent, r.name.as_slice())).collect()
    }

    #[test]
    fn a_followed_directory_and_the_watched_ones_below_it_are_reopened_by_name() {
        let root = scratch("follow");
        std::fs::create_dir_all(root.0.join("old/sub")).expect("tree");
        std::fs::rename(root.0.join("old"), root.0.join("new")).expect("rename");
        let mut dirs = HashMap::new();
        dirs.insert(1, entry(&root.0, Some(open(&root.0))));
        let mut moved = entry(&root.0.join("new"), None);
        moved.children = vec![(3, b"sub".to_vec())];
        dirs.insert(2, moved);
        dirs.insert(3, entry(&root.0.join("new/sub"), None));
        let task = Task::Follow { object: 2, parent: 1, name: b"new".to_vec() };
        let relocated = run(RelocateJob { dev: 0, task, dirs });
        assert!(relocated.found_it());
        assert_eq!(found(&relocated), [(2, 1, &b"new"[..]), (3, 2, &b"sub"[..])]);
        assert!(relocated.fd_of(3).is_some());
    }

    #[test]
    fn a_name_that_holds_another_inode_is_not_taken() {
        let root = scratch("other");
        std::fs::create_dir_all(root.0.join("a")).expect("a");
        std::fs::create_dir_all(root.0.join("b")).expect("b");
        let mut dirs = HashMap::new();
        dirs.insert(1, entry(&root.0, Some(open(&root.0))));
        dirs.insert(2, entry(&root.0.join("a"), None));
        let task = Task::Follow { object: 2, parent: 1, name: b"b".to_vec() };
        let relocated = run(RelocateJob { dev: 0, task, dirs });
        assert!(!relocated.found_it());
        assert!(relocated.found.is_empty());
    }

    #[test]
    fn a_directory_whose_parent_dangles_too_is_found_through_the_parent() {
        let root = scratch("refind");
        std::fs::create_dir_all(root.0.join("parent/child")).expect("tree");
        std::fs::create_dir_all(root.0.join("removed")).expect("removed");
        // The parent's fd reaches nothing any more, as a path-based server's fd of a renamed
        // directory: a directory since removed.
        let dangling = open(&root.0.join("removed"));
        std::fs::remove_dir(root.0.join("removed")).expect("remove");
        let mut dirs = HashMap::new();
        dirs.insert(1, entry(&root.0, Some(open(&root.0))));
        let mut parent = entry(&root.0.join("parent"), Some(dangling));
        parent.candidates = vec![(1, b"parent".to_vec())];
        dirs.insert(2, parent);
        let mut child = entry(&root.0.join("parent/child"), None);
        child.candidates = vec![(2, b"child".to_vec())];
        dirs.insert(3, child);
        let relocated = run(RelocateJob { dev: 0, task: Task::Refind { object: 3 }, dirs });
        assert!(relocated.found_it());
        assert_eq!(found(&relocated), [(2, 1, &b"parent"[..]), (3, 2, &b"child"[..])]);
    }

    #[test]
    fn a_directory_without_candidates_is_not_found() {
        let root = scratch("none");
        let mut dirs = HashMap::new();
        dirs.insert(1, entry(&root.0, None));
        let relocated = run(RelocateJob { dev: 0, task: Task::Refind { object: 1 }, dirs });
        assert!(!relocated.found_it());
    }
}
