//! The daemon's configuration file: `[daemon]` settings, one `[[watch]]` table per policy and
//! one `[[feed]]` table per feed from a file server, read into typed values with the built-in defaults filled in. Every error is one line naming
//! the file, the key (`watch[1].poll_interval`) or the line, and the cause, because `start` and
//! reload print it as it is. The TOML is read by nanoserde 0.2.1, whose table scoping is wrong
//! and whose lexer has sharp edges; `read_toml` and `split_tables` make up for them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nanoserde::{Toml, TomlErr, TomlParser};

use fakenotify_ctl::duration::parse_duration;

/// How often remote objects that no `[[watch]]` policy governs are polled.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

const DAEMON_KEYS: [&str; 15] = [
    "socket",
    "preload_library",
    "log_level",
    "default_poll_interval",
    "default_max_ops",
    "default_max_poll_interval",
    "max_user_instances",
    "max_user_watches",
    "max_queued_events",
    "max_user_queued_bytes",
    "max_queued_bytes",
    "max_user_polled",
    "max_user_entries",
    "max_entries",
    "max_user_fds",
];
const WATCH_KEYS: [&str; 8] = [
    "path",
    "poll_interval",
    "recursive",
    "mode",
    "attr_cache",
    "listing",
    "max_ops",
    "max_poll_interval",
];

/// Filesystem operations per second that the polls of one policy may make on one device,
/// unless `default_max_ops` or the policy's `max_ops` says otherwise.
pub const DEFAULT_MAX_OPS: u32 = 2000;

/// The longest path a Unix socket address holds: `sun_path` is 108 bytes with the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The whole configuration. `Config::default()` is what the daemon runs on without a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub daemon: DaemonSettings,
    /// The `[[watch]]` policies in file order; no two have the same path.
    pub watches: Vec<WatchPolicy>,
    /// The `[[feed]]` tables in file order; no two have the same `local`.
    pub feeds: Vec<FeedConfig>,
}

/// The `[daemon]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// `socket`, an absolute path. `None` leaves the choice to `--socket`, `$FAKENOTIFY_SOCKET`
    /// and the built-in default.
    pub socket: Option<PathBuf>,
    /// `preload_library`, an absolute path: the `libfakenotify.so` the daemon copies into its
    /// socket directory at start. `None` looks beside the binary, then in the install paths.
    pub preload_library: Option<PathBuf>,
    /// `log_level`, `info` by default.
    pub log_level: LogLevel,
    /// `default_poll_interval`, 5 s by default: for remote objects that no policy governs.
    pub default_poll_interval: Duration,
    /// `default_max_ops`, [`DEFAULT_MAX_OPS`] by default: the budget of policies without
    /// `max_ops`, and of the objects no policy governs.
    pub default_max_ops: u32,
    /// `default_max_poll_interval`, none by default: idle backoff for policies without
    /// `max_poll_interval`, and for the objects no policy governs.
    pub default_max_poll_interval: Option<Duration>,
    /// `max_user_instances`, `max_user_watches` and `max_queued_events`, keys of `[daemon]`.
    pub limits: Limits,
}

impl Default for DaemonSettings {
    fn default() -> DaemonSettings {
        DaemonSettings {
            socket: None,
            preload_library: None,
            log_level: LogLevel::default(),
            default_poll_interval: DEFAULT_POLL_INTERVAL,
            default_max_ops: DEFAULT_MAX_OPS,
            default_max_poll_interval: None,
            limits: Limits::default(),
        }
    }
}

/// What clients may cost the daemon. Past a limit a client gets the error that inotify gives,
/// never more memory. Each value is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instances per uid (EMFILE beyond), as `fs.inotify.max_user_instances`; 128 by default.
    pub max_user_instances: u32,
    /// Watches per uid over all its instances (ENOSPC beyond), as `fs.inotify.max_user_watches`;
    /// 8192 by default.
    pub max_user_watches: u32,
    /// Events waiting per instance before one `IN_Q_OVERFLOW` stands for the rest, as
    /// `fs.inotify.max_queued_events`; 16384 by default.
    pub max_queued_events: u32,
    /// Bytes of events waiting in all of one uid's instances; past it each of its instances
    /// that gets an event overflows instead. 4 MiB by default (about 13 000 events with long
    /// names).
    pub max_user_queued_bytes: u64,
    /// Bytes of events waiting in the whole daemon, every uid together: the ceiling of the
    /// queues. 64 MiB by default.
    pub max_queued_bytes: u64,
    /// Watches of one uid on polled objects (each holds an fd and a listing; ENOSPC beyond);
    /// 8192 by default.
    pub max_user_polled: u32,
    /// Entries of the polled listings one uid's watches hold (ENOSPC for a further polled
    /// watch beyond); 1 048 576 by default. An entry costs 40 bytes and its name.
    pub max_user_entries: u32,
    /// Entries of all polled listings, every uid together: the ceiling of the listings;
    /// 4 194 304 by default.
    pub max_entries: u32,
    /// File descriptors the daemon holds for one uid (its instances and its polled objects);
    /// `None` (the default) takes an eighth of what `RLIMIT_NOFILE` leaves after a reserve.
    pub max_user_fds: Option<u32>,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_user_instances: 128,
            max_user_watches: 8192,
            max_queued_events: 16384,
            max_user_queued_bytes: 4 * MIB,
            max_queued_bytes: 64 * MIB,
            max_user_polled: 8192,
            max_user_entries: 1 << 20,
            max_entries: 1 << 22,
            max_user_fds: None,
        }
    }
}

/// One `[[watch]]` table: how the daemon watches the objects at or below `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPolicy {
    /// `path`, required and absolute; stored without `.` components or a trailing slash.
    pub path: PathBuf,
    /// `poll_interval`; `None` means `daemon.default_poll_interval`.
    pub poll_interval: Option<Duration>,
    /// `recursive`, true by default: the policy also governs the directories below `path`.
    pub recursive: bool,
    /// `mode`, `auto` by default.
    pub mode: Mode,
    /// `attr_cache`, `bypass` by default.
    pub attr_cache: AttrCache,
    /// `listing`, `auto` by default: when a poll reads a directory's listing.
    pub listing: Listing,
    /// `max_ops`: filesystem operations per second the polls may make on one device; past it
    /// intervals stretch. `None` means `daemon.default_max_ops`.
    pub max_ops: Option<u32>,
    /// `max_poll_interval`: a directory unchanged for several polls is polled less and less
    /// often, up to this; `None` means `daemon.default_max_poll_interval`.
    pub max_poll_interval: Option<Duration>,
}

/// How long a feed may be quiet before it counts as broken, unless `heartbeat_timeout` says:
/// three of `fakenotify-ctl feed`'s default heartbeat periods (5 s).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often objects under a healthy feed are polled, unless `safety_interval` says.
pub const DEFAULT_SAFETY_INTERVAL: Duration = Duration::from_secs(600);

const FEED_KEYS: [&str; 5] = ["command", "remote", "local", "safety_interval", "heartbeat_timeout"];

/// One `[[feed]]` table: a command whose standard output names directories that changed on a
/// file server (`fakenotify-ctl feed` there, over ssh or through an MQTT subscriber).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// `command`: the argv, run without a shell; required, not empty.
    pub command: Vec<String>,
    /// `remote`: the path prefix the feed's lines name; absolute.
    pub remote: PathBuf,
    /// `local`: where `remote` is mounted here; absolute.
    pub local: PathBuf,
    /// `safety_interval`: how often objects under `local` are polled while the feed is healthy.
    pub safety_interval: Duration,
    /// `heartbeat_timeout`: quiet this long (no line, no heartbeat), the feed counts as broken.
    pub heartbeat_timeout: Duration,
}

/// Why a name is not one of an enum's values; `Display` gives the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    text: String,
    what: &'static str,
    choices: &'static str,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: unknown {} (use {})", self.text, self.what, self.choices)
    }
}

impl std::error::Error for UnknownValue {}

/// Declares an enum whose values are written in the file as lowercase names, with `as_str`,
/// `FromStr` and `Display` in those names.
macro_rules! named_values {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal, $choices:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// The name as written in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<$name, UnknownValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { text: text.to_owned(), what: $what, choices: $choices }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_values! {
    /// `daemon.log_level`. Ordered from the fewest lines to the most: a line is written when its
    /// level is at most the configured one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    pub enum LogLevel ("log level", "error, warn, info or debug") {
        Error = "error",
        Warn = "warn",
        #[default]
        Info = "info",
        Debug = "debug",
    }
}

