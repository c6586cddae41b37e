//! The verbs of `fakenotify-ctl`, also behind `fakenotifyd add|remove|list|status|reload|stop`:
//! argument parsing, one request, and the rendering of the answer as text or `--json`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fakenotify_proto::control::{ControlRequest, WireMode};

use crate::message::Response;
use crate::render;
use crate::transport::{resolve_socket, Connection};

pub const VERBS_HELP: &str = "\
Verbs:
  status                          daemon state: instances, watches, policies, counters
  list                            watch policies and how many objects each governs
  add PATH [--poll-interval 5s] [--no-recursive] [--mode auto|poll|inotify]
                                  add or replace the policy for PATH (root or the daemon's user)
  remove PATH                     remove the policy for PATH; its objects return to the default
  reload                          re-read the daemon's configuration file
  stop                            stop the daemon
  watch [-m] [-r] [-q] [-e EVENT]... [-t SECONDS] [--format FMT] PATH...
                                  print events under PATH, as inotifywait does (no preload needed)
  doctor [PID|COMMAND-NAME]       check the daemon, socket and library, or why a process is (not)
                                  served; each failure with its fix
  feed [--heartbeat 5s] [--coalesce 100ms] PATH...
                                  on a file server: print a JSON line per changed directory under
                                  PATH, for a client daemon's [[feed]] (no daemon needed)

Options (any verb):
  --socket PATH   the daemon's socket (default: $FAKENOTIFY_SOCKET, then /run/fakenotify/fakenotify.sock,
                  then /run/fakenotify.sock if nothing is at the default)
  --json          one JSON document (watch: one JSON object per line)

Exit codes: 0 success, 1 runtime failure (daemon not running, permission denied), 2 usage error.
";

const WATCH_HELP: &str = "\
watch [OPTIONS] PATH...: register an instance with the daemon and print its events, as
inotifywait does (same options, lines and exit codes; no preload needed).
  -m, --monitor          keep printing events; without it, exit after the first one
  -r, --recursive        watch every directory under PATH, and new ones as they appear
  -e, --event EVENT      only these events (repeatable, or comma-separated): access, modify,
                         attrib, close_write, close_nowrite, close, open, moved_from, moved_to,
                         move, move_self, create, delete, delete_self, unmount, all
  -q, --quiet            no 'Setting up watches'/'Watches established' lines; -qq: no events
  -t, --timeout SECONDS  exit 2 when no event comes within SECONDS (0: never; 1min works too)
  --format FMT           %w watched path, %f name, %e events (%Xe: joined by X), %T time,
                         %c cookie, %0 NUL, %n newline, %% (default: '%w %,e %f')
  --no-newline           no newline after each --format line
  --timefmt FMT          strftime format for %T: %Y %m %d %H %M %S %s %F %T %z %Z %a %b ...
  --exclude REGEX        skip events whose path (%w%f) matches the POSIX extended REGEX
  --include REGEX        only events whose path matches; --excludei/--includei ignore case
  -c, --csv              watched,EVENTS,name with CSV quoting
  -P, --no-dereference   do not follow a symbolic link given as PATH
  -o, --outfile FILE     append events to FILE instead of standard output
  --fromfile FILE        also watch the paths in FILE, one a line (-: standard input)
  --json                 one JSON object per event: path, wd, events, mask, cookie, name
  --events LIST          the same as -e LIST
Exit codes: 0 an event asked for came, 1 another event (DELETE_SELF...) or a runtime error,
2 timeout or usage error.
";

const DOCTOR_HELP: &str = "\
doctor [PID|COMMAND-NAME] [--json]: one line per check, OK or FAIL (with its fix).
Without an argument: the daemon answers on the socket ($FAKENOTIFY_SOCKET and the default),
its uid and whether this user's preload trusts it (uid 0, your euid or $FAKENOTIFY_DAEMON_UID),
its version against fakenotify-ctl's, the socket directory's owner and mode, and libfakenotify.so
where install.sh, packages or a build put it (an ELF with no NEEDED entries).
With a PID or a command name (every process of that name): read from /proc/PID (a container's
process too, from the host): statically linked or Go (cannot work), libfakenotify mapped,
LD_PRELOAD, the daemon its $FAKENOTIFY_SOCKET reaches and whether it trusts it, fds that are
the kernel's inotify (FakeNotify not in use), its instances, watches and the polled mounts.
Another user's process needs root. Exit codes: 0 all checks passed, 1 some failed, 2 usage error.
";

