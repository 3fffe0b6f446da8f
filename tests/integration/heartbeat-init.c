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
 * Linked statically (no libraries in the initramfs) and without the
 * project's compiler flags; it is PID 1, so it never exits (the kernel
 * would panic) and ignores every signal by default. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 20000000L
#define NSEC_PER_SEC 1000000000L

static void
write_all(int fd, const char *buf, size_t len)
{
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

static void
timespec_add_ns(struct timespec *t, long ns)
{
  t->tv_nsec += ns;
  while (t->tv_nsec >= NSEC_PER_SEC) {
    t->tv_nsec -= NSEC_PER_SEC;
    t->tv_sec++;
  }
}

static int
timespec_before(const struct timespec *a, const struct timespec *b)
{
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int
main(void)
{
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
