//! The daemon's own `libfakenotify.so`, copied at start into the socket's directory
//! (`/run/fakenotify/libfakenotify.so`), so that a container needs one read-only mount of that
//! directory for both the socket and the library, and the library always matches the daemon.
//!
//! The copy is written under a temporary name through the directory's fd (the one the listener
//! opened and checked), synced, and renamed over the old one: a process that mapped the old
//! library keeps its inode, and a process starting now maps either the old or the new file,
//! never half of one.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatVfsMountFlags};
use rustix::io::Errno;

/// The copy's name in the socket directory.
pub const NAME: &CStr = c"libfakenotify.so";

/// Where the library is looked for when `daemon.preload_library` is not set, for a daemon at
/// `exe`: beside it (a cargo build), in the install prefix's `lib/fakenotify` (install.sh, the
/// Nix package), then the usual prefixes.
pub fn candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        found.push(dir.join("libfakenotify.so"));
        if let Some(prefix) = dir.parent() {
            found.push(prefix.join("lib/fakenotify/libfakenotify.so"));
        }
    }
    for fixed in
        ["/usr/local/lib/fakenotify/libfakenotify.so", "/usr/lib/fakenotify/libfakenotify.so"]
    {
        let fixed = PathBuf::from(fixed);
        if !found.contains(&fixed) {
            found.push(fixed);
        }
    }
    found
}

/// The library to copy: the configured path, else the first candidate that exists; the error
/// is the clause for the one-line warning.
pub fn source(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = configured {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().ok();
    let candidates = candidates(exe.as_deref());
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "no libfakenotify.so found (tried {}; set daemon.preload_library)",
            tried.join(", ")
        )
    })
}

/// Why the copy failed: the operation and its errno, or the source's problem.
#[derive(Debug)]
pub struct CopyError {
    pub op: &'static str,
    pub cause: String,
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.cause)
    }
}

fn failed(op: &'static str) -> impl FnOnce(Errno) -> CopyError {
    move |errno| CopyError { op, cause: errno.to_string() }
}

/// Copies `source` into `dir` as [`NAME`], mode 0644, atomically replacing what was there.
/// Returns the number of bytes copied.
pub fn install(dir: BorrowedFd<'_>, source: &Path) -> Result<u64, CopyError> {
    let from = rustix::fs::open(source, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(failed("open the library"))?;
    let st = rustix::fs::fstat(&from).map_err(failed("fstat the library"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(CopyError { op: "open the library", cause: "not a regular file".into() });
    }
    let temp = CString::new(format!(".libfakenotify.so.{}.tmp", std::process::id()))
        .map_err(|_| CopyError { op: "temporary name", cause: "holds a NUL byte".into() })?;
    // A leftover of an earlier daemon with this pid (a crash between create and rename).
    let _ = rustix::fs::unlinkat(dir, temp.as_c_str(), AtFlags::empty());
    let to = rustix::fs::openat(
        dir,
        temp.as_c_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(failed("create the temporary copy"))?;
    let written = copy_and_sync(File::from(from), File::from(to));
    let renamed = written.and_then(|bytes| {
        rustix::fs::renameat(dir, temp.as_c_str(), dir, NAME)
            .map(|()| bytes)
            .map_err(failed("rename the copy into place"))
    });
    if renamed.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_c_str(), AtFlags::empty());
        return renamed;
    }
    // The rename is durable once the directory is synced; a failure here loses nothing now.
    if let Ok(listing) = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::fs::fsync(&listing);
    }
    renamed
}

/// Copies all of `from` into `to`, sets the mode any process may map (0644) and syncs.
fn copy_and_sync(mut from: File, mut to: File) -> Result<u64, CopyError> {
    let io = |op: &'static str| move |e: std::io::Error| CopyError { op, cause: e.to_string() };
    let bytes = std::io::copy(&mut from, &mut to).map_err(io("copy the library"))?;
    to.flush().map_err(io("copy the library"))?;
    rustix::fs::fchmod(to.as_fd(), Mode::from_raw_mode(0o644)).map_err(failed("fchmod 0644"))?;
    rustix::fs::fsync(to.as_fd()).map_err(failed("fsync the copy"))?;
    Ok(bytes)
}

/// Whether the directory's mount forbids mapping files for execution (`noexec`), which makes
/// `ld.so` refuse a library there.
pub fn on_noexec_mount(dir: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatvfs(dir).is_ok_and(|vfs| vfs.f_flag.contains(StatVfsMountFlags::NOEXEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_beside_the_binary_then_its_prefix() {
        let found = candidates(Some(Path::new("/opt/fn/bin/fakenotifyd")));
        assert_eq!(
            found,
            [
                "/opt/fn/bin/libfakenotify.so",
                "/opt/fn/lib/fakenotify/libfakenotify.so",
                "/usr/local/lib/fakenotify/libfakenotify.so",
                "/usr/lib/fakenotify/libfakenotify.so",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(candidates(Some(Path::new("/usr/local/bin/fakenotifyd"))).len(), 3);
        assert_eq!(candidates(None).len(), 2);
    }

    #[test]
    fn install_replaces_the_copy_with_a_new_inode() {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-runtime-lib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("source.so");
        std::fs::write(&source, b"first").unwrap();
        let fd = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(install(fd.as_fd(), &source).unwrap(), 5);
        let copy = dir.join("libfakenotify.so");
        let first = std::fs::metadata(&copy).unwrap();
        std::fs::write(&source, b"second").unwrap();
        assert_eq!(install(fd.as_fd(), &source).unwrap(), 6);
        assert_eq!(std::fs::read(&copy).unwrap(), b"second");
        let second = std::fs::metadata(&copy).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(first.ino(), second.ino(), "renamed over, not rewritten in place");
        assert_eq!(second.mode() & 0o777, 0o644);
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        let missing = install(fd.as_fd(), &dir.join("absent.so")).unwrap_err();
        assert_eq!(missing.op, "open the library");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
