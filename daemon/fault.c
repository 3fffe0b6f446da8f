/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdio.h>

#include "fault.h"
#include "util.h"

static const char *fault_file;

void fault_set_file(const char *path) {
        fault_file = path;
}

bool fault_trigger(const char *name) {
        char have[64] = {};
        FILE *f;

        if (!fault_file)
                return false;
        f = fopen(fault_file, "re");
        if (!f)
                return false;
        if (!fgets(have, sizeof have, f))
                have[0] = '\0';
        fclose(f);
        have[strcspn(have, "\r\n")] = '\0';

        if (!streq(have, name))
                return false;
        (void) unlink(fault_file);
        log_warning("Fault injection: %s.", name);
        return true;
}

void fault_point(const char *op, unsigned step) {
        char want[64];

        snprintf(want, sizeof want, "%s:%u", op, step);
        if (fault_trigger(want))
                raise(SIGKILL);
}
