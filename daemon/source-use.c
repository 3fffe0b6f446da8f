/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "deadline.h"
#include "disk-xml.h"
#include "errors.h"
#include "loopdev.h"
#include "open-pinned.h"
#include "parallel.h"
#include "source-use.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);

/* ------------------------------------------------------ block devices */

/* The device and its partitions, as "MAJ:MIN" strings (sysfs' own
 * spelling) and dev_t values; at most DEVS_MAX of them. */
#define DEVS_MAX 128

typedef struct DevSet {
        dev_t dev[DEVS_MAX];
        char name[DEVS_MAX][64]; /* kernel name: "sdb", "sdb1" */
        size_t n;
} DevSet;

static int read_line(const char *path, char *buf, size_t size) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");

        /* Only "is it there" matters to the callers (sysfs attributes). */
        if (!f)
                return -ENOENT;
        if (!fgets(buf, (int) size, f))
                return -ENODATA;
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

static bool devset_has(const DevSet *s, dev_t d) {
        for (size_t i = 0; i < s->n; i++)
                if (s->dev[i] == d)
                        return true;
        return false;
}

static void devset_fill(dev_t whole, DevSet *ret) {
        char sys[128], buf[PATH_MAX], link[PATH_MAX];
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        ssize_t k;

        ret->n = 0;
        ret->dev[ret->n] = whole;
        snprintf(sys, sizeof sys, "/sys/dev/block/%u:%u", major(whole), minor(whole));
        k = readlink(sys, link, sizeof link - 1);
        if (k > 0) {
                link[k] = '\0';
                snprintf(ret->name[ret->n], sizeof ret->name[0], "%.63s",
                         strrchr(link, '/') ? strrchr(link, '/') + 1 : link);
        } else
                snprintf(ret->name[ret->n], sizeof ret->name[0], "%u:%u", major(whole), minor(whole));
        ret->n++;

        d = opendir(sys);
        if (!d)
                return;
        while ((de = readdir(d)) && ret->n < DEVS_MAX) {
                unsigned maj, min;
                char p[PATH_MAX];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof p, "%s/%s/partition", sys, de->d_name);
                if (access(p, F_OK) < 0)
                        continue;
                snprintf(p, sizeof p, "%s/%s/dev", sys, de->d_name);
                if (read_line(p, buf, sizeof buf) < 0 || sscanf(buf, "%u:%u", &maj, &min) != 2)
                        continue;
                ret->dev[ret->n] = makedev(maj, min);
                snprintf(ret->name[ret->n], sizeof ret->name[0], "%.63s", de->d_name);
                ret->n++;
        }
}

/* Undoes the octal escapes of /proc/self/mountinfo and /proc/swaps. */
static void unescape(char *s) {
        char *w = s;
        for (char *r = s; *r;) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
                    r[3] <= '7') {
                        *w++ = (char) ((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 4;
                } else
                        *w++ = *r++;
        }
        *w = '\0';
}

/* A mount of the device or one of its partitions: its mount point. */
static int find_mount(const DevSet *s, char **ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;

        if (!f)
                return negative_errno();
        while (getline(&line, &n, f) > 0) {
                unsigned maj, min;
                char mnt[PATH_MAX], src[PATH_MAX];
                const char *sep;
                struct stat st;

                /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS" */
                if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3)
                        continue;
                unescape(mnt);
                if (devset_has(s, makedev(maj, min))) {
                        *ret = strdup(mnt);
                        return *ret ? 1 : -ENOMEM;
                }
                /* Some file systems (btrfs) report an anonymous device
                 * number; their SOURCE names the block device. */
                sep = strstr(line, " - ");
                if (sep && sscanf(sep, " - %*s %4095s", src) == 1) {
                        unescape(src);
                        if (startswith(src, "/dev/") && stat(src, &st) >= 0 && S_ISBLK(st.st_mode) &&
                            devset_has(s, st.st_rdev)) {
                                *ret = strdup(mnt);
                                return *ret ? 1 : -ENOMEM;
                        }
                }
        }
        return 0;
}

