/* SPDX-License-Identifier: LGPL-2.1-or-later */
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
#include <sys/utsname.h>
#include <time.h>

#include "deadline.h"
#include "errors.h"
#include "fault.h"
#include "loopdev.h"
#include "luks.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free);

/* libcryptsetup keeps process-global state that crypt_init() and
 * crypt_free() change (the device-mapper backend's use count and logging
 * set-up) and that every device-mapper call uses, so those never run in two
 * threads at once.  The lock is held only around them: crypt_init() on a
 * snapshot (a memfd, which never blocks), crypt_free(), and dm operations
 * (activation, deactivation).  Header parsing and key derivation run
 * without it, on the snapshot, in parallel.
 *
 * The one exception: a key slot cipher OpenSSL lacks (serpent, twofish…)
 * makes libcryptsetup decrypt the key slot through a temporary dm-crypt
 * device, i.e. device-mapper; such tries run under the lock. */
static pthread_mutex_t crypt_lock = PTHREAD_MUTEX_INITIALIZER;

static void unlockp(pthread_mutex_t **m) {
        if (*m)
                pthread_mutex_unlock(*m);
}

static pthread_mutex_t *crypt_lock_take(void) {
        pthread_mutex_lock(&crypt_lock);
        return &crypt_lock;
}

#define CRYPT_LOCKED _cleanup_(unlockp) _unused_ pthread_mutex_t *_crypt_guard_ = crypt_lock_take()

/* libcryptsetup logs through a callback; by default it prints errors to
 * stderr.  Route them to our debug log: the caller reports the outcome once,
 * with context, as a typed error. */
static void luks_log(int level, const char *msg, void *usrptr) {
        if (level == CRYPT_LOG_ERROR || level == CRYPT_LOG_NORMAL || level == CRYPT_LOG_VERBOSE)
                log_debug("libcryptsetup: %.*s", (int) strcspn(msg, "\n"), msg);
}

static void crypt_free_locked(struct crypt_device *cd) {
        if (!cd)
                return;
        CRYPT_LOCKED;
        crypt_free(cd);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free_locked);

