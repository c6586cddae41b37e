//! Uniquely named temporary directories (under `std::env::temp_dir()` unless asked), removed
//! on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory named `fakenotify-<label>-<pid>-<n>`; `Drop` removes it and its contents.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), label)
    }

    /// Like [`TempDir::new`], under `base`.
    pub fn new_in(base: &Path, label: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("fakenotify-{label}-{}-{n}", std::process::id()));
        // A leftover of an earlier run with the same pid would make the test see stale files.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| {
            panic!("cannot create temporary directory {}: {e}", path.display())
        });
        // 0755 whatever the umask: the daemon refuses a socket directory others may write.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod temporary directory {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover in /tmp must not turn a passing test into a failure.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
