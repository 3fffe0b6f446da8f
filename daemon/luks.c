/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* libcryptsetup, in-process (luks.h): the core the rest builds on —
 * libcryptsetup's process-wide lock and logging, luks_init(), the source
 * and its private header snapshot (opened on a thread of its own under a
 * deadline, with the locks libcryptsetup and cryptsetup respect), and the
 * header facts read from that snapshot.
 *
 * Changes of key slots live in luks-keys.c, dm-crypt mappings in
 * luks-dm.c; what the three share is in luks-internal.h. */

#include <fcntl.h>
#include <inttypes.h>
#include <libcryptsetup.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "deadline.h"
#include "errors.h"
#include "luks-internal.h"
#include "luks.h"
#include "open-pinned.h"
#include "util.h"

static void init_once(void) {
        _cleanup_close_ int fd = -EBADF;
        char path[64];

        /* crypt_load() initialises the RNG and the crypto backend (static
         * "initialised" flags, unguarded) before it looks at the device; an
         * empty memfd is enough to get that far. */
        fd = memfd_create("luksvol-init", MFD_CLOEXEC);
        if (fd < 0)
                return;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        /* Not crypt_init_locked(): it calls luks_init().  No other call
         * into the library can run meanwhile (they all wait for this). */
        struct crypt_device *cd = NULL;
        if (crypt_init(&cd, path) >= 0) {
                crypt_set_log_callback(cd, luks_log, NULL);
                (void) crypt_load(cd, CRYPT_LUKS, NULL);
                crypt_free(cd);
        }

        /* LUKS2 volume keys go into the dm table as LUKS1's do, not into
         * the kernel keyring: a keyring key lives in the activating
         * (worker) thread's keyring, and a mapping whose table names one
         * cannot be resized (reloaded) without the passphrase again.
         * Process-wide, hence here. */
        (void) crypt_volume_key_keyring(NULL, 0);
}

void luks_init(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void) pthread_once(&once, init_once);
}

/* ------------------------------------------------------------ snapshots */

static void lockfile_release(LuksSource *s);

LuksSource *luks_source_free(LuksSource *s) {
        if (!s)
                return NULL;
        lockfile_release(s);
        if (s->fd >= 0)
                close(s->fd);
        if (s->snap_fd >= 0)
                close(s->snap_fd);
        if (s->shared_lock_fd >= 0)
                close(s->shared_lock_fd);
        rbd_image_close(s->rbd_image);
        free(s->path);
        free(s);
        return NULL;
}

int luks_source_fd(const LuksSource *s) {
        return s->fd;
}

bool luks_source_writable(const LuksSource *s) {
        return s->writable;
}

const char *luks_source_path(const LuksSource *s) {
        return s->path;
}

typedef enum OpenFailure {
        OPEN_OK,
        OPEN_ERRNO,   /* stage + saved_errno */
        OPEN_CHANGED, /* not the file the path named a moment ago */
        OPEN_LOCKED,  /* another process holds a lock; lock_pid if known */
        OPEN_NOT_LUKS,
        OPEN_TOO_BIG,
        OPEN_RBD, /* librbd's step stage failed with saved_errno */
} OpenFailure;

/* Runs on a thread of its own (deadline.h): owns everything it touches. */
typedef struct OpenTask {
        char *path;
        bool want_write, block, rbd;
        RbdFacts rbd_facts;
        RbdImage *rbd_image; /* exclusive: the image, read-write, its lock held */
        dev_t dev;
        ino_t ino;

        bool exclusive;   /* read-write, under an exclusive lock kept open */
        bool keep_shared; /* the shared lock kept (luks_source_open_keys()) */

        OpenFailure failure;
        const char *stage; /* static text: "open", "read", … */
        int saved_errno;
        pid_t lock_pid;

        int fd, snap_fd, lock_fd, shared_lock_fd;
        bool writable;
        uint64_t size, metadata;
} OpenTask;