fn verb_help(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "status" => "status [--json]: version, uptime, socket, instances (pid, uid), watches, objects polled and\nkernel-forwarded, per policy the interval, objects, polls and last/worst poll time, events,\noverflows, syscalls and errors by kind.\n",
        "list" => "list [--json]: the watch policies, their interval, recursion, mode, attribute caching and how\nmany watched objects each governs; last, the row \"(default)\": what governs every other remote\nmount (daemon.default_poll_interval).\n",
        "add" => "add PATH [--poll-interval DURATION] [--no-recursive] [--mode auto|poll|inotify] [--json]:\nadd or replace the policy for PATH at run time. DURATION is like 500ms, 5s, 2m. Existing\nwatches under PATH follow it from their next poll. Needs uid 0 or the daemon's uid.\n",
        "remove" => "remove PATH [--json]: remove the policy for PATH; its objects return to the default policy.\nNeeds uid 0 or the daemon's uid.\n",
        "reload" => "reload [--json]: re-read the configuration file (as SIGHUP does). An invalid file is rejected\nwith its reason and the running policies stay. Policies added at run time are kept, unless the\nfile names the same path; the reply names both. Needs uid 0 or the daemon's uid.\n",
        "stop" => "stop [--json]: stop the daemon cleanly. Needs uid 0 or the daemon's uid.\n",
        "watch" => WATCH_HELP,
        "doctor" => DOCTOR_HELP,
        "feed" => crate::feed::FEED_HELP,
        _ => return None,
    })
}

/// The arguments with each `--option=value` split into `--option` and `value`, as GNU tools
/// accept both; everything after a lone `--` stays as it is.
pub fn split_eq(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut options_done = false;
    for arg in args {
        let bytes = arg.as_bytes();
        options_done |= bytes == b"--";
        let split = bytes.iter().position(|&b| b == b'=').filter(|_| !options_done);
        match split {
            Some(eq) if bytes.starts_with(b"--") && eq > 2 => {
                out.push(OsStr::from_bytes(&bytes[..eq]).to_owned());
                out.push(OsStr::from_bytes(&bytes[eq + 1..]).to_owned());
            }
            _ => out.push(arg),
        }
    }
    out
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

fn runtime(message: impl ToString) -> Failure {
    Failure { code: 1, message: message.to_string() }
}

/// Runs `verb` with the remaining arguments and returns the exit code; `program` prefixes
/// messages.
pub fn run_verb(program: &str, verb: &str, args: Vec<OsString>) -> u8 {
    match run(verb, args) {
        Ok(()) => 0,
        // `watch` ends with 1 or 2 and no message as inotifywait does (timeout, other event).
        Err(failure) if failure.message.is_empty() => failure.code,
        Err(failure) => {
            eprintln!("{program}: {}", failure.message);
            if failure.code == 2 {
                eprintln!("Try '{program} --help'.");
            }
            failure.code
        }
    }
}

fn run(verb: &str, args: Vec<OsString>) -> Result<(), Failure> {
    let mut args = pico_args::Arguments::from_vec(split_eq(args));
    let Some(help) = verb_help(verb) else {
        return Err(usage(format!("unknown command '{verb}'")));
    };
    if args.contains(["-h", "--help"]) {
        print!("{help}");
        return Ok(());
    }
    if verb == "feed" {
        return match crate::feed::run(args.finish()) {
            Ok(()) | Err(crate::feed::FeedError::Closed) => Ok(()),
            Err(crate::feed::FeedError::Usage(message)) => Err(usage(message)),
            Err(error) => Err(runtime(format!("feed: {error}"))),
        };
    }
    let json = args.contains("--json");
    let socket_flag: Option<PathBuf> = args
        .opt_value_from_os_str("--socket", |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| usage(e.to_string()))?;
    if verb == "doctor" {
        return match crate::doctor::run(socket_flag, args.finish(), json) {
            Ok(0) => Ok(()),
            Ok(code) => Err(Failure { code, message: String::new() }),
            Err(message) => Err(usage(message)),
        };
    }
    let socket = resolve_socket(socket_flag);
    match verb {
        "watch" => watch(&socket, args, json),
        "add" => {
            let interval: Option<String> =
                args.opt_value_from_str("--poll-interval").map_err(|e| usage(e.to_string()))?;
            let interval_ms = match interval {
                Some(text) => {
                    let d = crate::duration::parse_duration(&text)
                        .map_err(|e| usage(format!("--poll-interval: {e}")))?;
                    u64::try_from(d.as_millis())
                        .map_err(|_| usage("--poll-interval: too long"))?
                        .max(1)
                }
                None => 0,
            };
            let recursive = !args.contains("--no-recursive");
            let mode: Option<String> =
                args.opt_value_from_str("--mode").map_err(|e| usage(e.to_string()))?;
            let mode = match mode.as_deref() {
                None | Some("auto") => WireMode::Auto,
                Some("poll") => WireMode::Poll,
                Some("inotify") => WireMode::Inotify,
                Some(other) => {
                    return Err(usage(format!("--mode: '{other}' is not auto, poll or inotify")))
                }
            };
            let path = one_path(args, "add")?;
            let path = absolute(&path)?;
            let bytes = path.as_os_str().as_encoded_bytes();
            control(
                &socket,
                ControlRequest::Add { path: bytes, interval_ms, recursive, mode },
                json,
            )
        }
        "remove" => {
            let path = one_path(args, "remove")?;
            let path = absolute(&path)?;
            control(
                &socket,
                ControlRequest::Remove { path: path.as_os_str().as_encoded_bytes() },
                json,
            )
        }
        _ => {
            no_more(args, verb)?;
            let request = match verb {
                "status" => ControlRequest::Status,
                "list" => ControlRequest::List,
                "reload" => ControlRequest::Reload,
                _ => ControlRequest::Stop,
            };
            control(&socket, request, json)
        }
    }
}

fn no_more(args: pico_args::Arguments, verb: &str) -> Result<(), Failure> {
    match args.finish().first() {
        Some(extra) => {
            Err(usage(format!("{verb}: unexpected argument '{}'", extra.to_string_lossy())))
        }
        None => Ok(()),
    }
}

fn one_path(args: pico_args::Arguments, verb: &str) -> Result<PathBuf, Failure> {
    let mut rest = args.finish();
    if let Some(flag) = rest.iter().find(|a| a.to_string_lossy().starts_with("--")) {
        return Err(usage(format!("{verb}: unknown option '{}'", flag.to_string_lossy())));
    }
    match rest.len() {
        1 => Ok(PathBuf::from(rest.remove(0))),
        0 => Err(usage(format!("{verb}: missing PATH"))),
        _ => Err(usage(format!("{verb}: one PATH expected, {} given", rest.len()))),
    }
}

/// Policies name host paths; a relative one is taken from the current directory.
fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .map_err(|e| runtime(format!("current directory: {e}")))
}

