//! `fakenotify-ctl watch`: a drop-in for `inotifywait` on remote filesystems, needing no
//! preload. Same options (`-m -r -e -q -t --format --timefmt --exclude --include -c`), same
//! default line (`%w %,e %f`), same exit codes (0 an event asked for, 1 another event or an
//! error, 2 timeout), so a script switches by changing the command name; usage errors exit 2,
//! as every FakeNotify command's do. `--json` prints one JSON object per event instead.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fakenotify_proto::inotify::*;

use crate::event_format::{format_time, local_now, EventFormat, EventView, DEFAULT_FORMAT};
use crate::pattern::Pattern;
use crate::render;
use crate::watcher::{Read, WatchEvent, Watcher};

/// How `watch` ends: its exit code, and a message for stderr (none for a timeout or an event
/// outside the mask, which inotifywait reports by the code alone).
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub message: Option<String>,
}

fn usage(message: impl Into<String>) -> Outcome {
    Outcome { code: 2, message: Some(message.into()) }
}

fn runtime(message: impl ToString) -> Outcome {
    Outcome { code: 1, message: Some(message.to_string()) }
}

fn exit(code: u8) -> Outcome {
    Outcome { code, message: None }
}

/// Which events `--exclude`/`--include` keep.
#[derive(Debug)]
enum Filter {
    All,
    Exclude(Pattern),
    Include(Pattern),
}

impl Filter {
    fn keeps(&self, path: &[u8]) -> bool {
        match self {
            Filter::All => true,
            Filter::Exclude(p) => !p.is_match(path),
            Filter::Include(p) => p.is_match(path),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Output {
    Format { format: EventFormat, newline: bool },
    Csv,
    Json,
}

/// The parsed command line.
#[derive(Debug)]
pub struct WatchOptions {
    monitor: bool,
    recursive: bool,
    quiet: u8,
    /// The events asked for; `IN_ALL_EVENTS` when none were named.
    events: u32,
    no_dereference: bool,
    timeout: Option<Duration>,
    output: Output,
    timefmt: Option<String>,
    filter: Filter,
    paths: Vec<PathBuf>,
    /// `--fromfile`: more paths, one a line (`-`: standard input).
    fromfile: Option<PathBuf>,
    /// `-o`: events to this file (appended) instead of standard output.
    outfile: Option<PathBuf>,
}

const FLAGS_WITH_VALUES: &[&str] = &[
    "--event",
    "--events",
    "--timeout",
    "--format",
    "--timefmt",
    "--exclude",
    "--excludei",
    "--include",
    "--includei",
    "--outfile",
    "--fromfile",
];

/// inotifywait's `@PATH` (not watched below a recursive watch) is refused, not mistaken for a
/// path.
fn refuse_exclusions(paths: &[PathBuf]) -> Result<(), String> {
    match paths.iter().find(|p| p.as_os_str().as_bytes().starts_with(b"@")) {
        Some(at) => {
            Err(format!("'{}': @PATH exclusions are not supported (use --exclude)", at.display()))
        }
        None => Ok(()),
    }
}

/// `--fromfile`'s paths: one a line, blank lines skipped.
fn read_path_list(from: &Path) -> Result<Vec<PathBuf>, String> {
    let bytes = if from == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .map(|_| bytes)
            .map_err(|e| format!("--fromfile -: read standard input: {e}"))?
    } else {
        std::fs::read(from).map_err(|e| format!("--fromfile {}: {e}", from.display()))?
    };
    Ok(bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| PathBuf::from(OsString::from_vec(line.to_vec())))
        .collect())
}

/// `-e`'s comma list: inotifywait's names, `unmount` among them (always delivered, so asking
/// for it changes only which events count as asked for).
fn parse_event_list(list: &str) -> Result<u32, String> {
    list.split(',').try_fold(0, |mask, word| {
        Ok(mask
            | if word.trim().eq_ignore_ascii_case("unmount") {
                IN_UNMOUNT
            } else {
                render::parse_events(word)?
            })
    })
}

/// `-t`/`--timeout`: whole or fractional seconds as inotifywait takes them, or a duration
/// (`90s`, `1min`); 0 or a negative number waits for ever.
fn parse_timeout(text: &str) -> Result<Option<Duration>, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds >= 1e9 {
            return Err(format!("--timeout: '{text}' is not a number of seconds"));
        }
        return Ok((seconds > 0.0).then(|| Duration::from_secs_f64(seconds)));
    }
    crate::duration::parse_duration(text)
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| format!("--timeout: '{text}': {e}"))
}

