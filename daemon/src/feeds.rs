//! All `[[feed]]`s, and what their lines mean for the poll schedule. A line is a hint: it maps
//! the remote path onto the feed's `local` prefix and asks for an out-of-turn poll of objects
//! already polled at that path (never opening anything), coalesced per object and within a
//! rate, and a second poll a second later so a write that ended settles (IN_CLOSE_WRITE). While
//! a feed is healthy, the scheduled polls of objects under its prefix are deferred to its
//! `safety_interval`; when it is not, they poll at their own intervals again, and its return,
//! or an overflow line, brings one catch-up poll of every object under the prefix.
//! The event loop calls `on_ready`, `step` (each turn), `defers` (at each scheduled poll) and
//! `next_deadline`; the polls themselves stay the loop's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use crate::config::FeedConfig;
use crate::feed::{Feed, Hint, TOKENS_PER_FEED};
use crate::schedule::Slot;
use crate::slab::Slab;
use crate::watch::{Source, WatchedObject};

/// Least time between two hint polls of one object.
const MIN_HINT_GAP: Duration = Duration::from_millis(200);
/// A hint poll is followed by one more this much later, as the next scheduled poll would
/// follow it: a file whose writer finished is seen unchanged (IN_CLOSE_WRITE), and a delete
/// that rename pairing holds until its directory's next poll (`moves.rs`) goes out.
const SETTLE_AFTER: Duration = Duration::from_millis(250);
/// Out-of-turn polls the feeds may cause, per second over all feeds, and the burst.
const POLLS_PER_SECOND: f64 = 100.0;
const POLL_BURST: f64 = 100.0;
/// Least time between two catch-ups of one feed (overflow lines may come in a stream).
const CATCH_UP_GAP: Duration = Duration::from_secs(5);
/// Local paths from lines waiting to be matched to objects; past it the feed gets a catch-up.
const MAX_QUEUED_PATHS: usize = 4096;
/// The path index is rebuilt on a miss when it is older than this.
const INDEX_MAX_AGE: Duration = Duration::from_secs(1);
/// Paths of objects on the long interval that `status` lists per feed (the reply is one record).
const LONG_INTERVAL_LISTED: usize = 16;
/// A polled object found busy (a poll in flight) is tried again after this.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// A feed's figures for `status`.
#[derive(Debug, Clone)]
pub struct FeedStatus {
    pub command: String,
    pub remote: String,
    pub local: String,
    pub state: &'static str,
    pub healthy: bool,
    pub pid: Option<u32>,
    pub lines: u64,
    pub bad_lines: u64,
    pub starts: u64,
    /// Since the last heartbeat line, if one came.
    pub heartbeat_age: Option<Duration>,
    pub polls_caused: u64,
    /// Objects whose scheduled polls wait for the safety interval.
    pub long_interval: usize,
    /// The first of their paths, sorted (at most [`LONG_INTERVAL_LISTED`]).
    pub long_interval_paths: Vec<String>,
    pub safety_interval: Duration,
}

/// An out-of-turn poll waiting for its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingPoll {
    feed: usize,
    at: Duration,
    /// A hint's poll: a settling poll follows it. A settling or catch-up poll has none.
    settle_after: bool,
}

/// An object under a healthy feed: when its last scheduled poll ran, and when it was last
/// seen by the schedule (for pruning objects that went).
#[derive(Clone, Copy, Debug)]
struct Deferral {
    feed: usize,
    last_poll: Duration,
    seen: Duration,
}

#[derive(Default)]
struct PathIndex {
    built: Option<Duration>,
    by_path: HashMap<String, Vec<usize>>,
}

