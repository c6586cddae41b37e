//! Policy changes: a reload (SIGHUP, `ctl reload`), `ctl add`, and the configuration's
//! policies at start. Their paths are found on a worker; the change is made when they come
//! back, and applying it makes no filesystem call (each polled object keeps its ancestry).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use fakenotify_proto::record::Record;
use rustix::io::Errno;

use crate::config::Config;
use crate::pending::{PendingPolicy, PolicyChange};
use crate::policy::{self, Policies, PolicyDefaults, ReloadPlan};
use crate::server::{now, Server};
use crate::watch::Source;
use crate::wire;
use crate::workers::{Job, ResolveJob, PATHS_WORKER};

fn warn_missing_policies(policies: &Policies) {
    for policy in policies.list.iter().filter(|p| p.root.is_none()) {
        warn!(
            "watch policy {}: path not found; it applies once it exists and the daemon reloads",
            policy.watch.path.display()
        );
    }
}

impl Server {
    /// Re-reads the configuration file; an invalid one is rejected and the old one stays. A
    /// valid one takes effect once a worker has found its policies' paths, and `reply_to` (a
    /// `ctl reload`) gets the answer then.
    pub(crate) fn reload(&mut self, reply_to: Option<usize>) -> Result<(), String> {
        let Some(path) = self.config_path.clone() else {
            info!("reload: no configuration file was given; nothing to re-read");
            return Err("no configuration file was given at start; nothing to re-read".into());
        };
        match Config::load(&path) {
            Ok(config) => {
                let plan = ReloadPlan::new(&config.watches, &self.policies.list);
                let summary = plan.summary();
                let unresolved = Policies {
                    list: plan
                        .watches
                        .into_iter()
                        .map(|(watch, origin)| policy::Policy { watch, root: None, origin })
                        .collect(),
                    defaults: PolicyDefaults::of(&config.daemon),
                };
                let change = PolicyChange::Reload { config: Box::new(config), path, summary };
                self.change_policies(unresolved, change, reply_to);
                Ok(())
            }
            Err(error) => {
                error!("reload rejected, keeping the running configuration: {error}");
                Err(format!("reload rejected, keeping the running configuration: {error}"))
            }
        }
    }

    /// Hands `policies` to a worker to find their paths; `change` is made when they come back
    /// (`policies_resolved`).
    pub(crate) fn change_policies(
        &mut self,
        policies: Policies,
        change: PolicyChange,
        reply_to: Option<usize>,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Err(job) =
            self.workers.dispatch(PATHS_WORKER, Job::Resolve(ResolveJob { ticket, policies }))
        {
            // No thread: the paths are found here, as before there were workers.
            let Job::Resolve(job) = *job else { return };
            let resolved = crate::workers::resolve(job.policies);
            let pending = PendingPolicy { change, reply_to, since: now() };
            return self.apply_policy_change(pending, resolved);
        }
        if let Some(id) = reply_to {
            if let Some(conn) = self.connections.get_mut(id) {
                conn.waiting = true;
            }
        }
        self.policy_changes.insert(ticket, PendingPolicy { change, reply_to, since: now() });
    }

    /// Waits a little for the configuration's policies at start, so that the first clients
    /// (and objects restored from the fd store) are placed by them. A path on a hung mount
    /// makes the daemon start without them; they apply once found.
    pub(crate) fn await_start_policies(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.policy_changes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!("policy paths not found within 2s (a hung mount?); they apply once found");
                return;
            }
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let wake = self.workers.wake_fd();
            let mut fds = [rustix::event::PollFd::new(&wake, rustix::event::PollFlags::IN)];
            if let Err(errno) = rustix::event::poll(&mut fds, Some(&timeout)) {
                if errno != Errno::INTR {
                    return;
                }
            }
            self.on_worked();
        }
    }

    /// Makes a policy change whose paths a worker found, and answers who asked.
    pub(crate) fn apply_policy_change(&mut self, pending: PendingPolicy, resolved: Policies) {
        let answer = match pending.change {
            PolicyChange::Start => {
                warn_missing_policies(&resolved);
                self.set_policies(resolved);
                return;
            }
            PolicyChange::Reload { config, path, summary } => {
                crate::log::set_level(config.daemon.log_level);
                warn_missing_policies(&resolved);
                self.set_policies(resolved);
                self.queues.set_limits(&config.daemon.limits);
                self.feeds.reconfigure(&config.feeds);
                self.settings = config.daemon;
                let message = format!(
                    "reloaded {}: {} watch policies{summary}",
                    path.display(),
                    self.policies.list.len()
                );
                info!("reload: {}", message.trim_start_matches("reloaded "));
                Ok(message)
            }
            PolicyChange::Add { path, uid } => {
                let Some(added) = resolved.list.into_iter().next() else { return };
                let found = added.root.is_some();
                let mut list = self.policies.list.clone();
                let replaced = list.iter().position(|p| p.watch.path == path);
                match replaced {
                    Some(index) => list[index] = added,
                    None => list.push(added),
                }
                let verb = if replaced.is_some() { "replaced" } else { "added" };
                self.set_policies(Policies { list, defaults: self.policies.defaults });
                info!("policy {} {verb} by uid {uid}", path.display());
                let note = if found {
                    ""
                } else {
                    " (path not found: it applies once it exists and is re-added)"
                };
                Ok(format!("policy {} {verb}{note}", path.display()))
            }
        };
        if let Some(id) = pending.reply_to {
            self.answer_control(id, answer);
        }
    }

    /// Sends the answer to a control request that waited for a worker.
    fn answer_control(&mut self, id: usize, answer: Result<String, String>) {
        let response = match answer {
            Ok(message) => fakenotify_ctl::message::Response::Done(message),
            Err(message) => fakenotify_ctl::message::Response::Failed(message),
        };
        let Some(conn) = self.connections.get_mut(id) else { return };
        conn.waiting = false;
        conn.opened = now();
        let bytes = response.to_bytes();
        if wire::send_record(conn.fd.as_fd(), &Record::ControlReply(&bytes), &[]).is_err() {
            self.close_connection(id);
        }
    }

    /// Replaces the policies and applies them to every watched object.
    pub(crate) fn set_policies(&mut self, policies: Policies) {
        self.policies = policies;
        self.stats.reset_policies(self.policies.list.len());
        self.pacing.reset();
        self.regovern();
    }

    /// Applies the current policies to every watched object; intervals take effect at its next
    /// poll. Each polled object keeps its ancestry, so this makes no filesystem call.
    fn regovern(&mut self) {
        for (_, object) in self.registry.iter_mut() {
            // Kernel watches have no interval to change.
            let Source::Polled(state) = &object.source else { continue };
            let mode = object.governance.mode;
            object.governance = if state.ancestry.is_empty() {
                self.policies.govern(&[object.id])
            } else {
                self.policies.govern(&state.ancestry)
            };
            object.governance.mode = mode;
        }
    }
}
