#!/usr/bin/python3
"""delayfs: a read-only FUSE passthrough that answers every request after a fixed delay.

It stands in for a latency-bound mount (NFS, SMB, sshfs or rclone over a network) in the bench
and the tests: each request waits DELAY, and requests are served concurrently (up to 256 at a
time), as NFS slots, SFTP pipelining and multi-threaded FUSE servers allow. So a poller that
makes its requests one after another pays N x DELAY, and one that overlaps them does not.

Built on pyfuse3 (Debian's python3-pyfuse3), whose trio tasks make a concurrent delay one
`await trio.sleep`: no thread per request, no C. Like bindfs it is path-based and its
directories' times move with every change in the backing directory.

Usage: delayfs.py BACKING MOUNTPOINT DELAY_MS [SLOW_PREFIX SLOW_MS]
(runs in the foreground; unmount to stop). With SLOW_PREFIX, opening a directory whose name
starts with it takes SLOW_MS more: one slow spot the tests can aim at.
"""

import errno
import os
import stat
import sys

import pyfuse3
import trio

# Names stay in the kernel's cache for a minute, as an NFS client keeps them while their
# directory is unchanged; attributes for a second, FUSE's default. A poll's `statx` with
# AT_STATX_FORCE_SYNC still asks for fresh attributes each time (a GETATTR, which the kernel
# sends concurrently; LOOKUPs in one directory it sends one at a time).
ENTRY_TIMEOUT = 60.0
ATTR_TIMEOUT = 1.0


class DelayFs(pyfuse3.Operations):
    def __init__(self, backing, delay, slow_prefix=None, slow_delay=0.0):
        super().__init__()
        self.delay = delay
        self.slow_prefix = slow_prefix
        self.slow_delay = slow_delay
        self.paths = {pyfuse3.ROOT_INODE: backing}
        self.root_ino = os.lstat(backing).st_ino
        self.listings = {}
        self.next_fh = 1

    def inode_of(self, st):
        return pyfuse3.ROOT_INODE if st.st_ino == self.root_ino else st.st_ino

    def path(self, inode):
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE)

    def attributes(self, path):
        try:
            st = os.lstat(path)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = self.inode_of(st)
        self.paths[attr.st_ino] = path
        for field in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size"):
            setattr(attr, field, getattr(st, field))
        attr.st_blksize = 4096
        attr.st_blocks = st.st_blocks
        attr.st_atime_ns = st.st_atime_ns
        attr.st_mtime_ns = st.st_mtime_ns
        attr.st_ctime_ns = st.st_ctime_ns
        attr.entry_timeout = ENTRY_TIMEOUT
        attr.attr_timeout = ATTR_TIMEOUT
        return attr

    async def lookup(self, parent_inode, name, ctx=None):
        await trio.sleep(self.delay)
        return self.attributes(os.path.join(self.path(parent_inode), os.fsdecode(name)))

    async def getattr(self, inode, ctx=None):
        await trio.sleep(self.delay)
        return self.attributes(self.path(inode))

    async def opendir(self, inode, ctx):
        await trio.sleep(self.delay)
        path = self.path(inode)
        if self.slow_prefix and os.path.basename(path).startswith(self.slow_prefix):
            await trio.sleep(self.slow_delay)
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        fh = self.next_fh
        self.next_fh += 1
        self.listings[fh] = (path, names)
        return fh

    async def readdir(self, fh, start_id, token):
        await trio.sleep(self.delay)
        path, names = self.listings[fh]
        for index in range(start_id, len(names)):
            try:
                attr = self.attributes(os.path.join(path, names[index]))
            except pyfuse3.FUSEError:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(names[index]), attr, index + 1):
                break

    async def releasedir(self, fh):
        self.listings.pop(fh, None)

    async def open(self, inode, flags, ctx):
        await trio.sleep(self.delay)
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EROFS)
        try:
            fd = os.open(self.path(inode), os.O_RDONLY)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        return pyfuse3.FileInfo(fh=fd)

    async def read(self, fh, offset, length):
        await trio.sleep(self.delay)
        return os.pread(fh, length, offset)

    async def release(self, fh):
        os.close(fh)

    async def statfs(self, ctx):
        st = os.statvfs(self.paths[pyfuse3.ROOT_INODE])
        out = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                      "f_ffree", "f_favail", "f_namemax"):
            setattr(out, field, getattr(st, field))
        return out


def milliseconds(text):
    try:
        return float(text) / 1000.0
    except ValueError:
        sys.exit(f"delayfs.py: {text!r}: a delay is a number of milliseconds")


def main():
    if len(sys.argv) not in (4, 6):
        sys.exit("usage: delayfs.py BACKING MOUNTPOINT DELAY_MS [SLOW_PREFIX SLOW_MS]")
    backing, mountpoint = sys.argv[1], sys.argv[2]
    delay = milliseconds(sys.argv[3])
    slow_prefix, slow_delay = (sys.argv[4], milliseconds(sys.argv[5])) if len(sys.argv) == 6 else (None, 0.0)
    if not stat.S_ISDIR(os.stat(backing).st_mode):
        sys.exit(f"delayfs.py: {backing}: not a directory")
    options = set(pyfuse3.default_options)
    options |= {"fsname=delayfs", "subtype=delayfs", "ro", "allow_other"}
    operations = DelayFs(os.path.abspath(backing), delay, slow_prefix, slow_delay)
    pyfuse3.init(operations, mountpoint, options)
    try:
        trio.run(pyfuse3.main, 1, 256)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