static int crypt_init_locked(struct crypt_device **ret, const char *device) {
        CRYPT_LOCKED;
        int r = crypt_init(ret, device);
        if (r >= 0)
                crypt_set_log_callback(*ret, luks_log, NULL);
        return r;
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void luks_init(void) {
        _cleanup_close_ int fd = -EBADF;
        char path[64];

        /* crypt_load() initialises the RNG and the crypto backend (static
         * "initialised" flags, unguarded) before it looks at the device; an
         * empty memfd is enough to get that far. */
        fd = memfd_create("luksvol-init", MFD_CLOEXEC);
        if (fd < 0)
                return;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        if (crypt_init_locked(&cd, path) >= 0)
                (void) crypt_load(cd, CRYPT_LUKS, NULL);

        /* LUKS2 volume keys go into the dm table as LUKS1's do, not into
         * the kernel keyring: a keyring key lives in the activating
         * (worker) thread's keyring, and a mapping whose table names one
         * cannot be resized (reloaded) without the passphrase again.
         * Process-wide, hence here. */
        (void) crypt_volume_key_keyring(NULL, 0);
}

/* ------------------------------------------------------------ snapshots */

/* LUKS1's header is one 592-byte block; LUKS2's binary header names the
 * size of each of its two copies (JSON included). */
#define LUKS1_PHDR_AREA    4096U
#define LUKS2_HDR_SIZE_MIN 0x4000ULL
#define LUKS2_HDR_SIZE_MAX 0x400000ULL
/* Key slot areas copied for one verification or activation: LUKS1's eight
 * slots take 2 MiB with a 512-bit key, LUKS2's default argon2 slots ~256 KiB
 * each.  Anything far beyond is not a header libcryptsetup made. */
#define KEYSLOT_COPY_MAX   (128ULL << 20)

struct LuksSource {
        char *path;
        int fd; /* the source, as opened */
        bool writable;
        bool block;
        int snap_fd;        /* memfd: same size as the source, header areas copied */
        char snap_path[40]; /* /proc/self/fd/N, for crypt_init() */
        uint64_t size;
        uint64_t metadata_copied; /* [0, this) was copied when it was opened */
        bool keyslots_copied;

        /* luks_source_open_exclusive(): the lock is ours until the source is
         * freed — a flock on fd itself for a file, lock_fd (libcryptsetup's
         * lock file) for a device. */
        bool exclusive;
        int lock_fd;
        dev_t lock_rdev;
        bool writer_abandoned;  /* a write-back outlived its deadline and still holds the lock */
        uint64_t header_end;    /* metadata and every key slot area: [0, header_end) is in the snapshot */
        uint64_t metadata_size; /* LUKS2: one copy of the metadata (the secondary starts there) */
        unsigned version;
};

static void lockfile_release(LuksSource *s);

LuksSource *luks_source_free(LuksSource *s) {
        if (!s)
                return NULL;
        lockfile_release(s);
        if (s->fd >= 0)
                close(s->fd);
        if (s->snap_fd >= 0)
                close(s->snap_fd);
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
} OpenFailure;

/* Runs on a thread of its own (deadline.h): owns everything it touches. */
typedef struct OpenTask {
        char *path;
        bool want_write, block;
        dev_t dev;
        ino_t ino;

        bool exclusive; /* read-write, under an exclusive lock kept open */

        OpenFailure failure;
        const char *stage; /* static text: "open", "read", … */
        int saved_errno;
        pid_t lock_pid;

        int fd, snap_fd, lock_fd;
        bool writable;
        uint64_t size, metadata;
} OpenTask;

static void open_task_free(void *p) {
        OpenTask *t = p;

        if (t->lock_fd >= 0)
                close(t->lock_fd);
        if (t->fd >= 0)
                close(t->fd);
        if (t->snap_fd >= 0)
                close(t->snap_fd);
        free(t->path);
        free(t);
}

static uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (unsigned i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

static uint16_t be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
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

/* Copies [off, off+len) from src to dst at the same offset. */
static int copy_range(int src, int dst, uint64_t off, uint64_t len) {
        uint8_t buf[64 * 1024];

        while (len > 0) {
                size_t n = (size_t) MIN(len, (uint64_t) sizeof buf);
                ssize_t k = pread(src, buf, n, (off_t) off);
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return -EIO; /* shorter than its header says */
                if (pwrite(dst, buf, (size_t) k, (off_t) off) != k)
                        return negative_errno();
                off += (uint64_t) k;
                len -= (uint64_t) k;
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

static void open_task_run(void *p) {
        OpenTask *t = p;
        _cleanup_close_ int lock_fd = -EBADF;
        uint8_t first[LUKS1_PHDR_AREA];
        uint64_t metadata;
        struct stat st;
        ssize_t k;
        int r;

        /* O_NONBLOCK: if the path became a FIFO since it was resolved, the
         * open must not wait for a writer; the type check below refuses it. */
        t->fd = open(t->path, (t->want_write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        t->writable = t->want_write && t->fd >= 0;
        if (t->fd < 0 && t->want_write && !t->exclusive && IN_SET(errno, EROFS, EACCES, EPERM, ETXTBSY))
                t->fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (t->fd < 0)
                OPEN_FAIL(t, OPEN_ERRNO, t->exclusive ? "open for writing" : "open", errno);
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
                lock_fd = open(res, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (lock_fd >= 0 && flock(lock_fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
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

        if (!t->block && !t->exclusive)
                (void) flock(t->fd, LOCK_UN);
        t->failure = OPEN_OK;
}

static int source_open(const SourceInfo *src, bool want_write, bool exclusive, unsigned timeout_ms, LuksSource **ret,
                       sd_bus_error *error) {
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
                .block = src->block,
                .dev = src->dev,
                .ino = src->ino,
                .fd = -EBADF,
                .snap_fd = -EBADF,
                .lock_fd = -EBADF,
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
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "'%s' changed while it was being checked; try again.",
                                      src->path);
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
        return source_open(src, want_write, false, timeout_ms, ret, error);
}

static int snapshot_add_header(LuksSource *s, unsigned timeout_ms, sd_bus_error *error);

int luks_source_open_exclusive(const SourceInfo *src, unsigned timeout_ms, LuksSource **ret, sd_bus_error *error) {
        _cleanup_(luks_source_freep) LuksSource *s = NULL;
        int r;

        r = source_open(src, true, true, timeout_ms, &s, error);
        if (r < 0)
                return r;
        r = snapshot_add_header(s, timeout_ms, error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

/* crypt_init() + crypt_load() on the snapshot. */
static int snapshot_load(LuksSource *s, struct crypt_device **ret, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        int r;

        r = crypt_init_locked(&cd, s->snap_path);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the LUKS header of '%s': %s", s->path,
                                         strerror(-r));
        r = crypt_load(cd, CRYPT_LUKS, NULL);
        if (r < 0) {
                if (IN_SET(-r, EINVAL, ENOENT, EBADMSG, EIO))
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' does not hold a valid LUKS header.",
                                                 s->path);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the LUKS header of '%s': %s", s->path,
                                         strerror(-r));
        }
        *ret = TAKE_PTR(cd);
        return 0;
}

static bool slot_active(struct crypt_device *cd, int k) {
        crypt_keyslot_info ki = crypt_keyslot_status(cd, k);
        return ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST;
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
                enc = crypt_keyslot_get_encryption(cd, k, &ks_size);
                snprintf(ks->cipher, sizeof ks->cipher, "%s", strempty(enc));
                if (!info.hash[0] && ks->hash[0])
                        snprintf(info.hash, sizeof info.hash, "%s", ks->hash);
        }

        *ret = info;
        return 0;
}

/* ---------------------------------------------------------- key slots */

#define MAX_RANGES (LUKS_MAX_KEYSLOTS + 1)

/* Ranges copied between the source and the snapshot, at the same offsets,
 * on a thread of its own (deadline.h): into the snapshot, or back to the
 * source and fsync()ed.  The task owns duplicates of the descriptors; a
 * write-back's duplicates of the source (a file's flock lives on it) and of
 * the device lock file keep the source locked until the task ends, even if
 * its caller stopped waiting. */
typedef struct CopyTask {
        int src, dst, lock;
        bool sync;
        uint64_t off[MAX_RANGES], len[MAX_RANGES];
        unsigned n;
        int r;
} CopyTask;

static void copy_task_free(void *p) {
        CopyTask *t = p;
        if (t->src >= 0)
                close(t->src);
        if (t->dst >= 0)
                close(t->dst);
        if (t->lock >= 0)
                close(t->lock);
        free(t);
}

static CopyTask *copy_task_new(void) {
        CopyTask *t = calloc(1, sizeof *t);
        if (t)
                t->src = t->dst = t->lock = -EBADF;
        return t;
}

static void copy_task_run(void *p) {
        CopyTask *t = p;

        t->r = 0;
        for (unsigned i = 0; i < t->n && t->r >= 0; i++)
                t->r = copy_range(t->src, t->dst, t->off[i], t->len[i]);
        if (t->r >= 0 && t->sync && fsync(t->dst) < 0)
                t->r = negative_errno();
}

/* Runs t (its ranges filled in; freed here) under the deadline: from the
 * source into the snapshot, or to_source.  0: done, *ret_io the copy's own
 * result; -ETIMEDOUT: still running, left to its thread (error not set:
 * the caller says what did not finish); another negative errno: error
 * set. */
static int copy_task_finish(LuksSource *s, CopyTask *t, bool to_source, unsigned timeout_ms, int *ret_io,
                            sd_bus_error *error) {
        int r;

        t->src = fcntl(to_source ? s->snap_fd : s->fd, F_DUPFD_CLOEXEC, 3);
        t->dst = fcntl(to_source ? s->fd : s->snap_fd, F_DUPFD_CLOEXEC, 3);
        if (to_source && s->lock_fd >= 0)
                t->lock = fcntl(s->lock_fd, F_DUPFD_CLOEXEC, 3);
        t->sync = to_source;
        if (t->src < 0 || t->dst < 0 || (to_source && s->lock_fd >= 0 && t->lock < 0)) {
                r = negative_errno();
                copy_task_free(t);
                sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot duplicate a descriptor: %s", strerror(-r));
                return r;
        }

        r = deadline_run(copy_task_run, t, copy_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return r;
        if (r < 0) {
                copy_task_free(t);
                (void) source_error_deadline(error, r);
                return r;
        }
        *ret_io = t->r;
        copy_task_free(t);
        return 0;
}

/* The snapshot's ranges of t (freed here), read from the source. */
static int snapshot_copy(LuksSource *s, CopyTask *t, unsigned timeout_ms, sd_bus_error *error) {
        int r, io = 0;

        r = copy_task_finish(s, t, false, timeout_ms, &io, error);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0)
                return r;
        if (io < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the key slots of '%s': %s", s->path,
                                         strerror(-io));
        s->keyslots_copied = true;
        return 0;
}

/* Key derivation needs the key slot areas, which the metadata snapshot
 * lacks; they are copied from the source once, under the deadline. */
static int snapshot_add_keyslots(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        uint64_t total = 0;
        CopyTask *t;
        int r, max;

        if (s->keyslots_copied)
                return 0;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");

        max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        for (int k = 0; k < max; k++) {
                uint64_t off, len;

                if (!slot_active(cd, k) || crypt_keyslot_area(cd, k, &off, &len) < 0)
                        continue;
                if (off > s->size || len > s->size - off) {
                        copy_task_free(t);
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                                 "Key slot %d of '%s' lies outside the device.", k, s->path);
                }
                t->off[t->n] = off;
                t->len[t->n] = len;
                t->n++;
                total += len;
        }
        if (total > KEYSLOT_COPY_MAX) {
                copy_task_free(t);
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "The key slots of '%s' are implausibly large.",
                                         s->path);
        }

        return snapshot_copy(s, t, timeout_ms, error);
}

/* See crypt_lock: OpenSSL (libcryptsetup's backend here) does AES itself;
 * anything else may go through a temporary dm-crypt device. */
static bool keyslot_needs_lock(struct crypt_device *cd, int k) {
        size_t ks_size;
        const char *enc = crypt_keyslot_get_encryption(cd, k, &ks_size);
        return !enc || !startswith(enc, "aes-");
}

int luks_source_verify(LuksSource *s, const Passphrase *passphrase, unsigned timeout_ms, int *ret_slot,
                       uint64_t *ret_cost_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        uint64_t cost = 0;
        int r, max, found = -1;

        r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r < 0)
                return r;
        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        for (int k = 0; k < max && found < 0; k++) {
                uint64_t t0;

                if (!slot_active(cd, k))
                        continue;
                t0 = now_ms();
                if (keyslot_needs_lock(cd, k)) {
                        CRYPT_LOCKED;
                        r = crypt_activate_by_passphrase(cd, NULL, k, (const char *) passphrase->data, passphrase->size,
                                                         0);
                } else
                        r = crypt_activate_by_passphrase(cd, NULL, k, (const char *) passphrase->data, passphrase->size,
                                                         0);
                cost += now_ms() - t0;
                if (r >= 0)
                        found = k;
                else if (r != -EPERM && r != -ENOENT) {
                        stack_scrub();
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot try key slot %d of '%s': %s", k,
                                                 s->path, strerror(-r));
                }
        }
        /* The derived keys passed through libcryptsetup's frames. */
        stack_scrub();

        if (found < 0)
                return sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                        "The passphrase does not open any key slot of the volume.");
        *ret_slot = found;
        *ret_cost_ms = cost;
        return 0;
}

/* ------------------------------------------------------ key management
 *
 * Changing key slots without breaking the rules above: libcryptsetup
 * changes the snapshot, never the source; the source is only read (into
 * the snapshot) and written (from it) by tasks of our own under the
 * deadline; the process-wide lock is not held across any of it.  The
 * source stays locked exclusively from the snapshot to the last write
 * (luks_source_open_exclusive()), so nothing changes it in between and
 * nobody (libcryptsetup elsewhere, another call of ours) reads it half
 * written.
 *
 * Torn writes.  A crash (or power loss, or a deadline that lets the write
 * run on alone) may stop the write-back anywhere, and a write may land
 * only in part.  The write-back is therefore a sequence of steps, each
 * written and fsync()ed before the next starts, in an order where every
 * prefix leaves a header that opens with the old passphrase or the new:
 *
 *  - a key slot area that becomes used is written before any metadata
 *    names it, and one that is given up is wiped only after every copy of
 *    the metadata has stopped naming it;
 *  - LUKS2 keeps two copies of its metadata, each with a checksum and a
 *    sequence number; libcryptsetup loads the copy with the higher number
 *    among those whose checksum holds.  The primary is written and synced
 *    first, the secondary after: a torn primary fails its checksum and the
 *    untouched secondary (the old state) is used; a torn secondary leaves
 *    the complete primary (the new state).  Never both at once;
 *  - LUKS1 has one 592-byte header, whose only change is the 48-byte
 *    descriptor of one key slot per step.  So a change of passphrase is
 *    two steps — add the new slot (header: both slots active), then
 *    destroy the old one (header: only the new) — and a torn header write
 *    can damage only the descriptor it was changing: the other
 *    passphrase's slot is intact in either step.  (Changing a slot in
 *    place, as libcryptsetup does when no slot is free, could lose the
 *    only key on a crash: we need a free slot instead.)
 */

#define LUKS1_PHDR_SIZE 592U

/* Copies the rest of the header area — every key slot area, used or not —
 * into the snapshot: all that a change may read or write.  The metadata
 * names its extent; the payload is never part of it. */
static int snapshot_add_header(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        uint64_t metadata_size, keyslots_size, data_offset, end;
        const char *type;
        CopyTask *t;
        int r;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        type = crypt_get_type(cd);
        if (streq_ptr(type, CRYPT_LUKS1))
                s->version = 1;
        else if (streq_ptr(type, CRYPT_LUKS2))
                s->version = 2;
        else
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' is not a LUKS volume.", s->path);

        r = crypt_get_metadata_size(cd, &metadata_size, &keyslots_size);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the header layout of '%s': %s", s->path,
                                         strerror(-r));
        /* LUKS1: the header, then the key slots; LUKS2: two copies of the
         * metadata, then the key slots area.  And wherever a slot's area
         * lies (LUKS1 names one for each slot, used or not): every area a
         * change may write must be in the snapshot. */
        end = (s->version == 1 ? metadata_size : 2 * metadata_size) + keyslots_size;
        for (int k = 0; k < MIN(crypt_keyslot_max(type), LUKS_MAX_KEYSLOTS); k++) {
                uint64_t off, len;
                if (crypt_keyslot_area(cd, k, &off, &len) < 0)
                        continue;
                if (len > UINT64_MAX - off)
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                                 "Key slot %d of '%s' lies outside the device.", k, s->path);
                end = MAX(end, off + len);
        }
        data_offset = crypt_get_data_offset(cd) * 512;
        if (end > s->size || end < s->metadata_copied || (data_offset > 0 && end > data_offset))
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                         "The header of '%s' overlaps its data or the end of the device.", s->path);
        if (end - s->metadata_copied > KEYSLOT_COPY_MAX)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "The key slots of '%s' are implausibly large.",
                                         s->path);
        s->metadata_size = metadata_size;
        s->header_end = end;

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->off[0] = s->metadata_copied;
        t->len[0] = end - s->metadata_copied;
        t->n = 1;
        return snapshot_copy(s, t, timeout_ms, error);
}

