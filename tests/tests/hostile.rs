//! Hostile and broken clients, all at once against one daemon, while a well-behaved preloaded
//! client keeps receiving its events: idle connections, garbage records, wrong descriptors, a
//! client that adds watches until refused and one that never reads. The daemon closes and logs
//! every bad peer and its memory stays bounded.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use fakenotify_proto::record::{Record, HEADER_LEN, MAGIC, VERSION};
use fakenotify_tests::seqpacket::{self, Answer};
use fakenotify_tests::*;

fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct owned by this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn header(kind: u16, len: u32) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&kind.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes
}

/// Sends `message` with `fds` as SCM_RIGHTS.
fn send_with_fds(conn: &OwnedFd, message: &[u8], fds: &[i32]) {
    assert!(seqpacket::send_with_fds(conn.as_raw_fd(), message, fds) >= 0, "sendmsg");
}

fn expect_closed(conn: &OwnedFd, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        match seqpacket::receive(conn, Duration::from_millis(200)) {
            Ok(Answer::Closed) | Err(_) => return,
            Ok(Answer::Message(_)) | Ok(Answer::Silent) if Instant::now() < deadline => {}
            other => panic!("{what}: the daemon did not close the connection: {other:?}"),
        }
    }
}

#[test]
fn hostile_clients_do_not_disturb_a_well_behaved_one() {
    raise_fd_limit();
    let fuse = FuseMount::new();
    let daemon = Daemon::start(
        "[daemon]\ndefault_poll_interval = \"200ms\"\nmax_user_watches = 64\nmax_queued_events = 512\n",
    );
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let mut good = Client::inotify_client(Libc::Glibc, &["-n", &spec], Some(&daemon), true);
    let baseline = rss_kib(daemon.pid());

    // 1 000 connections that never send anything.
    let idle: Vec<OwnedFd> =
        (0..1000).filter_map(|_| seqpacket::connect(daemon.socket()).ok()).collect();
    assert!(idle.len() >= 900, "could open only {} idle connections", idle.len());

    // Garbage records, each on a connection of its own.
    let mut bad_magic = header(1, 0);
    bad_magic[0] = b'X';
    let mut bad_version = header(1, 0);
    bad_version[4] = 99;
    let huge = header(5, u32::MAX);
    let mut truncated = header(2, 4);
    truncated.extend_from_slice(&[1, 2]);
    let unknown_kind = header(77, 0);
    for (what, message) in [
        ("wrong magic", bad_magic),
        ("wrong version", bad_version),
        ("huge length", huge),
        ("truncated body", truncated),
        ("unknown kind", unknown_kind),
        ("short header", vec![b'F'; HEADER_LEN - 1]),
    ] {
        let conn = seqpacket::connect(daemon.socket()).expect("connect");
        seqpacket::send(&conn, &message).expect("send");
        expect_closed(&conn, what);
    }

    // Descriptors that do not fit the record: too many, too few, not sockets.
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let null = file.as_fd().as_raw_fd();
    let mut register = vec![0u8; 64];
    let n = Record::Register.encode(&mut register).expect("encode");
    for (what, fds) in [
        ("three descriptors", vec![null, null, null]),
        ("one descriptor for Register", vec![null]),
        ("non-socket descriptors", vec![null, null]),
    ] {
        let conn = seqpacket::connect(daemon.socket()).expect("connect");
        send_with_fds(&conn, &register[..n], &fds);
        match seqpacket::receive(&conn, WAIT).expect("receive") {
            Answer::Message(reply) => match Record::decode(&reply) {
                Ok(Record::Reply(r)) => assert_ne!(r.errno, 0, "{what} must be refused"),
                other => panic!("{what}: unexpected answer {other:?}"),
            },
            Answer::Closed => {}
            Answer::Silent => panic!("{what}: no answer"),
        }
    }

    // A client that never reads, flooded past its queue limit.
    let flood_dir = TempDir::new("flood");
    let flood_spec = format!("IN_CREATE:{}", flood_dir.path().display());
    let mut sleeper =
        Client::inotify_client(Libc::Glibc, &["-n", &flood_spec], Some(&daemon), true);
    sleeper.command("pause");
    for i in 0..3000 {
        std::fs::write(flood_dir.join(format!("{i:0>200}")), b"").expect("write");
    }

    // A client that adds watches until refused: ENOSPC at max_user_watches.
    let many = TempDir::new("many");
    let mut specs = Vec::new();
    for i in 0..80 {
        let dir = many.join(format!("d{i}"));
        std::fs::create_dir(&dir).expect("mkdir");
        specs.push(format!("IN_CREATE:{}", dir.display()));
    }
    let spec_refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let mut greedy = Client::inotify_client(Libc::Glibc, &spec_refs, Some(&daemon), true);
    greedy.expect_line("ENOSPC", |l| {
        l.text.starts_with("ERROR add_watch") && l.text.contains("ENOSPC")
    });

    // Through all of it, the well-behaved client gets its events.
    for i in 0..3 {
        let name = format!("still-served-{i}");
        write(&fuse.backing(&name), b"");
        good.expect_event(&name, |e| e.matches(IN_CREATE, &name));
    }
    let status = daemon.status();
    assert!(status.overflows >= 1, "the flooded instance overflowed: {status:?}");
    let grown = rss_kib(daemon.pid()).saturating_sub(baseline);
    assert!(grown < 32 * 1024, "daemon RSS grew by {grown} KiB under hostile clients");

    // Idle connections are closed after their timeout; the log names every bad peer.
    let closed = idle
        .iter()
        .filter(|c| matches!(seqpacket::receive(c, WAIT), Ok(Answer::Closed) | Err(_)))
        .count();
    assert_eq!(closed, idle.len(), "every idle connection is closed");
    let log = daemon.log();
    for cause in [
        "does not start with \"FNTF\"",
        "protocol version 99",
        "unknown record kind 77",
        "header declares a 4-byte body but 2 bytes came",
        "shorter than the 12-byte header",
        "record needs 2 descriptors, 3 came",
        "no request within",
    ] {
        assert!(log.contains(cause), "the log names '{cause}':\n{log}");
    }
    drop(greedy);
    drop(sleeper);
    let name = "after-all";
    write(&fuse.backing(name), b"");
    good.expect_event(name, |e| e.matches(IN_CREATE, name));
}