static void open_task_free(void *p) {
        OpenTask *t = p;

        if (t->lock_fd >= 0)
                close(t->lock_fd);
        if (t->shared_lock_fd >= 0)
                close(t->shared_lock_fd);
        if (t->fd >= 0)
                close(t->fd);
        if (t->snap_fd >= 0)
                close(t->snap_fd);
        rbd_image_close(t->rbd_image);
        free(t->path);
        free(t);
}

/* Who holds a flock on (dev, ino), from /proc/locks; 0 if unknown.  Only
 * an exclusive (WRITE) holder, unless any: a shared one too. */
static pid_t flock_holder(dev_t dev, ino_t ino, bool any) {
        _cleanup_fclose_ FILE *f = fopen("/proc/locks", "re");
        char line[256];

        if (!f)
                return 0;
        while (fgets(line, sizeof line, f)) {
                unsigned maj, min;
                unsigned long long inode;
                char kind[16], mode[16];
                int pid;

                /* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" */
                if (sscanf(line, "%*d: %15s %*s %15s %d %x:%x:%llu", kind, mode, &pid, &maj, &min, &inode) != 6)
                        continue;
                if (streq(kind, "FLOCK") && (any || streq(mode, "WRITE")) && makedev(maj, min) == dev &&
                    (ino_t) inode == ino)
                        return pid;
        }
        return 0;
}

static void open_task_fail(OpenTask *t, OpenFailure f, const char *stage, int e) {
        t->failure = f;
        t->stage = stage;
        t->saved_errno = e;
}

#define OPEN_FAIL(t, f, stage, e)                       \
        do {                                            \
                open_task_fail((t), (f), (stage), (e)); \
                return;                                 \
        } while (0)

#define LUKS_LOCK_DIR "/run/cryptsetup"

/* libcryptsetup's lock on a block device, taken exclusively without
 * waiting: LUKS_LOCK_DIR/L_<major>:<minor>, created if missing, as
 * libcryptsetup does.  libcryptsetup unlinks the file when it lets go of
 * it; a file unlinked between our open and our flock is a lock nobody else
 * sees, so we check that the name still leads to what we locked and try
 * again if not (libcryptsetup's own acquire_and_verify() does the same).
 * -EBUSY: someone else holds it. */