/* One step of a write-back (see above): [off, off+len) from the snapshot
 * to the source, then fsync(); the source stays locked until it ends. */
static int write_step(LuksSource *s, uint64_t off, uint64_t len, unsigned timeout_ms, sd_bus_error *error) {
        CopyTask *t;
        int r, io = 0;

        /* Only ever the header, which the exclusive open read whole. */
        if (!s->exclusive || off > s->header_end || len > s->header_end - off)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Refusing to write outside the header of '%s'.",
                                         s->path);

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->off[0] = off;
        t->len[0] = len;
        t->n = 1;

        r = copy_task_finish(s, t, true, timeout_ms, &io, error);
        if (r == -ETIMEDOUT) {
                s->writer_abandoned = true;
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "'%s' did not finish writing its header within %u s (a hung file system?); "
                                         "the header opens with the passphrases it had before, or with the new "
                                         "ones: try them, or check again later.",
                                         s->path, (timeout_ms + 999) / 1000);
        }
        if (r < 0)
                return r;
        if (io < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot write the header of '%s': %s", s->path,
                                         strerror(-io));
        return 0;
}

/* Every copy of the metadata, one step each: LUKS2's primary, then its
 * secondary; LUKS1's one header. */
static int write_metadata(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        int r;

        if (s->version == 1)
                return write_step(s, 0, LUKS1_PHDR_SIZE, timeout_ms, error);
        r = write_step(s, 0, s->metadata_size, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 1); /* primary written, secondary old */
        return write_step(s, s->metadata_size, s->metadata_size, timeout_ms, error);
}

