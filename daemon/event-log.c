/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/stat.h>

#include <systemd/sd-journal.h>

#include "event-log.h"
#include "util.h"

static bool use_journal;

static const char *const message_ids[_VOLUME_EVENT_MAX] = {
        [VOLUME_EVENT_ATTACHED] = LV_MESSAGE_ID_ATTACHED, [VOLUME_EVENT_DETACHED] = LV_MESSAGE_ID_DETACHED,
        [VOLUME_EVENT_REFUSED] = LV_MESSAGE_ID_REFUSED,   [VOLUME_EVENT_CLEANED_UP] = LV_MESSAGE_ID_CLEANED_UP,
        [VOLUME_EVENT_SAVED] = LV_MESSAGE_ID_SAVED,       [VOLUME_EVENT_MIGRATED] = LV_MESSAGE_ID_MIGRATED,
};

void event_log_setup(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* systemd sets JOURNAL_STREAM=DEV:INO for the stream it connected;
         * only if that is still our stderr is the journal listening. */
        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return;
        use_journal = (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
        if (use_journal)
                /* journald adds the priority itself from the stream prefix
                 * for plain lines; keep "<N>" there too. */
                log_set_prefix(true);
}

void log_volume_event(VolumeEvent kind, int level, const char *domain, const char *source, const char *target,
                      const char *mode, const char *format, ...) {
        char message[1024];
        va_list ap;

        if (level > log_get_max_level())
                return;

        va_start(ap, format);
        vsnprintf(message, sizeof message, format, ap);
        va_end(ap);

        if (!use_journal || kind < 0 || kind >= _VOLUME_EVENT_MAX) {
                log_internal(level, 0, "%s", message);
                return;
        }

        if (sd_journal_send("MESSAGE=%s", message, "MESSAGE_ID=%s", message_ids[kind], "PRIORITY=%d", level,
                            "LUKSVOLUME_DOMAIN=%s", strempty(domain), "LUKSVOLUME_SOURCE=%s", strempty(source),
                            "LUKSVOLUME_TARGET=%s", strempty(target), "LUKSVOLUME_MODE=%s", strempty(mode), NULL) < 0)
                log_internal(level, 0, "%s", message);
}