impl WatchOptions {
    /// Parses what follows `watch` (with `--socket`, `--json` and `--help` already taken), as
    /// getopt does: bundled short flags (`-mrq`), values attached or apart (`-ecreate`,
    /// `-e create`, `--format=%w`), options after paths, `--` ending options.
    pub fn parse(args: Vec<OsString>, json: bool) -> Result<WatchOptions, String> {
        let mut monitor = false;
        let mut recursive = false;
        let mut quiet = 0u8;
        let mut events = 0u32;
        let mut no_dereference = false;
        let mut timeout = None;
        let mut format: Option<String> = None;
        let mut timefmt = None;
        let mut csv = false;
        let mut no_newline = false;
        let mut exclude: Option<(String, bool)> = None;
        let mut include: Option<(String, bool)> = None;
        let mut paths = Vec::new();
        let mut fromfile: Option<PathBuf> = None;
        let mut outfile: Option<PathBuf> = None;

        let mut args = args.into_iter();
        let mut options_done = false;
        while let Some(arg) = args.next() {
            let bytes = arg.as_bytes();
            if options_done || bytes == b"-" || !bytes.starts_with(b"-") {
                paths.push(PathBuf::from(arg));
                continue;
            }
            if bytes == b"--" {
                options_done = true;
                continue;
            }
            let text = arg.to_str().ok_or("options must be valid UTF-8")?.to_owned();
            // Expand `-mre create` into its flags; a value-taking letter takes the rest.
            let mut flags: Vec<(String, Option<String>)> = Vec::new();
            if text.starts_with("--") {
                flags.push((text, None));
            } else {
                let letters: Vec<char> = text[1..].chars().collect();
                for (i, letter) in letters.iter().enumerate() {
                    if matches!(letter, 'e' | 't' | 'o') {
                        let rest: String = letters[i + 1..].iter().collect();
                        flags.push((format!("-{letter}"), (!rest.is_empty()).then_some(rest)));
                        break;
                    }
                    flags.push((format!("-{letter}"), None));
                }
            }
            for (flag, attached) in flags {
                let takes_value = matches!(flag.as_str(), "-e" | "-t" | "-o")
                    || FLAGS_WITH_VALUES.contains(&flag.as_str());
                let value = match (takes_value, attached) {
                    (false, _) => String::new(),
                    (true, Some(v)) => v,
                    (true, None) => match args.next() {
                        Some(v) => v
                            .into_string()
                            .map_err(|_| format!("{flag}: the value must be valid UTF-8"))?,
                        None => return Err(format!("{flag}: missing value")),
                    },
                };
                match flag.as_str() {
                    "-m" | "--monitor" => monitor = true,
                    "-r" | "--recursive" => recursive = true,
                    "-q" | "--quiet" => quiet = quiet.saturating_add(1),
                    "-P" | "--no-dereference" => no_dereference = true,
                    "-c" | "--csv" => csv = true,
                    "--no-newline" => no_newline = true,
                    "-e" | "--event" | "--events" => {
                        events |= parse_event_list(&value).map_err(|e| format!("{flag}: {e}"))?
                    }
                    "-t" | "--timeout" => timeout = parse_timeout(&value)?,
                    "--format" => format = Some(value),
                    "--timefmt" => timefmt = Some(value),
                    "--exclude" => exclude = Some((value, false)),
                    "--excludei" => exclude = Some((value, true)),
                    "--include" => include = Some((value, false)),
                    "--includei" => include = Some((value, true)),
                    "-o" | "--outfile" if outfile.is_some() => {
                        return Err("--outfile given twice".into())
                    }
                    "-o" | "--outfile" => outfile = Some(PathBuf::from(value)),
                    "--fromfile" if fromfile.is_some() => {
                        return Err("--fromfile given twice".into())
                    }
                    "--fromfile" => fromfile = Some(PathBuf::from(value)),
                    "-d" | "--daemon" | "-s" | "--syslog" => {
                        return Err(format!(
                            "{flag} is not supported (run it under a service manager with -o FILE)"
                        ))
                    }
                    _ => return Err(format!("unknown option '{flag}'")),
                }
            }
        }
        if paths.is_empty() && fromfile.is_none() {
            return Err("missing PATH".into());
        }
        refuse_exclusions(&paths)?;
        let filter = match (exclude, include) {
            (Some(_), Some(_)) => return Err("--include and --exclude cannot both be given".into()),
            (Some((text, icase)), None) => Filter::Exclude(
                Pattern::new(&text, icase).map_err(|e| format!("--exclude '{text}': {e}"))?,
            ),
            (None, Some((text, icase))) => Filter::Include(
                Pattern::new(&text, icase).map_err(|e| format!("--include '{text}': {e}"))?,
            ),
            (None, None) => Filter::All,
        };
        let output = match (json, csv, format) {
            (true, true, _) | (true, _, Some(_)) => {
                return Err("--json cannot be combined with --format or --csv".into())
            }
            (false, true, Some(_)) => return Err("--csv and --format cannot both be given".into()),
            (true, false, None) => Output::Json,
            (false, true, None) => Output::Csv,
            (false, false, format) => {
                let given = format.is_some();
                let format = EventFormat::parse(format.as_deref().unwrap_or(DEFAULT_FORMAT));
                if format.uses_time() && timefmt.is_none() {
                    return Err("--format has %T but no --timefmt was given".into());
                }
                if !given && timefmt.is_some() {
                    return Err("--timefmt needs --format".into());
                }
                Output::Format { format, newline: !(given && no_newline) }
            }
        };
        Ok(WatchOptions {
            monitor,
            recursive,
            quiet,
            events: if events == 0 { IN_ALL_EVENTS } else { events },
            no_dereference,
            timeout,
            output,
            timefmt,
            filter,
            paths,
            fromfile,
            outfile,
        })
    }

