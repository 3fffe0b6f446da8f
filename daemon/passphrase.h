/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one place a passphrase lives in the daemon: a locked, non-dumpable
 * mapping that is wiped on free.  It is filled once, from the method's
 * `ay` argument or from the caller's passphrase-fd, and freed as soon as
 * libvirt (or libcryptsetup) has it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The cap for both the `ay` and the fd form.  cryptsetup's own limit for
 * an interactive passphrase is 512 bytes and for a key file 8 MiB; 8 KiB
 * is plenty for passphrases and binary key material alike while keeping
 * the locked buffer to two pages. */
#define PASSPHRASE_MAX 8192

typedef struct Passphrase {
        uint8_t *data;
        size_t size;
        size_t mapped;
} Passphrase;

/* -E2BIG over the cap, -EINVAL if empty. */
int passphrase_new_from_buffer(const void *p, size_t n, Passphrase **ret);

/* An all-zero locked buffer of n bytes (for a volume key on its way from
 * libcryptsetup's key derivation to its activation). */
int passphrase_new_zeroed(size_t n, Passphrase **ret);

/* Can QEMU take it as a secret?  It reads secrets as UTF-8 text: no NUL
 * byte, valid UTF-8.  Other bytes can only be used in cryptsetup mode. */
bool passphrase_qemu_compatible(const Passphrase *p);

/* Is fd something we read passphrases from: the read end of an anonymous
 * pipe, or a memfd (sealed or not).  Regular files, named FIFOs, sockets,
 * devices and write-only descriptors → -EBADFD.  Does no I/O on fd (a
 * regular file could sit on a file system that never answers), but is still
 * meant for worker threads, after authorization: nothing about a caller's
 * descriptor is looked at before polkit said yes. */
#define PASSPHRASE_FD_PIPE  1
#define PASSPHRASE_FD_MEMFD 2
int passphrase_fd_kind(int fd);

/* Reads until EOF, at most PASSPHRASE_MAX bytes: a pipe through a
 * non-blocking description of our own, within timeout_ms in all; a memfd
 * from its start.  -EBADFD (not a pipe or memfd), -E2BIG, -ETIMEDOUT,
 * -EINVAL (empty). */
int passphrase_read_fd(int fd, int timeout_ms, Passphrase **ret);

Passphrase *passphrase_free(Passphrase *p);

static inline void passphrase_freep(Passphrase **p) {
        if (*p)
                passphrase_free(*p);
}
#define _cleanup_passphrase_ __attribute__((cleanup(passphrase_freep)))

/* Writes zeros over a large region of the calling thread's stack.  Some
 * libraries (libvirt's RPC client, measured) leave copies of a secret in
 * dead stack frames; call this right after handing a secret to them. */
void stack_scrub(void);
