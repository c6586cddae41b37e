//! `fakenotifyd`: the FakeNotify daemon.
//!
//! It answers the requests of `libfakenotify.so` (new inotify instances, watches added and
//! removed), polls the watched objects that live on filesystems the kernel cannot report (NFS,
//! SMB, FUSE, 9p, Ceph...) and writes real `struct inotify_event` records to each application's
//! socket; objects on local filesystems get a kernel watch whose events it forwards. One event
//! loop owns all state; every filesystem call about a remote mount runs on that device's worker
//! thread (CONTRIBUTING, "Threads, and who owns what"). It is not a general file indexer: it watches only what applications ask for.

#[macro_use]
mod log;
mod budget;
mod config;
mod connections;
mod control;
mod delivery;
mod diff;
mod fanout;
mod feed;
mod feed_line;
mod feeds;
mod forwarding;
mod fstype;
mod grant;
mod heap;
mod instance;
mod intake;
mod kernel;
mod listener;
mod mountinfo;
mod mounts;
mod moves;
mod pacing;
mod pairing;
mod peer_log;
mod pending;
mod place;
mod policy;
mod poller;
mod polling;
mod reconfigure;
mod registry;
mod relocate;
mod requests;
mod restart;
mod runtime_library;
mod saved_state;
mod scan;
mod schedule;
mod sd_notify;
mod server;
mod settling;
mod signals;
mod slab;
mod snapshot;
mod status_line;
mod statx_batch;
mod subscriptions;
mod usage;
mod watch;
mod wds;
mod wire;
mod workers;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use fakenotify_proto::{DEFAULT_SOCKET, SOCKET_ENV};

use crate::config::{Config, LogLevel};

/// The log level's environment variable, below `--log-level` and above the configuration.
const LOG_ENV: &str = "FAKENOTIFY_LOG";

const USAGE: &str = "\
fakenotifyd: inotify for NFS, SMB, FUSE and 9p mounts, through libfakenotify.so

Usage:
  fakenotifyd start [--config FILE] [--socket PATH] [--log-level LEVEL]
                                                      serve in the foreground
  fakenotifyd add PATH [--poll-interval 5s] [--no-recursive] [--mode auto|poll|inotify]
  fakenotifyd remove PATH | list | status | reload | stop     [--socket PATH] [--json]
  fakenotifyd VERB --help | --help | --version

The verbs after start talk to the running daemon, as fakenotify-ctl does.

Options:
  --config FILE   TOML configuration (default: /etc/fakenotify/config.toml if it exists,
                  else built-in defaults)
  --socket PATH   listening socket (default: the config's daemon.socket, then
                  $FAKENOTIFY_SOCKET, then /run/fakenotify/fakenotify.sock)
  --log-level LEVEL
                  error, warn, info or debug (default: $FAKENOTIFY_LOG, then the config's
                  daemon.log_level, then info)

Signals: TERM and INT stop cleanly, HUP re-reads the configuration file.
Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
";

const START_HELP: &str = "\
start [--config FILE] [--socket PATH] [--log-level LEVEL]: serve in the foreground (systemd,
Docker). FILE is TOML (default: /etc/fakenotify/config.toml if it exists, else built-in
defaults); PATH is the listening socket (default: the config's daemon.socket, then
$FAKENOTIFY_SOCKET, then /run/fakenotify/fakenotify.sock). LEVEL is error, warn, info or debug
(default: $FAKENOTIFY_LOG, then the config's daemon.log_level, then info). Log lines go to
stderr, with journald priorities (<3> to <7>) when stderr is the journal ($JOURNAL_STREAM).
TERM and INT stop cleanly, HUP re-reads FILE.
";

const DEFAULT_CONFIG: &str = "/etc/fakenotify/config.toml";

/// A failure with its exit code: 2 for the user's input, 1 for the runtime. `hint` adds the
/// pointer to `--help` (for command-line mistakes, not for a bad configuration file).
struct Failure {
    code: u8,
    message: String,
    hint: bool,
}

fn usage_error(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into(), hint: true }
}

fn config_error(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into(), hint: false }
}

fn runtime_error(message: impl Into<String>) -> Failure {
    Failure { code: 1, message: message.into(), hint: false }
}