pub struct Feeds {
    feeds: Vec<Feed>,
    /// Health as last seen, to act on its changes.
    healthy: Vec<bool>,
    /// Per feed: the local prefix a catch-up must cover (the whole mapping, or an overflow's
    /// root), and when its last catch-up ran.
    catch_up: Vec<Option<String>>,
    last_catch_up: Vec<Option<Duration>>,
    polls_caused: Vec<u64>,
    /// Local paths named by lines, not yet matched to objects.
    queued: Vec<(usize, String)>,
    queued_set: HashSet<String>,
    pending: HashMap<usize, PendingPoll>,
    /// `pending` by time, for the loop's deadline and the due ones in order.
    by_time: BTreeMap<(Duration, usize), ()>,
    last_hint_poll: HashMap<usize, Duration>,
    deferred: HashMap<Slot, Deferral>,
    index: PathIndex,
    tokens: f64,
    tokens_at: Duration,
    /// The loop's token for feeds.
    token: u64,
}

impl Feeds {
    /// The feeds of `configs`, each to be started at the first `step`; `token` is the loop's
    /// token for feeds, to which each feed adds `TOKENS_PER_FEED` times its index.
    pub fn new(configs: &[FeedConfig], token: u64) -> Feeds {
        let n = configs.len();
        Feeds {
            feeds: configs
                .iter()
                .enumerate()
                .map(|(i, c)| Feed::new(c.clone(), token + TOKENS_PER_FEED * i as u64))
                .collect(),
            healthy: vec![false; n],
            catch_up: vec![None; n],
            last_catch_up: vec![None; n],
            polls_caused: vec![0; n],
            queued: Vec::new(),
            queued_set: HashSet::new(),
            pending: HashMap::new(),
            by_time: BTreeMap::new(),
            last_hint_poll: HashMap::new(),
            deferred: HashMap::new(),
            index: PathIndex::default(),
            tokens: POLL_BURST,
            tokens_at: Duration::ZERO,
            token,
        }
    }

    /// The feeds of a reloaded configuration: unchanged, they run on; otherwise every running
    /// command is stopped and the new ones start at the next `step` (catch-ups included).
    pub fn reconfigure(&mut self, configs: &[FeedConfig]) {
        let same = configs.len() == self.feeds.len()
            && configs.iter().zip(&self.feeds).all(|(c, f)| *c == f.config);
        if same {
            return;
        }
        info!("reload: {} feeds replaced by {}", self.feeds.len(), configs.len());
        let token = self.token;
        // Dropping a feed kills and reaps its child; its fds leave the epoll set as they close.
        *self = Feeds::new(configs, token);
    }

    /// A feed's stdout, stderr or pidfd is ready.
    pub fn on_ready(&mut self, epoll: BorrowedFd<'_>, token: u64, now: Duration) {
        let Some(index) = self.feeds.iter().position(|f| f.owns(token)) else { return };
        if self.feeds[index].is_stderr(token) {
            return self.feeds[index].read_stderr(epoll, now);
        }
        if self.feeds[index].is_pidfd(token) {
            // Its last words (ssh's reason, say) are still in the pipe.
            self.feeds[index].read_stderr(epoll, now);
        }
        // On the pidfd too: lines written just before the exit are still in the pipe.
        let hints = self.feeds[index].read(epoll, now);
        self.take_hints(index, hints, now);
        if self.feeds[index].is_pidfd(token) {
            self.feeds[index].exited(epoll, now);
        }
        self.check_health(index, now);
    }

    fn take_hints(&mut self, index: usize, hints: Vec<Hint>, now: Duration) {
        for hint in hints {
            let (remote, local) = {
                let c = &self.feeds[index].config;
                (c.remote.to_string_lossy().into_owned(), c.local.to_string_lossy().into_owned())
            };
            match hint {
                Hint::Change { dir, name } => {
                    let Some(local_dir) = map_prefix(&dir, &remote, &local) else {
                        self.feeds[index].bad_line("a path outside the feed's remote", now);
                        continue;
                    };
                    if let Some(name) = name {
                        let child = join(&local_dir, &name);
                        self.queue(index, child);
                    }
                    self.queue(index, local_dir);
                }
                Hint::Overflow { root } => {
                    let prefix = if let Some(mapped) = map_prefix(&root, &remote, &local) {
                        mapped
                    } else if is_under(&remote, &root) {
                        local.clone()
                    } else {
                        self.feeds[index].bad_line("an overflow outside the feed's remote", now);
                        continue;
                    };
                    self.ask_catch_up(index, prefix);
                }
            }
        }
    }

