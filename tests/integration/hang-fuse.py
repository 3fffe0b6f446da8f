#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A FUSE file system of misbehaving files, for test-shared-host.c:
#
#   /hang.img     every look-up (getattr) sleeps for an hour: the daemon's
#                 realpath()/stat() of it never returns — a hung NFS mount
#                 or a malicious FUSE file system, as seen from root.
#   /eacces.img   a regular file that exists, but opening it fails with
#                 EACCES (root included): the daemon must not turn that
#                 into the D-Bus AccessDenied clients read as "not
#                 authorized".
#   /hang-read.img  opens at once, but every read sleeps for an hour: a
#                 passphrase "file" whose contents never arrive
#                 (test-trust-fd.c hands it over as passphrase-fd).
#   /hang-write.img  only with $HANG_FUSE_BACKING (a file): reads as that
#                 file does, but every write sleeps for an hour — a file
#                 system that stops answering half-way through a change.
#
# Usage: hang-fuse.py MOUNTPOINT  (stays in the foreground; kill it to go)

import errno
import os
import stat
import sys
import time

BACKING = os.environ.get("HANG_FUSE_BACKING")

import fuse

fuse.fuse_python_api = (0, 2)


class Stat(fuse.Stat):
    def __init__(self, mode, nlink, size):
        super().__init__()
        self.st_mode = mode
        self.st_nlink = nlink
        self.st_size = size
        self.st_uid = 0
        self.st_gid = 0
        now = int(time.time())
        self.st_atime = self.st_mtime = self.st_ctime = now


class HangFS(fuse.Fuse):
    def getattr(self, path):
        if path == "/":
            return Stat(stat.S_IFDIR | 0o755, 2, 0)
        if path == "/hang.img":
            time.sleep(3600)
            return -errno.EIO
        if path == "/eacces.img":
            return Stat(stat.S_IFREG | 0o644, 1, 16 << 20)
        if path == "/hang-read.img":
            return Stat(stat.S_IFREG | 0o644, 1, 64)
        if path == "/hang-write.img" and BACKING:
            return Stat(stat.S_IFREG | 0o644, 1, os.path.getsize(BACKING))
        return -errno.ENOENT

    def readdir(self, path, offset):
        names = [".", "..", "hang.img", "eacces.img", "hang-read.img"]
        if BACKING:
            names.append("hang-write.img")
        for name in names:
            yield fuse.Direntry(name)

    def open(self, path, flags):
        if path == "/eacces.img":
            return -errno.EACCES
        if path == "/hang-write.img" and BACKING:
            return 0
        if path == "/hang-read.img":
            return 0
        return -errno.ENOENT

    def read(self, path, size, offset):
        if path == "/hang-read.img":
            time.sleep(3600)
            return -errno.EIO
        if path != "/hang-write.img" or not BACKING:
            return -errno.ENOENT
        with open(BACKING, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def write(self, path, buf, offset):
        time.sleep(3600)
        return -errno.EIO

    def truncate(self, path, size):
        return -errno.EROFS

    def fsync(self, path, isfsyncfile):
        time.sleep(3600)
        return -errno.EIO


def main():
    fs = HangFS(usage="hang-fuse.py MOUNTPOINT")
    fs.parse(values=fs, errex=1)
    # Foreground and multithreaded: one sleeping look-up must not keep the
    # file system from answering the others (the test also asks about
    # /eacces.img while a look-up of /hang.img sleeps).
    fs.fuse_args.setmod("foreground")
    fs.multithreaded = True
    fs.main()


if __name__ == "__main__":
    sys.exit(main())
