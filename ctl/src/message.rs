//! Replies to control requests, carried as nanoserde JSON inside a `ControlReply` record; the
//! same types render as the stable JSON of `--json`.
//!
//! Not nanoserde's binary format: its decoder sizes vectors from a length read off the wire
//! (`Vec::with_capacity(len)`), so one corrupt length aborts the reader on allocation. The JSON
//! decoder grows as it reads; replies are checked well formed first (`json_check`), as it
//! panics on some malformed text.

use nanoserde::{DeJson, SerJson};

#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct InstanceInfo {
    pub pid: i32,
    pub uid: u32,
    pub watches: u64,
    pub queued: u64,
    pub delivered: u64,
    pub overflows: u64,
}

/// One policy (or the default, path `"(default)"`) and the objects it governs.
#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct PolicyInfo {
    pub path: String,
    pub interval_ms: u64,
    pub recursive: bool,
    pub mode: String,
    pub attr_cache: String,
    /// `auto`, `every-poll` or `on-change`: when polls read a directory's listing.
    pub listing: String,
    /// False while the policy's path does not exist.
    pub found: bool,
    pub objects: u64,
    pub polls: u64,
    pub last_poll_us: u64,
    pub worst_poll_us: u64,
    /// Time spent polling, in all.
    pub poll_time_us: u64,
    /// What the polls did: syscalls, entries of fresh listings compared, changes found
    /// (before each watch's mask is applied).
    pub syscalls_statx: u64,
    pub syscalls_getdents: u64,
    pub entries_compared: u64,
    pub events: u64,
    /// Filesystem operations per second that polls may make on one device.
    pub max_ops: u64,
    /// Operations per second the objects need at their intervals, over all devices.
    pub demand_ops: u64,
    /// Whether intervals are stretched to stay within `max_ops`.
    pub stretched: bool,
    /// `interval_ms` as stretched by the budget.
    pub effective_interval_ms: u64,
    /// Polls that waited for the budget.
    pub held_polls: u64,
    /// Bound of the idle backoff; 0: none.
    pub max_poll_interval_ms: u64,
    /// Objects polled less often than their interval because they stay unchanged.
    pub backed_off: u64,
}

/// A mount that holds polled objects, and how its directories are listed.
#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct MountInfo {
    /// The device number, as `stat` prints it in hex.
    pub device: String,
    /// As `/proc/self/mountinfo` names it (`fuse.rclone`), else the `statfs` name.
    pub fs_type: String,
    /// Empty where the mount is in another mount namespace than the daemon's.
    pub mount_point: String,
    /// `every-poll` or `on-change`, before any policy's `listing`.
    pub listing: String,
    /// Why the directories are listed so.
    pub reason: String,
    /// `bypass`, `trust` or `mixed`: whether polls there bypass the attribute cache.
    pub attr_cache: String,
    pub objects: u64,
}

/// Work waiting on a device's worker for more than a second: a slow or hung mount.
#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct SlowScan {
    /// The device number, as `stat` prints it in hex (the policy-path worker has its own).
    pub device: String,
    /// What the oldest job is about: the directory being polled, or the request.
    pub path: String,
    pub running_ms: u64,
    /// What the oldest job is: `poll`, `add_watch` or `policy paths`.
    pub job: String,
    /// Jobs waiting on that worker for more than a second.
    pub waiting: u64,
}

pub use feed_info::FeedInfo;

/// Apart only for the lint: nanoserde's derive for an `Option` field spells out a `?`.
mod feed_info {
    #![allow(clippy::question_mark)]

    use nanoserde::{DeJson, SerJson};

    /// A `[[feed]]` of the daemon: its command's life and what its lines caused.
    #[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
    pub struct FeedInfo {
        pub command: String,
        pub remote: String,
        pub local: String,
        /// `running`, `stopping` (killed for being quiet) or `backoff` (waiting to restart).
        pub state: String,
        /// Lines or heartbeats within its `heartbeat_timeout`: objects under `local` are on the
        /// safety interval.
        pub healthy: bool,
        /// 0 when no child runs.
        pub pid: u32,
        pub lines: u64,
        pub bad_lines: u64,
        /// Times the command was started, the first included.
        pub starts: u64,
        /// Since the last heartbeat line; none before the first.
        pub last_heartbeat_ms: Option<u64>,
        /// Out-of-turn polls its lines (and catch-ups) caused.
        pub polls_caused: u64,
        /// Objects whose scheduled polls wait for the safety interval.
        pub long_interval: u64,
        /// The first 16 of their paths, sorted.
        #[nserde(default)]
        pub long_interval_paths: Vec<String>,
        pub safety_interval_ms: u64,
    }
}

#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct ErrorCount {
    pub kind: String,
    pub count: u64,
}

/// One uid's use of the daemon (a polled object watched by several uids counts for each).
#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct UserUse {
    pub uid: u32,
    pub instances: u64,
    pub watches: u64,
    /// Watches on polled objects.
    pub polled: u64,
    /// Entries of the polled listings those watches hold.
    pub entries: u64,
    /// File descriptors the daemon holds for the uid.
    pub fds: u64,
    /// Bytes of events waiting in its instances.
    pub queued_bytes: u64,
}

