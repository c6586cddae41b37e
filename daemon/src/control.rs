//! Control requests from `fakenotify-ctl` and the admin verbs: status, policy list, policy
//! changes at run time, reload and stop. Changes need uid 0 or the daemon's own uid
//! (`SO_PEERCRED` of the connection); status and list are open to every local user.

use std::path::PathBuf;
use std::time::Duration;

use fakenotify_ctl::message::{ErrorCount, InstanceInfo, PolicyInfo, Response, Status};
use fakenotify_proto::control::{ControlRequest, WireMode};

use crate::config::{AttrCache, Mode, WatchPolicy};
use crate::policy::{Policies, Policy};
use crate::server::{now, Server};

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
    pub(crate) fn control(&mut self, uid: u32, pid: i32, body: &[u8]) -> Response {
        let request = match ControlRequest::decode(body) {
            Ok(request) => request,
            Err(error) => {
                warn!("client pid {pid} uid {uid}: {error}");
                self.stats.error("protocol");
                return Response::Failed(error.to_string());
            }
        };
        let own_uid = rustix::process::geteuid().as_raw();
        if request.is_admin() && uid != 0 && uid != own_uid {
            warn!("client pid {pid} uid {uid}: {request:?} refused (needs uid 0 or {own_uid})");
            return Response::Denied(format!(
                "this request needs uid 0 or the daemon's uid {own_uid}; yours is {uid}"
            ));
        }
        match request {
            ControlRequest::Status => Response::Status(self.status()),
            ControlRequest::List => Response::Policies(self.policy_infos(false)),
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
                };
                if !path.is_absolute() {
                    return Response::Failed(format!(
                        "{}: policy paths must be absolute",
                        path.display()
                    ));
                }
                let mut list: Vec<WatchPolicy> =
                    self.policies.list.iter().map(|p| p.watch.clone()).collect();
                let replaced = list.iter().position(|w| w.path == path);
                match replaced {
                    Some(index) => list[index] = watch,
                    None => list.push(watch),
                }
                let policies = Policies::resolve(&list, self.policies.default_interval);
                let found = policies
                    .list
                    .iter()
                    .find(|p| p.watch.path == path)
                    .is_some_and(|p| p.root.is_some());
                self.set_policies(policies);
                info!(
                    "policy {} {} by uid {uid}",
                    path.display(),
                    if replaced.is_some() { "replaced" } else { "added" }
                );
                let note = if found {
                    ""
                } else {
                    " (path not found: it applies once it exists and is re-added)"
                };
                Response::Done(format!(
                    "policy {} {}{note}",
                    path.display(),
                    if replaced.is_some() { "replaced" } else { "added" }
                ))
            }
            ControlRequest::Remove { path } => {
                let path = PathBuf::from(String::from_utf8_lossy(path).into_owned());
                let before = self.policies.list.len();
                let kept: Vec<Policy> =
                    self.policies.list.iter().filter(|p| p.watch.path != path).cloned().collect();
                if kept.len() == before {
                    return Response::Failed(format!("{}: no such policy", path.display()));
                }
                let policies =
                    Policies { list: kept, default_interval: self.policies.default_interval };
                self.set_policies(policies);
                info!("policy {} removed by uid {uid}", path.display());
                Response::Done(format!("policy {} removed", path.display()))
            }
            ControlRequest::Reload => match self.reload() {
                Ok(message) => Response::Done(message),
                Err(message) => Response::Failed(message),
            },
            ControlRequest::Stop => {
                info!("stop requested by uid {uid} (pid {pid})");
                self.running = false;
                Response::Done("stopping".into())
            }
        }
    }

    fn policy_infos(&self, with_default: bool) -> Vec<PolicyInfo> {
        let count = self.policies.list.len();
        let mut objects = vec![0u64; count + 1];
        for (_, object) in self.objects.iter() {
            objects[object.governance.policy.unwrap_or(count)] += 1;
        }
        let figures = |index: usize| self.stats.per_policy.get(index).copied().unwrap_or_default();
        let mut infos: Vec<PolicyInfo> = self
            .policies
            .list
            .iter()
            .enumerate()
            .map(|(index, p)| PolicyInfo {
                path: p.watch.path.display().to_string(),
                interval_ms: millis(
                    p.watch.poll_interval.unwrap_or(self.policies.default_interval),
                ),
                recursive: p.watch.recursive,
                mode: mode_name(p.watch.mode).into(),
                attr_cache: match p.watch.attr_cache {
                    AttrCache::Bypass => "bypass".into(),
                    AttrCache::Trust => "trust".into(),
                },
                found: p.root.is_some(),
                objects: objects[index],
                polls: figures(index).polls,
                last_poll_us: micros(figures(index).last),
                worst_poll_us: micros(figures(index).worst),
            })
            .collect();
        if with_default {
            infos.push(PolicyInfo {
                path: "(default)".into(),
                interval_ms: millis(self.policies.default_interval),
                recursive: true,
                mode: "auto".into(),
                attr_cache: "bypass".into(),
                found: true,
                objects: objects[count],
                polls: figures(count).polls,
                last_poll_us: micros(figures(count).last),
                worst_poll_us: micros(figures(count).worst),
            });
        }
        infos
    }

    fn status(&self) -> Status {
        let instances: Vec<InstanceInfo> = self
            .instances
            .values()
            .map(|i| InstanceInfo {
                pid: i.pid,
                uid: i.uid,
                watches: i.watches.len() as u64,
                queued: i.queued() as u64,
                delivered: i.delivered,
                overflows: i.overflows,
            })
            .collect();
        let polled = self.objects.iter().filter(|(_, o)| o.is_polled()).count() as u64;
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_ms: millis(now().saturating_sub(self.started)),
            socket: self.listener.path.display().to_string(),
            watches: instances.iter().map(|i| i.watches).sum(),
            objects_polled: polled,
            objects_kernel: self.objects.len() as u64 - polled,
            policies: self.policy_infos(true),
            events_delivered: self.stats.closed_delivered
                + instances.iter().map(|i| i.delivered).sum::<u64>(),
            overflows: self.stats.closed_overflows
                + instances.iter().map(|i| i.overflows).sum::<u64>(),
            polls: self.stats.polls,
            syscalls_statx: self.counters.statx,
            syscalls_getdents: self.counters.getdents,
            errors: self
                .stats
                .errors
                .iter()
                .map(|(kind, count)| ErrorCount { kind: kind.clone(), count: *count })
                .collect(),
            instances,
        }
    }
}
