/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <ini.h>
#include <stdio.h>

#include "config.h"
#include "luks.h"
#include "mode.h"
#include "util.h"

/* Strings read from files live until exit (the config outlives parsing). */
static char *owned_uri, *owned_ceph_config, *owned_ceph_client, *owned_ceph_secret, *owned_device_tag;

void config_strings_free(void) {
        owned_uri = mfree(owned_uri);
        owned_ceph_config = mfree(owned_ceph_config);
        owned_ceph_client = mfree(owned_ceph_client);
        owned_ceph_secret = mfree(owned_ceph_secret);
        owned_device_tag = mfree(owned_device_tag);
}

/* *owned = a copy of value, kept until config_strings_free(). */
static int own_string(char **owned, const char *value) {
        char *copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        free(*owned);
        *owned = copy;
        return 0;
}

typedef struct ParseState {
        const char *file;
        FILE *f;
        int line; /* of the line inih is handing us */
        ManagerConfig *config;
        int error;
} ParseState;

/* Debian's inih is built without INI_HANDLER_LINENO, so the handler is not
 * told the line; a reader that counts lines as inih pulls them is. */
static char *reader(char *str, int num, void *stream) {
        ParseState *st = stream;
        char *r = fgets(str, num, st->f);
        if (r)
                st->line++;
        return r;
}

