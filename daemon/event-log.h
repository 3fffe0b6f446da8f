/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What happened to volumes, logged once per event.  Under systemd (stderr
 * connected to the journal) as structured entries with a MESSAGE_ID per
 * kind and fields for domain, source, target and mode, so admins can
 * `journalctl MESSAGE_ID=…` or `journalctl LUKSVOLUME_DOMAIN=web1`;
 * otherwise as a plain "<N>" line on stderr.  Never a passphrase: no
 * caller of this ever has one. */

typedef enum VolumeEvent {
        VOLUME_EVENT_ATTACHED,
        VOLUME_EVENT_DETACHED,
        VOLUME_EVENT_REFUSED,
        VOLUME_EVENT_CLEANED_UP,
        VOLUME_EVENT_SAVED,    /* its domain was saved; the backing is kept */
        VOLUME_EVENT_MIGRATED, /* its domain migrated (away, or here) */
        _VOLUME_EVENT_MAX,
} VolumeEvent;

/* The MESSAGE_IDs, documented in luksvolumed(8). */
#define LV_MESSAGE_ID_ATTACHED   "76ba7d3f2d4e4eecb4a35d38cc676205"
#define LV_MESSAGE_ID_DETACHED   "93d1baaef87548c0a65b401381d4ab71"
#define LV_MESSAGE_ID_REFUSED    "710f07435b5f41b8b23d68cdfc096081"
#define LV_MESSAGE_ID_CLEANED_UP "8642740b4d0a43e1b156f0f338cedb64"
#define LV_MESSAGE_ID_SAVED      "f81671a5d5684ab5a48699526780af74"
#define LV_MESSAGE_ID_MIGRATED   "da8af8e8db5546ad82c77a1d1b6b618a"

/* Decides once, at start: journal if $JOURNAL_STREAM names our stderr. */
void event_log_setup(void);

void log_volume_event(VolumeEvent kind, int level, const char *domain, const char *source, const char *target,
                      const char *mode, const char *format, ...) __attribute__((format(printf, 7, 8)));
