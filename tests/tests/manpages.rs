//! The man pages in `man/` render without a warning and name every option the programs' own
//! help names; the shell completions in `completions/` load (bash always; zsh and fish where
//! installed) and offer the options.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use fakenotify_tests::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const PAGES: [&str; 3] = ["fakenotify-ctl.1", "fakenotify.7", "fakenotifyd.8"];

/// The long options (`--name`) in `text`.
fn long_options(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String =
            text[i + 2..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
        if name.len() > 1 {
            found.insert(format!("--{name}"));
        }
    }
    found
}

fn help(program: PathBuf, verb: &str) -> String {
    let output = Command::new(program).args([verb, "--help"]).output().expect("run --help");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_man_page_renders_without_warnings() {
    for page in PAGES {
        let path = repo_root().join("man").join(page);
        let output = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("run man (man-db)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Piped, man overstrikes bold text (`N\bN`): keep the letters.
        let mut stdout = String::new();
        for c in String::from_utf8_lossy(&output.stdout).chars() {
            if c == '\u{8}' {
                stdout.pop();
            } else {
                stdout.push(c);
            }
        }
        assert!(output.status.success(), "man -l {page}: {stderr}");
        assert_eq!(stderr, "", "man --warnings -l {page} warns");
        assert!(stdout.contains("NAME") && stdout.contains("SEE ALSO"), "{page}:\n{stdout}");
    }
}

#[test]
fn the_man_pages_name_every_option_of_the_help() {
    let roff = |page: &str| {
        std::fs::read_to_string(repo_root().join("man").join(page))
            .expect("read the page")
            .replace("\\-", "-")
    };
    let ctl = artifacts().fakenotify_ctl();
    let daemon = artifacts().fakenotifyd();
    for (page, helps) in [
        (
            "fakenotify-ctl.1",
            vec![help(ctl.clone(), "watch"), help(ctl.clone(), "add"), help(ctl, "feed")],
        ),
        ("fakenotifyd.8", vec![help(daemon, "start")]),
    ] {
        let text = roff(page);
        for option in helps.iter().flat_map(|h| long_options(h)) {
            assert!(text.contains(&option), "{page} does not mention {option}");
        }
    }
}

#[test]
fn the_bash_completion_loads_and_offers_the_watch_options() {
    let file = repo_root().join("completions/fakenotify-ctl.bash");
    let script = r#"source "$1" && complete -p fakenotify-ctl && complete -p fakenotifyd &&
        COMP_WORDS=(fakenotify-ctl watch --ex) COMP_CWORD=2 && _fakenotify fakenotify-ctl &&
        echo "${COMPREPLY[*]}" &&
        COMP_WORDS=(fakenotify-ctl watch -e close_write,mo) COMP_CWORD=3 &&
        _fakenotify fakenotify-ctl && echo "${COMPREPLY[*]}""#;
    let output =
        Command::new("bash").args(["-c", script, "bash"]).arg(&file).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "complete -F _fakenotify fakenotify-ctl");
    assert_eq!(lines[1], "complete -F _fakenotify fakenotifyd");
    assert_eq!(lines[2], "--exclude --excludei");
    assert_eq!(
        lines[3],
        "close_write,modify close_write,moved_from close_write,moved_to close_write,move close_write,move_self"
    );
}

/// Runs `shell ARGS`; `None` if the shell is not installed.
fn shell(shell: &str, args: &[&str]) -> Option<String> {
    let completions = repo_root().join("completions");
    match Command::new(shell).args(args).current_dir(&completions).output() {
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{shell} {args:?}: {stderr}");
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("{shell} is not installed: its completion is not checked");
            None
        }
        Err(e) => panic!("run {shell}: {e}"),
    }
}

#[test]
fn the_zsh_and_fish_completions_load_where_those_shells_are_installed() {
    let compinit = "fpath=($PWD $fpath); autoload -U compinit; compinit -u -D; \
        print -- ${_comps[fakenotify-ctl]} ${_comps[fakenotifyd]}";
    if let Some(out) = shell("zsh", &["-n", "_fakenotify"]).and(shell("zsh", &["-fc", compinit])) {
        assert_eq!(out.trim(), "_fakenotify _fakenotify", "zsh binds both commands");
    }
    let offered = "source fakenotify-ctl.fish; complete -C'fakenotify-ctl watch --exc'";
    if let Some(out) = shell("fish", &["-c", offered]) {
        assert!(out.contains("--exclude\t") && out.contains("--excludei\t"), "{out}");
    }
    let levels = "source fakenotifyd.fish; complete -C'fakenotifyd start --log-level '";
    if let Some(out) = shell("fish", &["-c", levels]) {
        assert_eq!(out.lines().collect::<Vec<_>>(), ["debug", "error", "info", "warn"]);
    }
}
