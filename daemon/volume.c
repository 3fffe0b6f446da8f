/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"
#include "volume-id.h"
#include "volume.h"

static const char *const state_table[_VOLUME_STATE_MAX] = {
        [VOLUME_STATE_ATTACHED] = "attached",
        [VOLUME_STATE_DETACHING] = "detaching",
        [VOLUME_STATE_SAVED] = "saved",
};

const char *volume_state_to_string(VolumeState s) {
        if (s < 0 || s >= _VOLUME_STATE_MAX)
                return NULL;
        return state_table[s];
}

uint64_t volume_size_from_header(uint64_t device_size, uint64_t payload_offset) {
        return device_size > payload_offset ? (device_size - payload_offset) & ~(uint64_t) 511 : 0;
}

int volume_new(const char *domain, const char *domain_uuid, const char *target, Volume **ret) {
        _cleanup_(volume_freep) Volume *v = NULL;
        int r;

        v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        v->mode = VOLUME_MODE_NATIVE;
        v->hold_fd = -1;
        v->attached_by_uid = VOLUME_UID_UNKNOWN;

        r = volume_path_build(domain_uuid, target, &v->path);
        if (r < 0)
                return r;

        v->domain = strdup(domain);
        v->domain_uuid = strdup(domain_uuid);
        v->target = strdup(target);
        if (!v->domain || !v->domain_uuid || !v->target)
                return -ENOMEM;

        *ret = TAKE_PTR(v);
        return 0;
}

Volume *volume_free(Volume *v) {
        if (!v)
                return NULL;
        free(v->path);
        free(v->domain);
        free(v->domain_uuid);
        free(v->source);
        free(v->target);
        free(v->bus);
        free(v->secret_uuid);
        free(v->mapper_device);
        free(v->shim_device);
        free(v->luks_uuid);
        free(v->serial);
        if (v->hold_fd >= 0)
                close(v->hold_fd);
        free(v);
        return NULL;
}
