//! `[[watch]]` policies resolved to the objects they govern.
//!
//! A policy names a host path; a watched object arrives as an fd that may have been opened
//! under another name (a container's `/media`). Policies are therefore matched by identity:
//! the policy's directory `(dev, ino)` against the object and its ancestors, found by walking
//! `..` from the object's fd. The deepest match wins.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use rustix::fs::{Mode as FileMode, OFlags};

use crate::config::{AttrCache, DaemonSettings, Listing, Mode, WatchPolicy};

pub type Identity = (u64, u64);

/// How many `..` steps the ancestry walk takes at most.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug)]
pub struct Policy {
    pub watch: WatchPolicy,
    /// `None` while the path does not exist; it then governs nothing.
    pub root: Option<Identity>,
    pub origin: Origin,
}

/// Where a policy came from, which decides what a reload does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A `[[watch]]` table of the configuration file: a reload reads it again.
    File,
    /// `ctl add`: a reload keeps it, unless the file now names its path.
    RunTime,
}

/// What a reload does to the running policies: the file's, then each run-time policy whose
/// path the file does not name.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadPlan {
    pub watches: Vec<(WatchPolicy, Origin)>,
    /// Run-time policies kept.
    pub kept: Vec<PathBuf>,
    /// Run-time policies whose path the file now names: the file's policy replaces them.
    pub replaced: Vec<PathBuf>,
}

impl ReloadPlan {
    pub fn new(file: &[WatchPolicy], running: &[Policy]) -> ReloadPlan {
        let mut plan = ReloadPlan {
            watches: file.iter().map(|w| (w.clone(), Origin::File)).collect(),
            ..ReloadPlan::default()
        };
        for policy in running.iter().filter(|p| p.origin == Origin::RunTime) {
            let path = policy.watch.path.clone();
            if file.iter().any(|w| w.path == path) {
                plan.replaced.push(path);
            } else {
                plan.watches.push((policy.watch.clone(), Origin::RunTime));
                plan.kept.push(path);
            }
        }
        plan
    }

