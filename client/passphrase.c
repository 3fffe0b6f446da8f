/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>

#include "luksvolumectl.h"
#include "passphrase-prompt.h"
#include "passphrase.h"

/* The secret while it is in this process: on the stack of
 * acquire_passphrase_fd() or acquire_new_passphrase_fd() only, and wiped
 * when that returns. */
typedef struct Passphrase {
        size_t len;
        char buf[PASSPHRASE_MAX + 1]; /* one byte over the cap, to tell "too long" from "just fits" */
} Passphrase;

static void passphrase_erase(Passphrase *p) {
        explicit_bzero(p, sizeof(*p));
}

/* Reads fd to EOF into p, verbatim. -E2BIG if there is more than
 * PASSPHRASE_MAX bytes. */
static int read_secret_fd(int fd, Passphrase *p) {
        size_t n = 0;

        while (n < sizeof(p->buf)) {
                ssize_t k = read(fd, p->buf + n, sizeof(p->buf) - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n > PASSPHRASE_MAX)
                return -E2BIG;

        p->len = n;
        return 0;
}

/* Where one passphrase comes from: the file option (its value and its
 * name, for messages), or the prompt "PROMPT for SOURCE: ". */
typedef struct PassphraseSource {
        const char *file;
        const char *option;
        const char *prompt;
        const char *source;
} PassphraseSource;

/* Step: read the passphrase into p from wherever ps says. */
static int read_passphrase(const PassphraseSource *ps, Passphrase *p) {
        _cleanup_close_ int fd = -EBADF;
        const char *what;
        int r;

        if (ps->file && streq(ps->file, "-")) {
                /* Reading to EOF from a terminal would echo the secret. */
                if (isatty(STDIN_FILENO))
                        return fail(EXIT_USAGE,
                                    "Refusing to read the passphrase from a terminal with echo on; "
                                    "omit %s to be prompted.",
                                    ps->option);
                what = "standard input";
                r = read_secret_fd(STDIN_FILENO, p);
        } else if (ps->file) {
                what = ps->file;
                fd = open(ps->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return fail_errno(EXIT_FAIL, errno, "Failed to open passphrase file %s: %m", ps->file);
                r = read_secret_fd(fd, p);
        } else {
                if (!arg_ask_password)
                        return fail(EXIT_USAGE,
                                    "No passphrase given: use %s "
                                    "(--no-ask-password forbids prompting).",
                                    ps->option);
                if (!isatty(STDIN_FILENO))
                        return fail(EXIT_USAGE,
                                    "No passphrase given and standard input is not a terminal: "
                                    "use %1$s FILE or %1$s -.",
                                    ps->option);
                what = "terminal";
                r = prompt_passphrase(ps->prompt, ps->source, p->buf, PASSPHRASE_MAX, &p->len);
        }

        if (r == -E2BIG)
                return fail(EXIT_USAGE, "Passphrase from %s is longer than the maximum of %u bytes.", what,
                            PASSPHRASE_MAX);
        if (r == -ECANCELED)
                return fail(EXIT_FAIL, "Passphrase prompt cancelled.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to read passphrase from %s: %m", what);

        if (p->len == 0)
                return fail(EXIT_USAGE, "Passphrase from %s is empty.", what);
        return EXIT_OK;
}

/* Puts the secret into a fresh pipe and returns its read end. */
static int passphrase_pipe(const Passphrase *p, int *ret_fd) {
        _cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
        int fds[2], sz;
        ssize_t k;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        rfd = fds[0];
        wfd = fds[1];

        /* A user over pipe-user-pages-soft gets one-page pipes: make room,
         * and make the write end non-blocking so that if we still could
         * not, we fail instead of hanging on a reader that is us. Only the
         * write end is non-blocking: the daemon gets a plain fd. */
        sz = fcntl(wfd, F_GETPIPE_SZ);
        if (sz >= 0 && (size_t) sz < p->len)
                (void) fcntl(wfd, F_SETPIPE_SZ, (int) p->len);
        if (fcntl(wfd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        k = write(wfd, p->buf, p->len);
        if (k < 0)
                return errno == EAGAIN ? -ENOBUFS : -errno;
        if ((size_t) k != p->len)
                return -ENOBUFS;

        /* The write end closes on return, so the daemon reads EOF right
         * after the secret. */
        *ret_fd = TAKE_FD(rfd);
        return 0;
}

/* Step: p into a pipe, for an fd option. */
static int hand_over(const Passphrase *p, int *ret_fd) {
        int r = passphrase_pipe(p, ret_fd);
        if (r == -ENOBUFS)
                return fail(EXIT_FAIL, "Failed to pass the passphrase: pipe buffer too small.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to create passphrase pipe: %m");
        return EXIT_OK;
}

int acquire_passphrase_fd(const char *prompt, const char *source, int *ret_fd) {
        _cleanup_(passphrase_erase) Passphrase pass = {};
        const PassphraseSource ps = {
                .file = arg_passphrase_file,
                .option = "--passphrase-file",
                .prompt = prompt,
                .source = source,
        };
        int status;

        status = read_passphrase(&ps, &pass);
        if (status != EXIT_OK)
                return status;
        return hand_over(&pass, ret_fd);
}

int acquire_new_passphrase_fd(const char *source, int *ret_fd) {
        _cleanup_(passphrase_erase) Passphrase pass = {}, again = {};
        const PassphraseSource ps = {
                .file = arg_new_passphrase_file,
                .option = "--new-passphrase-file",
                .prompt = "New passphrase",
                .source = source,
        };
        const PassphraseSource repeat = {
                .option = "--new-passphrase-file",
                .prompt = "Repeat new passphrase",
                .source = source,
        };
        int status;

        if (arg_new_passphrase_file && arg_passphrase_file && streq(arg_new_passphrase_file, "-") &&
            streq(arg_passphrase_file, "-"))
                return fail(EXIT_USAGE, "--passphrase-file and --new-passphrase-file cannot both be standard input.");

        status = read_passphrase(&ps, &pass);
        if (status != EXIT_OK)
                return status;
        /* Typed blind: a typo would lock the volume's owner out. */
        if (!arg_new_passphrase_file) {
                status = read_passphrase(&repeat, &again);
                if (status != EXIT_OK)
                        return status;
                if (again.len != pass.len || memcmp(again.buf, pass.buf, pass.len) != 0)
                        return fail(EXIT_USAGE, "The new passphrases do not match.");
        }
        return hand_over(&pass, ret_fd);
}