named_values! {
    /// `mode` of a `[[watch]]`: how the objects it governs are watched.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum Mode ("mode", "auto, poll or inotify") {
        /// Poll remote filesystems (by `statfs` type), use a kernel watch on local ones.
        #[default]
        Auto = "auto",
        /// Always poll, even a local filesystem.
        Poll = "poll",
        /// Always a kernel watch, even on a remote filesystem.
        Inotify = "inotify",
    }
}

named_values! {
    /// `attr_cache` of a `[[watch]]`: whether a poll may use cached attributes of the directory.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum AttrCache ("attr_cache value", "bypass or trust") {
        /// `statx` the directory with `AT_STATX_FORCE_SYNC`, so that a change made on another
        /// machine shows at the next poll whatever the NFS attribute cache holds.
        #[default]
        Bypass = "bypass",
        /// Accept the client's attribute cache: cheaper for the server, later to see changes.
        Trust = "trust",
    }
}

named_values! {
    /// `listing` of a `[[watch]]`: when a poll reads a directory's listing rather than trust
    /// its attributes to say that nothing changed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum Listing ("listing value", "auto, every-poll or on-change") {
        /// As the mount deserves: every poll on servers known to keep a directory's times
        /// (rclone, sshfs, mergerfs) and where a listing caught them hiding a change.
        #[default]
        Auto = "auto",
        /// At every poll: one `READDIR` per directory, often no more round trips than the
        /// `GETATTR` it replaces.
        EveryPoll = "every-poll",
        /// Only when the directory's mtime or ctime moved (and no verification listings).
        OnChange = "on-change",
    }
}

/// A configuration that cannot be used. `Display` is one line: the file when there is one, the
/// key or the line, and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    place: Place,
    cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// The file as a whole: it could not be read.
    File,
    /// A key as the file spells it: `daemon.socket`, `watch[1].path`, or a table name.
    Key(String),
    /// A position in the text, 1-based; the column when it is known.
    Text { line: usize, column: Option<usize> },
}

impl ConfigError {
    fn at_key(key: impl Into<String>, cause: impl Into<String>) -> ConfigError {
        ConfigError { file: None, place: Place::Key(key.into()), cause: cause.into() }
    }

    fn at_text(line: usize, column: Option<usize>, cause: impl Into<String>) -> ConfigError {
        ConfigError { file: None, place: Place::Text { line, column }, cause: cause.into() }
    }

    fn in_file(self, path: &Path) -> ConfigError {
        ConfigError { file: Some(path.to_owned()), ..self }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            let shown = file.display().to_string();
            if shown.contains(char::is_control) {
                write!(f, "{shown:?}: ")?;
            } else {
                write!(f, "{shown}: ")?;
            }
        }
        match &self.place {
            Place::File => {}
            Place::Key(key) => write!(f, "{key}: ")?,
            Place::Text { line, column: Some(column) } => {
                write!(f, "line {line}, column {column}: ")?
            }
            Place::Text { line, column: None } => write!(f, "line {line}: ")?,
        }
        f.write_str(&self.cause)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a configuration from TOML text; keys left out take their defaults.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let document = read_toml(text)?;
        let tables = split_tables(&document)?;
        let daemon = daemon_settings(&tables.daemon)?;
        let mut watches: Vec<WatchPolicy> = Vec::with_capacity(tables.watches.len());
        let mut first_index: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (index, table) in tables.watches.iter().enumerate() {
            let watch = watch_policy(index, table)?;
            if let Some(first) = first_index.insert(watch.path.clone(), index) {
                return Err(ConfigError::at_key(
                    format!("watch[{index}].path"),
                    format!("{:?} already has a policy, watch[{first}]", watch.path),
                ));
            }
            watches.push(watch);
        }
        let mut feeds: Vec<FeedConfig> = Vec::with_capacity(tables.feeds.len());
        for (index, table) in tables.feeds.iter().enumerate() {
            let feed = feed_config(index, table)?;
            if let Some(first) = feeds.iter().position(|f| f.local == feed.local) {
                return Err(ConfigError::at_key(
                    format!("feed[{index}].local"),
                    format!("{:?} already has a feed, feed[{first}]", feed.local),
                ));
            }
            feeds.push(feed);
        }
        Ok(Config { daemon, watches, feeds })
    }

    /// Reads and parses the file at `path`; every error names it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: Some(path.to_owned()),
            place: Place::File,
            cause: format!("cannot read: {err}"),
        })?;
        Config::parse(&text).map_err(|err| err.in_file(path))
    }
}

fn daemon_settings(table: &BTreeMap<&str, &Toml>) -> Result<DaemonSettings, ConfigError> {
    let mut settings = DaemonSettings::default();
    for (&name, &value) in table {
        let set = match name {
            "socket" => socket_path(value).map(|path| settings.socket = Some(path)),
            "preload_library" => {
                absolute_path(value).map(|path| settings.preload_library = Some(path))
            }
            "log_level" => named(value).map(|level| settings.log_level = level),
            "default_poll_interval" => duration(value).map(|d| settings.default_poll_interval = d),
            "default_max_ops" => positive(value).map(|n| settings.default_max_ops = n),
            "default_max_poll_interval" => {
                duration(value).map(|d| settings.default_max_poll_interval = Some(d))
            }
            "max_user_instances" => positive(value).map(|n| settings.limits.max_user_instances = n),
            "max_user_watches" => positive(value).map(|n| settings.limits.max_user_watches = n),
            "max_queued_events" => positive(value).map(|n| settings.limits.max_queued_events = n),
            "max_user_queued_bytes" => {
                bytes(value).map(|n| settings.limits.max_user_queued_bytes = n)
            }
            "max_queued_bytes" => bytes(value).map(|n| settings.limits.max_queued_bytes = n),
            "max_user_polled" => positive(value).map(|n| settings.limits.max_user_polled = n),
            "max_user_entries" => positive(value).map(|n| settings.limits.max_user_entries = n),
            "max_entries" => positive(value).map(|n| settings.limits.max_entries = n),
            "max_user_fds" => positive(value).map(|n| settings.limits.max_user_fds = Some(n)),
            _ if WATCH_KEYS.contains(&name) => {
                Err("unknown key (it belongs in a [[watch]] table)".to_owned())
            }
            _ => Err("unknown key".to_owned()),
        };
        set.map_err(|cause| ConfigError::at_key(format!("daemon.{}", key_text(name)), cause))?;
    }
    Ok(settings)
}

fn watch_policy(index: usize, table: &BTreeMap<&str, &Toml>) -> Result<WatchPolicy, ConfigError> {
    let key = |name: &str| format!("watch[{index}].{}", key_text(name));
    let mut watch = WatchPolicy {
        path: PathBuf::new(),
        poll_interval: None,
        recursive: true,
        mode: Mode::default(),
        attr_cache: AttrCache::default(),
        listing: Listing::default(),
        max_ops: None,
        max_poll_interval: None,
    };
    for (&name, &value) in table {
        let set = match name {
            "path" => watch_path(value).map(|path| watch.path = path),
            "poll_interval" => duration(value).map(|d| watch.poll_interval = Some(d)),
            "recursive" => boolean(value).map(|b| watch.recursive = b),
            "mode" => named(value).map(|mode| watch.mode = mode),
            "attr_cache" => named(value).map(|cache| watch.attr_cache = cache),
            "listing" => named(value).map(|listing| watch.listing = listing),
            "max_ops" => positive(value).map(|n| watch.max_ops = Some(n)),
            "max_poll_interval" => duration(value).map(|d| watch.max_poll_interval = Some(d)),
            _ if DAEMON_KEYS.contains(&name) => {
                Err("unknown key (it belongs under [daemon])".to_owned())
            }
            _ => Err("unknown key".to_owned()),
        };
        set.map_err(|cause| ConfigError::at_key(key(name), cause))?;
    }
    // `watch_path` never yields an empty path, so an empty one was never set.
    if watch.path.as_os_str().is_empty() {
        return Err(ConfigError::at_key(
            key("path"),
            "missing (each [[watch]] needs an absolute path)",
        ));
    }
    if let (Some(max), Some(interval)) = (watch.max_poll_interval, watch.poll_interval) {
        if max < interval {
            return Err(ConfigError::at_key(
                key("max_poll_interval"),
                "must be at least poll_interval (it is the bound of the idle backoff)",
            ));
        }
    }
    Ok(watch)
}