static unsigned count_active(struct crypt_device *cd) {
        int max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        unsigned n = 0;

        for (int k = 0; k < max; k++)
                if (slot_active(cd, k))
                        n++;
        return n;
}

static bool have_free_slot(struct crypt_device *cd) {
        int max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);

        for (int k = 0; k < max; k++)
                if (crypt_keyslot_status(cd, k) == CRYPT_SLOT_INACTIVE)
                        return true;
        return false;
}

/* The first active key slot, in slot order (QEMU's), that passphrase
 * opens, and the volume key it unlocks, into locked memory. */
static int unlock_volume_key(LuksSource *s, struct crypt_device *cd, const Passphrase *passphrase, int *ret_slot,
                             Passphrase **ret_vk, sd_bus_error *error) {
        _cleanup_passphrase_ Passphrase *vk = NULL;
        int r, max, found = -1;
        size_t vk_size;

        r = crypt_get_volume_key_size(cd);
        if (r <= 0)
                return sd_bus_error_set(error, LV_ERROR_NOT_LUKS, "The volume has no key size.");
        vk_size = (size_t) r;
        r = passphrase_new_zeroed(vk_size, &vk);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot allocate the key buffer: %s", strerror(-r));

        max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        for (int k = 0; k < max && found < 0; k++) {
                size_t n = vk_size;

                if (!slot_active(cd, k))
                        continue;
                if (keyslot_needs_lock(cd, k)) {
                        CRYPT_LOCKED;
                        r = crypt_volume_key_get(cd, k, (char *) vk->data, &n, (const char *) passphrase->data,
                                                 passphrase->size);
                } else
                        r = crypt_volume_key_get(cd, k, (char *) vk->data, &n, (const char *) passphrase->data,
                                                 passphrase->size);
                if (r >= 0)
                        found = k;
                else if (r != -EPERM && r != -ENOENT) {
                        stack_scrub();
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot try key slot %d of '%s': %s", k,
                                                 s->path, strerror(-r));
                }
        }
        stack_scrub();
        if (found < 0)
                return sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                        "The passphrase does not open any key slot of the volume.");
        *ret_slot = found;
        *ret_vk = TAKE_PTR(vk);
        return 0;
}

