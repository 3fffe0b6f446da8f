/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by the daemon, the client and the tests: ownership
 * via __attribute__((cleanup)), secure wiping, logging.  Kept tiny on
 * purpose; anything bigger belongs in its own file. */

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noinline_     __attribute__((noinline))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                    \
        ({                             \
                typeof(p) _ptr_ = (p); \
                (p) = NULL;            \
                _ptr_;                 \
        })

/* Hand ownership out of a _cleanup_ struct (a list with its items),
 * leaving it empty for its cleanup function. */
#define TAKE_STRUCT(s)               \
        ({                           \
                typeof(s) _s_ = (s); \
                (s) = (typeof(s)){}; \
                _s_;                 \
        })

#define TAKE_FD(fd)              \
        ({                       \
                int _fd_ = (fd); \
                (fd) = -EBADF;   \
                _fd_;            \
        })

/* Define "funcp(type **p)" calling func(*p) when non-NULL, for _cleanup_. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
        static inline void func##p(type *p) {   \
                if (*p)                         \
                        func(*p);               \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static inline void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);

/* A deep copy of a NULL-terminated list (NULL on allocation failure or
 * for NULL). */
static inline size_t strv_length(char *const *l) {
        size_t n = 0;

        for (; l && *l; l++)
                n++;
        return n;
}

static inline char **strv_copy(char *const *l) {
        size_t n = 0;
        char **c;

        if (!l)
                return NULL;
        while (l[n])
                n++;
        c = calloc(n + 1, sizeof *c);
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(l[i]))) {
                        strv_free(c);
                        return NULL;
                }
        return c;
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)
#define isempty(s)  (!(s) || (s)[0] == '\0')

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Wipe and free a secret-carrying buffer of known size. */
static inline void erase_and_free(void *p, size_t n) {
        if (!p)
                return;
        explicit_bzero(p, n);
        free(p);
}

/* Wipe and free a NUL-terminated secret string. */
static inline void erase_and_freep(char **p) {
        if (*p)
                erase_and_free(*p, strlen(*p));
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)

/* Logging: syslog-style "<N>" prefixes on stderr, which journald (and
 * systemd's stderr-to-journal plumbing) turn into priorities. */
enum {
        LOG_LEVEL_ERR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

void log_set_max_level(int level);
/* "err", "warning", "notice", "info", "debug" → level, or -EINVAL. */
int log_level_from_string(const char *s);
int log_get_max_level(void);
void log_set_prefix(bool with_priority_prefix);
int log_internal(int level, int error, const char *format, ...) _printf_(3, 4);

/* Each returns -abs(error) so "return log_error_errno(r, ...)" works. */
#define log_full_errno(level, error, ...) log_internal((level), (error), __VA_ARGS__)
#define log_debug(...)                    log_internal(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)                     log_internal(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_notice(...)                   log_internal(LOG_LEVEL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...)                  log_internal(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_error(...)                    log_internal(LOG_LEVEL_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...)           log_internal(LOG_LEVEL_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)            log_internal(LOG_LEVEL_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...)         log_internal(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)           log_internal(LOG_LEVEL_ERR, (e), __VA_ARGS__)

#define log_oom() log_internal(LOG_LEVEL_ERR, ENOMEM, "Out of memory.")

/* "return -errno" after a call that failed and is documented to set errno,
 * such that the failure can never be mistaken for success, even if errno
 * was left at 0. */
static inline int negative_errno(void) {
        int e = errno;

        return e > 0 ? -e : -EINVAL;
}

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* Well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF), as D-Bus requires of every string. */
bool utf8_valid(const char *s);
/* The same for n bytes that need not end in a NUL (a NUL byte is valid
 * UTF-8 here; callers that mind check for it themselves). */
bool utf8_valid_n(const char *s, size_t n);

/* Is x one of the listed ints?  IN_SET(r, -EPERM, -ENOENT) */
#define IN_SET(x, ...)                                               \
        ({                                                           \
                const int _x_ = (x), _set_[] = { __VA_ARGS__ };      \
                bool _found_ = false;                                \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++) \
                        if (_set_[_i_] == _x_) {                     \
                                _found_ = true;                      \
                                break;                               \
                        }                                            \
                _found_;                                             \
        })

/* Largest n' <= n such that s[0..n') does not end inside a UTF-8 sequence. */
size_t utf8_truncate_len(const char *s, size_t n);