    /// The mask the watches ask for: the events, and what recursion needs to follow the tree.
    fn watch_mask(&self) -> u32 {
        let mut mask = self.events;
        if self.monitor && self.recursive {
            mask |= IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM;
        }
        if self.no_dereference {
            mask |= IN_DONT_FOLLOW;
        }
        mask
    }
}

/// The watched paths by wd, as `%w` shows them (a directory's with a `/` after it).
struct WatchedPaths {
    by_wd: BTreeMap<i32, Vec<u8>>,
    /// Directories moved out by a `MOVED_FROM`, by cookie, until their `MOVED_TO`.
    moving: HashMap<u32, Vec<u8>>,
}

fn with_slash(mut path: Vec<u8>) -> Vec<u8> {
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path
}

struct Session<'a> {
    options: &'a WatchOptions,
    watcher: Watcher,
    paths: WatchedPaths,
    out: Box<dyn Write>,
}

impl Session<'_> {
    /// Watches `path`, and with `-r` every directory under it (symbolic links not followed).
    /// As inotifywait, a directory is listed and closed before it is watched, so the listing
    /// makes no events of its own.
    fn add(&mut self, path: &Path, top: bool) -> Result<(), String> {
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let mut children = Vec::new();
        if self.options.recursive && is_dir {
            match std::fs::read_dir(path) {
                Ok(entries) => children.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| path.join(e.file_name())),
                ),
                Err(e) if top => return Err(format!("{}: read directory: {e}", path.display())),
                Err(_) => {}
            }
        }
        let wd = self.watcher.add(path, self.options.watch_mask()).map_err(|e| e.to_string())?;
        let shown = path.as_os_str().as_bytes().to_vec();
        self.paths.by_wd.insert(wd, if is_dir { with_slash(shown) } else { shown });
        for child in children {
            // A directory gone since the listing is not an error, as for inotifywait.
            let _ = self.add(&child, false);
        }
        Ok(())
    }

    /// `-m -r`: follow new and moved directories as inotifywait does.
    fn follow_tree(&mut self, event: &WatchEvent, watched: &[u8]) {
        if event.mask & IN_ISDIR == 0 || event.name.is_empty() {
            return;
        }
        let mut child = watched.to_vec();
        child.extend_from_slice(&event.name);
        let child_dir = with_slash(child.clone());
        if event.mask & IN_MOVED_FROM != 0 {
            if self.paths.by_wd.values().any(|p| *p == child_dir) {
                self.paths.moving.insert(event.cookie, child_dir);
            }
        } else if event.mask & IN_MOVED_TO != 0 && self.paths.moving.contains_key(&event.cookie) {
            let old = self.paths.moving.remove(&event.cookie).unwrap_or_default();
            for path in self.paths.by_wd.values_mut() {
                if path.starts_with(&old) {
                    let mut renamed = child_dir.clone();
                    renamed.extend_from_slice(&path[old.len()..]);
                    *path = renamed;
                }
            }
        } else if event.mask & (IN_CREATE | IN_MOVED_TO) != 0 {
            let path = PathBuf::from(OsString::from_vec(child));
            if let Err(e) = self.add(&path, false) {
                if self.options.quiet < 2 {
                    eprintln!("Couldn't watch new directory {}", render::escape(&e));
                }
            }
        }
    }

    fn print(&mut self, event: &WatchEvent, watched: &[u8]) -> std::io::Result<()> {
        let mut line = Vec::new();
        match &self.options.output {
            Output::Json => {
                let mut event = event.clone();
                let trimmed =
                    watched.strip_suffix(b"/").filter(|t| !t.is_empty()).unwrap_or(watched);
                event.path = PathBuf::from(OsString::from_vec(trimmed.to_vec()));
                line.extend_from_slice(render::event_json(&event).as_bytes());
                line.push(b'\n');
            }
            Output::Csv => {
                let names = crate::event_format::event_names(event.mask, ',');
                let (watched, name) = (escaped(watched), escaped(&event.name));
                for (i, field) in [&watched[..], names.as_bytes(), &name].iter().enumerate() {
                    line.extend_from_slice(&csv_field(field));
                    line.push(if i < 2 { b',' } else { b'\n' });
                }
            }
            Output::Format { format, newline } => {
                let (watched, name) = (escaped(watched), escaped(&event.name));
                let view = EventView {
                    watched: &watched,
                    name: &name,
                    mask: event.mask,
                    cookie: event.cookie,
                };
                let timefmt = self.options.timefmt.as_deref().unwrap_or("");
                let time = |out: &mut Vec<u8>| {
                    let mut text = String::new();
                    format_time(timefmt, &local_now(), &mut text);
                    out.extend_from_slice(text.as_bytes());
                };
                format.render(&view, &time, &mut line);
                if *newline {
                    line.push(b'\n');
                }
            }
        }
        self.out.write_all(&line)
    }
}

