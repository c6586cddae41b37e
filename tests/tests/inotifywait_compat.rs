//! `fakenotify-ctl watch` is a drop-in for `inotifywait`: the same flags on the same polled
//! bindfs mount print the same lines (inotifywait runs through the preload, so both are fed by
//! the one daemon's polls of the one watched directory), and end with the same exit codes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fakenotify_tests::*;

/// The same command line run as `inotifywait` (preloaded) and as `fakenotify-ctl watch`.
struct Pair {
    inotifywait: Client,
    ctl: Client,
}

impl Pair {
    fn spawn(daemon: &Daemon, args: &[&str]) -> Pair {
        let mut inotifywait = Client::spawn("inotifywait", args, Some(daemon), true);
        let mut ctl_args = vec!["watch"];
        ctl_args.extend_from_slice(args);
        let mut ctl = Client::spawn(artifacts().fakenotify_ctl(), &ctl_args, Some(daemon), false);
        for client in [&mut inotifywait, &mut ctl] {
            client.expect_line("Watches established.", |l| l.text == "Watches established.");
        }
        Pair { inotifywait, ctl }
    }

    /// Waits until both printed `line` on stdout.
    fn expect(&mut self, line: &str) {
        for client in [&mut self.inotifywait, &mut self.ctl] {
            client.expect_line(line, |l| l.stream == Stream::Stdout && l.text == line);
        }
    }

    /// Both transcripts' stdout, after a quiet moment, must be equal.
    fn assert_same_lines(&mut self) {
        std::thread::sleep(Duration::from_millis(600));
        let stdout = |c: &mut Client| -> Vec<String> {
            c.lines().into_iter().filter(|l| l.stream == Stream::Stdout).map(|l| l.text).collect()
        };
        let (theirs, ours) = (stdout(&mut self.inotifywait), stdout(&mut self.ctl));
        assert_eq!(theirs, ours, "inotifywait (left) and fakenotify-ctl watch (right) differ");
    }
}

#[test]
fn the_default_lines_match_inotifywait_for_create_modify_move_delete() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    write(&fuse.backing("old"), b"1");
    let mount = fuse.mount.display().to_string();
    let mut pair = Pair::spawn(&daemon, &["-m", &mount]);

    write(&fuse.backing("new"), b"x");
    pair.expect(&format!("{mount}/ CREATE new"));
    pair.expect(&format!("{mount}/ CLOSE_WRITE,CLOSE new"));
    append(&fuse.backing("old"), b"2");
    pair.expect(&format!("{mount}/ MODIFY old"));
    std::fs::rename(fuse.backing("new"), fuse.backing("renamed")).expect("rename");
    pair.expect(&format!("{mount}/ MOVED_TO renamed"));
    std::fs::create_dir(fuse.backing("dir")).expect("mkdir");
    pair.expect(&format!("{mount}/ CREATE,ISDIR dir"));
    std::fs::remove_file(fuse.backing("renamed")).expect("remove");
    pair.expect(&format!("{mount}/ DELETE renamed"));
    pair.assert_same_lines();
    let lines = pair.ctl.lines();
    assert!(
        lines.iter().any(|l| l.text == format!("{mount}/ MOVED_FROM new")),
        "a move is MOVED_FROM and MOVED_TO, without a cookie suffix: {lines:?}"
    );
}