static int parse_uint(const char *s, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v;

        if (isempty(s) || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* inih calls this per key; returning 0 makes ini_parse report the line. */
static int handler(void *user, const char *section, const char *name, const char *value) {
        ParseState *st = user;
        int lineno = st->line;
        ManagerConfig *c = st->config;
        const char *what = NULL;
        unsigned u;
        int r;

        if (!streq(section, "Daemon")) {
                log_error("%s:%d: unknown section [%s] (only [Daemon] exists).", st->file, lineno, section);
                st->error = -EINVAL;
                return 0;
        }

        if (streq(name, "LibvirtURI")) {
                if (isempty(value))
                        what = "an empty URI";
                else {
                        free(owned_uri);
                        owned_uri = strdup(value);
                        if (!owned_uri) {
                                st->error = -ENOMEM;
                                return 0;
                        }
                        c->libvirt_uri = owned_uri;
                }
        } else if (streq(name, "CephConfig")) {
                if (isempty(value) || value[0] != '/')
                        what = "not an absolute path";
                else if (own_string(&owned_ceph_config, value) < 0) {
                        st->error = -ENOMEM;
                        return 0;
                } else
                        c->ceph_config = owned_ceph_config;
        } else if (streq(name, "CephClient")) {
                /* The id after "client.": Ceph's own spelling rules, kept
                 * narrow (it lands in a "client.ID" option string). */
                if (isempty(value) || strlen(value) > 64 ||
                    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != strlen(value))
                        what = "not a Ceph client id (letters, digits, '_', '-', '.'; at most 64)";
                else if (own_string(&owned_ceph_client, value) < 0) {
                        st->error = -ENOMEM;
                        return 0;
                } else
                        c->ceph_client = owned_ceph_client;
        } else if (streq(name, "CephSecret")) {
                if (isempty(value) || strlen(value) > 256)
                        what = "not a libvirt secret's UUID or usage name";
                else if (own_string(&owned_ceph_secret, value) < 0) {
                        st->error = -ENOMEM;
                        return 0;
                } else
                        c->ceph_secret = owned_ceph_secret;
        } else if (streq(name, "MinLibvirtVersion")) {
                if (version_parse(value, &c->min_libvirt_version) < 0)
                        what = "not a version (X.Y or X.Y.Z)";
        } else if (streq(name, "MinQemuVersion")) {
                if (version_parse(value, &c->min_qemu_version) < 0)
                        what = "not a version (X.Y or X.Y.Z)";
        } else if (streq(name, "IdleTimeoutSec")) {
                if (parse_uint(value, 86400, &c->idle_timeout_sec) < 0)
                        what = "not a number of seconds from 0 to 86400";
        } else if (streq(name, "MaxVolumes")) {
                if (parse_uint(value, 4096, &u) < 0 || u == 0)
                        what = "not a number from 1 to 4096";
                else
                        c->max_volumes = u;
        } else if (streq(name, "DetachTimeoutSec")) {
                if (parse_uint(value, 3600, &u) < 0)
                        what = "not a number of seconds from 0 to 3600";
                else
                        c->detach_timeout_sec = u;
        } else if (streq(name, "SourceTimeoutSec")) {
                if (parse_uint(value, 600, &u) < 0 || u == 0)
                        what = "not a number of seconds from 1 to 600";
                else
                        c->source_timeout_sec = u;
        } else if (streq(name, "StageTimeoutSec")) {
                if (parse_uint(value, 86400, &u) < 0 || u == 0)
                        what = "not a number of seconds from 1 to 86400";
                else
                        c->stage_timeout_sec = u;
        } else if (streq(name, "DeviceTag")) {
                if (!isempty(value) && !luks_device_tag_valid(value))
                        what = "not 1 to 16 characters from a-z and 0-9 (and not 'shim')";
                else if (own_string(&owned_device_tag, value) < 0) {
                        st->error = -ENOMEM;
                        return 0;
                } else
                        c->device_tag = owned_device_tag;
        } else if (streq(name, "MaxPbkdf2Iterations")) {
                /* Below 1000 no LUKS slot would open (cryptsetup's minimum). */
                if (parse_uint(value, UINT32_MAX, &u) < 0 || u < 1000)
                        what = "not a number of iterations from 1000 to 4294967295";
                else
                        c->kdf.max_pbkdf2_iterations = u;
        } else if (streq(name, "PassphrasePrecheckIterations")) {
                if (parse_uint(value, UINT32_MAX, &u) < 0)
                        what = "not a number of iterations from 0 to 4294967295";
                else
                        c->precheck_iterations = u;
        } else if (streq(name, "MaxArgon2MemoryKiB")) {
                /* argon2's own bounds: 8 KiB per lane up to 4 TiB. */
                if (parse_uint(value, UINT32_MAX, &u) < 0 || u < 32)
                        what = "not a number of KiB from 32 to 4294967295";
                else
                        c->kdf.max_argon2_memory_kib = u;
        } else if (streq(name, "MaxArgon2Cost")) {
                unsigned long long v;
                char *end = NULL;
                errno = 0;
                v = isempty(value) || *value == '-' || *value == '+' ? 0 : strtoull(value, &end, 10);
                if (v == 0 || errno != 0 || !end || *end != '\0' || v < 4ULL * 32)
                        what = "not a number of KiB passes (time cost × memory) of at least 128";
                else
                        c->kdf.max_argon2_cost = v;
        } else if (streq(name, "LogLevel")) {
                r = log_level_from_string(value);
                if (r < 0)
                        what = "not one of err, warning, notice, info, debug";
                else
                        log_set_max_level(r);
        } else {
                log_error("%s:%d: unknown key '%s' in [Daemon].", st->file, lineno, name);
                st->error = -EINVAL;
                return 0;
        }

        if (what) {
                log_error("%s:%d: bad value for %s: '%s' is %s.", st->file, lineno, name, value, what);
                st->error = -EINVAL;
                return 0;
        }
        return 1;
}

static int load_one(const char *path, ManagerConfig *config, bool must_exist) {
        ParseState st = { .file = path, .config = config };
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return log_error_errno(errno, "Cannot read %s: %m", path);
        }
        st.f = f;
        r = ini_parse_stream(reader, &st, handler, &st);
        fclose(f);

        if (st.error < 0)
                return st.error;
        if (r > 0)
                return log_error_errno(EINVAL, "%s:%d: syntax error (expected 'Key=value' or '[Section]').", path, r);
        if (r < 0)
                return log_error_errno(EIO, "Cannot parse %s.", path);
        log_debug("Read configuration from %s.", path);
        return 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int conf_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);
        return d->d_name[0] != '.' && n > 5 && streq(d->d_name + n - 5, ".conf");
}

int config_load(const char *path, ManagerConfig *config) {
        _cleanup_free_ char *dir = NULL;
        struct dirent **list = NULL;
        int n, r;

        r = load_one(path, config, false);
        if (r < 0)
                return r;

        if (asprintf(&dir, "%s.d", path) < 0)
                return -ENOMEM;
        n = scandir(dir, &list, conf_filter, compare_names);
        if (n < 0)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Cannot list %s: %m", dir);

        r = 0;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                if (r >= 0) {
                        if (asprintf(&p, "%s/%s", dir, list[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = load_one(p, config, true);
                }
                free(list[i]);
        }
        free(list);
        return r;
}