    fn queue(&mut self, feed: usize, path: String) {
        if self.queued_set.contains(&path) {
            return;
        }
        if self.queued.len() >= MAX_QUEUED_PATHS {
            let local = self.feeds[feed].config.local.to_string_lossy().into_owned();
            self.ask_catch_up(feed, local);
            return;
        }
        self.queued_set.insert(path.clone());
        self.queued.push((feed, path));
    }

    /// A catch-up of `prefix`; two pending ones of a feed merge into their common ancestor.
    fn ask_catch_up(&mut self, feed: usize, prefix: String) {
        let merged = match self.catch_up[feed].take() {
            None => prefix,
            Some(held) if is_under(&prefix, &held) => held,
            Some(held) if is_under(&held, &prefix) => prefix,
            Some(_) => self.feeds[feed].config.local.to_string_lossy().into_owned(),
        };
        self.catch_up[feed] = Some(merged);
    }

    /// Acts on a change of a feed's health.
    fn check_health(&mut self, index: usize, now: Duration) {
        let healthy = self.feeds[index].supervision.healthy(now);
        if healthy == self.healthy[index] {
            return;
        }
        self.healthy[index] = healthy;
        let local = self.feeds[index].config.local.to_string_lossy().into_owned();
        if healthy {
            info!(
                "feed {}: healthy; objects under {local} are polled every {} and when it says",
                self.feeds[index].command_text(),
                fakenotify_ctl::duration::format_duration(self.feeds[index].config.safety_interval)
            );
            // What changed while it was away (or before it started) is found now.
            self.ask_catch_up(index, local);
        } else {
            warn!(
                "feed {}: not healthy; objects under {local} are back on their own intervals",
                self.feeds[index].command_text()
            );
            self.deferred.retain(|_, d| d.feed != index);
        }
    }

    /// Each loop turn: supervision (starts, restarts, quiet feeds), health, and the
    /// out-of-turn polls due now, returned for the loop to start.
    pub fn step(
        &mut self,
        epoll: BorrowedFd<'_>,
        now: Duration,
        objects: &Slab<WatchedObject>,
    ) -> Vec<(usize, usize)> {
        if self.feeds.is_empty() {
            return Vec::new();
        }
        for index in 0..self.feeds.len() {
            self.feeds[index].tick(epoll, now);
            self.check_health(index, now);
        }
        self.match_queued(now, objects);
        self.start_catch_ups(now, objects);
        self.due_polls(now, objects)
    }