/// A path or name as the text output shows it: control characters and backslashes escaped
/// (`\x1b`, `\\`), so a file name, which anyone may choose, cannot drive the terminal or
/// break a line in two. inotifywait prints them raw; the README says so.
fn escaped(bytes: &[u8]) -> Vec<u8> {
    render::escape_bytes(bytes).into_bytes()
}

/// inotifywait's CSV quoting: fields with `"`, `,`, a newline or outer spaces are quoted.
fn csv_field(field: &[u8]) -> Vec<u8> {
    let needs = field.iter().any(|b| matches!(b, b'"' | b',' | b'\n'))
        || field.first() == Some(&b' ')
        || field.last() == Some(&b' ');
    if !needs {
        return field.to_vec();
    }
    let mut out = vec![b'"'];
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// Runs `watch` to its end.
pub fn run(socket: &Path, args: Vec<OsString>, json: bool) -> Outcome {
    let mut options = match WatchOptions::parse(args, json) {
        Ok(options) => options,
        Err(message) => return usage(format!("watch: {message}")),
    };
    if let Some(from) = options.fromfile.clone() {
        match read_path_list(&from) {
            Ok(paths) => options.paths.extend(paths),
            Err(message) => return runtime(format!("watch: {message}")),
        }
        if let Err(message) = refuse_exclusions(&options.paths) {
            return usage(format!("watch: {message}"));
        }
        if options.paths.is_empty() {
            return usage(format!("watch: no PATH in --fromfile {}", from.display()));
        }
    }
    let out: Box<dyn Write> = match &options.outfile {
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path);
            match file {
                Ok(file) => Box::new(std::io::BufWriter::new(file)),
                Err(e) => return runtime(format!("watch: --outfile {}: {e}", path.display())),
            }
        }
    };
    // Registered first, so that no daemon is one line of error, as for every verb.
    let watcher = match Watcher::register(socket) {
        Ok(watcher) => watcher,
        Err(e) => return runtime(e),
    };
    if options.quiet == 0 {
        if options.recursive {
            eprintln!("Setting up watches.  Beware: since -r was given, this may take a while!");
        } else {
            eprintln!("Setting up watches.");
        }
    }
    let mut session = Session {
        options: &options,
        watcher,
        paths: WatchedPaths { by_wd: BTreeMap::new(), moving: HashMap::new() },
        out,
    };
    for path in &options.paths {
        if let Err(e) = session.add(path, true) {
            return runtime(format!("Couldn't watch {}", render::escape(&e)));
        }
    }
    if options.quiet == 0 {
        eprintln!("Watches established.");
    }
    let watch_mask = options.watch_mask();
    loop {
        let events = match session.watcher.read_within(options.timeout) {
            Ok(Read::Events(events)) => events,
            Ok(Read::TimedOut) => return exit(2),
            Ok(Read::Closed) => return runtime(format!("daemon at {} stopped", socket.display())),
            Err(e) => return runtime(e),
        };
        for event in &events {
            let watched = session.paths.by_wd.get(&event.wd).cloned().unwrap_or_default();
            let mut full = watched.clone();
            full.extend_from_slice(&event.name);
            if !options.filter.keeps(&full) {
                continue;
            }
            if options.quiet < 2 && event.mask & options.events != 0 {
                if let Err(e) = session.print(event, &watched).and_then(|()| session.out.flush()) {
                    // A closed pipe (`| head -1`) ends the watch quietly.
                    return if e.kind() == std::io::ErrorKind::BrokenPipe {
                        exit(0)
                    } else {
                        runtime(format!("write events: {e}"))
                    };
                }
            }
            if options.monitor && options.recursive {
                session.follow_tree(event, &watched);
            }
            if event.mask & IN_IGNORED != 0 {
                session.paths.by_wd.remove(&event.wd);
            }
            if !options.monitor {
                return exit(if event.mask & watch_mask != 0 { 0 } else { 1 });
            }
        }
        if session.watcher.watching() == 0 {
            // Every watch ended (the watched objects are gone): nothing more can come.
            return exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<WatchOptions, String> {
        WatchOptions::parse(args.iter().map(OsString::from).collect(), false)
    }

    #[test]
    fn options_parse_as_getopt_does() {
        let o =
            parse(&["-mrq", "-ecreate", "-e", "moved_to,delete", "/a", "-q", "/b"]).expect("ok");
        assert!(o.monitor && o.recursive && o.quiet == 2);
        assert_eq!(o.events, IN_CREATE | IN_MOVED_TO | IN_DELETE);
        assert_eq!(
            parse(&["-e", "unmount,close", "/a"]).expect("ok").events,
            IN_UNMOUNT | IN_CLOSE
        );
        assert_eq!(o.paths, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let o = parse(&["-t", "3", "--", "-m"]).expect("ok");
        assert!(!o.monitor && o.paths == [PathBuf::from("-m")]);
        assert_eq!(o.timeout, Some(Duration::from_secs(3)));
        assert_eq!(parse(&["-t0", "/a"]).expect("ok").timeout, None);
        assert_eq!(
            parse(&["-t", "1min", "/a"]).expect("ok").timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse(&["/a"]).expect("ok").events, IN_ALL_EVENTS);
        let o = parse(&["--fromfile", "list", "-o", "out"]).expect("ok");
        assert_eq!(o.fromfile, Some(PathBuf::from("list")));
        assert_eq!(o.outfile, Some(PathBuf::from("out")));
        assert!(o.paths.is_empty());
        let o = parse(&["--outfile", "out", "/a"]).expect("ok");
        assert_eq!((o.outfile, o.paths), (Some(PathBuf::from("out")), vec![PathBuf::from("/a")]));
        let o = parse(&["--format", "%T %w", "--timefmt", "%H", "/a"]).expect("ok");
        assert_eq!(o.timefmt.as_deref(), Some("%H"));
    }

    #[test]
    fn bad_options_name_their_cause() {
        for (args, cause) in [
            (&["-x", "/a"][..], "unknown option '-x'"),
            (&["--bogus", "/a"], "unknown option '--bogus'"),
            (&["-e", "nope", "/a"], "-e: unknown event 'nope'"),
            (&["-e"], "-e: missing value"),
            (&["-t", "soon", "/a"], "--timeout: 'soon'"),
            (&["-m"], "missing PATH"),
            (&["--exclude", "a", "--include", "b", "/a"], "cannot both be given"),
            (&["--exclude", "(a", "/a"], "--exclude '(a': '(' without ')'"),
            (&["--format", "%T", "/a"], "%T but no --timefmt"),
            (&["--timefmt", "%H", "/a"], "--timefmt needs --format"),
            (&["-c", "--format", "%w", "/a"], "--csv and --format"),
            (&["-d", "/a"], "-d is not supported"),
            (&["-o", "f", "--outfile", "g", "/a"], "--outfile given twice"),
            (&["@/a/x", "/a"], "@PATH exclusions are not supported"),
        ] {
            let error = parse(args).expect_err(&format!("{args:?}"));
            assert!(error.contains(cause), "{args:?}: {error}");
        }
        let json = WatchOptions::parse(vec!["--format".into(), "%w".into(), "/a".into()], true);
        assert!(json.is_err());
    }

    #[test]
    fn names_print_with_control_characters_escaped() {
        assert_eq!(escaped(b"red\x1b[31m\\x\n"), b"red\\x1b[31m\\\\x\\x0a");
        assert_eq!(escaped(b"plain name.mkv"), b"plain name.mkv");
    }

    #[test]
    fn csv_fields_are_quoted_as_inotifywait_quotes_them() {
        assert_eq!(csv_field(b"plain"), b"plain");
        assert_eq!(csv_field(b"a,b"), b"\"a,b\"");
        assert_eq!(csv_field(b"say \"hi\""), b"\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(b" lead"), b"\" lead\"");
    }
}