    /// One clause for the reload's reply and log line, empty when no run-time policy ran.
    pub fn summary(&self) -> String {
        let paths = |list: &[PathBuf]| {
            list.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        };
        let mut parts = Vec::new();
        if !self.kept.is_empty() {
            parts.push(format!(
                "kept {} added at run time: {}",
                self.kept.len(),
                paths(&self.kept)
            ));
        }
        if !self.replaced.is_empty() {
            parts.push(format!(
                "replaced by the file's policy for the same path: {}",
                paths(&self.replaced)
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    }
}

/// What a watched object gets from the policies: interval, mode, attribute caching, and how
/// gentle its polls must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Governance {
    pub policy: Option<usize>,
    pub interval: Duration,
    pub mode: Mode,
    pub force_sync: bool,
    /// When a poll reads a directory's listing; `Auto` leaves it to the mount.
    pub listing: Listing,
    /// Filesystem operations per second for the polls of this policy on one device.
    pub max_ops: u32,
    /// The bound of the idle backoff; `None` (or one not above `interval`) means no backoff.
    pub max_interval: Option<Duration>,
}

/// What objects no policy governs get, and what a policy leaves out: the `[daemon]` defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyDefaults {
    pub interval: Duration,
    pub max_ops: u32,
    pub max_interval: Option<Duration>,
}

impl Default for PolicyDefaults {
    fn default() -> PolicyDefaults {
        PolicyDefaults::of(&DaemonSettings::default())
    }
}

impl PolicyDefaults {
    pub fn of(settings: &DaemonSettings) -> PolicyDefaults {
        PolicyDefaults {
            interval: settings.default_poll_interval,
            max_ops: settings.default_max_ops,
            max_interval: settings.default_max_poll_interval,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policies {
    pub list: Vec<Policy>,
    pub defaults: PolicyDefaults,
}

pub fn identity(fd: BorrowedFd<'_>) -> rustix::io::Result<Identity> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

impl Policies {
    /// Resolves each policy's path now; a missing path is reported by the caller.
    pub fn resolve(
        watches: impl IntoIterator<Item = (WatchPolicy, Origin)>,
        defaults: PolicyDefaults,
    ) -> Policies {
        let list = watches
            .into_iter()
            .map(|(watch, origin)| {
                let root = rustix::fs::stat(&watch.path).ok().map(|st| (st.st_dev, st.st_ino));
                Policy { watch, root, origin }
            })
            .collect();
        Policies { list, defaults }
    }

    /// The policy for an object whose identity and ancestors are `ancestry` (the object first).
    pub fn govern(&self, ancestry: &[Identity]) -> Governance {
        let found = ancestry.iter().enumerate().find_map(|(depth, id)| {
            self.list.iter().position(|p| p.root == Some(*id) && (depth == 0 || p.watch.recursive))
        });
        match found {
            Some(index) => {
                let watch = &self.list[index].watch;
                Governance {
                    policy: Some(index),
                    interval: watch.poll_interval.unwrap_or(self.defaults.interval),
                    mode: watch.mode,
                    force_sync: watch.attr_cache == AttrCache::Bypass,
                    listing: watch.listing,
                    max_ops: watch.max_ops.unwrap_or(self.defaults.max_ops),
                    max_interval: watch.max_poll_interval.or(self.defaults.max_interval),
                }
            }
            None => Governance {
                policy: None,
                interval: self.defaults.interval,
                mode: Mode::Auto,
                force_sync: true,
                listing: Listing::Auto,
                max_ops: self.defaults.max_ops,
                max_interval: self.defaults.max_interval,
            },
        }
    }

    /// The identities to match for an object: itself, then its ancestors on the same device
    /// (`ancestry`); without policies, only itself.
    pub fn ancestry(&self, fd: BorrowedFd<'_>, first: Identity, is_dir: bool) -> Vec<Identity> {
        if self.list.is_empty() {
            return vec![first];
        }
        ancestry(fd, first, is_dir)
    }
}

/// An object's identity, then its ancestors' on the same device, found by walking `..` from
/// its fd: what `Policies::govern` matches. Walking stops at the filesystem root, at a device
/// change or at `MAX_DEPTH`; a file has only itself.
pub fn ancestry(fd: BorrowedFd<'_>, first: Identity, is_dir: bool) -> Vec<Identity> {
    let mut chain = vec![first];
    if !is_dir {
        return chain;
    }
    let mut current: Option<OwnedFd> = None;
    for _ in 0..MAX_DEPTH {
        let dir = current.as_ref().map_or(fd, |f| f.as_fd());
        let Ok(parent) = rustix::fs::openat(
            dir,
            c"..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            FileMode::empty(),
        ) else {
            break;
        };
        let Ok(id) = identity(parent.as_fd()) else { break };
        let last = chain[chain.len() - 1];
        if id == last || id.0 != first.0 {
            break;
        }
        chain.push(id);
        current = Some(parent);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: Identity, recursive: bool, secs: u64) -> Policy {
        Policy {
            watch: WatchPolicy {
                path: PathBuf::from("/p"),
                poll_interval: Some(Duration::from_secs(secs)),
                recursive,
                mode: Mode::Poll,
                attr_cache: AttrCache::Trust,
                listing: Listing::Auto,
                max_ops: None,
                max_poll_interval: None,
            },
            root: Some(root),
            origin: Origin::File,
        }
    }

    fn at(path: &str, origin: Origin) -> Policy {
        let mut p = policy((1, 1), true, 1);
        p.watch.path = PathBuf::from(path);
        p.origin = origin;
        p
    }

    #[test]
    fn a_reload_keeps_run_time_policies_the_file_does_not_name() {
        let file = [at("/a", Origin::File).watch, at("/c", Origin::File).watch];
        let running = [
            at("/a", Origin::File),
            at("/old", Origin::File),
            at("/b", Origin::RunTime),
            at("/c", Origin::RunTime),
        ];
        let plan = ReloadPlan::new(&file, &running);
        let paths: Vec<_> =
            plan.watches.iter().map(|(w, o)| (w.path.to_str().unwrap(), *o)).collect();
        assert_eq!(
            paths,
            [("/a", Origin::File), ("/c", Origin::File), ("/b", Origin::RunTime)],
            "the file's policies, then the run-time ones it does not name"
        );
        assert_eq!(plan.kept, [PathBuf::from("/b")]);
        assert_eq!(plan.replaced, [PathBuf::from("/c")]);
        assert_eq!(
            plan.summary(),
            " (kept 1 added at run time: /b; replaced by the file's policy for the same path: /c)"
        );
        assert_eq!(ReloadPlan::new(&file, &running[..2]).summary(), "");
    }

    #[test]
    fn deepest_matching_policy_wins() {
        let p = Policies {
            list: vec![
                policy((1, 10), true, 5),
                policy((1, 20), true, 1),
                policy((1, 30), false, 9),
            ],
            defaults: PolicyDefaults { interval: Duration::from_secs(60), ..Default::default() },
        };
        assert_eq!(p.govern(&[(1, 99), (1, 20), (1, 10)]).interval, Duration::from_secs(1));
        assert_eq!(p.govern(&[(1, 98), (1, 10)]).policy, Some(0));
        assert!(!p.govern(&[(1, 98), (1, 10)]).force_sync);
        // A non-recursive policy governs its own directory only.
        assert_eq!(p.govern(&[(1, 30)]).interval, Duration::from_secs(9));
        assert_eq!(p.govern(&[(1, 31), (1, 30)]).policy, None);
        let none = p.govern(&[(2, 10)]);
        assert_eq!(
            (none.policy, none.interval, none.mode),
            (None, Duration::from_secs(60), Mode::Auto)
        );
    }

    #[test]
    fn ancestry_walks_up_to_the_root_of_the_device() {
        let dir = std::env::temp_dir().join(format!("fakenotify-policy-{}", std::process::id()));
        let deep = dir.join("a/b");
        std::fs::create_dir_all(&deep).expect("temp dir");
        let fd = rustix::fs::open(&deep, OFlags::RDONLY | OFlags::DIRECTORY, FileMode::empty())
            .expect("open");
        let root = rustix::fs::stat(&dir).expect("stat");
        let p = Policies {
            list: vec![policy((root.st_dev, root.st_ino), true, 1)],
            defaults: PolicyDefaults::default(),
        };
        let chain = p.ancestry(fd.as_fd(), identity(fd.as_fd()).expect("fstat"), true);
        assert!(chain.len() >= 3);
        assert_eq!(p.govern(&chain).policy, Some(0));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
