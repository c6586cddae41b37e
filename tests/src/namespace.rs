//! Tests that need the real default paths (`/run/fakenotify`, `/run/fakenotify.sock`,
//! `/etc/fakenotify`) run themselves again in a private mount namespace with fresh tmpfs there,
//! so a daemon already serving the host's default socket (or an installed configuration)
//! neither fails them nor is disturbed by them, and such tests can run in parallel. Needs root
//! (`unshare --mount`), as the other end-to-end tests do.

use std::process::Command;

use crate::artifacts;

/// Set in the copy of a test that runs inside the private namespace.
const INSIDE: &str = "FAKENOTIFY_TEST_PRIVATE_NAMESPACE";

/// Mounts the tmpfs over `/run` and `/etc/fakenotify`, then runs its arguments.
const PRIVATE_MOUNTS: &str = "mount -t tmpfs -o mode=0755 fakenotify-test-run /run && \
    { [ ! -d /etc/fakenotify ] || mount -t tmpfs -o mode=0755 fakenotify-test-etc /etc/fakenotify; } && \
    exec \"$@\"";

/// Whether this process is the copy running inside the private namespace.
pub fn inside_private_namespace() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Runs the test `name` of this test binary again in a private mount namespace (see the module
/// doc) and fails with its output if it fails there. A test starts with
/// `if !inside_private_namespace() { return in_private_namespace("its_name"); }`.
pub fn in_private_namespace(name: &str) {
    artifacts(); // built out here, where a build failure reads plainly
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", PRIVATE_MOUNTS, "sh"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{name} in a private mount namespace (unshare --mount needs root) failed:\n{text}"
    );
}
