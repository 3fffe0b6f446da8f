/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <libvirt/libvirt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <systemd/sd-daemon.h>

#include "disk-xml.h"
#include "config.h"
#include "event-log.h"
#include "events.h"
#include "fault.h"
#include "luks.h"
#include "manager.h"
#include "mode.h"
#include "rbd.h"
#include "util.h"

static void help(void) {
        printf("luksvolumed [OPTIONS]\n\n"
               "Attaches encrypted LUKS volumes to running libvirt guests (D-Bus: org.example.LuksVolume1).\n\n"
               "  -h --help                     Show this help\n"
               "     --version                  Show the version\n"
               "     --libvirt-uri=URI          libvirt connection (default qemu:///system)\n"
               "     --min-libvirt-version=X.Y.Z  Native LUKS gate for libvirt (default 4.4.0)\n"
               "     --min-qemu-version=X.Y.Z   Native LUKS gate for QEMU (default 2.6.0)\n"
               "     --max-volumes=N            Cap on attached volumes (default 64)\n"
               "     --idle-timeout=SEC         Exit after SEC idle seconds, 0 = never (default 60)\n"
               "     --detach-timeout=SEC       Detach's default wait for the guest (default 30)\n"
               "     --source-timeout=SEC       Deadline of file system calls on a source (default 10)\n"
               "     --config=PATH              Configuration file (default " CONFIG_FILE_DEFAULT "),\n"
               "                                drop-ins from PATH.d/*.conf; options override it\n"
               "     --log-level=LEVEL          err, warning, notice, info, debug (default info)\n");
}

static int parse_unsigned(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v > 1000000UL)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* Pass 1 (config_pass): only --help, --version, --config, so the file can
 * be read before pass 2 applies the other options on top of it. */
static int parse_argv(int argc, char *argv[], ManagerConfig *config, bool config_pass, const char **config_path) {
        enum {
                ARG_VERSION = 0x100,
                ARG_URI,
                ARG_MIN_LIBVIRT,
                ARG_MIN_QEMU,
                ARG_MAX_VOLUMES,
                ARG_IDLE,
                ARG_LOG_LEVEL,
                ARG_FAULT_FILE,
                ARG_CONFIG,
                ARG_DETACH_TIMEOUT,
                ARG_SOURCE_TIMEOUT,
        };
        static const struct option options[] = { { "help", no_argument, NULL, 'h' },
                                                 { "version", no_argument, NULL, ARG_VERSION },
                                                 { "libvirt-uri", required_argument, NULL, ARG_URI },
                                                 { "min-libvirt-version", required_argument, NULL, ARG_MIN_LIBVIRT },
                                                 { "min-qemu-version", required_argument, NULL, ARG_MIN_QEMU },
                                                 { "max-volumes", required_argument, NULL, ARG_MAX_VOLUMES },
                                                 { "idle-timeout", required_argument, NULL, ARG_IDLE },
                                                 { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                                                 { "config", required_argument, NULL, ARG_CONFIG },
                                                 { "detach-timeout", required_argument, NULL, ARG_DETACH_TIMEOUT },
                                                 { "source-timeout", required_argument, NULL, ARG_SOURCE_TIMEOUT },
                                                 /* Test only; deliberately not in --help. */
                                                 { "fault-file", required_argument, NULL, ARG_FAULT_FILE },
                                                 {} };
        int c, r;

        optind = 0;
        opterr = !config_pass;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (config_pass) {
                        if (c == 'h') {
                                help();
                                return 0;
                        }
                        if (c == ARG_VERSION) {
                                printf("luksvolumed %s\n", PACKAGE_VERSION);
                                return 0;
                        }
                        if (c == ARG_CONFIG)
                                *config_path = optarg;
                        continue;
                }
                switch (c) {
                case 'h':
                case ARG_VERSION:
                case ARG_CONFIG:
                        break;
                case ARG_URI:
                        config->libvirt_uri = optarg;
                        break;
                case ARG_MIN_LIBVIRT:
                        if (version_parse(optarg, &config->min_libvirt_version) < 0)
                                return log_error_errno(EINVAL, "Invalid --min-libvirt-version: %s", optarg);
                        break;
                case ARG_MIN_QEMU:
                        if (version_parse(optarg, &config->min_qemu_version) < 0)
                                return log_error_errno(EINVAL, "Invalid --min-qemu-version: %s", optarg);
                        break;
                case ARG_MAX_VOLUMES:
                        if (parse_unsigned(optarg, &config->max_volumes) < 0 || config->max_volumes == 0)
                                return log_error_errno(EINVAL, "Invalid --max-volumes: %s", optarg);
                        break;
                case ARG_IDLE:
                        if (parse_unsigned(optarg, &config->idle_timeout_sec) < 0)
                                return log_error_errno(EINVAL, "Invalid --idle-timeout: %s", optarg);
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(EINVAL, "Invalid --log-level: %s", optarg);
                        log_set_max_level(r);
                        break;
                case ARG_FAULT_FILE:
                        fault_set_file(optarg);
                        break;
                case ARG_DETACH_TIMEOUT:
                        if (parse_unsigned(optarg, &config->detach_timeout_sec) < 0 ||
                            config->detach_timeout_sec > 3600)
                                return log_error_errno(EINVAL, "Invalid --detach-timeout: %s", optarg);
                        break;
                case ARG_SOURCE_TIMEOUT:
                        if (parse_unsigned(optarg, &config->source_timeout_sec) < 0 ||
                            config->source_timeout_sec == 0 || config->source_timeout_sec > 600)
                                return log_error_errno(EINVAL, "Invalid --source-timeout: %s", optarg);
                        break;
                case '?':
                        return -EINVAL;
                default:
                        abort();
                }
        }

        if (config_pass)
                return 1;
        if (optind < argc)
                return log_error_errno(EINVAL, "This program takes no positional arguments.");
        return 1;
}