/// The per-uid budgets and the daemon's ceilings (`[daemon]` keys of the same names).
#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct Budgets {
    pub max_user_instances: u64,
    pub max_user_watches: u64,
    pub max_user_queued_bytes: u64,
    pub max_user_polled: u64,
    pub max_user_entries: u64,
    pub max_user_fds: u64,
    /// The ceiling of all polled listings together.
    pub max_entries: u64,
    /// The ceiling of all queues together, and what they hold now.
    pub max_queued_bytes: u64,
    pub queued_bytes: u64,
    /// The daemon's `RLIMIT_NOFILE`.
    pub max_fds: u64,
}

#[derive(Clone, Debug, Default, PartialEq, SerJson, DeJson)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub socket: String,
    /// All instances; `instances` lists the 256 with the most watches. A peer that is not an
    /// admin (uid 0 or the daemon's) sees its own instances and uid only, and totals.
    pub instances_total: u64,
    pub instances: Vec<InstanceInfo>,
    /// Whether `instances`, `users` and `slow_scans` show every uid's (the peer is an admin).
    pub all_users: bool,
    /// Use per uid, against `budgets`.
    pub users: Vec<UserUse>,
    pub budgets: Budgets,
    pub watches: u64,
    pub objects_polled: u64,
    /// Kernel watches of local objects, on the instances' own inotify fds (one per instance
    /// and object, charged to the instance's user).
    pub objects_kernel: u64,
    pub policies: Vec<PolicyInfo>,
    pub mounts: Vec<MountInfo>,
    pub events_delivered: u64,
    pub overflows: u64,
    pub polls: u64,
    pub syscalls_statx: u64,
    pub syscalls_getdents: u64,
    pub errors: Vec<ErrorCount>,
    /// Mounts whose scanner has been busy with one poll for over a second.
    pub slow_scans: Vec<SlowScan>,
    /// The `[[feed]]`s (admins only; others see none). Absent from older daemons' replies.
    #[nserde(default)]
    pub feeds: Vec<FeedInfo>,
}

#[derive(Clone, Debug, PartialEq, SerJson, DeJson)]
pub enum Response {
    Status(Box<Status>),
    Policies(Vec<PolicyInfo>),
    /// Done, with a one-line summary.
    Done(String),
    /// The peer may not make this request.
    Denied(String),
    /// The request was understood but failed; the reason names the path or key.
    Failed(String),
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.serialize_json().into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Response, String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "malformed reply from the daemon: not UTF-8".to_string())?;
        crate::json_check::well_formed(text)
            .map_err(|e| format!("malformed reply from the daemon: {e}"))?;
        Response::deserialize_json(text)
            .map_err(|e| format!("malformed reply from the daemon: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip() {
        let status = Status {
            version: "0.1.0".into(),
            instances: vec![InstanceInfo { pid: 7, uid: 1000, watches: 3, ..Default::default() }],
            policies: vec![PolicyInfo {
                path: "/mnt/nas".into(),
                interval_ms: 200,
                ..Default::default()
            }],
            errors: vec![ErrorCount { kind: "protocol".into(), count: 2 }],
            ..Default::default()
        };
        for response in [
            Response::Status(Box::new(status.clone())),
            Response::Policies(status.policies.clone()),
            Response::Done("added".into()),
            Response::Denied("no".into()),
            Response::Failed("bad".into()),
        ] {
            assert_eq!(Response::from_bytes(&response.to_bytes()), Ok(response));
        }
        let json = status.serialize_json();
        assert_eq!(Status::deserialize_json(&json).ok(), Some(status));
    }

    #[test]
    fn a_status_without_feeds_from_an_older_daemon_decodes() {
        let status = Status {
            feeds: vec![FeedInfo { command: "ssh nas".into(), ..Default::default() }],
            ..Default::default()
        };
        let json = status.serialize_json();
        let start = json.find(",\"feeds\":").expect("feeds serialised");
        let older = format!("{}}}", &json[..start]);
        let decoded = Status::deserialize_json(&older).expect("decodes");
        assert!(decoded.feeds.is_empty());
        let back = Status::deserialize_json(&json).expect("decodes");
        assert_eq!(back.feeds[0].last_heartbeat_ms, None);
    }

    #[test]
    fn text_that_panicked_nanoserde_is_an_error() {
        // Found by the control_reply fuzz target: an unknown key cut off after its colon.
        let found = br#"{"Policies":[[{"path":"/mnt","interval_ms":200,"recuirsve":"#;
        assert!(Response::from_bytes(found).is_err());
        assert!(Response::from_bytes(&[b'['; 10_000]).is_err(), "deep nesting");
    }

    #[test]
    fn short_replies_are_errors() {
        let bytes = Response::Done("added".into()).to_bytes();
        for cut in 0..bytes.len() {
            assert!(Response::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
