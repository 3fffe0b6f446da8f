/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rbd-name.h"

bool rbd_source_is(const char *source) {
        return source && strncmp(source, RBD_SOURCE_PREFIX, strlen(RBD_SOURCE_PREFIX)) == 0;
}

static bool name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
               c == '.' || c == '+';
}

/* One component of [s, s+n) into out. */
static int component(const char *s, size_t n, char *out, const char **ret_reason) {
        if (n == 0) {
                *ret_reason = "an RBD source is rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE, with no empty part";
                return -EINVAL;
        }
        if (n > RBD_NAME_MAX) {
                *ret_reason = "a pool, namespace or image name of the RBD source is longer than 127 characters";
                return -EINVAL;
        }
        if (s[0] == '.') {
                *ret_reason = "a pool, namespace or image name of the RBD source starts with '.'";
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
                if (!name_char_ok(s[i])) {
                        *ret_reason = s[i] == '@' ? "RBD snapshots cannot be attached"
                                                  : "RBD names may contain only letters, digits and '_', '-', '.', '+'";
                        return -EINVAL;
                }
        memcpy(out, s, n);
        out[n] = '\0';
        return 0;
}

int rbd_name_parse(const char *source, RbdName *ret, const char **ret_reason) {
        const char *p[3];
        size_t len[3];
        unsigned n = 0;
        const char *unused;
        RbdName name = {};
        int r;

        if (!ret_reason)
                ret_reason = &unused;
        if (!rbd_source_is(source)) {
                *ret_reason = "not an rbd: source";
                return -EINVAL;
        }
        for (const char *c = source + strlen(RBD_SOURCE_PREFIX);; n++) {
                size_t k = strcspn(c, "/");
                if (n == 3) {
                        *ret_reason = "an RBD source is rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE";
                        return -EINVAL;
                }
                p[n] = c;
                len[n] = k;
                if (c[k] == '\0') {
                        n++;
                        break;
                }
                c += k + 1;
        }
        if (n < 2) {
                *ret_reason = "an RBD source is rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE";
                return -EINVAL;
        }
        r = component(p[0], len[0], name.pool, ret_reason);
        if (r >= 0 && n == 3)
                r = component(p[1], len[1], name.ns, ret_reason);
        if (r >= 0)
                r = component(p[n - 1], len[n - 1], name.image, ret_reason);
        if (r < 0)
                return r;
        if (ret)
                *ret = name;
        return 0;
}

bool rbd_source_has_namespace(const char *source) {
        RbdName n;
        return rbd_name_parse(source, &n, NULL) >= 0 && n.ns[0];
}

ino_t rbd_source_ino(const char *source) {
        /* SHA-256, first 64 bits: a name that collides with an attached
         * image's (a false AlreadyAttached, Probe's "attached" on the
         * wrong image) takes a second preimage, 2^64 tries — FNV, the
         * first choice, let anyone who may name images craft one. */
        struct sha256_ctx ctx;
        uint8_t digest[SHA256_DIGEST_SIZE];
        uint64_t h = 0;

        sha256_init(&ctx);
        sha256_update(&ctx, strlen(source), (const uint8_t *) source);
        sha256_digest(&ctx, sizeof digest, digest);
        for (unsigned i = 0; i < 8; i++)
                h = h << 8 | digest[i];
        return (ino_t) (h ? h : 1);
}

int rbd_name_format(const RbdName *n, char *buf, unsigned size) {
        int k = n->ns[0] ? snprintf(buf, size, "%s/%s/%s", n->pool, n->ns, n->image)
                         : snprintf(buf, size, "%s/%s", n->pool, n->image);
        return k < 0 || (unsigned) k >= size ? -ENAMETOOLONG : 0;
}
