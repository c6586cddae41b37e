//! The verbs of `fakenotify-ctl`, also behind `fakenotifyd add|remove|list|status|reload|stop`:
//! argument parsing, one request, and the rendering of the answer as text or `--json`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fakenotify_proto::control::{ControlRequest, WireMode};
use fakenotify_proto::inotify::IN_ALL_EVENTS;

use crate::message::Response;
use crate::render;
use crate::transport::{resolve_socket, Connection};
use crate::watcher::Watcher;

pub const VERBS_HELP: &str = "\
Verbs:
  status                          daemon state: instances, watches, policies, counters
  list                            watch policies and how many objects each governs
  add PATH [--poll-interval 5s] [--no-recursive] [--mode auto|poll|inotify]
                                  add or replace the policy for PATH (root or the daemon's user)
  remove PATH                     remove the policy for PATH; its objects return to the default
  reload                          re-read the daemon's configuration file
  stop                            stop the daemon
  watch [--events LIST] [--timeout SECONDS] PATH...
                                  print events under PATH (like inotifywait -m; no preload needed)

Options (any verb):
  --socket PATH   the daemon's socket (default: $FAKENOTIFY_SOCKET, then /run/fakenotify/fakenotify.sock)
  --json          one JSON document (watch: one JSON object per line)

Exit codes: 0 success, 1 runtime failure (daemon not running, permission denied), 2 usage error.
";

fn verb_help(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "status" => "status [--json]: version, uptime, socket, instances (pid, uid), watches, objects polled and\nkernel-forwarded, per policy the interval, objects, polls and last/worst poll time, events,\noverflows, syscalls and errors by kind.\n",
        "list" => "list [--json]: the watch policies, their interval, recursion, mode, attribute caching and how\nmany watched objects each governs.\n",
        "add" => "add PATH [--poll-interval DURATION] [--no-recursive] [--mode auto|poll|inotify] [--json]:\nadd or replace the policy for PATH at run time. DURATION is like 500ms, 5s, 2m. Existing\nwatches under PATH follow it from their next poll. Needs uid 0 or the daemon's uid.\n",
        "remove" => "remove PATH [--json]: remove the policy for PATH; its objects return to the default policy.\nNeeds uid 0 or the daemon's uid.\n",
        "reload" => "reload [--json]: re-read the configuration file (as SIGHUP does). An invalid file is rejected\nwith its reason and the running policies stay. Needs uid 0 or the daemon's uid.\n",
        "stop" => "stop [--json]: stop the daemon cleanly. Needs uid 0 or the daemon's uid.\n",
        "watch" => "watch [--events LIST] [--timeout SECONDS] [--json] PATH...: register an instance with the\ndaemon and print one line per event until interrupted. LIST is comma-separated inotifywait\nnames (create,delete,modify,attrib,close_write,moved_from,moved_to,move,delete_self,all).\n",
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
    let json = args.contains("--json");
    let socket_flag: Option<PathBuf> = args
        .opt_value_from_os_str("--socket", |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| usage(e.to_string()))?;
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

fn watch(socket: &Path, mut args: pico_args::Arguments, json: bool) -> Result<(), Failure> {
    let events: Option<String> =
        args.opt_value_from_str("--events").map_err(|e| usage(e.to_string()))?;
    let mask = match events {
        Some(list) => render::parse_events(&list).map_err(|e| usage(format!("--events: {e}")))?,
        None => IN_ALL_EVENTS,
    };
    let timeout: Option<f64> =
        args.opt_value_from_str("--timeout").map_err(|e| usage(e.to_string()))?;
    let paths = args.finish();
    if let Some(flag) = paths.iter().find(|a| a.to_string_lossy().starts_with("--")) {
        return Err(usage(format!("watch: unknown option '{}'", flag.to_string_lossy())));
    }
    if paths.is_empty() {
        return Err(usage("watch: missing PATH"));
    }
    let mut watcher = Watcher::register(socket).map_err(runtime)?;
    for path in &paths {
        watcher.add(Path::new(path), mask).map_err(runtime)?;
    }
    if let Some(seconds) = timeout {
        arm_alarm(seconds).map_err(usage)?;
    }
    eprintln!("Watches established.");
    loop {
        let Some(events) = watcher.read_events().map_err(runtime)? else {
            return Err(runtime(format!("daemon at {} stopped", socket.display())));
        };
        for event in &events {
            println!(
                "{}",
                if json { render::event_json(event) } else { render::event_text(event) }
            );
        }
        if watcher.watching() == 0 {
            return Ok(());
        }
    }
}

/// `--timeout`: end the process after `seconds` with status 0, as `inotifywait -t` does.
fn arm_alarm(seconds: f64) -> Result<(), String> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(format!("--timeout: '{seconds}' is not a positive number of seconds"));
    }
    let deadline = std::time::Duration::from_secs_f64(seconds);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        std::process::exit(0);
    });
    Ok(())
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