fn control(socket: &Path, request: ControlRequest<'_>, json: bool) -> Result<(), Failure> {
    let conn = Connection::connect(socket).map_err(runtime)?;
    match conn.control(&request).map_err(runtime)? {
        Response::Status(status) => {
            print!(
                "{}",
                if json {
                    render::json_text(nanoserde::SerJson::serialize_json(&status)) + "\n"
                } else {
                    render::status_text(&status)
                }
            );
            Ok(())
        }
        Response::Policies(list) => {
            print!(
                "{}",
                if json {
                    render::policies_json(&list) + "\n"
                } else {
                    render::policies_text(&list)
                }
            );
            Ok(())
        }
        Response::Done(message) => {
            if json {
                println!(
                    "{{\"ok\":true,\"message\":{}}}",
                    render::json_text(nanoserde::SerJson::serialize_json(&message))
                );
            } else {
                println!("{}", render::escape(&message));
            }
            Ok(())
        }
        Response::Denied(message) => {
            Err(runtime(format!("permission denied: {}", render::escape(&message))))
        }
        Response::Failed(message) => Err(runtime(render::escape(&message))),
    }
}

fn watch(socket: &Path, args: pico_args::Arguments, json: bool) -> Result<(), Failure> {
    let outcome = crate::watch::run(socket, args.finish(), json);
    match (outcome.code, outcome.message) {
        (0, _) => Ok(()),
        (code, message) => Err(Failure { code, message: message.unwrap_or_default() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> Vec<String> {
        split_eq(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn long_options_take_their_value_after_an_equals_sign() {
        assert_eq!(
            split(&["--socket=/run/a=b.sock", "list"]),
            ["--socket", "/run/a=b.sock", "list"]
        );
        assert_eq!(split(&["--poll-interval=", "x"]), ["--poll-interval", "", "x"]);
        assert_eq!(split(&["-e=create", "--=x", "a=b"]), ["-e=create", "--=x", "a=b"]);
        assert_eq!(split(&["--", "--not=split"]), ["--", "--not=split"]);
    }
}
