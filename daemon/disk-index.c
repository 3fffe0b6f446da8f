/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "disk-index.h"
#include "util.h"

typedef struct DiskUse {
        char *path;
        char *target;
} DiskUse;

typedef struct Entry {
        struct Entry *next;
        char uuid[37];
        bool inactive;
        uint64_t read_usec; /* CLOCK_MONOTONIC: when its XML was read (about) */
        DiskUse *uses;
        size_t n_uses;
} Entry;

struct DiskIndex {
        pthread_mutex_t lock;
        Entry *entries;
        bool watched;
        /* Bumped by every forget: a store whose stamp is older may hold
         * what an event has just said changed. */
        uint64_t epoch;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000U;
}

static Entry *entry_free(Entry *e) {
        Entry *next = e->next;

        for (size_t i = 0; i < e->n_uses; i++) {
                free(e->uses[i].path);
                free(e->uses[i].target);
        }
        free(e->uses);
        free(e);
        return next;
}

int disk_index_new(DiskIndex **ret) {
        DiskIndex *x = calloc(1, sizeof *x);

        if (!x)
                return -ENOMEM;
        pthread_mutex_init(&x->lock, NULL);
        *ret = x;
        return 0;
}

DiskIndex *disk_index_free(DiskIndex *x) {
        if (!x)
                return NULL;
        for (Entry *e = x->entries; e;)
                e = entry_free(e);
        pthread_mutex_destroy(&x->lock);
        free(x);
        return NULL;
}

/* With the lock held. */
static void forget_locked(DiskIndex *x, const char *uuid) {
        x->epoch++;
        for (Entry **pp = &x->entries; *pp;) {
                if (!uuid || streq((*pp)->uuid, uuid))
                        *pp = entry_free(*pp);
                else
                        pp = &(*pp)->next;
        }
}

void disk_index_set_watched(DiskIndex *x, bool watched) {
        pthread_mutex_lock(&x->lock);
        x->watched = watched;
        forget_locked(x, NULL);
        pthread_mutex_unlock(&x->lock);
}

void disk_index_forget(DiskIndex *x, const char *uuid) {
        pthread_mutex_lock(&x->lock);
        forget_locked(x, uuid);
        pthread_mutex_unlock(&x->lock);
}

static Entry *find_locked(DiskIndex *x, const char *uuid, bool inactive) {
        for (Entry *e = x->entries; e; e = e->next)
                if (e->inactive == inactive && streq(e->uuid, uuid))
                        return e;
        return NULL;
}

int disk_index_visit(DiskIndex *x, const char *uuid, bool inactive, disk_index_visit_t fn, void *userdata,
                     uint64_t *ret_stamp) {
        Entry *e;
        int r = 0;

        pthread_mutex_lock(&x->lock);
        *ret_stamp = x->epoch;
        e = x->watched ? find_locked(x, uuid, inactive) : NULL;
        if (e && now_usec() - e->read_usec <= DISK_INDEX_MAX_AGE_USEC)
                for (size_t i = 0; r >= 0 && i < e->n_uses; i++)
                        r = fn(e->uses[i].path, e->uses[i].target, userdata);
        else
                r = -ENOENT;
        pthread_mutex_unlock(&x->lock);
        return r;
}

int disk_index_store(DiskIndex *x, const char *uuid, bool inactive, uint64_t stamp, char *const *paths,
                     char *const *targets, size_t n) {
        Entry *e;
        int r = 0;

        if (strlen(uuid) >= sizeof e->uuid)
                return -EINVAL;
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        strcpy(e->uuid, uuid);
        e->inactive = inactive;
        /* The XML was read a moment ago (after the stamp was handed out):
         * its age counts from now, a few ms generous against a limit of
         * seconds. */
        e->read_usec = now_usec();
        e->uses = calloc(n ? n : 1, sizeof *e->uses);
        if (!e->uses) {
                free(e);
                return -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < n; i++) {
                e->uses[i].path = strdup(paths[i]);
                e->uses[i].target = strdup(targets[i]);
                e->n_uses++;
                if (!e->uses[i].path || !e->uses[i].target)
                        r = -ENOMEM;
        }
        if (r < 0) {
                entry_free(e);
                return r;
        }

        pthread_mutex_lock(&x->lock);
        if (x->watched && x->epoch == stamp) {
                Entry **pp;

                for (pp = &x->entries; *pp; pp = &(*pp)->next)
                        if ((*pp)->inactive == inactive && streq((*pp)->uuid, uuid)) {
                                *pp = entry_free(*pp);
                                break;
                        }
                e->next = x->entries;
                x->entries = e;
                e = NULL;
        }
        pthread_mutex_unlock(&x->lock);
        if (e)
                entry_free(e);
        return 0;
}