static int lockfile_take_exclusive(dev_t rdev, int *ret_fd) {
        _cleanup_close_ int dir = -EBADF;
        char name[32];

        snprintf(name, sizeof name, "L_%u:%u", major(rdev), minor(rdev));
        if (mkdir(LUKS_LOCK_DIR, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        dir = open(LUKS_LOCK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return negative_errno();

        for (unsigned attempt = 0; attempt < 16; attempt++) {
                _cleanup_close_ int fd = -EBADF;
                struct stat locked, named;

                fd = openat(dir, name, O_CREAT | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0644);
                if (fd < 0)
                        return negative_errno();
                if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                        return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
                if (fstat(fd, &locked) < 0)
                        return negative_errno();
                if (fstatat(dir, name, &named, AT_SYMLINK_NOFOLLOW) >= 0 && named.st_dev == locked.st_dev &&
                    named.st_ino == locked.st_ino) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
        }
        return -EBUSY;
}

/* Lets go of an exclusive device lock the way libcryptsetup does: while
 * still holding it, unlink the file if the name still leads to it (whoever
 * opened it meanwhile finds it gone after its flock and starts over).  Not
 * while a write-back that outlived its deadline still holds a duplicate:
 * the lock must last until that write ends, and closing ours does not end
 * it, but a fresh file under the same name would. */
static void lockfile_release(LuksSource *s) {
        char path[64];
        struct stat locked, named;

        if (s->lock_fd < 0)
                return;
        snprintf(path, sizeof path, LUKS_LOCK_DIR "/L_%u:%u", major(s->lock_rdev), minor(s->lock_rdev));
        if (!s->writer_abandoned && fstat(s->lock_fd, &locked) >= 0 && lstat(path, &named) >= 0 &&
            named.st_dev == locked.st_dev && named.st_ino == locked.st_ino)
                (void) unlink(path);
        close(s->lock_fd);
        s->lock_fd = -EBADF;
}

/* A file or block device: opened, checked to be what was resolved, and
 * its lock looked at (or taken); *lock_fd a device's shared lock, for
 * keep_shared.  t->failure says how it went. */
static void open_file(OpenTask *t, int *lock_fd) {
        struct stat st;
        int r;

        /* O_NONBLOCK: if the path became a FIFO since it was resolved, the
         * open must not wait for a writer; the type check below refuses it.
         * No symlink is followed: the path is canonical, so one met now was
         * planted since and leads somewhere polkit never saw. */
        t->fd = open_pinned(t->path, (t->want_write ? O_RDWR : O_RDONLY) | O_NOCTTY | O_NONBLOCK);
        t->writable = t->want_write && t->fd >= 0;
        if (t->fd < 0 && t->want_write && !t->exclusive && IN_SET(-t->fd, EROFS, EACCES, EPERM, ETXTBSY))
                t->fd = open_pinned(t->path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
        if (t->fd == -ELOOP)
                OPEN_FAIL(t, OPEN_CHANGED, NULL, 0);
        if (t->fd < 0)
                OPEN_FAIL(t, OPEN_ERRNO, t->exclusive ? "open for writing" : "open", -t->fd);
        (void) fcntl(t->fd, F_SETFL, fcntl(t->fd, F_GETFL) & ~O_NONBLOCK);

        if (fstat(t->fd, &st) < 0)
                OPEN_FAIL(t, OPEN_ERRNO, "stat", errno);
        if (t->block ? !(S_ISBLK(st.st_mode) && st.st_rdev == t->dev)
                     : !(S_ISREG(st.st_mode) && st.st_dev == t->dev && st.st_ino == t->ino))
                OPEN_FAIL(t, OPEN_CHANGED, NULL, 0);

        /* Locks are taken without waiting: whoever holds one exclusively is
         * changing the header (cryptsetup does, for LUKS2), and waiting for
         * them is how one caller used to stall every other.  Files carry the
         * lock themselves; block devices have libcryptsetup's lock file. */
        if (t->block && t->exclusive) {
                r = lockfile_take_exclusive(st.st_rdev, &t->lock_fd);
                if (r == -EBUSY)
                        OPEN_FAIL(t, OPEN_LOCKED, NULL, 0);
                if (r < 0)
                        OPEN_FAIL(t, OPEN_ERRNO, "lock", -r);
                if (ioctl(t->fd, BLKGETSIZE64, &t->size) < 0)
                        OPEN_FAIL(t, OPEN_ERRNO, "size", errno);
        } else if (t->block) {
                char res[64];
                snprintf(res, sizeof res, LUKS_LOCK_DIR "/L_%u:%u", major(st.st_rdev), minor(st.st_rdev));
                *lock_fd = open(res, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (*lock_fd >= 0 && flock(*lock_fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
                        OPEN_FAIL(t, OPEN_LOCKED, NULL, 0);
                if (ioctl(t->fd, BLKGETSIZE64, &t->size) < 0)
                        OPEN_FAIL(t, OPEN_ERRNO, "size", errno);
        } else {
                if (flock(t->fd, (t->exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
                        if (errno != EWOULDBLOCK)
                                OPEN_FAIL(t, OPEN_ERRNO, "lock", errno);
                        t->lock_pid = flock_holder(st.st_dev, st.st_ino, t->exclusive);
                        OPEN_FAIL(t, OPEN_LOCKED, NULL, 0);
                }
                t->size = (uint64_t) st.st_size;
        }
        t->failure = OPEN_OK;
}

static void open_task_run(void *p) {
        OpenTask *t = p;
        _cleanup_close_ int lock_fd = -EBADF;
        uint8_t first[LUKS1_PHDR_AREA];
        uint64_t metadata;
        ssize_t k;
        int r;

        if (t->rbd) {
                /* The header areas, through librbd, in a memfd read as a
                 * file would be (luks-rbd.c); never written back. */
                r = rbd_header_copy(t->path, t->exclusive, &t->fd, &t->size, &t->rbd_facts,
                                    t->exclusive ? &t->rbd_image : NULL, &t->stage);
                if (r < 0)
                        OPEN_FAIL(t, OPEN_RBD, t->stage, -r);
                /* Written back through librbd only (luks-rbd.c). */
                t->writable = t->exclusive;
                if (t->exclusive && t->rbd_facts.watchers > 0)
                        OPEN_FAIL(t, OPEN_RBD, "lock the image", EBUSY);
        } else {
                open_file(t, &lock_fd);
                if (t->failure != OPEN_OK)
                        return;
        }

        k = pread(t->fd, first, sizeof first, 0);
        if (k < 0)
                OPEN_FAIL(t, OPEN_ERRNO, "read", errno);
        if ((size_t) k < sizeof first || t->size < sizeof first)
                OPEN_FAIL(t, OPEN_NOT_LUKS, NULL, 0);

        /* Both versions start "LUKS\xba\xbe" and a big-endian version. */
        if (memcmp(first, "LUKS\xba\xbe", 6) != 0)
                OPEN_FAIL(t, OPEN_NOT_LUKS, NULL, 0);
        switch (be16(first + 6)) {
        case 1:
                metadata = LUKS1_PHDR_AREA;
                break;
        case 2: {
                uint64_t hdr_size = be64(first + 8);
                if (hdr_size < LUKS2_HDR_SIZE_MIN || hdr_size > LUKS2_HDR_SIZE_MAX || (hdr_size & (hdr_size - 1)))
                        OPEN_FAIL(t, OPEN_NOT_LUKS, NULL, 0);
                metadata = 2 * hdr_size; /* primary and secondary copy */
                break;
        }
        default:
                OPEN_FAIL(t, OPEN_NOT_LUKS, NULL, 0);
        }
        if (metadata > t->size)
                OPEN_FAIL(t, OPEN_NOT_LUKS, NULL, 0);

        /* The snapshot has the source's size, so that libcryptsetup's size
         * checks see the real device; only the header areas hold data. */
        t->snap_fd = memfd_create("luksvol-header", MFD_CLOEXEC);
        if (t->snap_fd < 0)
                OPEN_FAIL(t, OPEN_ERRNO, "snapshot", errno);
        if (ftruncate(t->snap_fd, (off_t) t->size) < 0)
                OPEN_FAIL(t, errno == EFBIG || errno == EINVAL ? OPEN_TOO_BIG : OPEN_ERRNO, "snapshot", errno);
        r = copy_range(t->fd, t->snap_fd, 0, metadata);
        if (r < 0)
                OPEN_FAIL(t, OPEN_ERRNO, "read", -r);
        t->metadata = metadata;

        if (t->keep_shared)
                t->shared_lock_fd = TAKE_FD(lock_fd);
        else if (!t->block && !t->exclusive)
                (void) flock(t->fd, LOCK_UN);
        t->failure = OPEN_OK;
}

static int source_open(const SourceInfo *src, bool want_write, bool exclusive, bool keep_shared, unsigned timeout_ms,
                       LuksSource **ret, sd_bus_error *error) {
        _cleanup_(luks_source_freep) LuksSource *s = NULL;
        OpenTask *t;
        int r;

        /* Every failure returns a negative errno of its own, visibly: the
         * callers' *ret is set exactly when this returns >= 0. */
        t = calloc(1, sizeof *t);
        if (!t) {
                sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }
        *t = (OpenTask){
                .path = strdup(src->path),
                .want_write = want_write || exclusive,
                .exclusive = exclusive,
                .keep_shared = keep_shared && !exclusive,
                .block = src->block,
                .rbd = src->rbd,
                .dev = src->dev,
                .ino = src->ino,
                .fd = -EBADF,
                .snap_fd = -EBADF,
                .lock_fd = -EBADF,
                .shared_lock_fd = -EBADF,
        };
        if (!t->path) {
                open_task_free(t);
                sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }

        r = deadline_run(open_task_run, t, open_task_free, timeout_ms);
        if (r == -ETIMEDOUT) {
                (void) source_error_timeout(error, timeout_ms);
                return r;
        }
        if (r < 0) {
                open_task_free(t);
                (void) source_error_deadline(error, r);
                return r;
        }

        switch (t->failure) {
        case OPEN_OK:
                break;
        case OPEN_ERRNO:
                if (startswith(t->stage, "open") && IN_SET(t->saved_errno, ENOENT, ENOTDIR))
                        r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                             "The source does not exist (or is a dangling symlink).");
                else
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot %s '%s': %s", t->stage, src->path,
                                              strerror(t->saved_errno));
                break;
        case OPEN_CHANGED:
                r = source_error_changed(error, src->path);
                break;
        case OPEN_LOCKED:
                if (t->lock_pid > 0)
                        r = sd_bus_error_setf(error, LV_ERROR_BUSY, "'%s' is locked by another process (pid %d).",
                                              src->path, (int) t->lock_pid);
                else
                        r = sd_bus_error_setf(error, LV_ERROR_BUSY, "'%s' is locked by another process.", src->path);
                break;
        case OPEN_NOT_LUKS:
                r = sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' does not hold a valid LUKS header.", src->path);
                break;
        case OPEN_TOO_BIG:
                r = sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "'%s' is too large to handle.", src->path);
                break;
        case OPEN_RBD:
                r = rbd_error(error, src->path, t->stage, t->saved_errno);
                break;
        }
        if (t->failure != OPEN_OK) {
                open_task_free(t);
                return r < 0 ? r : -EIO;
        }

        s = calloc(1, sizeof *s);
        if (!s) {
                open_task_free(t);
                sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }
        *s = (LuksSource){
                .path = TAKE_PTR(t->path),
                .fd = TAKE_FD(t->fd),
                .writable = t->writable,
                .block = src->block,
                .snap_fd = TAKE_FD(t->snap_fd),
                .size = t->size,
                .metadata_copied = t->metadata,
                .exclusive = exclusive,
                .lock_fd = TAKE_FD(t->lock_fd),
                .lock_rdev = src->dev,
                .shared_locked = t->keep_shared && !src->block,
                .shared_lock_fd = TAKE_FD(t->shared_lock_fd),
                .rbd = src->rbd,
                .rbd_facts = t->rbd_facts,
                .rbd_image = TAKE_PTR(t->rbd_image),
        };
        open_task_free(t);
        snprintf(s->snap_path, sizeof s->snap_path, "/proc/self/fd/%d", s->snap_fd);

        *ret = TAKE_PTR(s);
        return 0;
}

/* ftruncate() on a duplicate of the source's descriptor, on a thread of
 * its own (deadline.h). */
typedef struct TruncateTask {
        int fd;
        uint64_t size;
        int r;
} TruncateTask;

static void truncate_task_free(void *p) {
        TruncateTask *t = p;
        if (t->fd >= 0)
                close(t->fd);
        free(t);
}

static void truncate_task_run(void *p) {
        TruncateTask *t = p;
        t->r = ftruncate(t->fd, (off_t) t->size) < 0 ? negative_errno() : 0;
}

int luks_source_truncate(LuksSource *s, uint64_t size, unsigned timeout_ms, sd_bus_error *error) {
        TruncateTask *t;
        int r;

        if (s->block || !s->writable)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "'%s' cannot be resized here.", s->path);
        if (size > (uint64_t) INT64_MAX)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "%" PRIu64 " bytes is too large for a file.", size);

        t = calloc(1, sizeof *t);
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->size = size;
        t->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
        if (t->fd < 0) {
                r = negative_errno();
                free(t);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot duplicate a descriptor: %s", strerror(-r));
        }

        r = deadline_run(truncate_task_run, t, truncate_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                truncate_task_free(t);
                return source_error_deadline(error, r);
        }
        r = t->r;
        truncate_task_free(t);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot resize '%s' to %" PRIu64 " bytes: %s", s->path,
                                         size, strerror(-r));
        return 0;
}

int luks_source_open(const SourceInfo *src, bool want_write, unsigned timeout_ms, LuksSource **ret,
                     sd_bus_error *error) {
        return source_open(src, want_write, false, false, timeout_ms, ret, error);
}

int luks_source_open_keys(const SourceInfo *src, bool want_write, unsigned timeout_ms, LuksSource **ret,
                          sd_bus_error *error) {
        _cleanup_(luks_source_freep) LuksSource *s = NULL;
        int r;

        r = source_open(src, want_write, false, true, timeout_ms, &s, error);
        if (r < 0)
                return r;
        r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int luks_source_open_exclusive(const SourceInfo *src, unsigned timeout_ms, LuksSource **ret, sd_bus_error *error) {
        _cleanup_(luks_source_freep) LuksSource *s = NULL;
        int r;

        r = source_open(src, true, true, false, timeout_ms, &s, error);
        if (r < 0)
                return r;
        r = snapshot_add_header(s, timeout_ms, error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int luks_source_info(LuksSource *s, LuksInfo *ret, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        LuksInfo info = {};
        const char *type;
        int r, max;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        type = crypt_get_type(cd);
        if (streq_ptr(type, CRYPT_LUKS1))
                info.version = 1;
        else if (streq_ptr(type, CRYPT_LUKS2))
                info.version = 2;
        else
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' is not a LUKS volume.", s->path);

        snprintf(info.uuid, sizeof info.uuid, "%s", strempty(crypt_get_uuid(cd)));
        snprintf(info.cipher, sizeof info.cipher, "%s-%s", strempty(crypt_get_cipher(cd)),
                 strempty(crypt_get_cipher_mode(cd)));
        snprintf(info.cipher_name, sizeof info.cipher_name, "%s", strempty(crypt_get_cipher(cd)));
        snprintf(info.cipher_mode, sizeof info.cipher_mode, "%s", strempty(crypt_get_cipher_mode(cd)));
        r = crypt_get_volume_key_size(cd);
        info.key_size_bits = r > 0 ? (unsigned) r * 8 : 0;
        info.payload_offset = crypt_get_data_offset(cd) * 512;
        r = crypt_get_sector_size(cd);
        info.sector_size = r > 0 ? (uint32_t) r : 512;
        info.device_size = s->size;
        info.rbd = s->rbd;
        info.rbd_features = s->rbd_facts.features;
        info.rbd_watchers = s->rbd_facts.watchers;
        snprintf(info.rbd_watcher, sizeof info.rbd_watcher, "%s", s->rbd_facts.watcher);
        if (info.version == 2) {
                struct crypt_params_integrity ip = {};
                uint32_t flags = 0;

                if (crypt_get_integrity_info(cd, &ip) >= 0 && !isempty(ip.integrity))
                        info.integrity = true;
                if (crypt_persistent_flags_get(cd, CRYPT_FLAGS_REQUIREMENTS, &flags) < 0 || flags != 0)
                        info.requirements = true;
        }

        max = MIN(crypt_keyslot_max(type), LUKS_MAX_KEYSLOTS);
        for (int k = 0; k < max; k++) {
                struct crypt_pbkdf_type pbkdf = {};
                LuksKeyslot *ks;
                const char *enc;
                size_t ks_size;

                if (!slot_active(cd, k))
                        continue;
                ks = &info.keyslots[info.active_keyslots++];
                ks->slot = (unsigned) k;
                if (crypt_keyslot_get_pbkdf(cd, k, &pbkdf) >= 0) {
                        snprintf(ks->pbkdf, sizeof ks->pbkdf, "%s", strempty(pbkdf.type));
                        if (streq_ptr(pbkdf.type, CRYPT_KDF_PBKDF2))
                                snprintf(ks->hash, sizeof ks->hash, "%s", strempty(pbkdf.hash));
                        ks->iterations = pbkdf.iterations;
                        ks->memory_kib = pbkdf.max_memory_kb;
                        ks->parallel_threads = pbkdf.parallel_threads;
                }
                ks_size = 0;
                enc = crypt_keyslot_get_encryption(cd, k, &ks_size);
                snprintf(ks->cipher, sizeof ks->cipher, "%s", strempty(enc));
                ks->cipher_key_bits = (unsigned) ks_size * 8;
                if (!info.hash[0] && ks->hash[0])
                        snprintf(info.hash, sizeof info.hash, "%s", ks->hash);
        }

        r = digest_iterations(s, cd, info.version, &info.digest_iterations);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "Cannot read the key digest of '%s': %s", s->path,
                                         strerror(-r));

        *ret = info;
        return 0;
}
