//! `inotify_add_watch` and `inotify_rm_watch`. A socket fd is an instance the daemon serves:
//! the request goes to the daemon with that fd as proof of ownership. Any other fd gets the
//! real syscall. The object to watch is opened here for reading, with the caller's credentials
//! and cwd, so the fd proves to the daemon that the caller may read it.

use core::ffi::{c_int, CStr};

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::inotify::WatchFlags;
use rustix::fs::{Access, AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use fakenotify_proto::inotify::{
    watch_mask_bits_are_known, watch_mask_is_valid, IN_DONT_FOLLOW, IN_ONLYDIR,
};
use fakenotify_proto::record::{Record, Reply};

use crate::daemon_link::{self, LinkError, Step, Via};
use crate::{debug, errno};

/// Who decided a call's result, for the debug line.
enum Route {
    /// The kernel: `fd` is not a socket.
    Real,
    /// The daemon answered, over the instance's channel or a connection of its own.
    Daemon(Via),
    /// Refused here before asking the daemon, at the named step.
    Local(&'static str),
    /// The daemon could not be asked or gave no usable answer.
    Unreachable(LinkError),
}

/// `inotify_add_watch(fd, path, mask)`.
pub fn add(fd: BorrowedFd<'_>, path: Option<&CStr>, mask: u32) -> Result<c_int, Errno> {
    let (result, route) = add_routed(fd, path, mask);
    if debug::enabled() {
        let mut line = debug::Line::new("inotify_add_watch(");
        line.int(fd.as_raw_fd().into()).text(", ");
        match path {
            Some(path) => line.quoted(path.to_bytes()),
            None => line.text("NULL"),
        };
        line.text(", ").hex(mask).text(")").result("wd ", result.map(i64::from));
        log_route(&mut line, &route);
        line.emit();
    }
    result
}

fn add_routed(fd: BorrowedFd<'_>, path: Option<&CStr>, mask: u32) -> (Result<c_int, Errno>, Route) {
    // In the kernel's order: the mask's bits, the fd, then the rest of the mask.
    if !watch_mask_bits_are_known(mask) {
        return (Err(Errno::INVAL), Route::Local("mask"));
    }
    let app_ino = match instance_ino(fd) {
        Err(errno) => return (Err(errno), Route::Local("fstat")),
        Ok(None) => {
            let Some(path) = path else { return (Err(Errno::FAULT), Route::Local("path")) };
            let real = rustix::fs::inotify::add_watch(fd, path, WatchFlags::from_bits_retain(mask));
            return (real, Route::Real);
        }
        Ok(Some(ino)) => ino,
    };
    if let Err(errno) = check_mask(mask) {
        return (Err(errno), Route::Local("mask"));
    }
    let Some(path) = path else { return (Err(Errno::FAULT), Route::Local("path")) };
    let object = match open_object(path, mask) {
        Ok(object) => object,
        Err(errno) => return (Err(errno), Route::Local("open")),
    };
    let (result, via) =
        daemon_link::instance_request(fd, app_ino, Record::AddWatch { mask }, Some(object.as_fd()));
    match result {
        Ok(Reply { errno: 0, value }) if value > 0 => (Ok(value), Route::Daemon(via)),
        Ok(Reply { errno: 0, .. }) => (
            Err(Errno::NOSPC),
            Route::Unreachable(LinkError { step: Step::Reply, errno: Errno::PROTO }),
        ),
        Ok(reply) => (Err(errno::from_reply(reply.errno)), Route::Daemon(via)),
        // Real inotify's answer when it cannot take another watch.
        Err(why) => (Err(Errno::NOSPC), Route::Unreachable(why)),
    }
}

/// `inotify_rm_watch(fd, wd)`.
pub fn remove(fd: BorrowedFd<'_>, wd: c_int) -> Result<c_int, Errno> {
    let (result, route) = remove_routed(fd, wd);
    if debug::enabled() {
        let mut line = debug::Line::new("inotify_rm_watch(");
        line.int(fd.as_raw_fd().into()).text(", ").int(wd.into()).text(")");
        line.result("", result.map(i64::from));
        log_route(&mut line, &route);
        line.emit();
    }
    result
}

fn remove_routed(fd: BorrowedFd<'_>, wd: c_int) -> (Result<c_int, Errno>, Route) {
    match instance_ino(fd) {
        Err(errno) => (Err(errno), Route::Local("fstat")),
        Ok(None) => (rustix::fs::inotify::remove_watch(fd, wd).map(|()| 0), Route::Real),
        Ok(Some(app_ino)) => {
            match daemon_link::instance_request(fd, app_ino, Record::RmWatch { wd }, None) {
                (Ok(Reply { errno: 0, .. }), via) => (Ok(0), Route::Daemon(via)),
                (Ok(reply), via) => (Err(errno::from_reply(reply.errno)), Route::Daemon(via)),
                // Without the daemon no watch exists: as for an unknown wd.
                (Err(why), _) => (Err(Errno::INVAL), Route::Unreachable(why)),
            }
        }
    }
}

fn log_route(line: &mut debug::Line, route: &Route) {
    match route {
        Route::Real => line.text(" (real inotify)"),
        Route::Daemon(via) => line.text(" (daemon, ").text(via.name()).text(")"),
        Route::Local(step) => line.text(" (").text(step).text(")"),
        Route::Unreachable(why) => line
            .text(" (daemon unreachable: ")
            .text(why.step.name())
            .text(" ")
            .errno(why.errno)
            .text(")"),
    };
}

/// If `fd` is an instance served by the daemon (a socket), its inode. A real inotify fd is an
/// anonymous inode, never a socket.
fn instance_ino(fd: BorrowedFd<'_>) -> Result<Option<u64>, Errno> {
    let stat = rustix::fs::fstat(fd)?;
    Ok((FileType::from_raw_mode(stat.st_mode) == FileType::Socket).then_some(stat.st_ino))
}

/// The checks inotify_add_watch(2) makes on the mask before anything else.
fn check_mask(mask: u32) -> Result<(), Errno> {
    if watch_mask_is_valid(mask) {
        Ok(())
    } else {
        Err(Errno::INVAL)
    }
}

/// Opens the object to watch as real inotify would resolve it, with its errors, so that the fd
/// proves read access (the daemon checks it): directories `O_RDONLY|O_DIRECTORY`, which also
/// serves a directory the caller may list but not write; regular files `O_RDONLY`. A FIFO,
/// device or socket is never opened (a FIFO's open blocks or wakes its writer, a device's may
/// rewind a tape or take a terminal): it goes as `O_PATH` after a read-permission check here,
/// and the daemon grants it by its mode bits alone. IN_DONT_FOLLOW watches a symlink itself
/// (`O_PATH` too: every symlink grants read); IN_ONLYDIR refuses anything but a directory.
fn open_object(path: &CStr, mask: u32) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::CLOEXEC;
    if mask & IN_DONT_FOLLOW != 0 {
        // The symlink itself is the object.
        flags |= OFlags::NOFOLLOW;
    }
    // A directory, the usual case, in one call. O_DIRECTORY is checked before the object is
    // opened, so nothing but a directory is ever opened here.
    let readable = OFlags::RDONLY | OFlags::NOCTTY;
    match rustix::fs::openat(CWD, path, flags | readable | OFlags::DIRECTORY, Mode::empty()) {
        Err(Errno::NOTDIR) if mask & IN_ONLYDIR == 0 => {}
        other => return other,
    }
    // Anything else: O_PATH first, which opens nothing, then by type.
    let object = rustix::fs::openat(CWD, path, flags | OFlags::PATH, Mode::empty())?;
    match FileType::from_raw_mode(rustix::fs::fstat(&object)?.st_mode) {
        FileType::RegularFile | FileType::Directory => reopen(&object, path, flags | readable),
        FileType::Symlink => Ok(object),
        _ => {
            check_read_access(path, mask)?;
            Ok(object)
        }
    }
}

/// `object` (an `O_PATH` fd) opened again with `flags`, through `/proc/self/fd/N` so that it is
/// the very inode; by its path where `/proc` is missing, checked to be the same inode.
fn reopen(object: &OwnedFd, path: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut buf = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let prefix = b"/proc/self/fd/".len();
    let mut digits = [0u8; 10];
    let mut n = object.as_raw_fd() as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        buf[prefix + i] = *digit;
    }
    let magic = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno::NAMETOOLONG)?;
    // O_NOFOLLOW would refuse the magic link itself; what it names was resolved already.
    match rustix::fs::openat(CWD, magic, flags.difference(OFlags::NOFOLLOW), Mode::empty()) {
        Err(Errno::NOENT) => {}
        other => return other,
    }
    let reopened = rustix::fs::openat(CWD, path, flags | OFlags::NONBLOCK, Mode::empty())?;
    let (a, b) = (rustix::fs::fstat(object)?, rustix::fs::fstat(&reopened)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::NOENT);
    }
    Ok(reopened)
}