/// Sends `record` with `fds` on `conn` and returns the daemon's Reply as (errno, value).
fn ask(conn: &OwnedFd, record: Record<'_>, fds: &[i32]) -> (i32, i32) {
    let mut buf = vec![0u8; 64];
    let n = record.encode(&mut buf).expect("encode");
    send_with_fds(conn, &buf[..n], fds);
    match seqpacket::receive(conn, WAIT).expect("receive") {
        Answer::Message(reply) => match Record::decode(&reply) {
            Ok(Record::Reply(r)) => (r.errno, r.value),
            other => panic!("{record:?}: unexpected answer {other:?}"),
        },
        other => panic!("{record:?}: no reply: {other:?}"),
    }
}

#[test]
fn garbage_on_a_request_channel_closes_the_channel_not_the_instance() {
    let dir = TempDir::new("channel-garbage");
    let daemon = Daemon::fast();
    let mut pair = [0i32; 2];
    // SAFETY: socketpair fills two fds, which `OwnedFd`s take over at once.
    let (app, daemon_end) = unsafe {
        assert_eq!(libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, pair.as_mut_ptr()), 0);
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1]))
    };
    let channel = seqpacket::connect(daemon.socket()).expect("connect");
    let ends = [app.as_raw_fd(), daemon_end.as_raw_fd()];
    assert_eq!(ask(&channel, Record::Register, &ends), (0, 0), "registered");
    drop(daemon_end);

    // On the channel, the instance is implied: a Register, or an AddWatch carrying the
    // application's end too, is out of place there.
    let watched = std::fs::File::open(dir.path()).expect("open the directory");
    let mut add = vec![0u8; 64];
    let n = Record::AddWatch { mask: IN_CREATE }.encode(&mut add).expect("encode");
    send_with_fds(&channel, &add[..n], &[app.as_raw_fd(), watched.as_raw_fd()]);
    expect_closed(&channel, "an AddWatch with two descriptors on the channel");

    // The instance lives on: a short connection adds a watch, and its events arrive.
    let conn = seqpacket::connect(daemon.socket()).expect("connect");
    let (errno, wd) =
        ask(&conn, Record::AddWatch { mask: IN_CREATE }, &[app.as_raw_fd(), watched.as_raw_fd()]);
    assert_eq!((errno, wd), (0, 1), "the instance still takes watches");
    write(&dir.join("after"), b"");
    match seqpacket::receive(&app, WAIT).expect("read the instance") {
        Answer::Message(bytes) => {
            let name_len = u32::from_le_bytes(bytes[12..16].try_into().expect("len")) as usize;
            let mask = u32::from_le_bytes(bytes[4..8].try_into().expect("mask"));
            assert_eq!(mask, IN_CREATE);
            assert!(bytes[16..16 + name_len].starts_with(b"after"), "{bytes:?}");
        }
        other => panic!("no event after the channel closed: {other:?}"),
    }
    assert!(daemon.log().contains("record needs 1 descriptors, 2 came"), "{}", daemon.log());
}
