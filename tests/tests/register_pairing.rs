//! Register proves its two sockets are one pair before the daemon writes to either (issue 14,
//! item 6). A user who sends its own socket as the application's end and a third-party
//! service's socket as the daemon's end must not make the daemon write anything (events, with
//! root's credentials) into that service's connection.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use fakenotify_proto::record::Record;
use fakenotify_tests::raw_client::{self, Acquire};
use fakenotify_tests::*;

const NOBODY: u32 = 65534;

#[test]
fn a_register_of_two_unrelated_sockets_is_refused_and_the_third_party_hears_nothing() {
    let watched = TempDir::new_in(Path::new("/dev/shm"), "pairing");
    std::fs::set_permissions(watched.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let daemon = Daemon::fast();
    // A service's connection: the service reads `service`; the attacker got hold of `leaked`.
    let (leaked, service) = raw_client::socketpair().unwrap();
    let (mine, my_peer) = raw_client::socketpair().unwrap();

    let what = [
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Connect(daemon.socket().to_owned()),
        Acquire::Open(watched.path().to_owned(), libc::O_RDONLY | libc::O_DIRECTORY),
    ];
    let mut got: Vec<OwnedFd> = raw_client::acquire_as(NOBODY, NOBODY, &what)
        .into_iter()
        .map(|r| r.expect("uid 65534 connects and opens its directory"))
        .collect();
    let dir = got.pop().unwrap();
    let conns = got;

    let cases: [(&str, [&OwnedFd; 2]); 3] = [
        ("its own socket, then the service's", [&mine, &leaked]),
        ("the service's socket, then its own", [&leaked, &mine]),
        ("one socket twice", [&mine, &mine]),
    ];
    for ((what, [app, daemon_end]), conn) in cases.iter().zip(&conns) {
        let reply = raw_client::request(conn, Record::Register, &[app.as_fd(), daemon_end.as_fd()]);
        assert_ne!(reply.errno, 0, "Register with {what}: {reply:?}");
        // Were it registered, this watch would send the service events.
        let reply = raw_client::request(
            &conns[3],
            Record::AddWatch { mask: IN_ALL_EVENTS },
            &[app.as_fd(), dir.as_fd()],
        );
        assert_ne!(reply.errno, 0, "AddWatch after the Register with {what}: {reply:?}");
    }
    write(&watched.join("created"), b"");
    for (who, fd) in [("the third-party service", &service), ("the attacker's peer", &my_peer)] {
        if let Err(got) = raw_client::silent_for(fd, Duration::from_secs(1)) {
            panic!("{who} received {got:?}\n{}", daemon.log());
        }
    }

    // A real pair of the same user is served.
    let conn = raw_client::acquire_as(NOBODY, NOBODY, &[Acquire::Connect(daemon.socket().into())])
        .pop()
        .unwrap()
        .unwrap();
    let app = raw_client::register(&conn).expect("a socketpair registers");
    let reply = raw_client::request(&conn, Record::AddWatch { mask: IN_CREATE }, &[dir.as_fd()]);
    assert!(reply.errno == 0 && reply.value == 1, "{reply:?}");
    write(&watched.join("second"), b"");
    assert!(
        matches!(seqpacket::receive(&app, WAIT), Ok(seqpacket::Answer::Message(_))),
        "the registered instance gets its event"
    );
}
