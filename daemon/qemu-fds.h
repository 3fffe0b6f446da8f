/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Which files a guest's QEMU really has open.
 *
 * Native mode hands QEMU a path, and QEMU (and libvirt before it) opens
 * that path itself, after all of the daemon's checks: a symlink planted in
 * between would give the guest another file.  libvirt can pass QEMU a
 * descriptor instead (<source fdgroup=…> with virDomainFDAssociate(), since
 * 9.0), but libvirt 9.0's hot-plug does not: QEMU answers "Could not dup FD
 * for /dev/fdset/0" (measured; Red Hat bug 2193315).  So after the plug the
 * daemon looks at QEMU's own descriptor table (/proc/PID/fd): a stat
 * through those magic links reaches the open file itself, whatever any name
 * leads to by now.
 *
 * Needs CAP_SYS_PTRACE (QEMU runs as another user).  Reads nothing from
 * the files: statx() with AT_STATX_DONT_SYNC never asks a network or FUSE
 * file system, so a file on one that stopped answering cannot stall it. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Where qemu:///system's libvirtd keeps its QEMU processes' pid files
 * (NAME.pid). */
#define QEMU_RUN_DIR "/run/libvirt/qemu"

typedef struct OpenFile {
        bool block; /* a block device: dev is its st_rdev, ino 0 */
        dev_t dev;  /* else a regular file: st_dev, st_ino */
        ino_t ino;
} OpenFile;

typedef struct QemuFiles {
        pid_t pid;
        OpenFile *files; /* regular files and block devices only */
        size_t n;
} QemuFiles;

void qemu_files_done(QemuFiles *f);

/* The running domain's QEMU (libvirt's pid file in run_dir, e.g.
 * /run/libvirt/qemu, checked against "-uuid UUID" on the process's command
 * line) and the files it has open.  -ESRCH if no such process is found. */
int qemu_files_read(const char *run_dir, const char *domain_name, const char *domain_uuid, QemuFiles *ret);

/* The files of the same process again (after a hot-plug). */
int qemu_files_reread(const QemuFiles *before, QemuFiles *ret);

bool qemu_files_has(const QemuFiles *f, const OpenFile *want);

/* After a hot-plug of want: 0 if QEMU has want open and opened nothing
 * else meanwhile (no file in after that was not in before); -ESTALE if
 * not, with the stranger (or want, if it is missing) in *ret_found. */
int qemu_files_check_plug(const QemuFiles *before, const QemuFiles *after, const OpenFile *want, OpenFile *ret_found);

/* Waits (polling every 20 ms, at most timeout_ms) until the process of
 * before has no file open that it did not have in before: libvirt drops an
 * unplugged disk from its XML, and returns from a failed plug, a moment
 * before QEMU has closed everything under it (measured under TCG).  0 once
 * it has, -ETIMEDOUT if not, -ESRCH if the process is gone (nothing open
 * then either). */
int qemu_files_wait_released(const QemuFiles *before, unsigned timeout_ms);

/* Among the files of the domain's QEMU (as qemu_files_read()), the one it
 * opened under the name path (readlink of /proc/PID/fd/N: the name the open
 * file has now): its identity.  -ENOENT if QEMU has no file of that name
 * open, -ENOTUNIQ if it has two different ones. */
int qemu_files_find_path(const char *run_dir, const char *domain_name, const char *domain_uuid, const char *path,
                         OpenFile *ret);

/* The same look-up for many paths of one QEMU: its descriptor table read
 * once, by name (a rescan asks for every volume of every domain; reading
 * the table once per volume was most of its source facts' time, issue
 * 20). */
typedef struct QemuPath {
        char *name; /* readlink of /proc/PID/fd/N */
        OpenFile file;
} QemuPath;

typedef struct QemuPaths {
        pid_t pid;
        QemuPath *items;
        size_t n;
} QemuPaths;

void qemu_paths_done(QemuPaths *p);
/* As qemu_files_read(), with each file's name; -ESRCH if no such process. */
int qemu_paths_read(const char *run_dir, const char *domain_name, const char *domain_uuid, QemuPaths *ret);
/* As qemu_files_find_path(), in what qemu_paths_read() found. */
int qemu_paths_find(const QemuPaths *p, const char *path, OpenFile *ret);
