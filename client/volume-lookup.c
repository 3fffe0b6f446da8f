/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "bus.h"
#include "luksvolumectl.h"
#include "volume-lookup.h"

/* ─────────────────────────── volume objects ──────────────────────────── */

void volume_list_done(VolumeList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                prop_list_done(&l->items[i].props);
        }
        free(l->items);
        *l = (VolumeList){};
}

const char *volume_get(const Volume *v, const char *name) {
        return prop_list_get(&v->props, name);
}

int read_object_with_interfaces(sd_bus_message *m, const char **ret_path, PropList *props, bool *ret_is_volume) {
        bool is_volume = false;
        const char *path;
        int r;

        r = sd_bus_message_read_basic(m, 'o', &path);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *iface;

                r = sd_bus_message_read_basic(m, 's', &iface);
                if (r < 0)
                        return r;

                if (streq(iface, VOLUME_IFACE)) {
                        is_volume = true;
                        r = read_prop_list(m, props);
                } else
                        r = sd_bus_message_skip(m, "a{sv}");
                if (r < 0)
                        return r;

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        *ret_path = path;
        *ret_is_volume = is_volume;
        return 0;
}

/* Parses one "oa{sa{sv}}" dict entry body; appends a Volume if the object
 * carries the volume interface. */
static int read_managed_object(sd_bus_message *m, VolumeList *l) {
        _cleanup_(prop_list_done) PropList props = {};
        bool is_volume;
        const char *path;
        int r;

        r = read_object_with_interfaces(m, &path, &props, &is_volume);
        if (r < 0)
                return r;
        if (!is_volume)
                return 0;

        Volume *n = reallocarray(l->items, l->n + 1, sizeof(Volume));
        if (!n)
                return -ENOMEM;
        l->items = n;

        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        l->items[l->n++] = (Volume){ .path = p, .props = TAKE_STRUCT(props) };
        return 0;
}

static int read_managed_objects(sd_bus_message *m, VolumeList *l) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                r = read_managed_object(m, l);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        return sd_bus_message_exit_container(m);
}

void volume_list_filter_domain(VolumeList *l, const char *domain) {
        size_t k = 0;

        for (size_t i = 0; i < l->n; i++) {
                if (volume_in_domain(&l->items[i], domain)) {
                        l->items[k++] = l->items[i];
                        continue;
                }
                free(l->items[i].path);
                prop_list_done(&l->items[i].props);
        }
        l->n = k;
}

int get_volumes(sd_bus *bus, VolumeList *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(volume_list_done) VolumeList volumes = {};
        int r;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE, "GetManagedObjects", &error,
                               &reply, NULL);
        if (r < 0)
                return fail_bus("Failed to list volumes", &error, r);

        r = read_managed_objects(reply, &volumes);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse volume list: %m");

        *ret = TAKE_STRUCT(volumes);
        return EXIT_OK;
}

/* Whether v is attached to the domain whose name or UUID is the first
 * domain_len bytes of domain. */
static bool volume_in_domain_n(const Volume *v, const char *domain, size_t domain_len) {
        const char *name = volume_get(v, "Domain"), *uuid = volume_get(v, "DomainUUID");

        if (name && strlen(name) == domain_len && memcmp(name, domain, domain_len) == 0)
                return true;
        /* UUIDs are hex: accept them in whatever case the user pasted. */
        return !isempty(uuid) && strlen(uuid) == domain_len && strncasecmp(uuid, domain, domain_len) == 0;
}

bool volume_in_domain(const Volume *v, const char *domain) {
        return volume_in_domain_n(v, domain, strlen(domain));
}

int open_volumes(const char *domain, sd_bus **ret_bus, VolumeList *ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(volume_list_done) VolumeList volumes = {};
        int status;

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;
        status = get_volumes(bus, &volumes);
        if (status != EXIT_OK)
                return status;
        if (domain)
                volume_list_filter_domain(&volumes, domain);
        *ret_bus = TAKE_PTR(bus);
        *ret = TAKE_STRUCT(volumes);
        return EXIT_OK;
}

/* Whether v is attached as target to the domain whose name or UUID is the
 * first domain_len bytes of domain. */
static bool volume_matches(const Volume *v, const char *domain, size_t domain_len, const char *target) {
        return streq_ptr(volume_get(v, "Target"), target) && volume_in_domain_n(v, domain, domain_len);
}

/* Step, before connecting: checks the syntax of VOLUME-PATH|DOMAIN:TARGET,
 * so usage errors show up even without a bus. */