#[test]
fn recursive_filtered_and_formatted_lines_match_inotifywait() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    std::fs::create_dir(fuse.backing("a")).expect("mkdir a");
    let mount = fuse.mount.display().to_string();
    let args = [
        "-m",
        "-r",
        "-e",
        "create,moved_to",
        "--event=delete",
        "--exclude",
        r"\.(swp|part)$",
        "--format",
        "%e|%w|%f|%:e",
        &mount,
    ];
    let mut pair = Pair::spawn(&daemon, &args);
    write(&fuse.backing("a/first"), b"");
    pair.expect(&format!("CREATE|{mount}/a/|first|CREATE"));

    write(&fuse.backing("a/skip.swp"), b"");
    std::fs::create_dir(fuse.backing("a/sub")).expect("mkdir a/sub");
    pair.expect(&format!("CREATE,ISDIR|{mount}/a/|sub|CREATE:ISDIR"));
    // Both add their watch on the new directory once they have printed its CREATE.
    std::thread::sleep(Duration::from_millis(500));
    write(&fuse.backing("a/sub/inner"), b"");
    pair.expect(&format!("CREATE|{mount}/a/sub/|inner|CREATE"));
    std::fs::rename(fuse.backing("a/sub/inner"), fuse.backing("a/moved")).expect("rename");
    pair.expect(&format!("MOVED_TO|{mount}/a/|moved|MOVED_TO"));
    std::fs::remove_file(fuse.backing("a/moved")).expect("remove");
    pair.expect(&format!("DELETE|{mount}/a/|moved|DELETE"));
    // A watched directory renamed: both follow it under its new name.
    std::fs::rename(fuse.backing("a/sub"), fuse.backing("a/sub2")).expect("rename a/sub");
    pair.expect(&format!("MOVED_TO,ISDIR|{mount}/a/|sub2|MOVED_TO:ISDIR"));
    std::thread::sleep(Duration::from_millis(500));
    write(&fuse.backing("a/sub2/inner2"), b"");
    pair.expect(&format!("CREATE|{mount}/a/sub2/|inner2|CREATE"));
    pair.assert_same_lines();
    let all = pair.ctl.lines();
    assert!(!all.iter().any(|l| l.text.contains("skip.swp")), "--exclude: {all:?}");
    assert!(!all.iter().any(|l| l.text.starts_with("CLOSE")), "-e: {all:?}");
}

/// Runs `program ARGS` with the daemon's socket (and the preload for inotifywait); returns the
/// exit code and stdout.
fn run(program: &Path, args: &[&str], daemon: &Daemon, preload: bool) -> (Option<i32>, String) {
    let mut command = Command::new(program);
    command.args(args).env("FAKENOTIFY_SOCKET", daemon.socket());
    if preload {
        command.env("LD_PRELOAD", artifacts().preload());
    } else {
        command.env_remove("LD_PRELOAD");
    }
    let output = command.output().unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn exit_codes_match_inotifywait_timeout_first_event_and_other_event() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mount = fuse.mount.display().to_string();
    let ctl = artifacts().fakenotify_ctl();
    let both = |args: &[&str], prepare: &dyn Fn(), change: &dyn Fn()| {
        let mut ctl_args = vec!["watch"];
        ctl_args.extend_from_slice(args);
        prepare();
        let theirs = std::thread::scope(|s| {
            let theirs = s.spawn(|| run(Path::new("inotifywait"), args, &daemon, true));
            std::thread::sleep(Duration::from_millis(700));
            change();
            theirs.join().expect("inotifywait thread")
        });
        prepare();
        let ours = std::thread::scope(|s| {
            let ours = s.spawn(|| run(&ctl, &ctl_args, &daemon, false));
            std::thread::sleep(Duration::from_millis(700));
            change();
            ours.join().expect("ctl thread")
        });
        assert_eq!(theirs, ours, "{args:?}: inotifywait (left) and fakenotify-ctl watch (right)");
        ours
    };
    // -t with no event: exit 2, nothing printed.
    assert_eq!(both(&["-t", "1", &mount], &|| {}, &|| {}), (Some(2), String::new()));
    // Without -m: the first event, then exit 0.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let create = || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        write(&fuse.backing(format!("f{i}")), b"");
    };
    let args = ["-q", "-e", "create", "--format", "%e %T", "--timefmt", "%Y %b", &mount];
    let (code, out) = both(&args, &|| {}, &create);
    assert!(code == Some(0) && out.starts_with("CREATE 20") && out.ends_with('\n'), "{out:?}");
    // An event not asked for (the watched file deleted: IN_IGNORED): exit 1.
    let victim = fuse.mounted("victim").display().to_string();
    let (code, _) =
        both(&["-q", "-e", "modify", &victim], &|| write(&fuse.backing("victim"), b""), &|| {
            std::fs::remove_file(fuse.backing("victim")).expect("remove the watched file")
        });
    assert_eq!(code, Some(1));
}
