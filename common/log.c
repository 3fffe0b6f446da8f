/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "util.h"

static int max_level = LOG_LEVEL_INFO;
static bool priority_prefix = true;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_max_level(int level) {
        max_level = level;
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