/// Real inotify needs read permission on the object.
fn check_read_access(path: &CStr, mask: u32) -> Result<(), Errno> {
    // AT_EACCESS: the effective ids, as the kernel checks for inotify. Kernels before 5.8 lack
    // faccessat2 and answer ENOSYS; the real ids are then checked, which differ only in setuid
    // programs.
    let mut flags = AtFlags::EACCESS;
    if mask & IN_DONT_FOLLOW != 0 {
        flags |= AtFlags::SYMLINK_NOFOLLOW;
    }
    match rustix::fs::accessat(CWD, path, Access::READ_OK, flags) {
        Err(Errno::NOSYS) => {
            rustix::fs::accessat(CWD, path, Access::READ_OK, flags.difference(AtFlags::EACCESS))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fakenotify_proto::inotify::{IN_CREATE, IN_MASK_ADD, IN_MASK_CREATE, IN_MODIFY};

    #[test]
    fn mask_checks_match_the_kernel() {
        assert_eq!(check_mask(IN_CREATE), Ok(()));
        assert_eq!(check_mask(IN_MODIFY | IN_MASK_ADD | IN_ONLYDIR), Ok(()));
        assert_eq!(check_mask(IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE), Err(Errno::INVAL));
        assert_eq!(check_mask(0), Err(Errno::INVAL));
        assert_eq!(check_mask(IN_ONLYDIR | IN_DONT_FOLLOW), Ok(()), "flags alone, as the kernel");
        assert_eq!(check_mask(IN_CREATE | 0x0800_0000), Err(Errno::INVAL));
    }

    fn scratch(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-preload-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("file", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        dir
    }

    fn open(dir: &std::path::Path, name: &str, mask: u32) -> Result<FileType, Errno> {
        let path =
            std::ffi::CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap();
        let object = open_object(&path, mask)?;
        Ok(FileType::from_raw_mode(rustix::fs::fstat(&object)?.st_mode))
    }

    #[test]
    fn objects_open_as_inotify_resolves_them() {
        let dir = scratch("resolve");
        assert_eq!(open(&dir, "", IN_CREATE), Ok(FileType::Directory));
        assert_eq!(open(&dir, "file", IN_MODIFY), Ok(FileType::RegularFile));
        assert_eq!(open(&dir, "link", IN_MODIFY), Ok(FileType::RegularFile));
        assert_eq!(open(&dir, "link", IN_MODIFY | IN_DONT_FOLLOW), Ok(FileType::Symlink));
        assert_eq!(open(&dir, "file", IN_MODIFY | IN_ONLYDIR), Err(Errno::NOTDIR));
        assert_eq!(open(&dir, "link", IN_MODIFY | IN_ONLYDIR | IN_DONT_FOLLOW), Err(Errno::NOTDIR));
        assert_eq!(open(&dir, "missing", IN_MODIFY), Err(Errno::NOENT));
        assert_eq!(open(&dir, "file/x", IN_MODIFY), Err(Errno::NOTDIR));
        assert_eq!(open(&dir, "loop", IN_MODIFY), Err(Errno::LOOP));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn open_mode(dir: &std::path::Path, name: &str, mask: u32) -> OFlags {
        let path =
            std::ffi::CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap();
        let object = open_object(&path, mask).unwrap();
        rustix::fs::fcntl_getfl(&object).unwrap() & (OFlags::PATH | OFlags::RWMODE)
    }

    #[test]
    fn directories_and_files_are_opened_for_reading_special_files_never() {
        let dir = scratch("modes");
        let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes());
        rustix::fs::mknodat(CWD, fifo.unwrap().as_c_str(), FileType::Fifo, Mode::from(0o644), 0)
            .unwrap();
        assert_eq!(open_mode(&dir, "", IN_CREATE), OFlags::RDONLY);
        assert_eq!(open_mode(&dir, "file", IN_MODIFY), OFlags::RDONLY);
        assert_eq!(open_mode(&dir, "link", IN_MODIFY), OFlags::RDONLY);
        assert_eq!(open_mode(&dir, "link", IN_MODIFY | IN_DONT_FOLLOW), OFlags::PATH);
        // Opening a FIFO for reading would block here until a writer came.
        assert_eq!(open_mode(&dir, "fifo", IN_MODIFY), OFlags::PATH);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