static bool used_as_swap(const DevSet *s) {
        _cleanup_fclose_ FILE *f = fopen("/proc/swaps", "re");
        char line[PATH_MAX + 128];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f)) {
                char name[PATH_MAX];
                struct stat st;

                if (sscanf(line, "%4095s", name) != 1 || streq(name, "Filename"))
                        continue;
                unescape(name);
                if (stat(name, &st) >= 0 && S_ISBLK(st.st_mode) && devset_has(s, st.st_rdev))
                        return true;
        }
        return false;
}

/* The first holder of the device or a partition: "dm-3 (vg-root)", "md127". */
static int find_holder(const DevSet *s, char **ret) {
        for (size_t i = 0; i < s->n; i++) {
                _cleanup_(closedirp) DIR *d = NULL;
                struct dirent *de;
                char p[PATH_MAX];

                snprintf(p, sizeof p, "/sys/dev/block/%u:%u/holders", major(s->dev[i]), minor(s->dev[i]));
                d = opendir(p);
                if (!d)
                        continue;
                while ((de = readdir(d))) {
                        char name[256] = "";

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(p, sizeof p, "/sys/block/%s/dm/name", de->d_name);
                        if (read_line(p, name, sizeof name) >= 0 && name[0]) {
                                if (asprintf(ret, "%s (%s)", de->d_name, name) < 0)
                                        return -ENOMEM;
                        } else if (!(*ret = strdup(de->d_name)))
                                return -ENOMEM;
                        return 1;
                }
        }
        return 0;
}

/* The O_EXCL open of the caller's path, on a thread of its own like every
 * other access to it (a device node can sit on any file system). */
typedef struct ExclTask {
        char *path;
        int fd;
        int saved_errno;
        struct stat st;
} ExclTask;

static void excl_task_free(void *p) {
        ExclTask *t = p;
        if (t->fd >= 0)
                close(t->fd);
        free(t->path);
        free(t);
}

static void excl_task_run(void *p) {
        ExclTask *t = p;

        t->fd = open_pinned(t->path, O_RDONLY | O_EXCL | O_NONBLOCK | O_NOCTTY);
        if (t->fd < 0)
                t->saved_errno = -t->fd;
        else if (fstat(t->fd, &t->st) < 0)
                t->saved_errno = errno;
}

static int check_block(const SourceInfo *src, unsigned timeout_ms, sd_bus_error *error) {
        ExclTask *t;
        char *who = NULL;
        DevSet set;
        int r;

        devset_fill(src->dev, &set);

        /* Mounted, swap or held are answered with a name; O_EXCL catches
         * what leaves no other trace (a process's exclusive open). */
        if (find_mount(&set, &who) > 0)
                r = sd_bus_error_setf(error, LV_ERROR_IN_USE, "'%s' is in use: mounted at %s.", src->path, who);
        else if (used_as_swap(&set))
                r = sd_bus_error_setf(error, LV_ERROR_IN_USE, "'%s' is in use: it is used as swap.", src->path);
        else if (find_holder(&set, &who) > 0)
                r = sd_bus_error_setf(error, LV_ERROR_IN_USE, "'%s' is in use: held by %s.", src->path, who);
        else
                r = 0;
        free(who);
        if (r < 0)
                return r;

        /* Checked to be the same device the path named before. */
        t = calloc(1, sizeof *t);
        if (!t || !(t->path = strdup(src->path))) {
                free(t);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        t->fd = -EBADF;
        r = deadline_run(excl_task_run, t, excl_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                excl_task_free(t);
                return source_error_deadline(error, r);
        }
        if (t->fd < 0 && t->saved_errno == EBUSY)
                r = sd_bus_error_setf(error, LV_ERROR_IN_USE,
                                      "'%s' is in use: another process has it open exclusively.", src->path);
        else if (t->fd < 0 && t->saved_errno == ELOOP)
                r = source_error_changed(error, src->path); /* a symlink planted since */
        else if (t->fd < 0 || t->saved_errno)
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot open '%s': %s", src->path,
                                      strerror(t->saved_errno));
        else if (!S_ISBLK(t->st.st_mode) || t->st.st_rdev != src->dev)
                r = source_error_changed(error, src->path);
        else
                r = 0;
        excl_task_free(t);
        return r;
}

