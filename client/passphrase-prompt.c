/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <signal.h>
#include <termios.h>

#include "passphrase-prompt.h"
#include "util.h"

/* The terminal state to restore; touched by the signal handler, so only
 * async-signal-safe calls (tcsetattr, write, sigaction, raise) use it. */
static volatile sig_atomic_t prompt_tty_fd = -1;
static struct termios prompt_saved_termios, prompt_noecho_termios;

static const int prompt_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU };
static struct sigaction prompt_old_actions[ELEMENTSOF(prompt_signals)];

static void prompt_signal_handler(int sig);

static void prompt_install_handlers(void) {
        struct sigaction sa = { .sa_handler = prompt_signal_handler };

        /* No SA_RESTART: read() returns EINTR after a stop/continue, and we
         * simply retry it with echo disabled again. */
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(prompt_signals); i++)
                (void) sigaction(prompt_signals[i], &sa, &prompt_old_actions[i]);
}

static void prompt_restore_handlers(void) {
        for (size_t i = 0; i < ELEMENTSOF(prompt_signals); i++)
                (void) sigaction(prompt_signals[i], &prompt_old_actions[i], NULL);
}

static void prompt_signal_handler(int sig) {
        struct sigaction dfl = { .sa_handler = SIG_DFL }, self = { .sa_handler = prompt_signal_handler };
        int saved_errno = errno, fd = prompt_tty_fd;
        bool stop = sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        sigset_t ss, pending;

        /* Never leave the user's terminal with echo off: put it back, then
         * die (or stop) the way the signal would have made us. */
        if (fd >= 0) {
                (void) tcsetattr(fd, TCSAFLUSH, &prompt_saved_termios);
                if (!stop)
                        (void) !write(fd, "\n", 1);
        }

        sigemptyset(&dfl.sa_mask);
        (void) sigaction(sig, &dfl, NULL);
        sigemptyset(&ss);
        sigaddset(&ss, sig);
        /* The tcsetattr() above raises SIGTTOU itself when we run in the
         * background; if the signal is pending again, unblocking delivers
         * it, and raising another would stop us twice. */
        (void) sigpending(&pending);
        (void) sigprocmask(SIG_UNBLOCK, &ss, NULL);
        if (!sigismember(&pending, sig))
                (void) raise(sig);

        /* Only stop signals get here, once we are continued: resume the
         * prompt with echo disabled again. */
        sigemptyset(&self.sa_mask);
        (void) sigaction(sig, &self, NULL);
        if (fd >= 0)
                (void) tcsetattr(fd, TCSAFLUSH, &prompt_noecho_termios);
        errno = saved_errno;
}

/* tcsetattr() that survives being stopped and continued half-way: when
 * we were started in the background it raises SIGTTOU, and after "fg" the
 * call itself fails with EINTR. */
static int tty_set(int fd, const struct termios *t) {
        while (tcsetattr(fd, TCSAFLUSH, t) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

int prompt_passphrase(const char *prompt, const char *source, char *buf, size_t size, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        bool got_newline = false, too_long = false;
        size_t n = 0;
        int r = 0;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (tcgetattr(fd, &prompt_saved_termios) < 0)
                return -errno;

        prompt_noecho_termios = prompt_saved_termios;
        prompt_noecho_termios.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK | ECHONL);
        prompt_noecho_termios.c_lflag |= ICANON | ISIG;

        prompt_tty_fd = fd;
        prompt_install_handlers();

        r = tty_set(fd, &prompt_noecho_termios);
        if (r < 0)
                goto finish;

        (void) !write(fd, prompt, strlen(prompt));
        (void) !write(fd, " for ", strlen(" for "));
        (void) !write(fd, source, strlen(source));
        (void) !write(fd, ": ", 2);

        while (!got_newline) {
                char c;
                ssize_t k = read(fd, &c, 1);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto finish;
                }
                if (k == 0) {
                        /* ^D: the user gave up. */
                        r = -ECANCELED;
                        goto finish;
                }
                if (c == '\n')
                        got_newline = true;
                else if (n < size)
                        buf[n++] = c;
                else
                        too_long = true; /* keep draining the line */
        }
        if (too_long)
                r = -E2BIG;

finish:
        (void) tty_set(fd, &prompt_saved_termios);
        prompt_restore_handlers();
        prompt_tty_fd = -1;
        /* Echo was off, so the user's Enter did not move the cursor. */
        (void) !write(fd, "\n", 1);

        if (r < 0)
                return r;
        *ret_len = n;
        return 0;
}
