/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /init of the heartbeat guest (fixture.h, lv_start_heartbeat_guest()).
 *
 * A witness for "does this stop the guest?": the guest's only process
 * prints, every 20 ms, one line
 *
 *     HB <seq> <seconds>.<microseconds>
 *
 * to its console, where seq counts lines from 0 and the time is the guest's
 * own CLOCK_MONOTONIC when it printed.  Whenever QEMU holds its big lock
 * (e.g. deriving LUKS keys inside blockdev-add) the vCPU cannot finish the
 * serial port write or take the timer interrupt that ends the sleep, so the
 * guest's time jumps between two lines: the gap between consecutive
 * timestamps is the stall.  The guest's clock keeps running meanwhile
 * (under TCG it follows the host's clock), which is what makes the gap
 * visible in the guest's own timestamps.
 *
 * With disk drivers (an initramfs carrying /modules.list, one module file
 * a line in load order: lv_start_heartbeat_guest_disks()), it first loads
 * them (finit_module) and then also reports, every DISK_EVERY-th beat, one
 * line per virtio disk
 *
 *     BLK <name> <size in 512-byte sectors> <serial, or ->
 *
 * from the guest kernel's own /sys/block — what a real guest sees of a
 * hot-plugged, resized disk.  Without /modules.list it does nothing but
 * beat (the stall measurement's guest).
 *
 * Linked statically (no libraries in the initramfs) and without the
 * project's compiler flags; it is PID 1, so it never exits (the kernel
 * would panic) and ignores every signal by default. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS    20000000L
#define NSEC_PER_SEC 1000000000L
/* Disk reports every 25 beats: 500 ms. */
#define DISK_EVERY   25

static int disks_wanted;

static void write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return; /* nowhere to report it; the next line tries again */
                }
                buf += n;
                len -= (size_t) n;
        }
}

/* The first line of path, without its newline, into buf ("" on failure). */
static void read_first_line(const char *path, char *buf, size_t size) {
        buf[0] = '\0';
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, size - 1);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}

/* Loads each module /modules.list names, in order; says how each went. */
static void load_modules(void) {
        char list[4096], line[160];
        int fd = open("/modules.list", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, list, sizeof list - 1);
        close(fd);
        if (n <= 0)
                return;
        list[n] = '\0';
        disks_wanted = 1;

        mkdir("/sys", 0755);
        mount("sysfs", "/sys", "sysfs", 0, NULL);

        char *save = NULL;
        for (char *p = strtok_r(list, "\n", &save); p != NULL; p = strtok_r(NULL, "\n", &save)) {
                int mfd = open(p, O_RDONLY | O_CLOEXEC);
                long r = mfd < 0 ? -1 : syscall(SYS_finit_module, mfd, "", 0);
                int e = errno;
                if (mfd >= 0)
                        close(mfd);
                int k = snprintf(line, sizeof line, "MOD %s %s\n", p, r == 0 ? "ok" : strerror(e));
                if (k > 0 && (size_t) k < sizeof line)
                        write_all(STDOUT_FILENO, line, (size_t) k);
        }
}

/* One BLK line per virtio disk the kernel has. */
static void report_disks(void) {
        DIR *d = opendir("/sys/block");
        if (d == NULL)
                return;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
                char path[300], size[32], serial[64], line[160];
                if (strncmp(de->d_name, "vd", 2) != 0)
                        continue;
                snprintf(path, sizeof path, "/sys/block/%s/size", de->d_name);
                read_first_line(path, size, sizeof size);
                snprintf(path, sizeof path, "/sys/block/%s/serial", de->d_name);
                read_first_line(path, serial, sizeof serial);
                int k = snprintf(line, sizeof line, "BLK %s %s %s\n", de->d_name, size[0] ? size : "?",
                                 serial[0] ? serial : "-");
                if (k > 0 && (size_t) k < sizeof line)
                        write_all(STDOUT_FILENO, line, (size_t) k);
        }
        closedir(d);
}

static void timespec_add_ns(struct timespec *t, long ns) {
        t->tv_nsec += ns;
        while (t->tv_nsec >= NSEC_PER_SEC) {
                t->tv_nsec -= NSEC_PER_SEC;
                t->tv_sec++;
        }
}

static int timespec_before(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int main(void) {
        /* The initramfs carries /dev/console, which the kernel opens as fds 0-2.
   * Should that ever fail, make a console ourselves. */
        if (fcntl(STDOUT_FILENO, F_GETFD) < 0) {
                mkdir("/dev", 0755);
                mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
                int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
                if (fd < 0)
                        fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
                if (fd >= 0 && fd != STDOUT_FILENO)
                        dup2(fd, STDOUT_FILENO);
        }

        static const char hello[] = "heartbeat: every 20 ms: HB <seq> <CLOCK_MONOTONIC s.us>\n";
        write_all(STDOUT_FILENO, hello, sizeof hello - 1);
        load_modules();

        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        for (unsigned long long seq = 0;; seq++) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                char line[64];
                /* One write per line, so a line leaves in one piece. */
                int n = snprintf(line, sizeof line, "HB %llu %lld.%06ld\n", seq, (long long) now.tv_sec,
                                 now.tv_nsec / 1000);
                if (n > 0 && (size_t) n < sizeof line)
                        write_all(STDOUT_FILENO, line, (size_t) n);
                if (disks_wanted && seq % DISK_EVERY == 0)
                        report_disks();

                /* A fixed 20 ms grid; after a stall, start a new grid from now rather
     * than printing the missed lines in a burst. */
                timespec_add_ns(&next, PERIOD_NS);
                if (timespec_before(&next, &now)) {
                        next = now;
                        timespec_add_ns(&next, PERIOD_NS);
                }
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
                        ;
        }
}