fn feed_config(index: usize, table: &BTreeMap<&str, &Toml>) -> Result<FeedConfig, ConfigError> {
    let key = |name: &str| format!("feed[{index}].{}", key_text(name));
    let mut feed = FeedConfig {
        command: Vec::new(),
        remote: PathBuf::new(),
        local: PathBuf::new(),
        safety_interval: DEFAULT_SAFETY_INTERVAL,
        heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
    };
    for (&name, &value) in table {
        let set = match name {
            "command" => argv(value).map(|argv| feed.command = argv),
            "remote" => watch_path(value).map(|path| feed.remote = path),
            "local" => watch_path(value).map(|path| feed.local = path),
            "safety_interval" => duration(value).and_then(|d| {
                if d < Duration::from_secs(1) {
                    return Err("at least 1s (it is the polling while the feed is healthy)".into());
                }
                feed.safety_interval = d;
                Ok(())
            }),
            "heartbeat_timeout" => duration(value).and_then(|d| {
                if d < Duration::from_millis(100) {
                    return Err("at least 100ms".into());
                }
                feed.heartbeat_timeout = d;
                Ok(())
            }),
            _ if WATCH_KEYS.contains(&name) => {
                Err("unknown key (it belongs in a [[watch]] table)".to_owned())
            }
            _ if DAEMON_KEYS.contains(&name) => {
                Err("unknown key (it belongs under [daemon])".to_owned())
            }
            _ => Err("unknown key".to_owned()),
        };
        set.map_err(|cause| ConfigError::at_key(key(name), cause))?;
    }
    for (name, missing) in [
        ("command", feed.command.is_empty()),
        ("remote", feed.remote.as_os_str().is_empty()),
        ("local", feed.local.as_os_str().is_empty()),
    ] {
        if missing {
            return Err(ConfigError::at_key(
                key(name),
                "missing (each [[feed]] needs command, remote and local)",
            ));
        }
    }
    Ok(feed)
}

/// An argv: a non-empty array of strings, the first not empty, none holding NUL.
fn argv(value: &Toml) -> Result<Vec<String>, String> {
    let expected = "expected an array of strings, the program first: [\"ssh\", \"nas\", ...]";
    let Toml::SimpleArray(items) = value else { return Err(expected.to_owned()) };
    let mut argv = Vec::with_capacity(items.len());
    for item in items {
        let Toml::Str(text) = item else { return Err(expected.to_owned()) };
        if text.contains('\0') {
            return Err(format!("{text:?}: holds a NUL"));
        }
        argv.push(text.clone());
    }
    match argv.first() {
        None => Err(format!("empty; {expected}")),
        Some(program) if program.is_empty() => Err("the program (first element) is empty".into()),
        Some(_) => Ok(argv),
    }
}

fn string(value: &Toml) -> Result<&str, String> {
    match value {
        Toml::Str(text) => Ok(text),
        _ => Err("expected a string in double quotes".to_owned()),
    }
}

fn boolean(value: &Toml) -> Result<bool, String> {
    match value {
        Toml::Bool(b) => Ok(*b),
        _ => Err("expected true or false".to_owned()),
    }
}

fn duration(value: &Toml) -> Result<Duration, String> {
    match value {
        Toml::Str(text) => parse_duration(text).map_err(|err| err.to_string()),
        _ => Err("expected a duration in double quotes with its unit, e.g. \"5s\"".to_owned()),
    }
}

fn positive(value: &Toml) -> Result<u32, String> {
    match value {
        // NaN and infinities fail the `fract` test.
        Toml::Num(n) if n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(u32::MAX) => Ok(*n as u32),
        _ => Err(format!("expected a positive integer (at most {})", u32::MAX)),
    }
}

/// A size: a whole number of bytes, or a string with a unit (`"512KiB"`, `"4MiB"`, `"1GiB"`);
/// at least 4 KiB, so that one event of the longest name always fits.
fn bytes(value: &Toml) -> Result<u64, String> {
    const MIN: u64 = 4096;
    let expected = "expected a size: bytes, or a string like \"4MiB\" (units B, KiB, MiB, GiB)";
    let n = match value {
        Toml::Num(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 9.0e15 => *n as u64,
        Toml::Str(text) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let scale = match unit.trim() {
                "" | "B" => 1,
                "KiB" | "K" | "k" => 1024,
                "MiB" | "M" => MIB,
                "GiB" | "G" => 1024 * MIB,
                other => return Err(format!("{text:?}: unknown unit {other:?}; {expected}")),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|d| d.checked_mul(scale))
                .ok_or_else(|| format!("{text:?}: {expected}"))?
        }
        _ => return Err(expected.to_owned()),
    };
    if n < MIN {
        return Err(format!("{n} bytes is less than the least, 4KiB"));
    }
    Ok(n)
}

fn named<T: FromStr<Err = UnknownValue>>(value: &Toml) -> Result<T, String> {
    string(value)?.parse().map_err(|err: UnknownValue| err.to_string())
}

fn socket_path(value: &Toml) -> Result<PathBuf, String> {
    let text = string(value)?;
    if !Path::new(text).is_absolute() {
        return Err(format!("{text:?}: must be an absolute path"));
    }
    if text.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "{text:?}: {} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}",
            text.len()
        ));
    }
    Ok(PathBuf::from(text))
}

fn absolute_path(value: &Toml) -> Result<PathBuf, String> {
    let text = string(value)?;
    if !Path::new(text).is_absolute() {
        return Err(format!("{text:?}: must be an absolute path"));
    }
    Ok(PathBuf::from(text))
}

fn watch_path(value: &Toml) -> Result<PathBuf, String> {
    let text = string(value)?;
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?}: must be an absolute path"));
    }
    // Drops `.` components, doubled and trailing slashes, so one directory has one spelling.
    Ok(path.components().collect())
}

/// A key name as the file would spell it: bare when it can be, quoted otherwise (which also
/// keeps control characters out of the one-line message).
fn key_text(name: &str) -> String {
    let bare = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// The keys of `[daemon]` and of each `[[watch]]`, named as the text wrote them.
struct Tables<'a> {
    daemon: BTreeMap<&'a str, &'a Toml>,
    watches: Vec<BTreeMap<&'a str, &'a Toml>>,
    feeds: Vec<BTreeMap<&'a str, &'a Toml>>,
}

/// Sorts nanoserde's output back into the tables that the text wrote.
///
/// nanoserde 0.2.1 prefixes every key with the name of the last `[table]` seen, even inside an
/// `[[array]]` entry, and files the keys of a `[table]` in whichever `[[array]]` entry is open.
/// So with `[daemon]` first, every watch holds `daemon.path`, `daemon.recursive`...; with
/// `[daemon]` after a `[[watch]]`, that watch holds `daemon.socket` next to its own `path`, and
/// the later watches hold `daemon.path`. A watch entry with any key lacking the `daemon.` prefix
/// was opened before `[daemon]`: its `daemon.*` keys are `[daemon]`'s. A watch entry whose keys
/// all carry it was opened after `[daemon]`: the prefix is nanoserde's and is dropped (a daemon
/// key among them was then written in the watch, and is reported there).
fn split_tables(document: &BTreeMap<String, Toml>) -> Result<Tables<'_>, ConfigError> {
    let unknown_table = |name: &str| {
        ConfigError::at_key(
            key_text(name),
            "unknown table (expected [daemon], [[watch]] or [[feed]])",
        )
    };
    let mut prelude: &[BTreeMap<String, Toml>] = &[];
    let mut watches: &[BTreeMap<String, Toml>] = &[];
    let mut feeds: &[BTreeMap<String, Toml>] = &[];
    for (name, value) in document {
        // Behind the prelude (see `read_toml`), only `[[array]]` tables reach the top level.
        let Toml::Array(entries) = value else {
            return Err(ConfigError::at_key(key_text(name), "expected [[...]] tables"));
        };
        match name.as_str() {
            PRELUDE if entries.len() == 1 => prelude = entries,
            "watch" => watches = entries,
            "feed" => feeds = entries,
            "daemon" => {
                return Err(ConfigError::at_key("daemon", "write [daemon], with single brackets"))
            }
            _ => return Err(unknown_table(name)),
        }
    }

    let mut tables = Tables {
        daemon: BTreeMap::new(),
        watches: Vec::with_capacity(watches.len()),
        feeds: Vec::with_capacity(feeds.len()),
    };
    // The keys before the first `[[watch]]`: `[daemon]`'s and any outside a table.
    for (key, value) in prelude.iter().flatten() {
        match key.split_once('.') {
            Some(("daemon", name)) => insert_daemon_key(&mut tables.daemon, name, value)?,
            Some(("watch", _)) => {
                return Err(ConfigError::at_key("watch", "write [[watch]], with double brackets"));
            }
            Some(("feed", _)) => {
                return Err(ConfigError::at_key("feed", "write [[feed]], with double brackets"));
            }
            Some((table, _)) => return Err(unknown_table(table)),
            None => {
                let cause = if key == "watch" {
                    "write each watched path as a [[watch]] table with a path key"
                } else if DAEMON_KEYS.contains(&key.as_str()) {
                    "unknown key (it belongs under [daemon])"
                } else if WATCH_KEYS.contains(&key.as_str()) {
                    "unknown key (it belongs in a [[watch]] table)"
                } else if FEED_KEYS.contains(&key.as_str()) {
                    "unknown key (it belongs in a [[feed]] table)"
                } else {
                    "unknown key"
                };
                return Err(ConfigError::at_key(key_text(key), cause));
            }
        }
    }
    for (entries, out) in [(watches, &mut tables.watches), (feeds, &mut tables.feeds)] {
        for entry in entries {
            if let Some(table) = foreign_prefix(entry) {
                return Err(unknown_table(table));
            }
            let opened_before_daemon = entry.keys().any(|key| !key.starts_with("daemon."));
            let mut keys = BTreeMap::new();
            for (key, value) in entry {
                match key.strip_prefix("daemon.") {
                    Some(name) if opened_before_daemon => {
                        insert_daemon_key(&mut tables.daemon, name, value)?
                    }
                    Some(name) => {
                        keys.insert(name, value);
                    }
                    None => {
                        keys.insert(key.as_str(), value);
                    }
                }
            }
            out.push(keys);
        }
    }
    Ok(tables)
}