    /// Turns queued paths into pending polls of the objects at those paths.
    fn match_queued(&mut self, now: Duration, objects: &Slab<WatchedObject>) {
        if self.queued.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.queued);
        self.queued_set.clear();
        for (feed, path) in queued {
            let mut ids = self.index.lookup(&path, objects);
            if ids.is_empty() && self.index.stale(now) {
                self.index.rebuild(objects, now);
                ids = self.index.lookup(&path, objects);
            }
            for id in ids {
                let at = self
                    .last_hint_poll
                    .get(&id)
                    .map_or(now, |last| (*last + MIN_HINT_GAP).max(now));
                self.schedule(id, PendingPoll { feed, at, settle_after: true });
            }
        }
    }

    fn start_catch_ups(&mut self, now: Duration, objects: &Slab<WatchedObject>) {
        for feed in 0..self.feeds.len() {
            let Some(prefix) = &self.catch_up[feed] else { continue };
            if self.last_catch_up[feed].is_some_and(|at| now.saturating_sub(at) < CATCH_UP_GAP) {
                continue;
            }
            let prefix = prefix.clone();
            self.catch_up[feed] = None;
            self.last_catch_up[feed] = Some(now);
            let ids: Vec<usize> = objects
                .iter()
                .filter(|(_, o)| o.is_polled() && is_under(&o.path, &prefix))
                .map(|(id, _)| id)
                .collect();
            debug!("feed catch-up under {prefix}: {} objects", ids.len());
            for id in ids {
                self.schedule(id, PendingPoll { feed, at: now, settle_after: false });
            }
        }
    }

    /// A poll `step` handed out that the device's `max_ops` budget holds back: it is asked
    /// again at `turn`, so that what a feed causes stays inside the budget like any poll.
    pub fn held_back(&mut self, id: usize, feed: usize, turn: Duration) {
        self.schedule(id, PendingPoll { feed, at: turn, settle_after: false });
    }

    /// Keeps the earlier of two pending polls of one object (a hint's over a settling one).
    fn schedule(&mut self, id: usize, poll: PendingPoll) {
        if let Some(old) = self.pending.get(&id).copied() {
            if old.at <= poll.at && (old.settle_after || !poll.settle_after) {
                return;
            }
            self.by_time.remove(&(old.at, id));
        }
        self.pending.insert(id, poll);
        self.by_time.insert((poll.at, id), ());
    }

    /// The polls due now, each as `(object, feed)`.
    fn due_polls(&mut self, now: Duration, objects: &Slab<WatchedObject>) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        self.refill(now);
        let mut retry = Vec::new();
        while let Some((&(at, id), _)) = self.by_time.first_key_value() {
            if at > now || self.tokens < 1.0 {
                break;
            }
            self.by_time.remove(&(at, id));
            let Some(poll) = self.pending.remove(&id) else { continue };
            let idle = match objects.get(id).map(|o| &o.source) {
                Some(Source::Polled(state)) => state.scan.is_some(),
                _ => continue,
            };
            if !idle {
                // A poll in flight may have read the directory before the change: once it
                // is back, poll again.
                retry.push((id, PendingPoll { at: now + BUSY_RETRY, ..poll }));
                continue;
            }
            self.tokens -= 1.0;
            debug!(
                "feed poll of {} ({})",
                objects.get(id).map_or("?", |o| o.path.as_str()),
                if poll.settle_after { "hint" } else { "settle or catch-up" }
            );
            self.polls_caused[poll.feed] += 1;
            self.last_hint_poll.insert(id, now);
            out.push((id, poll.feed));
            if poll.settle_after {
                retry.push((
                    id,
                    PendingPoll { at: now + SETTLE_AFTER, settle_after: false, ..poll },
                ));
            }
        }
        for (id, poll) in retry {
            self.schedule(id, poll);
        }
        self.last_hint_poll.retain(|_, at| now.saturating_sub(*at) < MIN_HINT_GAP);
        out
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.tokens_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * POLLS_PER_SECOND).min(POLL_BURST);
        self.tokens_at = now;
    }

    /// Whether the scheduled poll of `slot` (an object at `path`) waits: under a healthy
    /// feed it runs once per `safety_interval` only. The loop puts it back at its own interval,
    /// so a feed that stops being healthy brings it back within that interval.
    pub fn defers(&mut self, slot: Slot, path: &str, now: Duration) -> bool {
        let Some(feed) = self.healthy_feed_of(path, now) else {
            self.deferred.remove(&slot);
            return false;
        };
        let safety = self.feeds[feed].config.safety_interval;
        match self.deferred.get_mut(&slot) {
            Some(d) if d.feed == feed => {
                d.seen = now;
                if now.saturating_sub(d.last_poll) < safety {
                    return true;
                }
                d.last_poll = now;
                false
            }
            _ => {
                // Polled at its own interval until now: the safety interval counts from here.
                self.deferred.insert(slot, Deferral { feed, last_poll: now, seen: now });
                true
            }
        }
    }

    fn healthy_feed_of(&self, path: &str, now: Duration) -> Option<usize> {
        self.feeds.iter().position(|f| {
            // The configuration is text, so `local` is UTF-8; no allocation per scheduled poll.
            f.supervision.healthy(now) && f.config.local.to_str().is_some_and(|l| is_under(path, l))
        })
    }

    /// When `step` next has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        let supervision = self.feeds.iter().filter_map(|f| f.supervision.next_deadline());
        let pending = self.by_time.keys().next().map(|(at, _)| *at);
        let catch_up = (0..self.feeds.len())
            .filter(|&i| self.catch_up[i].is_some())
            .map(|i| self.last_catch_up[i].map_or(Duration::ZERO, |at| at + CATCH_UP_GAP));
        let queued = (!self.queued.is_empty()).then_some(Duration::ZERO);
        // Without tokens, the next one comes in 1/rate.
        let pending = pending.map(|at| {
            if self.tokens < 1.0 {
                at.max(self.tokens_at + Duration::from_secs_f64(1.0 / POLLS_PER_SECOND))
            } else {
                at
            }
        });
        supervision.chain(pending).chain(catch_up).chain(queued).min()
    }

    /// Forgets deferrals of objects the schedule no longer asks about (they went).
    pub fn prune(&mut self, now: Duration) {
        let feeds = &self.feeds;
        self.deferred.retain(|_, d| {
            let keep_for =
                (feeds[d.feed].config.safety_interval * 2).max(Duration::from_secs(3600));
            now.saturating_sub(d.seen) < keep_for
        });
    }

    pub fn status(&self, now: Duration, objects: &Slab<WatchedObject>) -> Vec<FeedStatus> {
        self.feeds
            .iter()
            .enumerate()
            .map(|(i, f)| FeedStatus {
                command: f.command_text(),
                remote: f.config.remote.to_string_lossy().into_owned(),
                local: f.config.local.to_string_lossy().into_owned(),
                state: f.supervision.state.name(),
                healthy: f.supervision.healthy(now),
                pid: f.pid(),
                lines: f.counters.lines,
                bad_lines: f.counters.bad_lines,
                starts: f.counters.starts,
                heartbeat_age: f.last_heartbeat.map(|at| now.saturating_sub(at)),
                polls_caused: self.polls_caused[i],
                long_interval: self.deferred.values().filter(|d| d.feed == i).count(),
                long_interval_paths: self.long_interval_paths(i, objects),
                safety_interval: f.config.safety_interval,
            })
            .collect()
    }
}