/* The new slot is made like the one the existing passphrase opened: the
 * same PBKDF (type, hash, iterations or argon2 costs — fixed, not
 * benchmarked) and, for LUKS2, the same key slot cipher; for LUKS1 the
 * hash is the header's anyway, so a volume QEMU could open stays one it
 * can open.  iterations, if not 0, replaces the iteration count (PBKDF2)
 * or time cost (argon2).  libcryptsetup still caps argon2's threads at the
 * CPUs online and its memory at what the host has. */
static int set_new_slot_like(LuksSource *s, struct crypt_device *cd, int like, uint32_t iterations,
                             sd_bus_error *error) {
        struct crypt_pbkdf_type pbkdf = {};
        bool pbkdf2;
        int r;

        r = crypt_keyslot_get_pbkdf(cd, like, &pbkdf);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the PBKDF of key slot %d of '%s': %s",
                                         like, s->path, strerror(-r));
        pbkdf2 = streq_ptr(pbkdf.type, CRYPT_KDF_PBKDF2);
        if (iterations > 0) {
                if (iterations < (pbkdf2 ? 1000U : 4U))
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'pbkdf-iterations' must be at least %u for %s key slots.",
                                                 pbkdf2 ? 1000U : 4U, strempty(pbkdf.type));
                pbkdf.iterations = iterations;
        }
        pbkdf.flags |= CRYPT_PBKDF_NO_BENCHMARK;
        r = crypt_set_pbkdf_type(cd, &pbkdf);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot use the PBKDF of key slot %d of '%s': %s",
                                         like, s->path, strerror(-r));

        if (s->version == 2) {
                size_t key_size = 0;
                const char *enc = crypt_keyslot_get_encryption(cd, like, &key_size);
                if (enc && key_size > 0) {
                        r = crypt_keyslot_set_encryption(cd, enc, key_size);
                        if (r < 0)
                                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                                         "Cannot use the key slot cipher of '%s': %s", s->path,
                                                         strerror(-r));
                }
        }
        return 0;
}

/* Step one of an add or change: a new slot for new_passphrase, made like
 * slot like, written area first, metadata after. */
static int stage_add(LuksSource *s, struct crypt_device *cd, const Passphrase *vk, int like,
                     const Passphrase *new_passphrase, uint32_t iterations, unsigned timeout_ms, int *ret_slot,
                     sd_bus_error *error) {
        uint64_t off, len;
        int r, slot;

        if (!have_free_slot(cd))
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "All %d key slots of '%s' are in use; remove one first.",
                                         MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS), s->path);
        r = set_new_slot_like(s, cd, like, iterations, error);
        if (r < 0)
                return r;

        /* Key derivation for the new slot, and its area written into the
         * snapshot; a cipher OpenSSL lacks goes through device-mapper
         * (see crypt_lock). */
        if (keyslot_needs_lock(cd, like)) {
                CRYPT_LOCKED;
                slot = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, (const char *) vk->data, vk->size,
                                                       (const char *) new_passphrase->data, new_passphrase->size);
        } else
                slot = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, (const char *) vk->data, vk->size,
                                                       (const char *) new_passphrase->data, new_passphrase->size);
        stack_scrub();
        if (slot == -ENOSPC)
                return sd_bus_error_setf(
                        error, LV_ERROR_NOT_SUPPORTED,
                        "The key slot area of '%s' has no room for another key slot; remove one first.", s->path);
        if (slot < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot add a key slot to '%s': %s", s->path,
                                         strerror(-slot));

        r = crypt_keyslot_area(cd, slot, &off, &len);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot locate the new key slot of '%s': %s", s->path,
                                         strerror(-r));
        r = write_step(s, off, len, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 2); /* new area written, not named by any metadata */
        r = write_metadata(s, timeout_ms, error);
        if (r < 0)
                return r;
        *ret_slot = slot;
        return 0;
}