static int check_volume_spec(const char *spec) {
        const char *colon;

        if (spec[0] == '/') {
                if (!sd_bus_object_path_is_valid(spec))
                        return fail(EXIT_USAGE, "Invalid volume object path: %s", spec);
                return EXIT_OK;
        }

        /* Split at the last colon (see resolve_volume()). */
        colon = strrchr(spec, ':');
        if (!colon || colon == spec || colon[1] == '\0')
                return fail(EXIT_USAGE, "Expected a volume object path or DOMAIN:TARGET, got \"%s\".", spec);
        return EXIT_OK;
}

/* Step: the one volume of volumes that a checked DOMAIN:TARGET names. */
static int find_domain_target(const VolumeList *volumes, const char *spec, const char **ret_path) {
        /* Split at the last colon: targets ("vdb") never contain one,
         * libvirt domain names may. DOMAIN is not copied out: it is the
         * first domain_len bytes of spec. */
        const char *colon = strrchr(spec, ':'), *target = colon + 1, *found = NULL;
        size_t domain_len = colon - spec;

        for (size_t i = 0; i < volumes->n; i++) {
                if (!volume_matches(&volumes->items[i], spec, domain_len, target))
                        continue;
                if (found)
                        return fail(EXIT_FAIL, "\"%s\" is ambiguous: matches %s and %s.", spec, found,
                                    volumes->items[i].path);
                found = volumes->items[i].path;
        }
        if (!found)
                return fail(EXIT_NOT_FOUND, "No volume is attached as %s to domain %.*s.", target, (int) domain_len,
                            spec);

        *ret_path = found;
        return EXIT_OK;
}

/* Step: turn a checked VOLUME-PATH or DOMAIN:TARGET into an object path. */
static int resolve_volume(sd_bus *bus, const char *spec, char **ret_path) {
        _cleanup_(volume_list_done) VolumeList volumes = {};
        const char *found = spec; /* a VOLUME-PATH names itself */
        char *path;
        int status;

        if (spec[0] != '/') {
                status = get_volumes(bus, &volumes);
                if (status != EXIT_OK)
                        return status;
                status = find_domain_target(&volumes, spec, &found);
                if (status != EXIT_OK)
                        return status;
        }

        /* A copy: found may point into volumes, which go away on return. */
        path = strdup(found);
        if (!path)
                return fail_errno(EXIT_FAIL, ENOMEM, "Out of memory.");
        *ret_path = path;
        return EXIT_OK;
}

int open_volume(int argc, char **argv, const char *verb, sd_bus **ret_bus, char **ret_path) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int status;

        if (argc != 2)
                return fail(EXIT_USAGE, "%s expects VOLUME-PATH or DOMAIN:TARGET.", verb);
        status = check_volume_spec(argv[1]);
        if (status != EXIT_OK)
                return status;
        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;
        status = resolve_volume(bus, argv[1], ret_path);
        if (status != EXIT_OK)
                return status;
        *ret_bus = TAKE_PTR(bus);
        return EXIT_OK;
}

/* ─────────────────────────────── sources ─────────────────────────────── */

static int make_absolute(const char *path, char **ret) {
        _cleanup_free_ char *cwd = NULL;
        char *p;

        /* Our working directory means nothing on another host. */
        if (arg_host && path[0] != '/')
                return -EREMOTE;

        /* The daemon runs with "/" as working directory, so a relative
         * SOURCE would silently refer to the wrong file there. Symlinks are
         * left alone: resolving them is the daemon's business. */
        if (path[0] == '/') {
                p = strdup(path);
                if (!p)
                        return -ENOMEM;
        } else {
                cwd = get_current_dir_name();
                if (!cwd)
                        return negative_errno();
                if (asprintf(&p, "%s/%s", streq(cwd, "/") ? "" : cwd, path) < 0)
                        return -ENOMEM;
        }

        *ret = p;
        return 0;
}

int source_from_arg(const char *arg, char **ret) {
        int r;

        if (isempty(arg))
                return fail(EXIT_USAGE, "SOURCE must not be empty.");

        /* An RBD image (rbd:POOL/IMAGE) is a name, not a path: as given. */
        if (startswith(arg, "rbd:")) {
                *ret = strdup(arg);
                return *ret ? EXIT_OK : fail_errno(EXIT_FAIL, -ENOMEM, "Out of memory: %m");
        }

        r = make_absolute(arg, ret);
        if (r == -EREMOTE)
                return fail(EXIT_USAGE, "SOURCE must be an absolute path with --host.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to make %s absolute: %m", arg);
        return EXIT_OK;
}