/// The table name `x` when every key of a watch entry reads `x.something` and `x` is not
/// `daemon`: nanoserde's prefix from a `[x]` table with no keys of its own before the entry.
fn foreign_prefix(entry: &BTreeMap<String, Toml>) -> Option<&str> {
    let mut prefixes = entry.keys().map(|key| key.split_once('.').map(|(table, _)| table));
    let first = prefixes.next()??;
    (first != "daemon" && prefixes.all(|prefix| prefix == Some(first))).then_some(first)
}

fn insert_daemon_key<'a>(
    daemon: &mut BTreeMap<&'a str, &'a Toml>,
    name: &'a str,
    value: &'a Toml,
) -> Result<(), ConfigError> {
    if daemon.insert(name, value).is_some() {
        return Err(ConfigError::at_key(
            format!("daemon.{}", key_text(name)),
            "set twice (is [daemon] written twice?)",
        ));
    }
    Ok(())
}

/// The array table that `read_toml` opens before the text; no configuration uses this name.
const PRELUDE: &str = "fakenotify-prelude";

/// Deepest `[` nesting, and most dots in one bare word, that `check_text` lets through:
/// nanoserde recurses once per level and once per dot, so unbounded input could exhaust the
/// stack. A configuration needs two levels (`[[watch]]`) and one dot.
const MAX_NESTING: usize = 16;
const MAX_DOTS: usize = 16;

/// Runs nanoserde's TOML parser on `text`, kept clear of its sharp edges.
///
/// - `check_text` first rejects, with the exact line and column, what nanoserde would misread
///   or could not survive: a NUL (it ends the input there), `""` (it reads on to the next
///   quote), escapes other than `\\` and `\"` (`"\t"` comes back as `t`), a line break inside a
///   one-line string, and nesting deep enough to overflow the stack.
/// - The text is read behind an `[[fakenotify-prelude]]` header. nanoserde panics on `[[x]]`
///   when a key `x` was set outside any `[[...]]` (`x = 1` then `[[x]]`), and the panic=abort
///   profile would make that a crash. With an array entry open from the first byte, nothing but
///   arrays reaches the top level; the keys before the first `[[watch]]` land in the prelude.
/// - CRLF line ends become LF: nanoserde rejects `true\r`.
fn read_toml(text: &str) -> Result<BTreeMap<String, Toml>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    check_text(&text)?;
    TomlParser::parse(&behind_prelude(&text)).map_err(|err| syntax_error(&text, &err))
}

/// `text` after the prelude header, on the same line so that line numbers stay as they are.
fn behind_prelude(text: &str) -> String {
    format!("[[{PRELUDE}]] {text}")
}

/// Turns a nanoserde error into a `ConfigError` at the right line.
///
/// nanoserde reports the line of the character after the offending token (its column is always
/// 0), so a token that ends its line is reported on the next one. Parsing again up to the end of
/// the line before tells the two apart: the same error there means the token is on that line.
fn syntax_error(text: &str, err: &TomlErr) -> ConfigError {
    let mut line = err.line;
    if line > 0 {
        if let Some((newline, _)) = text.match_indices('\n').nth(line - 1) {
            if let Err(again) = TomlParser::parse(&behind_prelude(&text[..=newline])) {
                if again.msg == err.msg && again.line == err.line {
                    line -= 1;
                }
            }
        }
    }
    let message = err.msg.trim();
    let cause = if let Some(token) = message.strip_prefix("Unexpected token ") {
        describe_token(token)
    } else {
        match message.strip_prefix("Cannot parse toml ") {
            Some("tokenizer") => "unexpected character".to_owned(),
            Some("string") => "unterminated string".to_owned(),
            Some(what) => format!("invalid {what}"),
            None => message.to_owned(),
        }
    };
    ConfigError::at_text(line + 1, None, format!("syntax error: {cause}"))
}

/// Words for a token as nanoserde's error prints it (`Ident("info")`, `Equals`, `Eof`...).
fn describe_token(token: &str) -> String {
    let punctuation = match token {
        "Eof" => return "unexpected end of file".to_owned(),
        "Equals" => "=",
        "BlockOpen" => "[",
        "BlockClose" => "]",
        "Comma" => ",",
        _ => "",
    };
    if !punctuation.is_empty() {
        return format!("unexpected \"{punctuation}\"");
    }
    if let Some(word) = token.strip_prefix("Ident(\"").and_then(|rest| rest.strip_suffix("\")")) {
        return format!("unexpected {word} (is a string missing its double quotes?)");
    }
    match token.split_once('(') {
        Some((_, value)) => format!("unexpected {}", value.strip_suffix(')').unwrap_or(value)),
        None => format!("unexpected {token}"),
    }
}

/// Scans `text` the way nanoserde's lexer does, for what `read_toml` must reject beforehand.
fn check_text(text: &str) -> Result<(), ConfigError> {
    let chars: Vec<char> = text.chars().collect();
    if let Some(at) = chars.iter().position(|&c| c == '\0') {
        return Err(text_error(&chars, at, "NUL character"));
    }
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '#' => {
                while chars.get(i).is_some_and(|&c| c != '\n') {
                    i += 1;
                }
            }
            '"' => i = skip_string(&chars, i)?,
            '[' => {
                if depth == 0 && starts_line(&chars, i) {
                    check_header(&chars, i)?;
                }
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(text_error(&chars, i, "brackets nested too deeply"));
                }
                i += 1;
            }
            ']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            '\'' => {
                return Err(text_error(
                    &chars,
                    i,
                    "single-quoted strings are not supported; use double quotes",
                ));
            }
            '{' | '}' => {
                return Err(text_error(
                    &chars,
                    i,
                    "inline tables {...} are not supported; use a [table]",
                ));
            }
            ' ' | '\t' | '\n' | '\r' | '=' | ',' => i += 1,
            _ => {
                let start = i;
                let mut dots = 0;
                while let Some(&c) = chars.get(i).filter(|&&c| !ends_word(c)) {
                    dots += usize::from(c == '.');
                    i += 1;
                }
                if dots > MAX_DOTS {
                    return Err(text_error(&chars, start, "too many dots in one key"));
                }
            }
        }
    }
    Ok(())
}

/// Whether only blanks stand between the start of its line and `chars[at]`.
fn starts_line(chars: &[char], at: usize) -> bool {
    chars[..at].iter().rev().take_while(|&&c| c != '\n').all(|&c| c == ' ' || c == '\t')
}

/// A `[table]` or `[[table]]` header that starts at `open` must close on its own line: nanoserde
/// would read on into the next line and blame a key there, with a hint about quotes.
fn check_header(chars: &[char], open: usize) -> Result<(), ConfigError> {
    let brackets = chars[open..].iter().take(2).take_while(|&&c| c == '[').count();
    let rest = chars[open + brackets..].iter().take_while(|&&c| c != '\n' && c != '#');
    let name: String = rest.clone().collect::<String>().trim().to_owned();
    if rest.clone().any(|&c| c == ']') {
        return Ok(());
    }
    let (opening, closing) = if brackets == 2 { ("[[", "]]") } else { ("[", "]") };
    let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
    Err(text_error(
        chars,
        open,
        format!("table header {opening}{shown} is not closed: write {opening}{shown}{closing}"),
    ))
}

/// Whether `c` ends a bare word (key, number, `true`...) for `check_text`. nanoserde stops a
/// word at these too, or rejects the word.
fn ends_word(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '=' | ',' | '[' | ']' | '"' | '#' | '\'' | '{' | '}')
}

