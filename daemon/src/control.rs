//! Control requests from `fakenotify-ctl` and the admin verbs: status, policy list, policy
//! changes at run time, reload and stop. Changes need uid 0 or the daemon's own uid
//! (`SO_PEERCRED` of the connection); status and list are open to every local user, and show a
//! peer that is not an admin its own instances, its own use and totals, no other uid's pids or
//! paths.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use fakenotify_ctl::message::{
    Budgets, ErrorCount, FeedInfo, InstanceInfo, MountInfo, PolicyInfo, Response, SlowScan, Status,
    UserUse,
};
use fakenotify_proto::control::{ControlRequest, WireMode};

use crate::config::{AttrCache, Listing, Mode, WatchPolicy};
use crate::pacing::backoff_interval;
use crate::pending::PolicyChange;
use crate::policy::{Origin, Policies, Policy};
use crate::server::{now, Server};
use crate::watch::Source;

/// Instances listed in `status` (about 100 bytes of JSON each); all are counted.
const MAX_LISTED_INSTANCES: usize = 256;

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Auto => "auto",
        Mode::Poll => "poll",
        Mode::Inotify => "inotify",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Server {
    /// Answers a control request on connection `connection`; None when the answer comes once a
    /// worker has found a policy's path (`ctl add`, `ctl reload`), on that connection.
    pub(crate) fn control(
        &mut self,
        uid: u32,
        pid: i32,
        body: &[u8],
        connection: usize,
    ) -> Option<Response> {
        let request = match ControlRequest::decode(body) {
            Ok(request) => request,
            Err(error) => {
                self.warn_peer(
                    uid,
                    "protocol",
                    format_args!("client pid {pid} uid {uid}: {error}"),
                );
                self.stats.error("protocol");
                return Some(Response::Failed(error.to_string()));
            }
        };
        let own_uid = rustix::process::geteuid().as_raw();
        let admin = uid == 0 || uid == own_uid;
        if request.is_admin() && !admin {
            self.warn_peer(
                uid,
                "denied",
                format_args!(
                    "client pid {pid} uid {uid}: {request:?} refused (needs uid 0 or {own_uid})"
                ),
            );
            return Some(Response::Denied(format!(
                "this request needs uid 0 or the daemon's uid {own_uid}; yours is {uid}"
            )));
        }
        Some(match request {
            ControlRequest::Status => {
                Response::Status(Box::new(self.status((!admin).then_some(uid))))
            }
            ControlRequest::List => Response::Policies(self.policy_infos(true)),
            ControlRequest::Add { path, interval_ms, recursive, mode } => {
                let path = PathBuf::from(String::from_utf8_lossy(path).into_owned());
                let watch = WatchPolicy {
                    path: path.clone(),
                    poll_interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
                    recursive,
                    mode: match mode {
                        WireMode::Auto => Mode::Auto,
                        WireMode::Poll => Mode::Poll,
                        WireMode::Inotify => Mode::Inotify,
                    },
                    attr_cache: AttrCache::Bypass,
                    listing: Listing::Auto,
                    max_ops: None,
                    max_poll_interval: None,
                };
                if !path.is_absolute() {
                    return Some(Response::Failed(format!(
                        "{}: policy paths must be absolute",
                        path.display()
                    )));
                }
                let policy = Policy { watch, root: None, origin: Origin::RunTime };
                let one = Policies { list: vec![policy], defaults: self.policies.defaults };
                self.change_policies(one, PolicyChange::Add { path, uid }, Some(connection));
                return None;
            }
            ControlRequest::Remove { path } => {
                let path = PathBuf::from(String::from_utf8_lossy(path).into_owned());
                let before = self.policies.list.len();
                let kept: Vec<Policy> =
                    self.policies.list.iter().filter(|p| p.watch.path != path).cloned().collect();
                if kept.len() == before {
                    return Some(Response::Failed(format!("{}: no such policy", path.display())));
                }
                let policies = Policies { list: kept, defaults: self.policies.defaults };
                self.set_policies(policies);
                info!("policy {} removed by uid {uid}", path.display());
                Response::Done(format!("policy {} removed", path.display()))
            }
            ControlRequest::Reload => match self.reload(Some(connection)) {
                Ok(()) => return None,
                Err(message) => Response::Failed(message),
            },
            ControlRequest::Stop => {
                info!("stop requested by uid {uid} (pid {pid})");
                self.running = false;
                Response::Done("stopping".into())
            }
        })
    }

    fn policy_infos(&self, with_default: bool) -> Vec<PolicyInfo> {
        let count = self.policies.list.len();
        let mut objects = vec![0u64; count + 1];
        let mut backed_off = vec![0u64; count + 1];
        for (_, object) in self.registry.iter() {
            let index = object.governance.policy.unwrap_or(count);
            objects[index] += 1;
            if let Source::Polled(state) = &object.source {
                let g = &object.governance;
                let interval = backoff_interval(g.interval, g.max_interval, state.pace.idle_polls);
                backed_off[index] += u64::from(interval > g.interval);
            }
        }
        let figures = |index: usize| self.stats.per_policy.get(index).copied().unwrap_or_default();
        let mut infos: Vec<PolicyInfo> = self
            .policies
            .list
            .iter()
            .map(|p| PolicyInfo {
                path: p.watch.path.display().to_string(),
                interval_ms: millis(
                    p.watch.poll_interval.unwrap_or(self.policies.defaults.interval),
                ),
                recursive: p.watch.recursive,
                mode: mode_name(p.watch.mode).into(),
                attr_cache: match p.watch.attr_cache {
                    AttrCache::Bypass => "bypass".into(),
                    AttrCache::Trust => "trust".into(),
                },
                listing: p.watch.listing.as_str().into(),
                found: p.root.is_some(),
                max_ops: u64::from(p.watch.max_ops.unwrap_or(self.policies.defaults.max_ops)),
                max_poll_interval_ms: p
                    .watch
                    .max_poll_interval
                    .or(self.policies.defaults.max_interval)
                    .map_or(0, millis),
                ..PolicyInfo::default()
            })
            .collect();
        if with_default {
            infos.push(PolicyInfo {
                path: "(default)".into(),
                interval_ms: millis(self.policies.defaults.interval),
                recursive: true,
                mode: "auto".into(),
                attr_cache: "bypass".into(),
                listing: "auto".into(),
                found: true,
                max_ops: u64::from(self.policies.defaults.max_ops),
                max_poll_interval_ms: self.policies.defaults.max_interval.map_or(0, millis),
                ..PolicyInfo::default()
            });
        }
        for (index, info) in infos.iter_mut().enumerate() {
            let f = figures(index);
            let pace = self.pacing.policy((index < count).then_some(index));
            info.objects = objects[index];
            info.polls = f.polls;
            info.last_poll_us = micros(f.last);
            info.worst_poll_us = micros(f.worst);
            info.poll_time_us = micros(f.time);
            info.syscalls_statx = f.scan.statx;
            info.syscalls_getdents = f.scan.getdents;
            info.entries_compared = f.scan.compared;
            info.events = f.scan.changes;
            info.demand_ops = pace.demand.round() as u64;
            info.stretched = pace.stretch > 1.0;
            info.effective_interval_ms = (info.interval_ms as f64 * pace.stretch).round() as u64;
            info.held_polls = pace.held;
            info.backed_off = backed_off[index];
        }
        infos
    }

    /// The mounts of polled objects, with how many objects each holds and whether their
    /// polls bypass the attribute cache.
    fn mount_infos(&self) -> Vec<MountInfo> {
        let mut caches: HashMap<u64, (bool, bool)> = HashMap::new();
        for (_, object) in self.registry.iter().filter(|(_, o)| o.is_polled()) {
            let seen = caches.entry(object.id.0).or_default();
            if object.governance.force_sync {
                seen.0 = true;
            } else {
                seen.1 = true;
            }
        }
        let mut infos: Vec<MountInfo> = self
            .mounts
            .iter()
            .map(|(dev, mount)| MountInfo {
                device: format!("{dev:x}"),
                fs_type: mount.fs_type.clone(),
                mount_point: mount.mount_point.clone().unwrap_or_default(),
                listing: mount.listing.name().into(),
                reason: mount.reason.text().into(),
                attr_cache: match caches.get(&dev) {
                    Some((true, true)) => "mixed",
                    Some((false, true)) => "trust",
                    _ => "bypass",
                }
                .into(),
                objects: mount.objects() as u64,
            })
            .collect();
        infos.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        infos
    }

    /// The daemon's status as `viewer` may see it: `None` for an admin, who sees everything.
    fn status(&self, viewer: Option<u32>) -> Status {
        let own = |uid: u32| viewer.is_none() || viewer == Some(uid);
        let mut instances: Vec<InstanceInfo> = self
            .instances
            .values()
            .map(|i| InstanceInfo {
                pid: i.pid,
                uid: i.uid,
                watches: i.watch_count() as u64,
                queued: i.queued() as u64,
                delivered: i.delivered,
                overflows: i.overflows,
            })
            .collect();
        let totals = (
            instances.iter().map(|i| i.watches).sum::<u64>(),
            instances.iter().map(|i| i.delivered).sum::<u64>(),
            instances.iter().map(|i| i.overflows).sum::<u64>(),
            instances.len() as u64,
        );
        instances.retain(|i| own(i.uid));
        // The paths the viewer's own watches reach; another user's stalled mount is shown
        // without its path.
        let viewer_paths: std::collections::HashSet<&str> = self
            .instances
            .values()
            .filter(|i| own(i.uid))
            .flat_map(|i| i.wds.watches.values())
            .filter_map(|w| self.registry.get(w.object).map(|o| o.path.as_str()))
            .collect();
        let limits = &self.settings.limits;
        let budgets = Budgets {
            max_user_instances: u64::from(limits.max_user_instances),
            max_user_watches: u64::from(limits.max_user_watches),
            max_user_queued_bytes: limits.max_user_queued_bytes,
            max_user_polled: u64::from(limits.max_user_polled),
            max_user_entries: u64::from(limits.max_user_entries),
            max_user_fds: self.user_fd_share(),
            max_entries: u64::from(limits.max_entries),
            max_queued_bytes: limits.max_queued_bytes,
            queued_bytes: self.queues.total_bytes(),
            max_fds: self.nofile,
        };
        let users = self
            .users_use()
            .into_iter()
            .filter(|(uid, _)| own(*uid))
            .map(|(uid, u)| UserUse {
                uid,
                instances: u.instances,
                watches: u.watches,
                polled: u.polled,
                entries: u.entries,
                fds: u.fds,
                queued_bytes: u.queued_bytes,
            })
            .collect();
        // The reply must fit one record: the busiest instances are listed, all are counted.
        instances.sort_by_key(|i| std::cmp::Reverse(i.watches));
        instances.truncate(MAX_LISTED_INSTANCES);
        let polled = self.registry.iter().filter(|(_, o)| o.is_polled()).count() as u64;
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_ms: millis(now().saturating_sub(self.started)),
            socket: self.listener.path.display().to_string(),
            instances_total: totals.3,
            watches: totals.0,
            objects_polled: polled,
            objects_kernel: self
                .instances
                .values()
                .filter_map(|i| i.kernel.as_ref())
                .map(|k| k.len() as u64)
                .sum(),
            policies: self.policy_infos(true),
            mounts: self.mount_infos(),
            events_delivered: self.stats.closed_delivered + totals.1,
            overflows: self.stats.closed_overflows + totals.2,
            polls: self.stats.polls,
            syscalls_statx: self.counters.statx,
            syscalls_getdents: self.counters.getdents,
            slow_scans: self
                .slow_scans()
                .into_iter()
                .map(|stuck| SlowScan {
                    device: format!("{:x}", stuck.worker),
                    path: if viewer.is_none() || viewer_paths.contains(stuck.what.as_str()) {
                        stuck.what
                    } else {
                        "(watched by another user)".into()
                    },
                    running_ms: millis(stuck.running),
                    job: stuck.job.into(),
                    waiting: stuck.count,
                })
                .collect(),
            errors: self
                .stats
                .errors
                .iter()
                .map(|(kind, count)| ErrorCount { kind: kind.clone(), count: *count })
                .collect(),
            instances,
            all_users: viewer.is_none(),
            users,
            budgets,
            feeds: if viewer.is_none() { self.feed_infos() } else { Vec::new() },
        }
    }

    fn feed_infos(&self) -> Vec<FeedInfo> {
        self.feeds
            .status(now(), self.registry.objects())
            .into_iter()
            .map(|f| FeedInfo {
                command: f.command,
                remote: f.remote,
                local: f.local,
                state: f.state.into(),
                healthy: f.healthy,
                pid: f.pid.unwrap_or(0),
                lines: f.lines,
                bad_lines: f.bad_lines,
                starts: f.starts,
                last_heartbeat_ms: f.heartbeat_age.map(millis),
                polls_caused: f.polls_caused,
                long_interval: f.long_interval as u64,
                long_interval_paths: f.long_interval_paths,
                safety_interval_ms: millis(f.safety_interval),
            })
            .collect()
    }
}