int source_hold_exclusive(LuksSource *opened, int *ret_fd, sd_bus_error *error) {
        char path[40];
        int fd;

        /* Through the descriptor already checked: the same device, not
         * whatever the path names by now. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", luks_source_fd(opened));
        fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                if (errno == EBUSY)
                        return sd_bus_error_setf(error, LV_ERROR_IN_USE,
                                                 "'%s' is in use: another process has it open exclusively.",
                                                 luks_source_path(opened));
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot open '%s' exclusively: %s",
                                         luks_source_path(opened), strerror(errno));
        }
        *ret_fd = fd;
        return 0;
}

/* -------------------------------------------------------- guests' disks */

typedef struct DiskPath {
        char *path;
        char *domain;
        char *target;
        const char *how; /* "" running, or a static note on which definition */
        bool found;
        struct stat st;
} DiskPath;

/* Runs on a thread of its own: stat()s every path a guest uses. */
typedef struct StatTask {
        DiskPath *paths;
        size_t n;
} StatTask;

static void stat_task_free(void *p) {
        StatTask *t = p;

        for (size_t i = 0; i < t->n; i++) {
                free(t->paths[i].path);
                free(t->paths[i].domain);
                free(t->paths[i].target);
        }
        free(t->paths);
        free(t);
}

static void stat_task_run(void *p) {
        StatTask *t = p;

        for (size_t i = 0; i < t->n; i++)
                t->paths[i].found = stat(t->paths[i].path, &t->paths[i].st) >= 0;
}

static int stat_task_add(StatTask *t, size_t *allocated, const char *path, const char *domain, const char *target,
                         const char *how) {
        DiskPath *d;

        if (t->n == *allocated) {
                size_t m = *allocated ? *allocated * 2 : 16;
                DiskPath *p = reallocarray(t->paths, m, sizeof *p);
                if (!p)
                        return -ENOMEM;
                t->paths = p;
                *allocated = m;
        }
        d = &t->paths[t->n];
        *d = (DiskPath){
                .path = strdup(path),
                .domain = strdup(domain),
                .target = strdup(target),
                .how = how,
        };
        t->n++;
        if (!d->path || !d->domain || !d->target)
                return -ENOMEM;
        return 0;
}

/* One definition of one domain: its live XML or its persistent
 * configuration, from the index or read afresh. */
typedef struct XmlFetch {
        virDomainPtr dom; /* borrowed from the listing */
        char uuid[VIR_UUID_STRING_BUFLEN];
        unsigned flags;
        const char *how;
        bool known; /* the index had it: its paths are in the task already */
        uint64_t stamp;
        char *xml;
} XmlFetch;

static void fetch_one(size_t i, void *userdata) {
        XmlFetch *f = (XmlFetch *) userdata + i;

        /* Stopped or undefined since the listing: it uses nothing any more
         * (NULL, skipped). */
        if (!f->known)
                f->xml = virDomainGetXMLDesc(f->dom, f->flags);
}

typedef struct VisitState {
        StatTask *t;
        size_t *allocated;
        const char *domain;
        const char *how;
} VisitState;

static int visit_known(const char *path, const char *target, void *userdata) {
        VisitState *v = userdata;

        return stat_task_add(v->t, v->allocated, path, v->domain, target, v->how);
}

static int add_domain_disks(DiskIndex *index, StatTask *t, size_t *allocated, const XmlFetch *f) {
        const char *name = virDomainGetName(f->dom);
        char **paths = NULL, **targets = NULL; /* borrowed strings: the arrays only */
        DiskInfo *disks = NULL;
        size_t nd = 0, n = 0, m = 0;
        int r = 0;

        if (!name || !f->xml || domain_xml_list_disks(f->xml, &disks, &nd) < 0)
                return 0;
        for (size_t k = 0; k < nd; k++)
                m += (disks[k].source && !disks[k].rbd ? 1 : 0) + strv_length(disks[k].other_sources);
        paths = calloc(m + 1, sizeof *paths);
        targets = calloc(m + 1, sizeof *targets);
        if (!paths || !targets)
                r = -ENOMEM;
        for (size_t k = 0; k < nd && r >= 0; k++) {
                /* An RBD image is no host file (Ceph's watchers say who
                         * uses one: attach-rbd.c). */
                if (disks[k].source && !disks[k].rbd) {
                        paths[n] = disks[k].source;
                        targets[n++] = disks[k].target;
                        r = stat_task_add(t, allocated, disks[k].source, name, disks[k].target, f->how);
                }
                for (char **o = disks[k].other_sources; o && *o && r >= 0; o++) {
                        paths[n] = *o;
                        targets[n++] = disks[k].target;
                        r = stat_task_add(t, allocated, *o, name, disks[k].target, f->how);
                }
        }
        /* Kept for the next check, unless the domain changed meanwhile. */
        if (r >= 0 && index)
                (void) disk_index_store(index, f->uuid, f->flags & VIR_DOMAIN_XML_INACTIVE, f->stamp, paths, targets,
                                        n);
        free(paths);
        free(targets);
        disk_info_array_free(disks, nd);
        return r;
}

static void domains_free(virDomainPtr *doms, int n) {
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
}

/* Whether the listing holds a domain of that UUID (a local look-up: the
 * UUID comes with the listing). */
static bool listed(virDomainPtr *doms, int n, virDomainPtr dom) {
        unsigned char a[VIR_UUID_BUFLEN], b[VIR_UUID_BUFLEN];

        if (virDomainGetUUID(dom, a) < 0)
                return false;
        for (int i = 0; i < n; i++)
                if (virDomainGetUUID(doms[i], b) >= 0 && memcmp(a, b, sizeof a) == 0)
                        return true;
        return false;
}

/* Fetching the XML costs one round trip to libvirtd per definition, and an
 * attach must see them all: they are fetched several at a time, so that
 * the check's wall time does not grow with every domain on the host. */
#define XML_FETCH_THREADS 8U

/* What the index knows goes into the task at once; the rest is marked for
 * reading.  -ENOMEM only. */
static int add_known(DiskIndex *index, StatTask *t, size_t *allocated, XmlFetch *f) {
        VisitState v = { .t = t, .allocated = allocated, .domain = virDomainGetName(f->dom), .how = f->how };
        int r;

        if (!index || !v.domain || virDomainGetUUIDString(f->dom, f->uuid) < 0)
                return 0;
        r = disk_index_visit(index, f->uuid, f->flags & VIR_DOMAIN_XML_INACTIVE, visit_known, &v, &f->stamp);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        f->known = true;
        return 0;
}

static int collect_disk_paths(Virt *virt, DiskIndex *index, StatTask *t, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        virDomainPtr *running = NULL, *defined = NULL;
        _cleanup_free_ XmlFetch *fetch = NULL;
        int n_running, n_defined, r = 0;
        size_t allocated = 0, n_fetch = 0;

        r = virt_connect(virt, &conn, error);
        if (r < 0)
                return r;

        /* Running or not: a defined domain's disks are its own, and its
         * next start would make a second writer of whoever else has them.
         * What runs now, and what the next start will use: a running
         * persistent domain's configuration may differ.  Two listings say
         * which is which, instead of two questions per domain. */
        n_running = virConnectListAllDomains(conn, &running, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n_running < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot list domains: %s",
                                         strempty(virGetLastErrorMessage()));
        n_defined = virConnectListAllDomains(conn, &defined, VIR_CONNECT_LIST_DOMAINS_PERSISTENT);
        if (n_defined < 0) {
                domains_free(running, n_running);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot list domains: %s",
                                         strempty(virGetLastErrorMessage()));
        }

        fetch = calloc((size_t) n_running + (size_t) n_defined + 1, sizeof *fetch);
        if (fetch) {
                for (int i = 0; i < n_running; i++)
                        fetch[n_fetch++] = (XmlFetch){ .dom = running[i], .how = "" };
                for (int i = 0; i < n_defined; i++) {
                        bool active = listed(running, n_running, defined[i]);
                        fetch[n_fetch++] = (XmlFetch){
                                .dom = defined[i],
                                .flags = VIR_DOMAIN_XML_INACTIVE,
                                .how = active ? " (its configuration)" : " (defined, not running)",
                        };
                }
                for (size_t i = 0; i < n_fetch && r >= 0; i++)
                        r = add_known(index, t, &allocated, &fetch[i]);
                if (r >= 0)
                        parallel_for(n_fetch, XML_FETCH_THREADS, fetch_one, fetch);
                for (size_t i = 0; i < n_fetch && r >= 0; i++)
                        if (!fetch[i].known)
                                r = add_domain_disks(index, t, &allocated, &fetch[i]);
                for (size_t i = 0; i < n_fetch; i++)
                        free(fetch[i].xml);
        } else
                r = -ENOMEM;

        domains_free(running, n_running);
        domains_free(defined, n_defined);
        if (r < 0)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        return 0;
}