/// Steps over the string whose opening quote is at `open` as nanoserde's lexer does, and
/// returns where the lexer goes on. `"""` strings may span lines and end at exactly three quotes,
/// after which nanoserde skips one more character.
fn skip_string(chars: &[char], open: usize) -> Result<usize, ConfigError> {
    let unterminated = || text_error(chars, open, "unterminated string");
    let mut i = open + 1;
    let mut quotes = 1;
    while quotes < 3 && chars.get(i) == Some(&'"') {
        quotes += 1;
        i += 1;
    }
    if quotes == 2 {
        return Err(text_error(
            chars,
            open,
            "empty string \"\" is not supported (leave the key out)",
        ));
    }
    let multiline = quotes == 3;
    loop {
        let Some(&c) = chars.get(i) else { return Err(unterminated()) };
        match c {
            '"' if !multiline => return Ok(i + 1),
            '"' => {
                let run = chars[i..].iter().take_while(|&&c| c == '"').count();
                i += run;
                if run == 3 {
                    return Ok((i + 1).min(chars.len()));
                }
            }
            '\n' if !multiline => return Err(unterminated()),
            '\\' => match chars.get(i + 1) {
                Some('\\' | '"') => i += 2,
                Some(&other) => {
                    let cause = format!(
                        "unsupported escape \\{} in a string (only \\\\ and \\\" are understood)",
                        other.escape_debug()
                    );
                    return Err(text_error(chars, i, cause));
                }
                None => return Err(unterminated()),
            },
            _ => i += 1,
        }
    }
}

