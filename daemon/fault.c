/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdio.h>

#include "fault.h"
#include "util.h"

static const char *fault_file;

void fault_set_file(const char *path) {
        fault_file = path;
}

void fault_point(const char *op, unsigned step) {
        char want[64], have[64] = {};
        FILE *f;

        if (!fault_file)
                return;
        f = fopen(fault_file, "re");
        if (!f)
                return;
        if (!fgets(have, sizeof have, f))
                have[0] = '\0';
        fclose(f);
        have[strcspn(have, "\r\n")] = '\0';

        snprintf(want, sizeof want, "%s:%u", op, step);
        if (!streq(have, want))
                return;

        (void) unlink(fault_file);
        log_warning("Fault injection: killing the daemon at %s.", want);
        raise(SIGKILL);
}