/* The process holds passphrases, however briefly: keep it out of core
 * dumps and away from ptrace by other same-uid processes. */
static void harden_process(void) {
        struct rlimit rl = { 0, 0 };

        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                log_warning_errno(errno, "Failed to make the process non-dumpable: %m");
        if (setrlimit(RLIMIT_CORE, &rl) < 0)
                log_warning_errno(errno, "Failed to disable core dumps: %m");
}

int main(int argc, char *argv[]) {
        ManagerConfig config = {
                .libvirt_uri = (char *) "qemu:///system",
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_qemu_version = LV_MIN_QEMU_VERSION,
                .max_volumes = 64,
                .idle_timeout_sec = 60,
                .max_pending_polkit = 128,
                .detach_timeout_sec = 30,
                .source_timeout_sec = 10,
                .stage_timeout_sec = 300,
                .kdf = kdf_limits_default(),
                .precheck_iterations = HEADER_PRECHECK_ITERATIONS_DEFAULT,
        };
        const char *config_path = CONFIG_FILE_DEFAULT;
        Manager *m = NULL;
        struct timespec start;
        sigset_t mask;
        int r;

        (void) clock_gettime(CLOCK_MONOTONIC, &start);

        event_log_setup();

        r = parse_argv(argc, argv, &config, true, &config_path);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (config_load(config_path, &config) < 0)
                return EXIT_FAILURE;
        r = parse_argv(argc, argv, &config, false, &config_path);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        harden_process();
        luks_set_kdf_limits(&config.kdf);
        /* Validated when read; before any thread names a device. */
        if (luks_device_tag_set(config.device_tag) < 0) {
                log_error("Bad DeviceTag=.");
                return EXIT_FAILURE;
        }
        rbd_configure(config.ceph_config, config.ceph_client);

        /* Before any thread exists: both libraries set up global state
         * (libcryptsetup's waits for its first use: luks_init()). */
        if (virInitialize() < 0) {
                log_error("Failed to initialize libvirt.");
                return EXIT_FAILURE;
        }
        disk_xml_init();
        /* libvirt's event loop must exist before the first connection. */
        if (virt_events_init() < 0) {
                log_error("Failed to set up libvirt's event loop.");
                return EXIT_FAILURE;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = manager_new(&config, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }

        m->start_usec = (uint64_t) start.tv_sec * 1000000ULL + (uint64_t) start.tv_nsec / 1000U;
        manager_startup_mark(m, "libraries initialised");
        (void) sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);

        r = manager_start(m);
        if (r < 0) {
                manager_free(m);
                return EXIT_FAILURE;
        }

        r = sd_event_loop(m->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");

        (void) sd_notify(false, "STOPPING=1");
        manager_free(m);
        config_strings_free();
        return r < 0 ? EXIT_FAILURE : r;
}