/// An error at the character with index `at` in `chars`.
fn text_error(chars: &[char], at: usize, cause: impl Into<String>) -> ConfigError {
    let before = &chars[..at.min(chars.len())];
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
    ConfigError::at_text(line, Some(column), cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed README's example, verbatim.
    const SEED_EXAMPLE: &str = r#"[daemon]
socket = "/run/fakenotify/fakenotify.sock"
log_level = "info"

[[watch]]
path = "/mnt/nas/media"
poll_interval = "5s"
recursive = true

[[watch]]
path = "/mnt/nas/downloads"
poll_interval = "2s"
recursive = false
"#;

    const FULL_EXAMPLE: &str = r#"[daemon]
socket = "/run/fn.sock"
preload_library = "/opt/fakenotify/libfakenotify.so"
log_level = "debug"
default_poll_interval = "1.5s"
default_max_ops = 500
default_max_poll_interval = "1m"
max_user_instances = 16
max_user_watches = 100000
max_queued_events = 512

[[watch]]
path = "/mnt/nas/media"
poll_interval = "2m"
recursive = true
mode = "auto"
attr_cache = "bypass"
max_ops = 300
max_poll_interval = "10m"

[[watch]]
path = "/srv/incoming"
poll_interval = "500ms"
recursive = false
mode = "poll"
attr_cache = "trust"
listing = "every-poll"

[[watch]]
path = "/home/shared"
mode = "inotify"
"#;

    const DEPLOY_EXAMPLE: &str = include_str!("../../deploy/config.example.toml");

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn watch(path: &str, poll_interval: Option<Duration>, recursive: bool) -> WatchPolicy {
        WatchPolicy {
            path: PathBuf::from(path),
            poll_interval,
            recursive,
            mode: Mode::Auto,
            attr_cache: AttrCache::Bypass,
            listing: Listing::Auto,
            max_ops: None,
            max_poll_interval: None,
        }
    }

    fn seed_config() -> Config {
        Config {
            daemon: DaemonSettings {
                socket: Some(PathBuf::from("/run/fakenotify/fakenotify.sock")),
                ..DaemonSettings::default()
            },
            watches: vec![
                watch("/mnt/nas/media", Some(secs(5)), true),
                watch("/mnt/nas/downloads", Some(secs(2)), false),
            ],
            feeds: vec![],
        }
    }

    fn parse(text: &str) -> Config {
        match Config::parse(text) {
            Ok(config) => config,
            Err(err) => panic!("{err}\n--- in:\n{text}"),
        }
    }

    fn error(text: &str) -> String {
        match Config::parse(text) {
            Ok(config) => panic!("accepted: {config:?}\n--- in:\n{text}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn seed_example_parses_exactly() {
        assert_eq!(parse(SEED_EXAMPLE), seed_config());
    }

    #[test]
    fn full_example_sets_every_key() {
        let expected = Config {
            daemon: DaemonSettings {
                socket: Some(PathBuf::from("/run/fn.sock")),
                preload_library: Some(PathBuf::from("/opt/fakenotify/libfakenotify.so")),
                log_level: LogLevel::Debug,
                default_poll_interval: Duration::from_millis(1_500),
                default_max_ops: 500,
                default_max_poll_interval: Some(secs(60)),
                limits: Limits {
                    max_user_instances: 16,
                    max_user_watches: 100_000,
                    max_queued_events: 512,
                    ..Limits::default()
                },
            },
            watches: vec![
                WatchPolicy {
                    path: PathBuf::from("/mnt/nas/media"),
                    poll_interval: Some(secs(120)),
                    recursive: true,
                    mode: Mode::Auto,
                    attr_cache: AttrCache::Bypass,
                    listing: Listing::Auto,
                    max_ops: Some(300),
                    max_poll_interval: Some(secs(600)),
                },
                WatchPolicy {
                    path: PathBuf::from("/srv/incoming"),
                    poll_interval: Some(Duration::from_millis(500)),
                    recursive: false,
                    mode: Mode::Poll,
                    attr_cache: AttrCache::Trust,
                    listing: Listing::EveryPoll,
                    max_ops: None,
                    max_poll_interval: None,
                },
                WatchPolicy {
                    path: PathBuf::from("/home/shared"),
                    poll_interval: None,
                    recursive: true,
                    mode: Mode::Inotify,
                    attr_cache: AttrCache::Bypass,
                    listing: Listing::Auto,
                    max_ops: None,
                    max_poll_interval: None,
                },
            ],
            feeds: vec![],
        };
        assert_eq!(parse(FULL_EXAMPLE), expected);
    }

    #[test]
    fn deploy_example_parses() {
        let expected = Config {
            daemon: DaemonSettings {
                socket: Some(PathBuf::from("/run/fakenotify/fakenotify.sock")),
                ..DaemonSettings::default()
            },
            watches: vec![
                WatchPolicy { max_ops: Some(2000), ..watch("/mnt/nas/media", Some(secs(5)), true) },
                WatchPolicy {
                    mode: Mode::Poll,
                    attr_cache: AttrCache::Trust,
                    ..watch("/mnt/nas/downloads", Some(secs(2)), false)
                },
            ],
            feeds: vec![],
        };
        assert_eq!(parse(DEPLOY_EXAMPLE), expected);
        // The example documents the defaults: its [daemon] table changes nothing else.
        assert_eq!(parse(DEPLOY_EXAMPLE).daemon.limits, Limits::default());
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.daemon.socket, None);
        assert_eq!(config.daemon.log_level, LogLevel::Info);
        assert_eq!(config.daemon.default_poll_interval, secs(5));
        assert_eq!(config.daemon.default_max_ops, 2000);
        assert_eq!(config.daemon.default_max_poll_interval, None);
        assert_eq!(
            config.daemon.limits,
            Limits {
                max_user_instances: 128,
                max_user_watches: 8192,
                max_queued_events: 16384,
                ..Limits::default()
            }
        );
        assert!(config.watches.is_empty());
        assert_eq!(parse(""), config);
        assert_eq!(parse("\n# nothing but a comment\n\n"), config);
        assert_eq!(parse("[daemon]\n"), config);
        assert_eq!(parse("[[watch]]\npath = \"/a\"\n").watches, vec![watch("/a", None, true)]);
    }

    /// The seed example's three tables in every order, with and without comments, blank lines,
    /// CRLF line ends and indentation: nanoserde's scoping bug must not show in any of them.
    #[test]
    fn tables_in_any_order() {
        let daemon =
            "[daemon]\nsocket = \"/run/fakenotify/fakenotify.sock\"\nlog_level = \"info\"\n";
        let media =
            "[[watch]]\npath = \"/mnt/nas/media\"\npoll_interval = \"5s\"\nrecursive = true\n";
        let downloads =
            "[[watch]]\npath = \"/mnt/nas/downloads\"\npoll_interval = \"2s\"\nrecursive = false\n";
        let orders: [[&str; 3]; 6] = [
            [daemon, media, downloads],
            [daemon, downloads, media],
            [media, daemon, downloads],
            [downloads, daemon, media],
            [media, downloads, daemon],
            [downloads, media, daemon],
        ];
        let decorate: [fn(&str) -> String; 4] = [
            |table| table.to_owned(),
            |table| {
                format!("\n# a comment [daemon]\n\n{}\n  # another\n", table.replace('\n', "\n\n"))
            },
            |table| table.replace('\n', "\r\n"),
            |table| table.replace('\n', " # \"quoted\" [[watch]]\n    "),
        ];
        for order in orders {
            for decorate in decorate {
                let text: String = order.iter().map(|table| decorate(table)).collect();
                let mut expected = seed_config();
                if order.iter().position(|t| *t == downloads)
                    < order.iter().position(|t| *t == media)
                {
                    expected.watches.reverse();
                }
                assert_eq!(parse(&text), expected, "in:\n{text}");
            }
        }
    }

    #[test]
    fn many_watches_around_daemon() {
        let text = "[[watch]]\npath = \"/a\"\n\
                    [[watch]]\npath = \"/b\"\nmode = \"poll\"\n\
                    [daemon]\nlog_level = \"warn\"\nmax_user_watches = 10\n\
                    [[watch]]\npath = \"/c\"\nrecursive = false\n\
                    [[watch]]\npath = \"/d\"\nattr_cache = \"trust\"\n";
        let config = parse(text);
        assert_eq!(config.daemon.log_level, LogLevel::Warn);
        assert_eq!(config.daemon.limits.max_user_watches, 10);
        let paths: Vec<&Path> = config.watches.iter().map(|w| w.path.as_path()).collect();
        assert_eq!(paths, [Path::new("/a"), Path::new("/b"), Path::new("/c"), Path::new("/d")]);
        assert_eq!(config.watches[1].mode, Mode::Poll);
        assert!(!config.watches[2].recursive);
        assert_eq!(config.watches[3].attr_cache, AttrCache::Trust);
    }

    #[test]
    fn unknown_keys_are_named_wherever_the_tables_are() {
        assert_eq!(error("[daemon]\nlog_levle = \"info\"\n"), "daemon.log_levle: unknown key");
        // A watch after [daemon] (nanoserde says `daemon.intervall`) and before it.
        let after =
            "[daemon]\nlog_level = \"info\"\n[[watch]]\npath = \"/a\"\nintervall = \"5s\"\n";
        assert_eq!(error(after), "watch[0].intervall: unknown key");
        let before =
            "[[watch]]\npath = \"/a\"\nintervall = \"5s\"\n[daemon]\nlog_level = \"info\"\n";
        assert_eq!(error(before), "watch[0].intervall: unknown key");
        // [daemon] between watches: its keys land in watch[0] inside nanoserde.
        let between =
            "[[watch]]\npath = \"/a\"\n[daemon]\nsokcet = \"/s\"\n[[watch]]\npath = \"/b\"\n";
        assert_eq!(error(between), "daemon.sokcet: unknown key");
        assert_eq!(
            error("[daemon]\npath = \"/a\"\n"),
            "daemon.path: unknown key (it belongs in a [[watch]] table)"
        );
        assert_eq!(
            error("[[watch]]\npath = \"/a\"\n[daemon]\npath = \"/b\"\n"),
            "daemon.path: unknown key (it belongs in a [[watch]] table)"
        );
        // A daemon key written in a watch, after and before [daemon].
        assert_eq!(
            error("[daemon]\n[[watch]]\npath = \"/a\"\nsocket = \"/s\"\n"),
            "watch[0].socket: unknown key (it belongs under [daemon])"
        );
        assert_eq!(
            error("[[watch]]\npath = \"/a\"\nsocket = \"/s\"\n"),
            "watch[0].socket: unknown key (it belongs under [daemon])"
        );
        assert_eq!(
            error("[daemon]\nlimits.max_user_watches = 5\n"),
            "daemon.limits.max_user_watches: unknown key"
        );
        let odd = "[[watch]]\npath = \"/a\"\n\"\"\"odd\nkey\"\"\" = 1\n";
        assert_eq!(error(odd), r#"watch[0]."odd\nkey": unknown key"#);
    }

    #[test]
    fn keys_outside_tables_and_unknown_tables() {
        assert_eq!(
            error("log_level = \"info\"\n"),
            "log_level: unknown key (it belongs under [daemon])"
        );
        assert_eq!(error("path = \"/a\"\n"), "path: unknown key (it belongs in a [[watch]] table)");
        assert_eq!(error("colour = 1\n[daemon]\n"), "colour: unknown key");
        assert_eq!(
            error("[deamon]\nsocket = \"/s\"\n"),
            "deamon: unknown table (expected [daemon], [[watch]] or [[feed]])"
        );
        assert_eq!(
            error("[daemon]\n[limits]\nmax_user_watches = 5\n[[watch]]\npath = \"/a\"\n"),
            "limits: unknown table (expected [daemon], [[watch]] or [[feed]])"
        );
        // An unknown table without keys only shows as nanoserde's prefix on the next watch.
        assert_eq!(
            error("[extra]\n[[watch]]\npath = \"/a\"\n"),
            "extra: unknown table (expected [daemon], [[watch]] or [[feed]])"
        );
        assert_eq!(
            error("[[watches]]\npath = \"/a\"\n"),
            "watches: unknown table (expected [daemon], [[watch]] or [[feed]])"
        );
        assert_eq!(
            error("[watch]\npath = \"/a\"\n"),
            "watch: write [[watch]], with double brackets"
        );
        assert_eq!(
            error("[[daemon]]\nsocket = \"/s\"\n"),
            "daemon: write [daemon], with single brackets"
        );
        assert_eq!(
            error("[[fakenotify-prelude]]\nx = 1\n"),
            "fakenotify-prelude: unknown table (expected [daemon], [[watch]] or [[feed]])"
        );
        // nanoserde 0.2.1 panics on this text; behind the prelude it is a plain error.
        assert_eq!(
            error("watch = \"/a\"\n[[watch]]\npath = \"/a\"\n"),
            "watch: write each watched path as a [[watch]] table with a path key"
        );
    }

    #[test]
    fn wrong_types_and_values() {
        let cases = [
            (
                "[[watch]]\npath = \"/a\"\nrecursive = \"yes\"\n",
                "watch[0].recursive: expected true or false",
            ),
            (
                "[[watch]]\npath = \"/a\"\nrecursive = 1\n",
                "watch[0].recursive: expected true or false",
            ),
            ("[[watch]]\npath = 5\n", "watch[0].path: expected a string in double quotes"),
            (
                "[[watch]]\npath = \"media\"\n",
                r#"watch[0].path: "media": must be an absolute path"#,
            ),
            (
                "[[watch]]\npath = \"./media\"\n",
                r#"watch[0].path: "./media": must be an absolute path"#,
            ),
            (
                "[[watch]]\npoll_interval = \"5s\"\n",
                "watch[0].path: missing (each [[watch]] needs an absolute path)",
            ),
            ("[[watch]]\n", "watch[0].path: missing (each [[watch]] needs an absolute path)"),
            (
                "[[watch]]\npath = \"/a\"\npoll_interval = 5\n",
                r#"watch[0].poll_interval: expected a duration in double quotes with its unit, e.g. "5s""#,
            ),
            (
                "[[watch]]\npath = \"/a\"\npoll_interval = \"0s\"\n",
                r#"watch[0].poll_interval: "0s": must be greater than zero"#,
            ),
            (
                "[[watch]]\npath = \"/a\"\nmode = \"fast\"\n",
                r#"watch[0].mode: "fast": unknown mode (use auto, poll or inotify)"#,
            ),
            (
                "[[watch]]\npath = \"/a\"\nattr_cache = \"off\"\n",
                r#"watch[0].attr_cache: "off": unknown attr_cache value (use bypass or trust)"#,
            ),
            (
                "[[watch]]\npath = \"/a\"\nlisting = \"always\"\n",
                r#"watch[0].listing: "always": unknown listing value (use auto, every-poll or on-change)"#,
            ),
            (
                "[daemon]\nlog_level = \"verbose\"\n",
                r#"daemon.log_level: "verbose": unknown log level (use error, warn, info or debug)"#,
            ),
            (
                "[daemon]\nlog_level = \"INFO\"\n",
                r#"daemon.log_level: "INFO": unknown log level (use error, warn, info or debug)"#,
            ),
            (
                "[daemon]\ndefault_poll_interval = \"-1s\"\n",
                r#"daemon.default_poll_interval: "-1s": a duration cannot be negative"#,
            ),
            (
                "[daemon]\nsocket = \"fn.sock\"\n",
                r#"daemon.socket: "fn.sock": must be an absolute path"#,
            ),
            ("[daemon]\nsocket = true\n", "daemon.socket: expected a string in double quotes"),
            (
                "[[watch]]\npath = \"/a\"\nmax_ops = 0\n",
                "watch[0].max_ops: expected a positive integer (at most 4294967295)",
            ),
            (
                "[daemon]\ndefault_max_ops = 1.5\n",
                "daemon.default_max_ops: expected a positive integer (at most 4294967295)",
            ),
            (
                "[[watch]]\npath = \"/a\"\npoll_interval = \"10s\"\nmax_poll_interval = \"5s\"\n",
                "watch[0].max_poll_interval: must be at least poll_interval (it is the bound of \
                 the idle backoff)",
            ),
            (
                "[daemon]\nmax_ops = 10\n",
                "daemon.max_ops: unknown key (it belongs in a [[watch]] table)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "in:\n{text}");
        }
        let long = format!("[daemon]\nsocket = \"/{}\"\n", "s".repeat(107));
        assert!(
            error(&long).ends_with("108 bytes long; a Unix socket path holds at most 107"),
            "{}",
            error(&long)
        );
        let longest = format!("[daemon]\nsocket = \"/{}\"\n", "s".repeat(106));
        assert_eq!(parse(&longest).daemon.socket.map(|p| p.as_os_str().len()), Some(107));
    }

    #[test]
    fn limits_are_positive_integers() {
        let limit = |value: &str| Config::parse(&format!("[daemon]\nmax_user_watches = {value}\n"));
        assert_eq!(limit("1").map(|c| c.daemon.limits.max_user_watches), Ok(1));
        assert_eq!(limit("4294967295").map(|c| c.daemon.limits.max_user_watches), Ok(u32::MAX));
        assert_eq!(limit("100_000").map(|c| c.daemon.limits.max_user_watches), Ok(100_000));
        for bad in ["0", "-1", "1.5", "\"128\"", "4294967296", "true", "nan", "inf", "[1]"] {
            let message = limit(bad).expect_err(bad).to_string();
            assert_eq!(
                message,
                "daemon.max_user_watches: expected a positive integer (at most 4294967295)"
            );
        }
        assert_eq!(
            error("[daemon]\nmax_queued_events = 0\n"),
            "daemon.max_queued_events: expected a positive integer (at most 4294967295)"
        );
        assert_eq!(
            error("[daemon]\nmax_user_instances = -3\n"),
            "daemon.max_user_instances: expected a positive integer (at most 4294967295)"
        );
    }

    #[test]
    fn watch_paths_are_normalised_and_unique() {
        let config = parse("[[watch]]\npath = \"/mnt//nas/./media/\"\n");
        assert_eq!(config.watches[0].path, PathBuf::from("/mnt/nas/media"));
        assert_eq!(config.watches[0].path.as_os_str(), "/mnt/nas/media");
        let twice = "[[watch]]\npath = \"/mnt/a\"\n[[watch]]\npath = \"/mnt/b\"\n[[watch]]\npath = \"/mnt/a/\"\n";
        assert_eq!(error(twice), r#"watch[2].path: "/mnt/a" already has a policy, watch[0]"#);
        // Nested policies are fine: the deepest one governs.
        assert_eq!(
            parse("[[watch]]\npath = \"/mnt\"\n[[watch]]\npath = \"/mnt/a\"\n").watches.len(),
            2
        );
    }

    #[test]
    fn daemon_keys_set_twice() {
        let text = "daemon.log_level = \"warn\"\n[[watch]]\npath = \"/a\"\n[daemon]\nlog_level = \"debug\"\n";
        assert_eq!(error(text), "daemon.log_level: set twice (is [daemon] written twice?)");
        // A second [daemon] after a watch reads, through nanoserde, exactly like daemon keys
        // written in that watch: rejected all the same, though named after the watch.
        let text = "[daemon]\nlog_level = \"warn\"\n[[watch]]\npath = \"/a\"\n[daemon]\nlog_level = \"debug\"\n";
        assert_eq!(error(text), "watch[0].log_level: unknown key (it belongs under [daemon])");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            (
                "[daemon]\nlog_level = info\nsocket = \"/s\"\n",
                "line 2: syntax error: unexpected info (is a string missing its double quotes?)",
            ),
            (
                "[daemon]\nlog_level = info",
                "line 2: syntax error: unexpected info (is a string missing its double quotes?)",
            ),
            (
                "[daemon]\nlog_level = info # comment\n",
                "line 2: syntax error: unexpected info (is a string missing its double quotes?)",
            ),
            ("[daemon]\nlog_level \"info\"\n", r#"line 2: syntax error: unexpected "info""#),
            ("[daemon]\nlog_level =\n", "line 2: syntax error: unexpected end of file"),
            ("[daemon]\n\n= 5\n", r#"line 3: syntax error: unexpected "=""#),
            (
                "[[watch]]\npath = \"/a\"\nrecursive = True\n",
                "line 3: syntax error: unexpected True (is a string missing its double quotes?)",
            ),
            (
                "[daemon\nsocket = \"/s\"\n",
                "line 1, column 1: table header [daemon is not closed: write [daemon]",
            ),
            (
                "[daemon]\nmax_user_watches = 1e3\n",
                "line 2: syntax error: unexpected 1e3 (is a string missing its double quotes?)",
            ),
            ("[daemon]\nsocket = \"/s\" x\n", "line 2: syntax error: unexpected end of file"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "in:\n{text}");
        }
    }

    #[test]
    fn lexical_errors_name_line_and_column() {
        let cases = [
            ("[daemon]\nsocket = \"/s\n", "line 2, column 10: unterminated string"),
            ("[daemon]\nsocket = \"/s\nlog_level = \"info\"\n", "line 2, column 10: unterminated string"),
            ("[daemon]\nsocket = \"\"\n", "line 2, column 10: empty string \"\" is not supported (leave the key out)"),
            ("[daemon]\nsocket = '/s'\n", "line 2, column 10: single-quoted strings are not supported; use double quotes"),
            (
                "[[watch]]\npath = \"/a\\tb\"\n",
                "line 2, column 11: unsupported escape \\t in a string (only \\\\ and \\\" are understood)",
            ),
            ("[daemon]\nlog_level = \"info\"\0\nx = 1\n", "line 2, column 19: NUL character"),
            ("limits = { a = 1 }\n", "line 1, column 10: inline tables {...} are not supported; use a [table]"),
            ("[daemon]\nsocket = \"\"\"/s\n", "line 2, column 10: unterminated string"),
            ("[daemon", "line 1, column 1: table header [daemon is not closed: write [daemon]"),
            (
                "[daemon # ]\nsocket = \"/s\"\n",
                "line 1, column 1: table header [daemon is not closed: write [daemon]",
            ),
            (
                "[daemon]\n\n  [[watch\npath = \"/a\"\n",
                "line 3, column 3: table header [[watch is not closed: write [[watch]]",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "in:\n{text:?}");
        }
        let deep = format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(error(&deep), "line 1, column 21: brackets nested too deeply");
        let dotted = format!("{} = 1\n", "a.".repeat(100_000) + "a");
        assert_eq!(error(&dotted), "line 1, column 1: too many dots in one key");
    }

    #[test]
    fn strings_as_nanoserde_reads_them() {
        // Escaped quotes and backslashes, and brackets or hashes inside strings.
        let config = parse("[[watch]]\npath = \"/mnt/a \\\"b\\\" \\\\ [c] #d\"\n");
        assert_eq!(config.watches[0].path, PathBuf::from("/mnt/a \"b\" \\ [c] #d"));
        // A multi-line string ends at three quotes.
        let config = parse("[[watch]]\npath = \"\"\"/mnt/x\"\"\"\nrecursive = false\n");
        assert_eq!(config.watches[0], watch("/mnt/x", None, false));
        // A byte order mark is ignored.
        assert_eq!(
            parse("\u{feff}[daemon]\nlog_level = \"warn\"\n").daemon.log_level,
            LogLevel::Warn
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let file = dir.join("config.toml");

        std::fs::write(&file, SEED_EXAMPLE).expect("write the test file");
        assert_eq!(Config::load(&file), Ok(seed_config()));

        let bad = SEED_EXAMPLE.replace("\"2s\"", "\"5x\"");
        std::fs::write(&file, bad).expect("write the test file");
        let message = Config::load(&file).expect_err("5x").to_string();
        assert_eq!(
            message,
            format!(
                r#"{}: watch[1].poll_interval: "5x": unknown unit "x" (use ms, s, m, h or d, e.g. "1m30s")"#,
                file.display()
            )
        );

        std::fs::write(&file, "[daemon]\nlog_level = info\n").expect("write the test file");
        let message = Config::load(&file).expect_err("syntax").to_string();
        assert!(
            message.starts_with(&format!("{}: line 2: syntax error: ", file.display())),
            "{message}"
        );

        let missing = dir.join("missing.toml");
        let message = Config::load(&missing).expect_err("missing").to_string();
        assert_eq!(
            message,
            format!("{}: cannot read: {}", missing.display(), std::io::Error::from_raw_os_error(2))
        );
        std::fs::remove_dir_all(&dir).expect("remove the test directory");
    }

    #[test]
    fn every_error_is_one_line() {
        let texts = [
            "[daemon]\n\"\"\"a\nb\"\"\" = 1\n",
            "[ \"\"\"x\ny\"\"\" ]\na = 1\n",
            "[daemon]\nsocket = \"\"\"a\nb\"\"\"\n",
            "[[watch]]\npath = \"\"\"a\nb\"\"\"\n",
            "[[watch]]\npath = \"/a\"\npoll_interval = \"\"\"5\nx\"\"\"\n",
            "[daemon]\nlog_level = \"\"\"x\ny\"\"\"\n",
        ];
        for text in texts {
            let message = error(text);
            assert!(!message.contains('\n'), "{message:?} for {text:?}");
        }
    }

    #[test]
    fn log_levels_are_ordered_and_named() {
        assert!(LogLevel::Error < LogLevel::Warn);
        assert!(LogLevel::Warn < LogLevel::Info);
        assert!(LogLevel::Info < LogLevel::Debug);
        for level in [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug] {
            assert_eq!(level.as_str().parse(), Ok(level));
            assert_eq!(level.to_string(), level.as_str());
        }
        assert_eq!(
            "trace".parse::<LogLevel>().map_err(|e| e.to_string()),
            Err(r#""trace": unknown log level (use error, warn, info or debug)"#.to_owned())
        );
        for mode in [Mode::Auto, Mode::Poll, Mode::Inotify] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for cache in [AttrCache::Bypass, AttrCache::Trust] {
            assert_eq!(cache.to_string().parse(), Ok(cache));
        }
    }

    #[test]
    fn budgets_parse_with_units_and_name_the_key_when_bad() {
        let config = parse(
            "[daemon]\nmax_user_queued_bytes = \"512KiB\"\nmax_queued_bytes = 8388608\n\
             max_user_polled = 100\nmax_user_entries = 5000\nmax_entries = 9000\n\
             max_user_fds = 64\n",
        );
        let limits = config.daemon.limits;
        assert_eq!(limits.max_user_queued_bytes, 512 * 1024);
        assert_eq!(limits.max_queued_bytes, 8 * MIB);
        assert_eq!((limits.max_user_polled, limits.max_user_entries), (100, 5000));
        assert_eq!(limits.max_entries, 9000);
        assert_eq!(limits.max_user_fds, Some(64));
        assert_eq!(
            parse("[daemon]\nmax_queued_bytes = \"1GiB\"\n").daemon.limits.max_queued_bytes,
            1024 * MIB
        );
        assert_eq!(parse("").daemon.limits.max_user_fds, None, "auto by default");
        for (text, cause) in [
            (
                "max_user_queued_bytes = \"4 furlongs\"",
                "daemon.max_user_queued_bytes: \"4 furlongs\": unknown unit",
            ),
            (
                "max_user_queued_bytes = \"MiB\"",
                "daemon.max_user_queued_bytes: \"MiB\": expected a size",
            ),
            (
                "max_queued_bytes = 100",
                "daemon.max_queued_bytes: 100 bytes is less than the least, 4KiB",
            ),
            ("max_queued_bytes = -1", "daemon.max_queued_bytes: expected a size"),
            ("max_queued_bytes = 1.5", "daemon.max_queued_bytes: expected a size"),
            ("max_queued_bytes = true", "daemon.max_queued_bytes: expected a size"),
            (
                "max_user_queued_bytes = \"99999999999999999999GiB\"",
                "daemon.max_user_queued_bytes: \"99999999999999999999GiB\": expected a size",
            ),
            ("max_user_polled = 0", "daemon.max_user_polled: expected a positive integer"),
            ("max_user_entries = \"many\"", "daemon.max_user_entries: expected a positive integer"),
            ("max_user_fds = -3", "daemon.max_user_fds: expected a positive integer"),
            ("max_entries = 0", "daemon.max_entries: expected a positive integer"),
        ] {
            let message = error(&format!("[daemon]\n{text}\n"));
            assert!(message.starts_with(cause), "{text}: {message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }
    const FEED_EXAMPLE: &str = r#"[daemon]
default_poll_interval = "60s"

[[watch]]
path = "/mnt/media"

[[feed]]
command = ["ssh", "nas", "fakenotify-ctl", "feed", "/volume1/media"]
remote = "/volume1/media"
local = "/mnt/media/"
safety_interval = "10m"

[[feed]]
command = ["mosquitto_sub", "-t", "nas/feed"]
remote = "/volume2"
local = "/mnt/other"
heartbeat_timeout = "30s"
"#;

    #[test]
    fn reads_feed_tables() {
        let config = parse(FEED_EXAMPLE);
        assert_eq!(config.watches, vec![watch("/mnt/media", None, true)]);
        assert_eq!(config.daemon.default_poll_interval, secs(60));
        assert_eq!(
            config.feeds,
            vec![
                FeedConfig {
                    command: ["ssh", "nas", "fakenotify-ctl", "feed", "/volume1/media"]
                        .map(String::from)
                        .to_vec(),
                    remote: PathBuf::from("/volume1/media"),
                    local: PathBuf::from("/mnt/media"),
                    safety_interval: secs(600),
                    heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
                },
                FeedConfig {
                    command: ["mosquitto_sub", "-t", "nas/feed"].map(String::from).to_vec(),
                    remote: PathBuf::from("/volume2"),
                    local: PathBuf::from("/mnt/other"),
                    safety_interval: DEFAULT_SAFETY_INTERVAL,
                    heartbeat_timeout: secs(30),
                },
            ]
        );
        // A feed before [daemon] and the watches: the tables are still told apart.
        let reordered = "[[feed]]\ncommand = [\"f\"]\nremote = \"/r\"\nlocal = \"/l\"\n\n[daemon]\nlog_level = \"debug\"\n\n[[watch]]\npath = \"/l\"\n";
        let config = parse(reordered);
        assert_eq!(config.feeds.len(), 1);
        assert_eq!(config.feeds[0].local, PathBuf::from("/l"));
        assert_eq!(config.daemon.log_level, LogLevel::Debug);
        assert_eq!(config.watches, vec![watch("/l", None, true)]);
    }

    #[test]
    fn bad_feed_tables_name_their_key() {
        let feed = |body: &str| format!("[[feed]]\n{body}\n");
        let ok = "command = [\"f\"]\nremote = \"/r\"\nlocal = \"/l\"";
        for (body, expected) in [
            ("remote = \"/r\"\nlocal = \"/l\"".to_owned(), "feed[0].command: missing"),
            ("command = [\"f\"]\nlocal = \"/l\"".to_owned(), "feed[0].remote: missing"),
            ("command = [\"f\"]\nremote = \"/r\"".to_owned(), "feed[0].local: missing"),
            (format!("{ok}\nx = 1"), "feed[0].x: unknown key"),
            (
                format!("{ok}\npath = \"/p\""),
                "feed[0].path: unknown key (it belongs in a [[watch]]",
            ),
            (format!("{ok}\nsafety_interval = \"10\""), "feed[0].safety_interval: "),
            (format!("{ok}\nsafety_interval = \"10ms\""), "feed[0].safety_interval: at least 1s"),
            (format!("{ok}\nheartbeat_timeout = \"1ms\""), "feed[0].heartbeat_timeout: at least"),
            (
                "command = \"ssh nas\"\nremote = \"/r\"\nlocal = \"/l\"".to_owned(),
                "feed[0].command: expected an array",
            ),
            ("command = []\nremote = \"/r\"\nlocal = \"/l\"".to_owned(), "feed[0].command: "),
            (
                "command = [1]\nremote = \"/r\"\nlocal = \"/l\"".to_owned(),
                "feed[0].command: expected an array",
            ),
            (
                "command = [\"\"]\nremote = \"/r\"\nlocal = \"/l\"".to_owned(),
                "line 2, column 12: empty string",
            ),
            (
                "command = [\"f\"]\nremote = \"r\"\nlocal = \"/l\"".to_owned(),
                "feed[0].remote: \"r\": must be an absolute path",
            ),
            (
                "command = [\"f\"]\nremote = \"/r\"\nlocal = \"l\"".to_owned(),
                "feed[0].local: \"l\": must be an absolute path",
            ),
        ] {
            let message = error(&feed(&body));
            assert!(message.starts_with(expected), "{message:?} for {body:?}");
        }
        let twice = format!("{}{}", feed(ok), feed(ok));
        assert!(error(&twice).starts_with("feed[1].local: \"/l\" already has a feed, feed[0]"));
        assert!(
            error("feed = 1\n").contains("[[feed]]") || error("feed = 1\n").contains("unknown key")
        );
        assert!(error("[feed]\ncommand = [\"f\"]\n").contains("[[feed]]"));
    }
}
