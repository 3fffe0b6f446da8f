/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "util.h"

static int max_level = LOG_LEVEL_INFO;
static bool priority_prefix = true;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_max_level(int level) {
        max_level = level;
}

int log_level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } table[] = {
                { "err", LOG_LEVEL_ERR },   { "warning", LOG_LEVEL_WARNING }, { "notice", LOG_LEVEL_NOTICE },
                { "info", LOG_LEVEL_INFO }, { "debug", LOG_LEVEL_DEBUG },
        };
        for (size_t i = 0; s && i < ELEMENTSOF(table); i++)
                if (streq(s, table[i].name))
                        return table[i].level;
        return -EINVAL;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_prefix(bool with_priority_prefix) {
        priority_prefix = with_priority_prefix;
}

int log_internal(int level, int error, const char *format, ...) {
        int saved = errno;
        error = error < 0 ? -error : error;

        if (level <= max_level) {
                char buf[2048];
                va_list ap;

                /* %m in our formats refers to the error passed in, not to
                 * whatever errno happens to hold. */
                errno = error;
                va_start(ap, format);
                vsnprintf(buf, sizeof buf, format, ap);
                va_end(ap);

                pthread_mutex_lock(&log_lock);
                if (priority_prefix)
                        fprintf(stderr, "<%d>%s\n", level, buf);
                else
                        fprintf(stderr, "%s\n", buf);
                fflush(stderr);
                pthread_mutex_unlock(&log_lock);
        }

        errno = saved;
        return -error;
}

bool utf8_valid_n(const char *str, size_t n) {
        const unsigned char *s = (const unsigned char *) str, *end = s + n;

        while (s < end) {
                unsigned c = *s, len, cp;

                if (c < 0x80) {
                        s++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        len = 2, cp = c & 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        len = 3, cp = c & 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        len = 4, cp = c & 0x07;
                else
                        return false;
                if ((size_t) (end - s) < len)
                        return false;
                for (unsigned i = 1; i < len; i++) {
                        if ((s[i] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i] & 0x3f);
                }
                if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                s += len;
        }
        return true;
}

bool utf8_valid(const char *str) {
        return utf8_valid_n(str, strlen(str));
}

size_t utf8_truncate_len(const char *str, size_t n) {
        const unsigned char *s = (const unsigned char *) str;
        size_t len = strlen(str);
        size_t start;

        if (n >= len)
                return len;
        /* Back up to the lead byte of the sequence that n falls into. */
        start = n;
        while (start > 0 && (s[start] & 0xc0) == 0x80)
                start--;
        return start;
}