/* The last step of a change or a removal: slot destroyed, metadata
 * written first, the slot's area wiped after. */
static int stage_destroy(LuksSource *s, struct crypt_device *cd, int slot, unsigned timeout_ms, sd_bus_error *error) {
        uint64_t off, len;
        int r;

        r = crypt_keyslot_area(cd, slot, &off, &len);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot locate key slot %d of '%s': %s", slot, s->path,
                                         strerror(-r));
        r = crypt_keyslot_destroy(cd, slot);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot remove key slot %d of '%s': %s", slot, s->path,
                                         strerror(-r));
        r = write_metadata(s, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 3); /* metadata without the slot, its area not yet wiped */
        return write_step(s, off, len, timeout_ms, error);
}

static int key_add(LuksSource *s, const Passphrase *existing, const Passphrase *new_passphrase, uint32_t iterations,
                   bool replace, unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        int r, old_slot = -1, new_slot = -1;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        r = unlock_volume_key(s, cd, existing, &old_slot, &vk, error);
        if (r < 0)
                return r;
        r = stage_add(s, cd, vk, old_slot, new_passphrase, iterations, timeout_ms, &new_slot, error);
        if (r < 0)
                return r;
        vk = passphrase_free(vk);
        if (replace) {
                r = stage_destroy(s, cd, old_slot, timeout_ms, error);
                if (r < 0)
                        return r;
        }
        *ret_slot = new_slot;
        return 0;
}

int luks_key_add(LuksSource *s, const Passphrase *existing, const Passphrase *new_passphrase, uint32_t iterations,
                 unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        return key_add(s, existing, new_passphrase, iterations, false, timeout_ms, ret_slot, error);
}

int luks_key_change(LuksSource *s, const Passphrase *old, const Passphrase *new_passphrase, uint32_t iterations,
                    unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        return key_add(s, old, new_passphrase, iterations, true, timeout_ms, ret_slot, error);
}

int luks_key_remove(LuksSource *s, const Passphrase *passphrase, bool force, unsigned timeout_ms, int *ret_slot,
                    sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        int r, slot = -1;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        r = unlock_volume_key(s, cd, passphrase, &slot, &vk, error);
        if (r < 0)
                return r;
        vk = passphrase_free(vk);
        if (count_active(cd) <= 1 && !force)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "Key slot %d is the last one of '%s': without it nothing opens the volume "
                                         "ever again.  Pass 'force' to remove it anyway.",
                                         slot, s->path);
        r = stage_destroy(s, cd, slot, timeout_ms, error);
        if (r < 0)
                return r;
        *ret_slot = slot;
        return 0;
}

/* ------------------------------------------------------------ dm-crypt */

static bool kernel_module_file(const char *release, const char *name) {
        static const char *const suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
        char path[512];

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                snprintf(path, sizeof path, "/lib/modules/%s/kernel/drivers/md/%s%s", release, name, suffixes[i]);
                if (access(path, F_OK) >= 0)
                        return true;
        }
        return false;
}

static bool proc_misc_has_device_mapper(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/misc", "re");
        char line[128];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f))
                if (strstr(line, "device-mapper"))
                        return true;
        return false;
}

bool luks_dm_crypt_available(void) {
        struct utsname u;

        /* Not /dev/mapper/control: libdevmapper creates that node itself
         * whether or not the kernel has device-mapper.  The kernel's own
         * word is its misc device list, or a module it can load. */
        if (uname(&u) < 0)
                return false;
        if (!proc_misc_has_device_mapper() && !kernel_module_file(u.release, "dm-mod"))
                return false;
        /* The crypt target: loaded (or built in with parameters), or loadable. */
        return access("/sys/module/dm_crypt", F_OK) >= 0 || kernel_module_file(u.release, "dm-crypt");
}

int luks_mapping_name(const char *domain_uuid, const char *target, char **ret) {
        return volume_id_build_prefixed(LUKS_MAPPING_PREFIX, domain_uuid, target, ret);
}

/* Opening the data device reads its first sector (libcryptsetup's direct-io
 * test) — through the loop device, from the caller's file — so it runs
 * under the deadline too; an abandoned attempt frees its crypt_device
 * whenever it comes back. */
typedef struct DataDeviceTask {
        struct crypt_device *cd;
        char *path;
        int r;
} DataDeviceTask;

static void data_device_task_free(void *p) {
        DataDeviceTask *t = p;
        crypt_free_locked(t->cd);
        free(t->path);
        free(t);
}

static void data_device_task_run(void *p) {
        DataDeviceTask *t = p;
        t->r = crypt_set_data_device(t->cd, t->path);
}

/* crypt_set_data_device(*cd, path) under the deadline.  On a timeout the
 * context goes with the abandoned thread: *cd is NULL then. */
static int set_data_device(struct crypt_device **cd, const char *path, unsigned timeout_ms, sd_bus_error *error) {
        DataDeviceTask *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t || !(t->path = strdup(path))) {
                free(t);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        t->cd = TAKE_PTR(*cd);
        r = deadline_run(data_device_task_run, t, data_device_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                *cd = TAKE_PTR(t->cd);
                data_device_task_free(t);
                return source_error_deadline(error, r);
        }
        *cd = TAKE_PTR(t->cd);
        r = t->r;
        data_device_task_free(t);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot use '%s' as the data device: %s", path,
                                         strerror(-r));
        return 0;
}