static int check_guests(Virt *virt, DiskIndex *index, const SourceInfo *src, unsigned timeout_ms, sd_bus_error *error) {
        StatTask *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");

        r = collect_disk_paths(virt, index, t, error);
        if (r < 0) {
                stat_task_free(t);
                return r;
        }

        /* libvirt names these paths, not the caller; but one of them may sit
         * on a file system that hangs as well as any other. */
        r = deadline_run(stat_task_run, t, stat_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "The disks of defined guests could not all be checked within %u s "
                                         "(a hung file system?); try again later.",
                                         (timeout_ms + 999) / 1000);
        if (r < 0) {
                stat_task_free(t);
                return source_error_deadline(error, r);
        }

        r = 0;
        for (size_t i = 0; i < t->n && r >= 0; i++) {
                const DiskPath *d = &t->paths[i];
                bool same;

                if (!d->found)
                        continue;
                if (src->block)
                        same = S_ISBLK(d->st.st_mode) && d->st.st_rdev == src->dev;
                else
                        same = S_ISREG(d->st.st_mode) && d->st.st_dev == src->dev && d->st.st_ino == src->ino;
                if (same)
                        r = sd_bus_error_setf(
                                error, LV_ERROR_IN_USE, "'%s' is in use: disk %s of domain '%s'%s%s%s%s.", src->path,
                                d->target, d->domain, d->how, streq(d->path, src->path) ? "" : " (as '",
                                streq(d->path, src->path) ? "" : d->path, streq(d->path, src->path) ? "" : "')");
        }
        stat_task_free(t);
        return r;
}

int source_check_in_use(Virt *virt, DiskIndex *index, const SourceInfo *src, unsigned timeout_ms, sd_bus_error *error) {
        int r;

        if (src->block) {
                r = check_block(src, timeout_ms, error);
                if (r < 0)
                        return r;
        } else {
                _cleanup_free_ char *loop = NULL;

                r = loop_find_backing(src->dev, src->ino, &loop);
                if (r > 0)
                        return sd_bus_error_setf(error, LV_ERROR_IN_USE, "'%s' is in use: it backs loop device %s.",
                                                 src->path, loop);
                if (r < 0)
                        log_debug_errno(r, "Cannot list loop devices, not checking them: %m");
        }

        return check_guests(virt, index, src, timeout_ms, error);
}
