/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* luksvolumectl: command line client for luksvolumed (org.example.LuksVolume1
 * on the system bus).
 *
 * This file is the command line: global options, --help, and the table of
 * verbs that main() dispatches to. The verbs live in verbs-attach.c,
 * verbs-keys.c, verbs-query.c and monitor.c; see luksvolumectl.h for what
 * they share. */

#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>

#include "luksvolumectl.h"
#include "monitor.h"
#include "passphrase.h"
#include "verbs-attach.h"
#include "verbs-keys.h"
#include "verbs-migrate.h"
#include "verbs-query.h"

bool arg_ask_password = true;
const char *arg_target = NULL;
const char *arg_bus = NULL;
const char *arg_mode = NULL;
const char *arg_native_header = NULL;
bool arg_read_only = false;
const char *arg_serial = NULL;
bool arg_discard = false;
bool arg_allow_shrink = false;
bool arg_all = false;
const char *arg_domain = NULL;
const char *arg_passphrase_file = NULL;
const char *arg_new_passphrase_file = NULL;
uint32_t arg_pbkdf_iterations = 0;
bool arg_force = false;
bool arg_timeout_set = false;
uint32_t arg_timeout = 0;
const char *arg_host = NULL;
JsonMode arg_json = JSON_OFF;

static bool one_of(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

static int parse_u32(const char *s, uint32_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || s[0] == '-' || s[0] == '+' || s[0] == ' ')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -errno;
        if (*end != '\0')
                return -EINVAL;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

/* ───────────────────────────── command line ──────────────────────────── */

static void help(void) {
        printf("Usage: %1$s [OPTIONS...] COMMAND ...\n"
               "\n"
               "Attach LUKS-encrypted volumes to running libvirt guests via luksvolumed.\n"
               "\n"
               "Commands:\n"
               "  attach DOMAIN SOURCE          Attach SOURCE to DOMAIN, print the volume path\n"
               "  detach VOLUME|DOMAIN:TARGET   Detach a volume\n"
               "  detach --all [DOMAIN]         Detach every volume (of DOMAIN)\n"
               "  resize VOLUME|DOMAIN:TARGET SIZE\n"
               "                                Grow a volume while its guest runs: SIZE is\n"
               "                                what the guest sees, in bytes or with K, M, G,\n"
               "                                T (powers of 1024)\n"
               "  rearm VOLUME|DOMAIN:TARGET    Give a saved guest's volume back its secret or\n"
               "                                mapping (lost to a libvirtd restart or a reboot)\n"
               "                                before the guest is restored\n"
               "  probe [SOURCE]                Show host facts, or the LUKS header of SOURCE\n"
               "  list                          List attached volumes (--domain: of one guest)\n"
               "  list-domains                  List the running guests (name, UUID, state)\n"
               "  status VOLUME|DOMAIN:TARGET   Show all properties of a volume\n"
               "  monitor                       Print volumes being added, changed and removed,\n"
               "                                one line each, until SIGINT or SIGTERM\n"
               "  change-passphrase SOURCE      Replace the passphrase of SOURCE (attached or not)\n"
               "  add-passphrase SOURCE         Add a passphrase to SOURCE, print its key slot\n"
               "  remove-passphrase SOURCE      Remove a passphrase (its key slot) from SOURCE\n"
               "  verify SOURCE                 Check a passphrase of SOURCE, print its key slot\n"
               "  migrate DOMAIN DEST_URI       Live-migrate DOMAIN with its volumes (shared\n"
               "                                storage): stage them on the destination's\n"
               "                                service (--dest-bus), then migrate peer to peer\n"
               "\n"
               "VOLUME is an object path as printed by attach and list; DOMAIN:TARGET names\n"
               "a volume by its domain's name or UUID and its guest target (e.g. web1:vdb).\n"
               "\n"
               "Options:\n"
               "  -h --help                     Show this help\n"
               "     --version                  Show package version\n"
               "     --no-ask-password          Never prompt (no passphrase prompt, no polkit\n"
               "                                interactive authorization)\n"
               "  -H --host=[USER@]HOST         Operate on the system bus of a remote host, over\n"
               "                                ssh (attach is not possible: ssh cannot pass the\n"
               "                                passphrase file descriptor)\n"
               "     --json[=short|pretty]      list, list-domains, status, probe, monitor,\n"
               "                                add-passphrase, verify: print JSON (one line\n"
               "                                per value with short, the default)\n"
               "\n"
               "attach options:\n"
               "     --target=DEV               Guest target device (e.g. vdb)\n"
               "     --bus=BUS                  virtio, scsi, sata or usb\n"
               "     --mode=MODE                auto, native or cryptsetup\n"
               "     --native-header=HEADER     auto, volume or shim: the LUKS header QEMU gets\n"
               "                                in native mode (shim: a one-time LUKS1 header)\n"
               "     --read-only                Attach read-only\n"
               "     --serial=SERIAL            The disk's serial (/dev/disk/by-id in the guest):\n"
               "                                1-20 of A-Z a-z 0-9 . _ -\n"
               "     --discard                  Pass the guest's discards to the image\n"
               "                                (cryptsetup mode only)\n"
               "     --passphrase-file=FILE|-   Read the passphrase from FILE (or stdin when -),\n"
               "                                verbatim, trailing newline included; at most %2$u\n"
               "                                bytes. Without it, prompt on the terminal.\n"
               "                                (rearm and the passphrase commands take it too:\n"
               "                                the passphrase that opens the volume.)\n"
               "\n"
               "change-passphrase and add-passphrase options:\n"
               "     --new-passphrase-file=FILE|-\n"
               "                                Read the new passphrase from FILE (or stdin),\n"
               "                                verbatim. Without it, prompt twice.\n"
               "     --pbkdf-iterations=N       PBKDF2 iterations (argon2: time cost) of the\n"
               "                                new key slot; default: as the slot the old\n"
               "                                passphrase opens\n"
               "\n"
               "remove-passphrase options:\n"
               "     --force                    Remove even the last key slot (the volume can\n"
               "                                never be opened again)\n"
               "\n"
               "detach options:\n"
               "     --timeout=SECONDS          How long the daemon waits for the guest\n"
               "     --all                      Every attached volume, or DOMAIN's\n"
               "\n"
               "resize options:\n"
               "     --allow-shrink             Allow a SIZE below the current one (the data\n"
               "                                beyond it is lost)\n"
               "\n"
               "migrate options (and --passphrase-file; --timeout: how long the staged\n"
               "volumes wait on the destination, in seconds):\n"
               "     --dest-bus=system|ADDRESS  The destination service's bus: the local system\n"
               "                                bus (run on the destination, with --host=SOURCE)\n"
               "                                or a D-Bus address that can pass file descriptors\n"
               "     --source-uri=URI           The source's libvirt (default qemu:///system, or\n"
               "                                qemu+ssh://HOST/system with --host)\n"
               "     --migrate-uri=URI          Where QEMU sends the migration stream (libvirt's\n"
               "                                migrate URI, e.g. tcp://10.0.0.2:49152)\n"
               "     --unsafe                   Tell libvirt to migrate although it cannot see that\n"
               "                                the storage is shared (virsh migrate --unsafe)\n"
               "\n"
               "list options:\n"
               "     --domain=DOMAIN            Only DOMAIN's volumes (its name or UUID)\n"
               "\n"
               "Exit status:\n"
               "  0 success                     4 bad passphrase\n"
               "  1 failure                     5 not found (domain/volume, domain not running)\n"
               "  2 usage error, invalid args   6 not supported, not LUKS\n"
               "  3 not authorized              7 busy, already attached, target in use\n",
               PROGRAM, PASSPHRASE_MAX);
}

enum {
        ARG_VERSION = 0x100,
        ARG_NO_ASK_PASSWORD,
        ARG_TARGET,
        ARG_BUS,
        ARG_MODE,
        ARG_READ_ONLY,
        ARG_SERIAL,
        ARG_DISCARD,
        ARG_NATIVE_HEADER,
        ARG_ALLOW_SHRINK,
        ARG_ALL,
        ARG_DOMAIN,
        ARG_PASSPHRASE_FILE,
        ARG_TIMEOUT,
        ARG_JSON,
        ARG_NEW_PASSPHRASE_FILE,
        ARG_PBKDF_ITERATIONS,
        ARG_FORCE,
        ARG_DEST_BUS,
        ARG_SOURCE_URI,
        ARG_MIGRATE_URI,
        ARG_UNSAFE,
};

/* Returns -1 to go on, or an exit status. */
static int parse_argv(int argc, char **argv) {
        static const struct option options[] = { { "help", no_argument, NULL, 'h' },
                                                 { "version", no_argument, NULL, ARG_VERSION },
                                                 { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },
                                                 { "target", required_argument, NULL, ARG_TARGET },
                                                 { "bus", required_argument, NULL, ARG_BUS },
                                                 { "mode", required_argument, NULL, ARG_MODE },
                                                 { "read-only", no_argument, NULL, ARG_READ_ONLY },
                                                 { "serial", required_argument, NULL, ARG_SERIAL },
                                                 { "discard", no_argument, NULL, ARG_DISCARD },
                                                 { "native-header", required_argument, NULL, ARG_NATIVE_HEADER },
                                                 { "allow-shrink", no_argument, NULL, ARG_ALLOW_SHRINK },
                                                 { "all", no_argument, NULL, ARG_ALL },
                                                 { "domain", required_argument, NULL, ARG_DOMAIN },
                                                 { "passphrase-file", required_argument, NULL, ARG_PASSPHRASE_FILE },
                                                 { "timeout", required_argument, NULL, ARG_TIMEOUT },
                                                 { "host", required_argument, NULL, 'H' },
                                                 { "json", optional_argument, NULL, ARG_JSON },
                                                 { "new-passphrase-file", required_argument, NULL,
                                                   ARG_NEW_PASSPHRASE_FILE },
                                                 { "pbkdf-iterations", required_argument, NULL, ARG_PBKDF_ITERATIONS },
                                                 { "force", no_argument, NULL, ARG_FORCE },
                                                 { "dest-bus", required_argument, NULL, ARG_DEST_BUS },
                                                 { "source-uri", required_argument, NULL, ARG_SOURCE_URI },
                                                 { "migrate-uri", required_argument, NULL, ARG_MIGRATE_URI },
                                                 { "unsafe", no_argument, NULL, ARG_UNSAFE },
                                                 {} };
        static const char *const buses[] = { "virtio", "scsi", "sata", "usb", NULL };
        static const char *const modes[] = { "auto", "native", "cryptsetup", NULL };
        int c, r;

        /* We print our own one-line messages. */
        opterr = 0;

        while ((c = getopt_long(argc, argv, "hH:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case ARG_VERSION:
                        printf("%s %s\n", PROGRAM, PACKAGE_VERSION);
                        return EXIT_OK;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ARG_TARGET:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--target must not be empty.");
                        arg_target = optarg;
                        break;
                case ARG_BUS:
                        if (!one_of(optarg, buses))
                                return fail(EXIT_USAGE, "Invalid --bus \"%s\": expected virtio, scsi, sata or usb.",
                                            optarg);
                        arg_bus = optarg;
                        break;
                case ARG_MODE:
                        if (!one_of(optarg, modes))
                                return fail(EXIT_USAGE, "Invalid --mode \"%s\": expected auto, native or cryptsetup.",
                                            optarg);
                        arg_mode = optarg;
                        break;
                case ARG_READ_ONLY:
                        arg_read_only = true;
                        break;
                case ARG_SERIAL:
                        /* The daemon checks the characters (InvalidArgs). */
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--serial must not be empty.");
                        arg_serial = optarg;
                        break;
                case ARG_NATIVE_HEADER:
                        arg_native_header = optarg;
                        break;
                case ARG_DISCARD:
                        arg_discard = true;
                        break;
                case ARG_ALLOW_SHRINK:
                        arg_allow_shrink = true;
                        break;
                case ARG_ALL:
                        arg_all = true;
                        break;
                case ARG_DOMAIN:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--domain must not be empty.");
                        arg_domain = optarg;
                        break;
                case ARG_PASSPHRASE_FILE:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--passphrase-file must not be empty.");
                        arg_passphrase_file = optarg;
                        break;
                case ARG_NEW_PASSPHRASE_FILE:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--new-passphrase-file must not be empty.");
                        arg_new_passphrase_file = optarg;
                        break;
                case ARG_PBKDF_ITERATIONS:
                        r = parse_u32(optarg, &arg_pbkdf_iterations);
                        if (r < 0 || arg_pbkdf_iterations == 0)
                                return fail(EXIT_USAGE,
                                            "Invalid --pbkdf-iterations \"%s\": expected a positive number.", optarg);
                        break;
                case ARG_FORCE:
                        arg_force = true;
                        break;
                case ARG_DEST_BUS:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--dest-bus must not be empty.");
                        arg_dest_bus = optarg;
                        break;
                case ARG_SOURCE_URI:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--source-uri must not be empty.");
                        arg_source_uri = optarg;
                        break;
                case ARG_MIGRATE_URI:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--migrate-uri must not be empty.");
                        arg_migrate_uri = optarg;
                        break;
                case ARG_UNSAFE:
                        arg_unsafe = true;
                        break;
                case ARG_TIMEOUT:
                        r = parse_u32(optarg, &arg_timeout);
                        if (r < 0)
                                return fail(EXIT_USAGE, "Invalid --timeout \"%s\": expected seconds (0…%" PRIu32 ").",
                                            optarg, UINT32_MAX);
                        arg_timeout_set = true;
                        break;
                case 'H':
                        /* ssh gets "--" before it, but an option-like host is
                         * still never what was meant. */
                        if (isempty(optarg) || optarg[0] == '-')
                                return fail(EXIT_USAGE, "Invalid --host \"%s\": expected [USER@]HOST.", optarg);
                        arg_host = optarg;
                        break;
                case ARG_JSON:
                        if (!optarg || streq(optarg, "short"))
                                arg_json = JSON_SHORT;
                        else if (streq(optarg, "pretty"))
                                arg_json = JSON_PRETTY;
                        else
                                return fail(EXIT_USAGE, "Invalid --json=\"%s\": expected short or pretty.", optarg);
                        break;
                case '?':
                        /* For long options optopt holds our enum value, not
                         * a character: name the word from the command line. */
                        if (startswith(argv[optind - 1], "--"))
                                return fail(EXIT_USAGE, "Option %s is unknown or lacks its argument; see --help.",
                                            argv[optind - 1]);
                        return fail(EXIT_USAGE, "Option -%c is unknown or lacks its argument; see --help.", optopt);
                default:
                        return fail(EXIT_FAIL, "Unexpected option %d.", c);
                }

        return -1;
}

/* ──────────────────────────────── verbs ──────────────────────────────── */

/* The options that only some verbs take, in groups that stand or fall
 * together. */
typedef enum VerbOptions {
        VERB_ATTACH_OPTIONS = 1 << 0, /* --target, --bus, --mode, --read-only, --serial, --discard */
        VERB_TIMEOUT = 1 << 1,        /* --timeout */
        VERB_JSON = 1 << 2,           /* --json */
        VERB_PASSPHRASE = 1 << 3,     /* --passphrase-file */
        VERB_ALL = 1 << 4,            /* --all */
        VERB_SHRINK = 1 << 5,         /* --allow-shrink */
        VERB_DOMAIN = 1 << 6,         /* --domain */
        VERB_NEW_PASSPHRASE = 1 << 7, /* --new-passphrase-file, --pbkdf-iterations */
        VERB_FORCE = 1 << 8,          /* --force */
        VERB_MIGRATE = 1 << 9,        /* --dest-bus, --source-uri, --migrate-uri, --unsafe */
} VerbOptions;

typedef struct Verb {
        const char *name;
        VerbOptions options; /* which of the groups above it takes */
        int (*run)(int argc, char **argv);
} Verb;

/* A new verb is one row here and one function. Messages name the verbs
 * taking an option in this order. */
static const Verb verbs[] = {
        { "attach", VERB_ATTACH_OPTIONS | VERB_PASSPHRASE, verb_attach },
        { "detach", VERB_TIMEOUT | VERB_ALL, verb_detach },
        { "resize", VERB_SHRINK, verb_resize },
        { "rearm", VERB_PASSPHRASE, verb_rearm },
        { "list", VERB_JSON | VERB_DOMAIN, verb_list },
        { "list-domains", VERB_JSON, verb_list_domains },
        { "status", VERB_JSON, verb_status },
        { "probe", VERB_JSON, verb_probe },
        { "monitor", VERB_JSON, verb_monitor },
        { "change-passphrase", VERB_PASSPHRASE | VERB_NEW_PASSPHRASE, verb_change_passphrase },
        { "add-passphrase", VERB_PASSPHRASE | VERB_NEW_PASSPHRASE | VERB_JSON, verb_add_passphrase },
        { "remove-passphrase", VERB_PASSPHRASE | VERB_FORCE, verb_remove_passphrase },
        { "verify", VERB_PASSPHRASE | VERB_JSON, verb_verify },
        { "migrate", VERB_MIGRATE | VERB_PASSPHRASE | VERB_TIMEOUT, verb_migrate },
};

static const struct {
        VerbOptions group;
        const char *refusal; /* completed by the verbs that take the group */
} option_groups[] = {
        { VERB_ATTACH_OPTIONS,
          "--target, --bus, --mode, --native-header, --read-only, --serial and --discard only apply to" },
        { VERB_PASSPHRASE, "--passphrase-file only applies to" },
        { VERB_TIMEOUT, "--timeout only applies to" },
        { VERB_JSON, "--json only applies to" },
        { VERB_ALL, "--all only applies to" },
        { VERB_SHRINK, "--allow-shrink only applies to" },
        { VERB_DOMAIN, "--domain only applies to" },
        { VERB_NEW_PASSPHRASE, "--new-passphrase-file and --pbkdf-iterations only apply to" },
        { VERB_FORCE, "--force only applies to" },
        { VERB_MIGRATE, "--dest-bus, --source-uri, --migrate-uri and --unsafe only apply to" },
};

static VerbOptions options_given(void) {
        VerbOptions given = 0;

        if (arg_target || arg_bus || arg_mode || arg_read_only || arg_serial || arg_discard || arg_native_header)
                given |= VERB_ATTACH_OPTIONS;
        if (arg_all)
                given |= VERB_ALL;
        if (arg_allow_shrink)
                given |= VERB_SHRINK;
        if (arg_domain)
                given |= VERB_DOMAIN;
        if (arg_passphrase_file)
                given |= VERB_PASSPHRASE;
        if (arg_timeout_set)
                given |= VERB_TIMEOUT;
        if (arg_json != JSON_OFF)
                given |= VERB_JSON;
        if (arg_new_passphrase_file || arg_pbkdf_iterations > 0)
                given |= VERB_NEW_PASSPHRASE;
        if (arg_force)
                given |= VERB_FORCE;
        if (arg_dest_bus || arg_source_uri || arg_migrate_uri || arg_unsafe)
                given |= VERB_MIGRATE;
        return given;
}

/* "a, b and c": the verbs taking the options of group, in table order. */
static int verbs_taking(VerbOptions group, char **ret) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *out = NULL;
        size_t size, total = 0, k = 0;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (verbs[i].options & group)
                        total++;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (verbs[i].options & group) {
                        k++;
                        fprintf(out, "%s%s", k == 1 ? "" : k == total ? " and " : ", ", verbs[i].name);
                }
        if (fflush(out) != 0 || ferror(out))
                return -ENOMEM;
        fclose(TAKE_PTR(out));
        *ret = TAKE_PTR(buf);
        return 0;
}

static int check_options_for(const Verb *verb) {
        VerbOptions stray = options_given() & ~verb->options;

        /* Options are accepted anywhere on the line, so catch ones given to
         * a command that would silently ignore them. */
        for (size_t i = 0; i < ELEMENTSOF(option_groups); i++) {
                _cleanup_free_ char *names = NULL;
                int r;

                if (!(stray & option_groups[i].group))
                        continue;
                r = verbs_taking(option_groups[i].group, &names);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Out of memory.");
                return fail(EXIT_USAGE, "%s %s.", option_groups[i].refusal, names);
        }
        return EXIT_OK;
}

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

int main(int argc, char **argv) {
        const Verb *verb;
        int status;

        log_set_prefix(false);

        status = parse_argv(argc, argv);
        if (status >= 0)
                goto finish;

        if (optind >= argc) {
                status = fail(EXIT_USAGE, "Missing command; see --help.");
                goto finish;
        }

        verb = find_verb(argv[optind]);
        if (!verb) {
                status = fail(EXIT_USAGE, "Unknown command \"%s\"; see --help.", argv[optind]);
                goto finish;
        }
        status = check_options_for(verb);
        if (status == EXIT_OK)
                status = verb->run(argc - optind, argv + optind);

finish:
        /* A full disk or closed pipe on stdout must not look like success. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                if (status == EXIT_OK)
                        status = fail_errno(EXIT_FAIL, errno ? errno : EIO, "Failed to write output: %m");
        }
        return status;
}