int luks_activate(LuksSource *s, const char *name, bool read_only, bool discard, unsigned timeout_ms,
                  Passphrase **passphrase, char **ret_mapper_path, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        _cleanup_free_ char *path = NULL, *loop_path = NULL;
        _cleanup_close_ int loop_fd = -EBADF;
        uint32_t flags = CRYPT_ACTIVATE_PRIVATE | (read_only ? CRYPT_ACTIVATE_READONLY : 0) |
                         (discard ? CRYPT_ACTIVATE_ALLOW_DISCARDS : 0);
        size_t vk_size;
        int r;

        if (!read_only && !s->writable) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "'%s' cannot be opened for writing; attach it read-only.",
                                      s->path);
                goto finish;
        }

        r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r >= 0)
                r = snapshot_load(s, &cd, error);
        if (r < 0)
                goto finish;

        if (asprintf(&path, "/dev/mapper/%s", name) < 0) {
                r = sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                goto finish;
        }

        /* The volume key, derived without holding the global lock (see
         * crypt_lock), into locked memory; the passphrase goes right after. */
        r = crypt_get_volume_key_size(cd);
        if (r <= 0) {
                r = sd_bus_error_set(error, LV_ERROR_NOT_LUKS, "The volume has no key size.");
                goto finish;
        }
        vk_size = (size_t) r;
        r = passphrase_new_zeroed(vk_size, &vk);
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot allocate the key buffer: %s", strerror(-r));
                goto finish;
        }
        {
                bool locked = false;
                int max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
                for (int k = 0; k < max; k++)
                        if (slot_active(cd, k) && keyslot_needs_lock(cd, k))
                                locked = true;
                if (locked)
                        pthread_mutex_lock(&crypt_lock);
                r = crypt_volume_key_get(cd, CRYPT_ANY_SLOT, (char *) vk->data, &vk_size,
                                         (const char *) (*passphrase)->data, (*passphrase)->size);
                if (locked)
                        pthread_mutex_unlock(&crypt_lock);
        }
        *passphrase = passphrase_free(*passphrase);
        stack_scrub();
        if (r == -EPERM) {
                r = sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                     "The passphrase does not open any key slot of the volume.");
                goto finish;
        }
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot unlock '%s': %s", s->path, strerror(-r));
                goto finish;
        }

        /* The data: a block device as is; a file through a loop device
         * bound to the descriptor that was checked. */
        const char *data_path = s->path;
        if (!s->block) {
                r = loop_attach_fd(s->fd, read_only, &loop_fd, &loop_path);
                if (r < 0) {
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot set up a loop device for '%s': %s",
                                              s->path, strerror(-r));
                        goto finish;
                }
                data_path = loop_path;
        }

        r = set_data_device(&cd, data_path, timeout_ms, error);
        if (r < 0)
                goto finish;

        {
                CRYPT_LOCKED;
                r = crypt_activate_by_volume_key(cd, name, (const char *) vk->data, vk_size, flags);
        }
        vk = passphrase_free(vk);
        stack_scrub();
        if (r == -EEXIST) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "A device-mapper device '%s' already exists.", name);
                goto finish;
        }
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot activate the dm-crypt mapping for '%s': %s",
                                      s->path, strerror(-r));
                goto finish;
        }

        fault_point("attach", 2); /* mapping open, not attached */

        *ret_mapper_path = TAKE_PTR(path);
        r = 0;

finish:
        /* The loop device stays bound as long as the mapping holds it
         * (autoclear); without a mapping, closing it here detaches it. */
        *passphrase = passphrase_free(*passphrase);
        return r;
}

int luks_deactivate(const char *name, sd_bus_error *error) {
        int r = 0;

        /* A guest's QEMU may take a moment to close the device after
         * libvirt reports it removed; busy is worth waiting out. */
        for (unsigned attempt = 0; attempt < 50; attempt++) {
                if (attempt > 0)
                        usleep(100 * 1000); /* not holding the lock */

                CRYPT_LOCKED;
                _cleanup_(crypt_freep) struct crypt_device *cd = NULL;

                /* A context without a device: deactivation is a
                 * device-mapper matter, and crypt_init_by_name() would read
                 * the LUKS header through the device underneath. */
                r = crypt_init(&cd, NULL);
                if (r < 0)
                        break;
                crypt_set_log_callback(cd, luks_log, NULL);

                crypt_status_info st = crypt_status(cd, name);
                if (st == CRYPT_INACTIVE)
                        return 0;
                r = crypt_deactivate_by_name(cd, name, 0);
                if (r >= 0 || r == -ENODEV)
                        return 0;
                if (r != -EBUSY)
                        break;
        }
        return sd_bus_error_setf(error, r == -EBUSY ? LV_ERROR_BUSY : LV_ERROR_FAILED,
                                 "Cannot close the dm-crypt mapping '%s': %s", name, strerror(-r));
}

/* ----------------------------------------------- mappings, from sysfs */

static int read_line(const char *path, char **ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;

        /* Only "is it there" matters to the callers (sysfs attributes). */
        if (!f)
                return -ENOENT;
        if (getline(&line, &n, f) <= 0)
                return -ENODATA;
        line[strcspn(line, "\n")] = '\0';
        *ret = TAKE_PTR(line);
        return 0;
}

