//! A huge first listing delays only the request that asked for it: a client adding and removing
//! an IN_MODIFY watch on a 100 000-entry directory behind bindfs in a loop (each add lists the
//! directory with every entry's attributes) leaves `status` and another client's events as they
//! were. The figures are printed, not asserted tightly: a loaded machine moves them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const ENTRIES: usize = 100_000;
const ROUNDS: usize = 3;

#[test]
fn a_huge_first_listing_delays_only_the_request_that_asked() {
    let huge = FuseMount::new();
    let alive = FuseMount::new();
    std::fs::create_dir(huge.backing("big")).expect("mkdir");
    for f in 0..ENTRIES {
        std::fs::write(huge.backing("big").join(format!("{f:06}")), b"").expect("write");
    }
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
    let spec = format!("CREATE:{}", alive.mount.display());
    let mut watcher = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);

    let mut adder = Client::inotify_client(Libc::Glibc, &[], Some(&daemon), true);
    let big = huge.mounted("big");
    let done = AtomicBool::new(false);
    let (adds, mut status_times, mut answer_times, mut event_times) = std::thread::scope(|scope| {
        let measuring = scope.spawn(|| {
            let (mut status_times, mut answer_times, mut event_times) =
                (Vec::new(), Vec::new(), Vec::new());
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let (_, took) = daemon.full_status();
                status_times.push(took);
                answer_times.push(daemon.status_round_trip());
                let name = format!("alive-{n}");
                n += 1;
                let began = Instant::now();
                write(&alive.backing(&name), b"");
                watcher.expect_event(&name, |e| e.matches(IN_CREATE, &name));
                event_times.push(began.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            (status_times, answer_times, event_times)
        });
        let mut adds = Vec::new();
        for _ in 0..ROUNDS {
            adder.mark();
            let began = Instant::now();
            adder.command(&format!("add MODIFY:{}", big.display()));
            let line = adder
                .wait_for(Duration::from_secs(300), |l| l.text.starts_with("WATCH "))
                .unwrap_or_else(|| panic!("no WATCH line: {}", adder.transcript()));
            adds.push(began.elapsed());
            let wd = line.text.split(' ').nth(1).expect("WATCH <wd> <path>").to_owned();
            adder.command(&format!("rm {wd}"));
            adder.expect_line("RM OK", |l| l.text == format!("RM {wd} OK"));
        }
        done.store(true, Ordering::Relaxed);
        let (status_times, answer_times, event_times) =
            measuring.join().expect("the measuring thread");
        (adds, status_times, answer_times, event_times)
    });
    status_times.sort();
    answer_times.sort();
    event_times.sort();
    let p99 = |v: &[Duration]| v[(v.len() * 99 / 100).min(v.len() - 1)];
    eprintln!(
        "{ROUNDS} adds of an IN_MODIFY watch on {ENTRIES} entries took {adds:?}; meanwhile \
         {} status calls, p99 {:?}, max {:?} (from this process: p99 {:?}, max {:?}); \
         {} events, p99 {:?} (interval 300 ms)",
        status_times.len(),
        p99(&status_times),
        status_times.last().copied().unwrap_or_default(),
        p99(&answer_times),
        answer_times.last().copied().unwrap_or_default(),
        event_times.len(),
        p99(&event_times),
    );
    assert!(
        status_times.iter().chain(&answer_times).all(|t| *t < Duration::from_secs(2)),
        "status waited for a listing: {status_times:?}"
    );
    assert!(
        event_times.iter().all(|t| *t < Duration::from_secs(3)),
        "another mount's events waited for a listing: {event_times:?}"
    );
}