impl Feeds {
    fn long_interval_paths(&self, feed: usize, objects: &Slab<WatchedObject>) -> Vec<String> {
        let mut paths: Vec<String> = self
            .deferred
            .iter()
            .filter(|(_, d)| d.feed == feed)
            .filter_map(|(slot, _)| objects.get(slot.object).filter(|o| o.is_polled()))
            .map(|o| o.path.clone())
            .collect();
        paths.sort();
        paths.truncate(LONG_INTERVAL_LISTED);
        paths
    }
}

impl PathIndex {
    fn stale(&self, now: Duration) -> bool {
        self.built.is_none_or(|at| now.saturating_sub(at) >= INDEX_MAX_AGE)
    }

    fn rebuild(&mut self, objects: &Slab<WatchedObject>, now: Duration) {
        self.by_path.clear();
        for (id, object) in objects.iter().filter(|(_, o)| o.is_polled()) {
            self.by_path.entry(object.path.clone()).or_default().push(id);
        }
        self.built = Some(now);
    }

    /// The polled objects at `path` now (entries whose object went or moved are skipped).
    fn lookup(&self, path: &str, objects: &Slab<WatchedObject>) -> Vec<usize> {
        let Some(ids) = self.by_path.get(path) else { return Vec::new() };
        ids.iter()
            .copied()
            .filter(|&id| objects.get(id).is_some_and(|o| o.is_polled() && o.path == path))
            .collect()
    }
}

/// `path` (normalised, absolute) moved from under `from` to under `to`; `None` when it is
/// not at or below `from`.
pub fn map_prefix(path: &str, from: &str, to: &str) -> Option<String> {
    let rest = strip_under(path, from)?;
    Some(if rest.is_empty() { to.to_owned() } else { join(to, rest) })
}

/// `path` at or below `prefix`, component-wise: `/a/bc` is not under `/a/b`.
pub fn is_under(path: &str, prefix: &str) -> bool {
    strip_under(path, prefix).is_some()
}

/// What follows `prefix` in `path`, without the separating slash.
fn strip_under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

