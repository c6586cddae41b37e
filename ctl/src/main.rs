//! `fakenotify-ctl`: inspect and steer a running fakenotifyd, or watch remote directories.

use std::process::ExitCode;

const USAGE: &str = "fakenotify-ctl: control a running fakenotifyd and watch remote directories

Usage: fakenotify-ctl VERB [OPTIONS] [ARGS]
       fakenotify-ctl VERB --help
";

fn main() -> ExitCode {
    let mut args = fakenotify_ctl::cli::split_eq(std::env::args_os().skip(1));
    let Some(first) = take_verb(&mut args) else {
        eprint!("{USAGE}\n{}", fakenotify_ctl::cli::VERBS_HELP);
        return ExitCode::from(2);
    };
    match first.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}\n{}", fakenotify_ctl::cli::VERBS_HELP);
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            println!("fakenotify-ctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(fakenotify_ctl::cli::run_verb("fakenotify-ctl", &first, args)),
    }
}

/// Removes and returns the verb: the first argument that is neither an option nor the value
/// of `--socket`, so global options may come before it.
fn take_verb(args: &mut Vec<std::ffi::OsString>) -> Option<String> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--socket" {
            i += 2;
        } else if arg.starts_with('-')
            && !matches!(arg.as_ref(), "-h" | "--help" | "-V" | "--version")
        {
            i += 1;
        } else {
            return Some(args.remove(i).to_string_lossy().into_owned());
        }
    }
    None
}