fn main() -> ExitCode {
    log::detect_journal();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let prefix = log::priority_prefix(config::LogLevel::Error);
            eprintln!("{prefix}fakenotifyd: {}", failure.message);
            if failure.hint {
                eprintln!("Try 'fakenotifyd --help'.");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn run() -> Result<(), Failure> {
    let mut args =
        pico_args::Arguments::from_vec(fakenotify_ctl::cli::split_eq(std::env::args_os().skip(1)));
    let verb = args.subcommand().map_err(|e| usage_error(e.to_string()))?;
    // A verb's --help is the verb's; the admin verbs answer it themselves.
    let verb_help = matches!(verb.as_deref(), Some("start"));
    if (verb.is_none() || verb_help) && args.contains(["-h", "--help"]) {
        print!("{}", if verb_help { START_HELP } else { USAGE });
        return Ok(());
    }
    if args.contains(["-V", "--version"]) {
        println!("fakenotifyd {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    match verb.as_deref() {
        Some("start") => start(args),
        Some(verb @ ("add" | "remove" | "list" | "status" | "reload" | "stop")) => {
            match fakenotify_ctl::cli::run_verb("fakenotifyd", verb, args.finish()) {
                0 => Ok(()),
                // run_verb has printed the message already.
                code => std::process::exit(i32::from(code)),
            }
        }
        Some(other) => Err(usage_error(format!("unknown command '{other}'"))),
        None => Err(usage_error("missing command (try 'fakenotifyd start')")),
    }
}

/// Copies the preload library beside the socket (see `runtime_library`); a library not found
/// or not copied is one warning, and the daemon serves on.
fn place_library(
    socket: &std::path::Path,
    runtime_dir: Result<std::os::fd::OwnedFd, listener::ListenError>,
    configured: Option<&std::path::Path>,
) {
    let dir_path = socket.parent().unwrap_or(std::path::Path::new("."));
    let target = dir_path.join("libfakenotify.so");
    let source = match runtime_library::source(configured) {
        Ok(source) => source,
        Err(why) => {
            warn!("{}: not placed: {why}", target.display());
            return;
        }
    };
    let dir = match runtime_dir {
        Ok(dir) => dir,
        Err(e) => {
            warn!("{}: not placed: {e}", target.display());
            return;
        }
    };
    match runtime_library::install(dir.as_fd(), &source) {
        Ok(bytes) => {
            info!("{}: copied from {} ({bytes} bytes)", target.display(), source.display());
            if runtime_library::on_noexec_mount(dir.as_fd()) {
                warn!(
                    "{}: the mount is noexec, so ld.so cannot map the library from there; \
                     remount it exec (mount -o remount,exec {}) or preload {} instead",
                    target.display(),
                    dir_path.display(),
                    source.display()
                );
            }
        }
        Err(e) => warn!("{}: not placed: {}: {e}", target.display(), source.display()),
    }
}

/// Every polled directory holds an fd: take the hard limit, not the usual soft 1024.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(errno) = setrlimit(Resource::Nofile, limit) {
            warn!("raising the open-file limit: {errno}");
        }
    }
}

fn start(mut args: pico_args::Arguments) -> Result<(), Failure> {
    let config_flag: Option<PathBuf> = args
        .opt_value_from_os_str("--config", |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| usage_error(e.to_string()))?;
    let socket_flag: Option<PathBuf> = args
        .opt_value_from_os_str("--socket", |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| usage_error(e.to_string()))?;
    let level_flag: Option<String> =
        args.opt_value_from_str("--log-level").map_err(|e| usage_error(e.to_string()))?;
    let level_flag = level_flag
        .map(|text| text.parse::<LogLevel>())
        .transpose()
        .map_err(|e| usage_error(format!("--log-level: {e}")))?;
    let level_env = std::env::var(LOG_ENV)
        .ok()
        .filter(|text| !text.is_empty())
        .map(|text| text.parse::<LogLevel>())
        .transpose()
        .map_err(|e| usage_error(format!("${LOG_ENV}: {e}")))?;
    let rest = args.finish();
    if let Some(extra) = rest.first() {
        return Err(usage_error(format!(
            "start: unexpected argument '{}'",
            extra.to_string_lossy()
        )));
    }
    let config_path = config_flag.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let config = match &config_path {
        Some(path) => Config::load(path).map_err(|e| config_error(e.to_string()))?,
        None => Config::default(),
    };
    log::set_level(level_flag.or(level_env).unwrap_or(config.daemon.log_level));
    raise_fd_limit();
    heap::configure();
    let socket = socket_flag
        .or_else(|| config.daemon.socket.clone())
        .or_else(|| std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    // Under socket activation systemd created the socket; --socket and daemon.socket only name
    // where it is when we create it ourselves.
    // Blocked before the socket exists: a client may send SIGTERM as soon as it accepts.
    let signals =
        signals::Signals::new().map_err(|errno| runtime_error(format!("signalfd: {errno}")))?;
    let passed = sd_notify::take_listen_fds();
    let (inherited, stored) = listener::Listener::inherited(passed, saved_state::STORE_NAME)
        .map_err(|e| runtime_error(e.to_string()))?;
    let listener = match inherited {
        Some(inherited) => inherited,
        None => listener::Listener::bind(&socket).map_err(|e| runtime_error(e.to_string()))?,
    };
    let origin = if listener.is_inherited() { ", inherited from the service manager" } else { "" };
    let socket = listener.path.clone();
    let runtime_dir = listener.directory();
    let mut server = server::Server::new(config.clone(), config_path.clone(), listener, signals)
        .map_err(|e| runtime_error(e.to_string()))?;
    if !stored.is_empty() {
        server.restore(stored);
    }
    info!(
        "listening on {}{origin} (default poll interval {}, {} watch policies{})",
        socket.display(),
        fakenotify_ctl::duration::format_duration(config.daemon.default_poll_interval),
        config.watches.len(),
        config_path.map(|p| format!(", config {}", p.display())).unwrap_or_default()
    );
    // After the server has blocked the signals it handles (the socket already accepts, so a
    // SIGTERM may come at any time), and before READY=1: containers ordered after the daemon
    // find the library in place.
    place_library(&socket, runtime_dir, config.daemon.preload_library.as_deref());
    // The socket is listening: connections made from now on are queued until run() accepts them.
    sd_notify::notify("READY=1");
    server.run().map_err(|e| runtime_error(e.to_string()))
}