/* "dm-3" for a mapping name, from /sys/block/dm-* /dm/name. */
static int dm_kernel_name(const char *name, char ret[static 64]) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        struct dirent *de;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                _cleanup_free_ char *p = NULL, *n = NULL;

                if (!startswith(de->d_name, "dm-"))
                        continue;
                if (asprintf(&p, "/sys/block/%s/dm/name", de->d_name) < 0)
                        return -ENOMEM;
                if (read_line(p, &n) >= 0 && streq(n, name)) {
                        snprintf(ret, 64, "%.63s", de->d_name);
                        return 0;
                }
        }
        return -ENODEV;
}

/* "CRYPT-LUKS1-<32 hex>-NAME" → version and the UUID with its dashes. */
static int parse_dm_uuid(const char *uuid, LuksInfo *ret) {
        const char *hex;
        unsigned v;

        if (startswith(uuid, "CRYPT-LUKS1-"))
                v = 1;
        else if (startswith(uuid, "CRYPT-LUKS2-"))
                v = 2;
        else
                return -EINVAL;
        hex = uuid + strlen("CRYPT-LUKS1-");
        if (strlen(hex) < 32 || strspn(hex, "0123456789abcdefABCDEF") < 32)
                return -EINVAL;
        ret->version = v;
        snprintf(ret->uuid, sizeof ret->uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
        return 0;
}

/* The one block device an active mapping sits on, as its kernel name
 * ("loop3", "sdb"), from /sys/block/dm-N/slaves. */
static int mapping_slave(const char *kname, char **ret) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(closedirp) DIR *slaves = NULL;
        struct dirent *de;

        if (asprintf(&p, "/sys/block/%s/slaves", kname) < 0)
                return -ENOMEM;
        slaves = opendir(p);
        if (!slaves)
                return negative_errno();
        while ((de = readdir(slaves))) {
                if (de->d_name[0] == '.')
                        continue;
                *ret = strdup(de->d_name);
                return *ret ? 0 : -ENOMEM;
        }
        return -ENODEV;
}

int luks_mapping_info(const char *name, char **ret_source, LuksInfo *ret_info) {
        _cleanup_free_ char *p = NULL, *uuid = NULL, *src = NULL, *slave = NULL;
        char kname[64];
        LuksInfo info = {};
        int r;

        r = dm_kernel_name(name, kname);
        if (r < 0)
                return r;

        if (asprintf(&p, "/sys/block/%s/dm/uuid", kname) < 0)
                return -ENOMEM;
        if (read_line(p, &uuid) >= 0)
                (void) parse_dm_uuid(uuid, &info);

        r = mapping_slave(kname, &slave);
        if (r < 0)
                return r;
        if (startswith(slave, "loop")) {
                _cleanup_free_ char *bf = NULL;

                if (asprintf(&bf, "/sys/block/%s/loop/backing_file", slave) < 0)
                        return -ENOMEM;
                r = read_line(bf, &src);
                if (r < 0)
                        return r;
        } else if (asprintf(&src, "/dev/%s", slave) < 0)
                return -ENOMEM;

        *ret_source = TAKE_PTR(src);
        if (ret_info)
                *ret_info = info;
        return 0;
}

int luks_mapping_device(const char *name, char **ret_node) {
        char kname[64], *slave = NULL;
        int r;

        r = dm_kernel_name(name, kname);
        if (r < 0)
                return r;
        r = mapping_slave(kname, &slave);
        if (r < 0)
                return r;
        r = asprintf(ret_node, "/dev/%s", slave) < 0 ? -ENOMEM : 0;
        free(slave);
        return r;
}

int luks_mapping_geometry(const char *name, uint64_t *ret_payload_offset, uint64_t *ret_size) {
        _cleanup_(crypt_freep) struct crypt_device *cd = NULL;
        struct crypt_active_device cad = {};
        int r;

        /* The kernel's table, through device-mapper: nothing is read from
         * the device under it. */
        CRYPT_LOCKED;
        r = crypt_init(&cd, NULL);
        if (r < 0)
                return r;
        crypt_set_log_callback(cd, luks_log, NULL);
        r = crypt_get_active_device(cd, name, &cad);
        if (r < 0)
                return r;
        *ret_payload_offset = cad.offset * 512;
        *ret_size = cad.size * 512;
        return 0;
}

int luks_resize(LuksSource *s, const char *name, const char *data_device, uint64_t size, unsigned timeout_ms,
                sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        int r;

        if (size == 0 || size % 512 != 0)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "%" PRIu64 " is not a multiple of 512 bytes.",
                                         size);

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        /* The table is rebuilt on this device: it must be the one the
         * mapping already sits on (the caller found it in sysfs). */
        r = set_data_device(&cd, data_device, timeout_ms, error);
        if (r < 0)
                return r;

        /* A table reload: device-mapper work, under the lock.  The kernel
         * suspends the mapping for it, which waits for the guest's I/O in
         * flight. */
        {
                CRYPT_LOCKED;
                r = crypt_resize(cd, name, size / 512);
        }
        if (r == -EPERM)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "The mapping %s keeps its volume key in the kernel keyring (an older "
                                         "luksvolumed opened it); detach and attach the volume again to resize it.",
                                         name);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                         "Cannot resize the dm-crypt mapping %s to %" PRIu64 " bytes: %s", name, size,
                                         strerror(-r));
        return 0;
}