fn join(dir: &str, name: &str) -> String {
    Path::new(dir).join(name).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_map_onto_the_local_prefix_by_component() {
        let map = |p| map_prefix(p, "/volume1/media", "/mnt/media");
        assert_eq!(map("/volume1/media"), Some("/mnt/media".into()));
        assert_eq!(map("/volume1/media/tv/s1"), Some("/mnt/media/tv/s1".into()));
        assert_eq!(map("/volume1/mediax"), None);
        assert_eq!(map("/volume1"), None);
        assert_eq!(map("/etc"), None);
        assert_eq!(map_prefix("/a/b", "/", "/mnt"), Some("/mnt/a/b".into()));
        assert_eq!(map_prefix("/", "/", "/mnt"), Some("/mnt".into()));
        assert_eq!(map_prefix("/x", "/x", "/"), Some("/".into()));
        assert_eq!(map_prefix("/x/y", "/x", "/"), Some("/y".into()));
        assert!(is_under("/mnt/media/a", "/mnt/media"));
        assert!(is_under("/mnt/media", "/mnt/media/"));
        assert!(!is_under("/mnt/mediab", "/mnt/media"));
    }

    fn feeds() -> Feeds {
        let config = FeedConfig {
            command: vec!["true".into()],
            remote: "/r".into(),
            local: "/l".into(),
            safety_interval: Duration::from_secs(600),
            heartbeat_timeout: Duration::from_secs(15),
        };
        Feeds::new(&[config], 1 << 56)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn catch_ups_merge_into_their_common_prefix() {
        let mut f = feeds();
        f.ask_catch_up(0, "/l/a/b".into());
        f.ask_catch_up(0, "/l/a".into());
        assert_eq!(f.catch_up[0].as_deref(), Some("/l/a"));
        f.ask_catch_up(0, "/l/a/c".into());
        assert_eq!(f.catch_up[0].as_deref(), Some("/l/a"));
        f.ask_catch_up(0, "/l/z".into());
        assert_eq!(f.catch_up[0].as_deref(), Some("/l"));
    }

    #[test]
    fn hints_map_and_outside_paths_are_bad_lines() {
        let mut f = feeds();
        let hints = vec![
            Hint::Change { dir: "/r/tv".into(), name: Some("x.mkv".into()) },
            Hint::Change { dir: "/etc".into(), name: None },
            Hint::Change { dir: "/r/tv".into(), name: None },
            Hint::Overflow { root: "/elsewhere".into() },
            Hint::Overflow { root: "/".into() },
        ];
        f.take_hints(0, hints, ms(0));
        let queued: Vec<&str> = f.queued.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(queued, vec!["/l/tv/x.mkv", "/l/tv"]);
        assert_eq!(f.feeds[0].counters.bad_lines, 2);
        assert_eq!(f.catch_up[0].as_deref(), Some("/l"), "an overflow above the remote");
    }

    #[test]
    fn a_hint_poll_is_followed_by_one_settling_poll_and_polls_keep_their_gap() {
        let mut f = feeds();
        f.schedule(7, PendingPoll { feed: 0, at: ms(0), settle_after: true });
        // A later settling poll does not replace a pending hint.
        f.schedule(7, PendingPoll { feed: 0, at: ms(500), settle_after: false });
        assert_eq!(f.pending[&7].at, ms(0));
        assert_eq!(f.next_deadline().map(|d| d.min(ms(0))), Some(ms(0)));
        // A hint replaces a pending settling poll.
        f.pending.clear();
        f.by_time.clear();
        f.schedule(7, PendingPoll { feed: 0, at: ms(1000), settle_after: false });
        f.schedule(7, PendingPoll { feed: 0, at: ms(200), settle_after: true });
        assert_eq!(f.pending[&7], PendingPoll { feed: 0, at: ms(200), settle_after: true });
        assert_eq!(f.by_time.len(), 1);
    }

    #[test]
    fn the_token_bucket_bounds_the_rate() {
        let mut f = feeds();
        f.refill(Duration::from_secs(10));
        let mut granted = 0;
        for step in 0..1000u64 {
            let now = Duration::from_secs(10) + ms(step);
            f.refill(now);
            while f.tokens >= 1.0 {
                f.tokens -= 1.0;
                granted += 1;
            }
        }
        // One burst, then 100 a second for one second.
        assert!((195..=201).contains(&granted), "{granted}");
    }
}
