/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Unit tests for daemon/disk-xml.c: the XML we hand to libvirt must say
 * exactly what the caller asked, whatever bytes the caller's strings hold,
 * and the parser of libvirt's live XML must read real documents right and
 * survive hostile ones. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "disk-xml.h"

/* ---- helpers ---- */

/* A live-looking libvirt 9.0 domain: six disks of every kind we care about,
 * aliases, addresses, engine='qemu', an empty cdrom, a legacy <encryption>
 * under <disk>, a network disk, and namespaced metadata with a <disk>-named
 * element that must not be taken for a device.  The same document is a seed
 * in tests/fuzz/corpus/domain-xml/. */
static const char live_xml[] = "<domain type='qemu' id='3'>\n"
                               "  <name>guest1</name>\n"
                               "  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n"
                               "  <metadata>\n"
                               "    <lv:volumes xmlns:lv=\"https://example.org/luksvolumed/1\">\n"
                               "      <lv:disk target=\"vdz\" source=\"/not/a/real/disk\"/>\n"
                               "    </lv:volumes>\n"
                               "  </metadata>\n"
                               "  <memory unit='KiB'>65536</memory>\n"
                               "  <currentMemory unit='KiB'>65536</currentMemory>\n"
                               "  <vcpu placement='static'>1</vcpu>\n"
                               "  <resource>\n"
                               "    <partition>/machine</partition>\n"
                               "  </resource>\n"
                               "  <os>\n"
                               "    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n"
                               "    <boot dev='hd'/>\n"
                               "  </os>\n"
                               "  <features>\n"
                               "    <acpi/>\n"
                               "  </features>\n"
                               "  <cpu mode='custom' match='exact' check='full'>\n"
                               "    <model fallback='forbid'>qemu64</model>\n"
                               "    <feature policy='require' name='x2apic'/>\n"
                               "    <feature policy='require' name='hypervisor'/>\n"
                               "    <feature policy='require' name='lahf_lm'/>\n"
                               "    <feature policy='disable' name='svm'/>\n"
                               "  </cpu>\n"
                               "  <clock offset='utc'/>\n"
                               "  <on_poweroff>destroy</on_poweroff>\n"
                               "  <on_reboot>restart</on_reboot>\n"
                               "  <on_crash>destroy</on_crash>\n"
                               "  <devices>\n"
                               "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
                               "    <disk type='file' device='disk'>\n"
                               "      <driver name='qemu' type='qcow2'/>\n"
                               "      <source file='/var/lib/libvirt/images/guest1.qcow2' index='3'/>\n"
                               "      <backingStore type='file' index='4'>\n"
                               "        <format type='raw'/>\n"
                               "        <source file='/var/lib/libvirt/images/base.raw'/>\n"
                               "        <backingStore/>\n"
                               "      </backingStore>\n"
                               "      <target dev='vda' bus='virtio'/>\n"
                               "      <alias name='virtio-disk0'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
                               "    </disk>\n"
                               "    <disk type='file' device='cdrom'>\n"
                               "      <driver name='qemu' type='raw'/>\n"
                               "      <target dev='hdc' bus='ide'/>\n"
                               "      <readonly/>\n"
                               "      <alias name='ide0-1-0'/>\n"
                               "      <address type='drive' controller='0' bus='1' target='0' unit='0'/>\n"
                               "    </disk>\n"
                               "    <disk type='file' device='disk'>\n"
                               "      <driver name='qemu' type='raw'/>\n"
                               "      <source file='/srv/volumes/vol-1.luks' index='2'>\n"
                               "        <encryption format='luks' engine='qemu'>\n"
                               "          <secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/>\n"
                               "        </encryption>\n"
                               "      </source>\n"
                               "      <backingStore/>\n"
                               "      <target dev='sdb' bus='scsi'/>\n"
                               "      <alias name='scsi0-0-0-1'/>\n"
                               "      <address type='drive' controller='0' bus='0' target='0' unit='1'/>\n"
                               "    </disk>\n"
                               "    <disk type='block' device='disk'>\n"
                               "      <driver name='qemu' type='raw'/>\n"
                               "      <source dev='/dev/loop0' index='1'>\n"
                               "        <encryption format='luks' engine='qemu'>\n"
                               "          <secret type='passphrase' uuid='6f1c3a52-2f4e-4c1b-9d0e-8a5b7c9d1e2f'/>\n"
                               "        </encryption>\n"
                               "      </source>\n"
                               "      <backingStore/>\n"
                               "      <target dev='sdc' bus='scsi'/>\n"
                               "      <readonly/>\n"
                               "      <alias name='scsi0-0-0-2'/>\n"
                               "      <address type='drive' controller='0' bus='0' target='0' unit='2'/>\n"
                               "    </disk>\n"
                               "    <disk type='block' device='disk'>\n"
                               "      <driver name='qemu' type='raw'/>\n"
                               "      <source dev='/dev/mapper/crypt-vol-2' index='5'/>\n"
                               "      <backingStore/>\n"
                               "      <target dev='vdb' bus='virtio'/>\n"
                               "      <encryption format='luks'>\n"
                               "        <secret type='passphrase' usage='vol-2'/>\n"
                               "      </encryption>\n"
                               "      <alias name='virtio-disk1'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>\n"
                               "    </disk>\n"
                               "    <disk type='network' device='disk'>\n"
                               "      <driver name='qemu' type='raw'/>\n"
                               "      <source protocol='rbd' name='pool/image' index='6'>\n"
                               "        <host name='mon1.example.org' port='6789'/>\n"
                               "      </source>\n"
                               "      <target dev='vdc' bus='virtio'/>\n"
                               "      <alias name='virtio-disk2'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x08' function='0x0'/>\n"
                               "    </disk>\n"
                               "    <controller type='scsi' index='0' model='virtio-scsi'>\n"
                               "      <alias name='scsi0'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>\n"
                               "    </controller>\n"
                               "    <controller type='usb' index='0' model='piix3-uhci'>\n"
                               "      <alias name='usb'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>\n"
                               "    </controller>\n"
                               "    <controller type='pci' index='0' model='pci-root'>\n"
                               "      <alias name='pci.0'/>\n"
                               "    </controller>\n"
                               "    <controller type='ide' index='0'>\n"
                               "      <alias name='ide'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>\n"
                               "    </controller>\n"
                               "    <serial type='pty'>\n"
                               "      <source path='/dev/pts/3'/>\n"
                               "      <target type='isa-serial' port='0'>\n"
                               "        <model name='isa-serial'/>\n"
                               "      </target>\n"
                               "      <alias name='serial0'/>\n"
                               "    </serial>\n"
                               "    <console type='pty' tty='/dev/pts/3'>\n"
                               "      <source path='/dev/pts/3'/>\n"
                               "      <target type='serial' port='0'/>\n"
                               "      <alias name='serial0'/>\n"
                               "    </console>\n"
                               "    <input type='mouse' bus='ps2'>\n"
                               "      <alias name='input0'/>\n"
                               "    </input>\n"
                               "    <input type='keyboard' bus='ps2'>\n"
                               "      <alias name='input1'/>\n"
                               "    </input>\n"
                               "    <audio id='1' type='none'/>\n"
                               "    <memballoon model='virtio'>\n"
                               "      <alias name='balloon0'/>\n"
                               "      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n"
                               "    </memballoon>\n"
                               "  </devices>\n"
                               "  <seclabel type='dynamic' model='dac' relabel='yes'>\n"
                               "    <label>+64055:+994</label>\n"
                               "    <imagelabel>+64055:+994</imagelabel>\n"
                               "  </seclabel>\n"
                               "</domain>\n";

/* Parses xml with plain libxml2, asserting well-formedness and that no DTD
 * sneaked in: a check independent of the code under test. */
static xmlDoc *parse_plain(const char *xml) {
        xmlDoc *doc = xmlReadMemory(xml, (int) strlen(xml), NULL, "UTF-8",
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        g_assert_nonnull(doc);
        g_assert_null(doc->intSubset);
        g_assert_nonnull(xmlDocGetRootElement(doc));
        return doc;
}

static unsigned count_elements(const xmlNode *n, const char *name) {
        unsigned k = 0;

        for (; n; n = n->next) {
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name))
                        k++;
                k += count_elements(n->children, name);
        }
        return k;
}

static xmlNode *child(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
                        return c;
        return NULL;
}

static void assert_prop(xmlNode *n, const char *name, const char *expected) {
        xmlChar *v = xmlGetNoNsProp(n, BAD_CAST name);
        g_assert_cmpstr((const char *) v, ==, expected);
        xmlFree(v);
}

static void assert_text(xmlNode *n, const char *expected) {
        xmlChar *v = xmlNodeGetContent(n);
        g_assert_cmpstr((const char *) v, ==, expected);
        xmlFree(v);
}

static char *wrap_in_domain(const char *devices) {
        return g_strdup_printf("<domain type='qemu'><name>t</name><devices>%s</devices></domain>", devices);
}

static void assert_disk_matches(const DiskInfo *d, const DiskSpec *spec) {
        g_assert_cmpstr(d->target, ==, spec->target);
        g_assert_cmpstr(d->bus, ==, spec->bus);
        g_assert_cmpstr(d->device, ==, "disk");
        g_assert_cmpstr(d->source, ==, spec->source);
        g_assert_cmpint(d->block, ==, spec->block);
        g_assert_cmpint(d->read_only, ==, spec->read_only);
        g_assert_cmpint(d->encrypted, ==, spec->secret_uuid != NULL);
        g_assert_cmpstr(d->encryption_format, ==, spec->secret_uuid ? "luks" : NULL);
        g_assert_cmpstr(d->secret_uuid, ==, spec->secret_uuid);
        g_assert_null(d->alias);
        g_assert_cmpstr(d->serial, ==, spec->serial);
        g_assert_cmpint(d->discard, ==, spec->discard);
}

/* Builds spec, checks the shape of the output with plain libxml2, then feeds
 * it back through our own parser inside a domain document. */
static void check_disk_roundtrip(const DiskSpec *spec) {
        char *xml = NULL;
        g_assert_cmpint(disk_xml_build(spec, &xml), ==, 0);
        g_assert_nonnull(xml);

        /* Just the element: no declaration, no trailing newline. */
        g_assert_true(g_str_has_prefix(xml, "<disk "));
        g_assert_true(g_str_has_suffix(xml, "</disk>"));

        xmlDoc *doc = parse_plain(xml);
        xmlNode *root = xmlDocGetRootElement(doc);
        g_assert_cmpstr((const char *) root->name, ==, "disk");
        g_assert_cmpuint(count_elements(root, "disk"), ==, 1);
        g_assert_cmpuint(count_elements(root, "driver"), ==, 1);
        g_assert_cmpuint(count_elements(root, "source"), ==, 1);
        g_assert_cmpuint(count_elements(root, "target"), ==, 1);
        g_assert_cmpuint(count_elements(root, "readonly"), ==, spec->read_only ? 1 : 0);
        g_assert_cmpuint(count_elements(root, "encryption"), ==, spec->secret_uuid ? 1 : 0);
        g_assert_cmpuint(count_elements(root, "secret"), ==, spec->secret_uuid ? 1 : 0);
        g_assert_cmpuint(count_elements(root, "serial"), ==, spec->serial ? 1 : 0);
        assert_prop(root, "type", spec->block ? "block" : "file");
        assert_prop(root, "device", "disk");

        xmlNode *driver = child(root, "driver");
        g_assert_nonnull(driver);
        assert_prop(driver, "name", "qemu");
        assert_prop(driver, "type", "raw");
        assert_prop(driver, "discard", spec->discard ? "unmap" : NULL);
        if (spec->serial) {
                /* A text node holding exactly the caller's string. */
                xmlNode *serial = child(root, "serial");
                g_assert_nonnull(serial);
                g_autofree char *text = (char *) xmlNodeGetContent(serial);
                g_assert_cmpstr(text, ==, spec->serial);
                g_assert_nonnull(serial->children);
                g_assert_null(serial->children->next);
                g_assert_cmpint(serial->children->type, ==, XML_TEXT_NODE);
        }

        xmlNode *source = child(root, "source");
        g_assert_nonnull(source);
        assert_prop(source, spec->block ? "dev" : "file", spec->source);
        assert_prop(source, spec->block ? "file" : "dev", NULL);
        if (spec->secret_uuid) {
                /* Under <source>, not under <disk>. */
                xmlNode *enc = child(source, "encryption");
                g_assert_nonnull(enc);
                assert_prop(enc, "format", "luks");
                xmlNode *secret = child(enc, "secret");
                g_assert_nonnull(secret);
                assert_prop(secret, "type", "passphrase");
                assert_prop(secret, "uuid", spec->secret_uuid);
        }

        xmlNode *target = child(root, "target");
        g_assert_nonnull(target);
        assert_prop(target, "dev", spec->target);
        assert_prop(target, "bus", spec->bus);
        xmlFreeDoc(doc);

        char *domain = wrap_in_domain(xml);
        DiskInfo *disks = NULL;
        size_t n = 0;
        g_assert_cmpint(domain_xml_list_disks(domain, &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 1);
        assert_disk_matches(&disks[0], spec);
        disk_info_array_free(disks, n);

        DiskInfo d = {};
        g_assert_cmpint(domain_xml_find_disk(domain, spec->target, &d), ==, 0);
        assert_disk_matches(&d, spec);
        disk_info_free(&d);

        g_free(domain);
        free(xml);
}

/* Strings chosen to break anything that pastes text into markup. */
static const char *const hostile[] = {
        "'",
        "\"",
        "<",
        ">",
        "&",
        "&amp;",
        "&lt;",
        "&#x41;",
        "&#0;",
        "&foo;",
        "&",
        "]]>",
        "<![CDATA[x]]>",
        "<!--",
        "-->",
        "<?xml version='1.0'?>",
        "<!DOCTYPE x>",
        "'/><disk type='file' device='disk'><source file='/etc/shadow'/>",
        "\"/><target dev=\"vda\"",
        "a\nb",
        "a\r\nb",
        "\r",
        "\t",
        "tab\there",
        "  leading and trailing  ",
        " ",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82",
        "\xef\xbf\xbd",
        "\xef\xbf\xbd\xf4\x8f\xbf\xbf",
        "%s%n%x",
        "\\",
        "$(reboot)",
        "/path with spaces/and 'quotes' & \"more\"",
};

static char *long_hostile_string(size_t n) {
        static const char pattern[] = "<&>'\"]]>\n\xc3\xa9x";
        GString *s = g_string_sized_new(n + sizeof pattern);
        while (s->len < n)
                g_string_append(s, pattern);
        return g_string_free(s, FALSE);
}

/* ---- building ---- */

static void test_build_exact_output(void) {
        /* Pins the exact shape handed to libvirt (libxml2 writes double
         * quotes). */
        DiskSpec spec = {
                .source = "/srv/volumes/vol-1.luks",
                .target = "sdb",
                .bus = "scsi",
                .secret_uuid = "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f",
        };
        char *xml = NULL;

        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, 0);
        g_assert_cmpstr(xml, ==,
                        "<disk type=\"file\" device=\"disk\"><driver name=\"qemu\" type=\"raw\"/>"
                        "<source file=\"/srv/volumes/vol-1.luks\"><encryption format=\"luks\">"
                        "<secret type=\"passphrase\" uuid=\"0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f\"/>"
                        "</encryption></source><target dev=\"sdb\" bus=\"scsi\"/></disk>");
        free(xml);

        spec = (DiskSpec){ .block = true, .source = "/dev/loop0", .target = "vdc", .bus = "virtio", .read_only = true };
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, 0);
        g_assert_cmpstr(xml, ==,
                        "<disk type=\"block\" device=\"disk\"><driver name=\"qemu\" type=\"raw\"/>"
                        "<source dev=\"/dev/loop0\"/><target dev=\"vdc\" bus=\"virtio\"/><readonly/></disk>");
        free(xml);

        /* serial and discard: where libvirt 9.0 reads them. */
        spec = (DiskSpec){ .block = true,
                           .source = "/dev/mapper/luksvol-x",
                           .target = "vdd",
                           .bus = "virtio",
                           .serial = "LV-1_a.b",
                           .discard = true };
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, 0);
        g_assert_cmpstr(xml, ==,
                        "<disk type=\"block\" device=\"disk\"><driver name=\"qemu\" type=\"raw\" discard=\"unmap\"/>"
                        "<source dev=\"/dev/mapper/luksvol-x\"/><target dev=\"vdd\" bus=\"virtio\"/>"
                        "<serial>LV-1_a.b</serial></disk>");
        free(xml);

        g_assert_cmpint(secret_xml_build("vol-1", "luksvolumed vol-1", &xml), ==, 0);
        g_assert_cmpstr(xml, ==,
                        "<secret ephemeral=\"yes\" private=\"yes\"><description>luksvolumed vol-1</description>"
                        "<usage type=\"volume\"><volume>vol-1</volume></usage></secret>");
        free(xml);

        /* No description: the element is left out. */
        g_assert_cmpint(secret_xml_build("vol-1", NULL, &xml), ==, 0);
        g_assert_cmpstr(xml, ==,
                        "<secret ephemeral=\"yes\" private=\"yes\">"
                        "<usage type=\"volume\"><volume>vol-1</volume></usage></secret>");
        free(xml);
}

/* An RBD image (issue 18): the network disk libvirt 9.0 hot-plugs, and
 * what the service reads back from the live XML (with libvirt's own
 * additions), the source as "rbd:" + name. */
static void test_build_rbd(void) {
        DiskSpec spec = {
                .rbd_name = "pool/img",
                .ceph_config = "/etc/ceph/ceph.conf",
                .ceph_user = "libvirt",
                .ceph_secret_uuid = "5ad6e0c3-1e1f-4c6e-9c1d-0000000ce9b0",
                .target = "sdb",
                .bus = "scsi",
                .secret_uuid = "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f",
                .alias = "ua-x",
        };
        char *xml = NULL;
        DiskInfo d = {};

        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, 0);
        g_assert_cmpstr(
                xml, ==,
                "<disk type=\"network\" device=\"disk\"><driver name=\"qemu\" type=\"raw\"/>"
                "<source protocol=\"rbd\" name=\"pool/img\"><config file=\"/etc/ceph/ceph.conf\"/>"
                "<auth username=\"libvirt\"><secret type=\"ceph\" uuid=\"5ad6e0c3-1e1f-4c6e-9c1d-0000000ce9b0\"/></auth>"
                "<encryption format=\"luks\"><secret type=\"passphrase\" uuid=\"0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f\"/>"
                "</encryption></source><target dev=\"sdb\" bus=\"scsi\"/><alias name=\"ua-x\"/></disk>");
        free(xml);

        static const char *live =
                "<domain><devices><disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                "<source protocol='rbd' name='pool/img' index='1'><config file='/etc/ceph/ceph.conf'/>"
                "<auth username='libvirt'><secret type='ceph' uuid='5ad6e0c3-1e1f-4c6e-9c1d-0000000ce9b0'/></auth>"
                "<encryption format='luks' engine='qemu'><secret type='passphrase' "
                "uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption></source>"
                "<target dev='sdb' bus='scsi'/><alias name='ua-x'/></disk>"
                "<disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='sdc' bus='scsi'/></disk>"
                "</devices></domain>";
        g_assert_cmpint(domain_xml_find_disk(live, "sdb", &d), ==, 0);
        g_assert_true(d.rbd);
        g_assert_cmpstr(d.source, ==, "rbd:pool/img");
        g_assert_true(d.encrypted);
        g_assert_cmpstr(d.encryption_format, ==, "luks");
        g_assert_cmpstr(d.secret_uuid, ==, "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
        disk_info_free(&d);
        /* Another network protocol has no source the service knows. */
        g_assert_cmpint(domain_xml_find_disk(live, "sdc", &d), ==, 0);
        g_assert_false(d.rbd);
        g_assert_null(d.source);
        disk_info_free(&d);

        /* A name is required, like a path. */
        spec.rbd_name = "";
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
}

/* The user alias luksvolumed puts on its disks comes back from parsing. */
static void test_build_alias(void) {
        DiskSpec spec = {
                .source = "/img",
                .target = "sdb",
                .bus = "scsi",
                .secret_uuid = "4b1f5c2a-9d3e-4f10-8a7b-0c1d2e3f4a5b",
                .alias = "ua-luksvol-4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb",
        };
        g_autofree char *xml = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, 0);
        g_autofree char *dom = wrap_in_domain(xml);
        DiskInfo d = {};
        g_assert_cmpint(domain_xml_find_disk(dom, "sdb", &d), ==, 0);
        g_assert_cmpstr(d.alias, ==, spec.alias);
        disk_info_free(&d);

        spec.alias = "";
        g_autofree char *bad = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &bad), ==, -EINVAL);
        g_assert_null(bad);
}

static void test_build_roundtrip_combinations(void) {
        /* file/block × plain/encrypted × read-write/read-only × serial × discard */
        for (unsigned i = 0; i < 32; i++) {
                DiskSpec spec = {
                        .block = i & 1,
                        .source = (i & 1) ? "/dev/loop7" : "/var/lib/luksvolumed/images/v.img",
                        .target = (i & 1) ? "sdc" : "vdb",
                        .bus = (i & 1) ? "scsi" : "virtio",
                        .secret_uuid = (i & 2) ? "6f1c3a52-2f4e-4c1b-9d0e-8a5b7c9d1e2f" : NULL,
                        .read_only = i & 4,
                        .serial = (i & 8) ? "SER-0001" : NULL,
                        .discard = i & 16,
                };
                check_disk_roundtrip(&spec);
        }
}

static void test_build_hostile_strings(void) {
        for (size_t i = 0; i < G_N_ELEMENTS(hostile); i++) {
                const char *s = hostile[i];

                /* The hostile string in each field in turn, with the other
                 * fields ordinary; and in all of them at once. */
                for (unsigned field = 0; field < 6; field++) {
                        DiskSpec spec = {
                                .block = i & 1,
                                .source = (field == 0 || field == 4) ? s : "/img",
                                .target = (field == 1 || field == 4) ? s : "vdb",
                                .bus = (field == 2 || field == 4) ? s : "virtio",
                                .secret_uuid = (field == 3 || field == 4) ? s : NULL,
                                .serial = (field == 5 || field == 4) ? s : NULL,
                                .read_only = field & 1,
                        };
                        check_disk_roundtrip(&spec);
                }
        }
}

static void test_build_long_strings(void) {
        /* libxml2's parser, without XML_PARSE_HUGE, refuses a single start
         * tag beyond ~10 MB; stay under that once escaped (~3× here). */
        char *s = long_hostile_string(256 * 1024);
        DiskSpec spec = { .source = s, .target = s, .bus = s, .secret_uuid = s, .read_only = true };

        check_disk_roundtrip(&spec);
        spec.block = true;
        check_disk_roundtrip(&spec);
        g_free(s);

        s = long_hostile_string(1024 * 1024);
        spec = (DiskSpec){ .source = s, .target = "vdb", .bus = "virtio", .secret_uuid = "u" };
        check_disk_roundtrip(&spec);
        g_free(s);
}

static void check_secret_roundtrip(const char *usage, const char *description) {
        char *xml = NULL;

        g_assert_cmpint(secret_xml_build(usage, description, &xml), ==, 0);
        g_assert_true(g_str_has_prefix(xml, "<secret "));
        g_assert_true(g_str_has_suffix(xml, "</secret>"));

        xmlDoc *doc = parse_plain(xml);
        xmlNode *root = xmlDocGetRootElement(doc);
        g_assert_cmpstr((const char *) root->name, ==, "secret");
        g_assert_cmpuint(count_elements(root, "secret"), ==, 1);
        g_assert_cmpuint(count_elements(root, "usage"), ==, 1);
        g_assert_cmpuint(count_elements(root, "volume"), ==, 1);
        g_assert_cmpuint(count_elements(root, "description"), ==, description && *description ? 1 : 0);
        assert_prop(root, "ephemeral", "yes");
        assert_prop(root, "private", "yes");

        if (description && *description) {
                xmlNode *desc = child(root, "description");
                g_assert_nonnull(desc);
                /* A single text node: nothing in the string became markup. */
                g_assert_nonnull(desc->children);
                g_assert_null(desc->children->next);
                g_assert_cmpint(desc->children->type, ==, XML_TEXT_NODE);
                assert_text(desc, description);
        }

        xmlNode *usage_node = child(root, "usage");
        g_assert_nonnull(usage_node);
        assert_prop(usage_node, "type", "volume");
        xmlNode *volume = child(usage_node, "volume");
        g_assert_nonnull(volume);
        g_assert_nonnull(volume->children);
        g_assert_null(volume->children->next);
        g_assert_cmpint(volume->children->type, ==, XML_TEXT_NODE);
        assert_text(volume, usage);

        xmlFreeDoc(doc);
        free(xml);
}

static void test_secret_hostile_strings(void) {
        for (size_t i = 0; i < G_N_ELEMENTS(hostile); i++) {
                check_secret_roundtrip(hostile[i], "plain");
                check_secret_roundtrip("vol-1", hostile[i]);
                check_secret_roundtrip(hostile[i], hostile[i]);
        }
        check_secret_roundtrip("vol-1", "");

        char *s = long_hostile_string(1024 * 1024);
        check_secret_roundtrip(s, s);
        g_free(s);
}

/* Strings XML 1.0 cannot carry: refused rather than mangled. */
static const char *const unrepresentable[] = {
        "\xff",
        "a\xfe",
        "\x80",
        "\xc3",
        "\xe6\x97",
        "\xf0\x9f\x99", /* invalid or truncated */
        "\xc0\xaf",
        "\xe0\x80\xaf",
        "\xf0\x80\x80\xaf", /* overlong '/' */
        "\xed\xa0\x80",
        "\xed\xbf\xbf", /* UTF-16 surrogates */
        "\xf4\x90\x80\x80",
        "\xf8\x88\x80\x80\x80", /* beyond U+10FFFF */
        "\xef\xbf\xbe",
        "\xef\xbf\xbf", /* U+FFFE, U+FFFF */
        "\x01",
        "a\x08b",
        "\x1b[31m",
        "\x1f",
        "\x7f\x01", /* C0 controls */
};

static void test_build_invalid(void) {
        static char untouched[] = "untouched";
        char *xml = untouched;
        DiskSpec ok = { .source = "/img", .target = "vdb", .bus = "virtio" };
        DiskSpec spec;

        g_assert_cmpint(disk_xml_build(NULL, &xml), ==, -EINVAL);
        g_assert_cmpint(disk_xml_build(&ok, NULL), ==, -EINVAL);

        spec = ok, spec.source = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.source = "";
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.target = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.target = "";
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.bus = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.bus = "";
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
        spec = ok, spec.secret_uuid = "";
        g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);

        for (size_t i = 0; i < G_N_ELEMENTS(unrepresentable); i++) {
                const char *s = unrepresentable[i];

                spec = ok, spec.source = s;
                g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
                spec = ok, spec.target = s;
                g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
                spec = ok, spec.bus = s;
                g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
                spec = ok, spec.secret_uuid = s;
                g_assert_cmpint(disk_xml_build(&spec, &xml), ==, -EINVAL);
                g_assert_cmpint(secret_xml_build(s, "d", &xml), ==, -EINVAL);
                g_assert_cmpint(secret_xml_build("vol", s, &xml), ==, -EINVAL);
        }

        g_assert_cmpint(secret_xml_build(NULL, "d", &xml), ==, -EINVAL);
        g_assert_cmpint(secret_xml_build("", "d", &xml), ==, -EINVAL);
        g_assert_cmpint(secret_xml_build("vol", "d", NULL), ==, -EINVAL);

        /* ret_ parameters are only written on success. */
        g_assert_true(xml == untouched);
}

/* ---- parsing ---- */

static void test_parse_live_libvirt(void) {
        DiskInfo *disks = NULL;
        size_t n = 0;

        g_assert_cmpint(domain_xml_list_disks(live_xml, &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 6);

        /* qcow2 with a backing chain: the chain's <source> is not ours. */
        g_assert_cmpstr(disks[0].target, ==, "vda");
        g_assert_cmpstr(disks[0].bus, ==, "virtio");
        g_assert_cmpstr(disks[0].device, ==, "disk");
        g_assert_cmpstr(disks[0].source, ==, "/var/lib/libvirt/images/guest1.qcow2");
        g_assert_false(disks[0].block);
        g_assert_false(disks[0].read_only);
        g_assert_false(disks[0].encrypted);
        g_assert_null(disks[0].encryption_format);
        g_assert_null(disks[0].secret_uuid);
        g_assert_cmpstr(disks[0].alias, ==, "virtio-disk0");

        /* Empty cdrom. */
        g_assert_cmpstr(disks[1].target, ==, "hdc");
        g_assert_cmpstr(disks[1].bus, ==, "ide");
        g_assert_cmpstr(disks[1].device, ==, "cdrom");
        g_assert_null(disks[1].source);
        g_assert_false(disks[1].block);
        g_assert_true(disks[1].read_only);
        g_assert_false(disks[1].encrypted);
        g_assert_cmpstr(disks[1].alias, ==, "ide0-1-0");

        /* Native LUKS, file, as libvirt 9.0 echoes it (engine='qemu'). */
        g_assert_cmpstr(disks[2].target, ==, "sdb");
        g_assert_cmpstr(disks[2].bus, ==, "scsi");
        g_assert_cmpstr(disks[2].device, ==, "disk");
        g_assert_cmpstr(disks[2].source, ==, "/srv/volumes/vol-1.luks");
        g_assert_false(disks[2].block);
        g_assert_false(disks[2].read_only);
        g_assert_true(disks[2].encrypted);
        g_assert_cmpstr(disks[2].encryption_format, ==, "luks");
        g_assert_cmpstr(disks[2].secret_uuid, ==, "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
        g_assert_cmpstr(disks[2].alias, ==, "scsi0-0-0-1");

        /* Native LUKS, block, read-only. */
        g_assert_cmpstr(disks[3].target, ==, "sdc");
        g_assert_cmpstr(disks[3].source, ==, "/dev/loop0");
        g_assert_true(disks[3].block);
        g_assert_true(disks[3].read_only);
        g_assert_true(disks[3].encrypted);
        g_assert_cmpstr(disks[3].encryption_format, ==, "luks");
        g_assert_cmpstr(disks[3].secret_uuid, ==, "6f1c3a52-2f4e-4c1b-9d0e-8a5b7c9d1e2f");
        g_assert_cmpstr(disks[3].alias, ==, "scsi0-0-0-2");

        /* Legacy placement directly under <disk>, secret by usage. */
        g_assert_cmpstr(disks[4].target, ==, "vdb");
        g_assert_cmpstr(disks[4].source, ==, "/dev/mapper/crypt-vol-2");
        g_assert_true(disks[4].block);
        g_assert_true(disks[4].encrypted);
        g_assert_cmpstr(disks[4].encryption_format, ==, "luks");
        g_assert_null(disks[4].secret_uuid);
        g_assert_cmpstr(disks[4].alias, ==, "virtio-disk1");

        /* Network disk: no host path; an RBD image is named as the
         * service's sources are (since 0.3). */
        g_assert_cmpstr(disks[5].target, ==, "vdc");
        g_assert_cmpstr(disks[5].source, ==, "rbd:pool/image");
        g_assert_true(disks[5].rbd);
        g_assert_false(disks[5].block);
        g_assert_false(disks[5].encrypted);
        g_assert_cmpstr(disks[5].alias, ==, "virtio-disk2");

        disk_info_array_free(disks, n);

        DiskInfo d = {};
        g_assert_cmpint(domain_xml_find_disk(live_xml, "sdb", &d), ==, 0);
        g_assert_cmpstr(d.target, ==, "sdb");
        g_assert_cmpstr(d.source, ==, "/srv/volumes/vol-1.luks");
        g_assert_true(d.encrypted);
        g_assert_cmpstr(d.secret_uuid, ==, "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
        disk_info_free(&d);

        g_assert_cmpint(domain_xml_find_disk(live_xml, "hdc", &d), ==, 0);
        g_assert_null(d.source);
        g_assert_cmpstr(d.device, ==, "cdrom");
        disk_info_free(&d);
        disk_info_free(&d); /* freeing twice is harmless: fields were reset */
        disk_info_free(NULL);
        disk_info_array_free(NULL, 3);

        /* The metadata element named disk with target vdz is not a disk. */
        g_assert_cmpint(domain_xml_find_disk(live_xml, "vdz", &d), ==, -ENOENT);
        g_assert_cmpint(domain_xml_find_disk(live_xml, "vd", &d), ==, -ENOENT);
        g_assert_cmpint(domain_xml_find_disk(live_xml, "sdb ", &d), ==, -ENOENT);
}

static void test_parse_edge_shapes(void) {
        DiskInfo *disks = NULL;
        size_t n = 99;

        /* No disks at all. */
        g_assert_cmpint(domain_xml_list_disks("<domain type='kvm'><devices/></domain>", &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 0);
        g_assert_null(disks);
        g_assert_cmpint(domain_xml_list_disks("<domain/>", &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 0);

        /* An XML declaration, comments, PIs, CDATA and predefined entities and
         * character references are ordinary XML; only DTDs are refused. */
        static const char decorated[] =
                "<?xml version='1.0' encoding='UTF-8'?>\n"
                "<!-- comment <disk> -->\n"
                "<?pi stuff?>\n"
                "<domain>"
                "<devices>"
                "<![CDATA[<disk><target dev='cd'/></disk>]]>"
                /* Namespaced <disk> elements belong to somebody else. */
                "<x:disk xmlns:x='urn:x'><target dev='nsdisk'/></x:disk>"
                "<disk xmlns:y='urn:y' y:type='block'>"
                /* <mirror> and <backingStore> before <source>: their sources
                 * and encryption must not be picked. */
                "<mirror type='file'><source file='/mirror'><encryption format='x'/></source></mirror>"
                "<backingStore type='file'><source file='/backing'/></backingStore>"
                "<source file='/a&amp;b&#x41;&lt;&#233;&gt;&quot;&apos;' y:file='/ns'/>"
                "<source file='/second'/>"
                "<target dev='vdq' bus='virtio'/>"
                "<readonly></readonly>"
                "</disk>"
                "</devices>"
                "<devices><disk device='lun'><target dev='sdz'/><encryption/></disk></devices>"
                "</domain>";
        g_assert_cmpint(domain_xml_list_disks(decorated, &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 2);
        g_assert_cmpstr(disks[0].target, ==, "vdq");
        g_assert_cmpstr(disks[0].device, ==, "disk"); /* libvirt's default */
        g_assert_false(disks[0].block);               /* namespaced type= ignored */
        g_assert_cmpstr(disks[0].source, ==, "/a&bA<\xc3\xa9>\"'");
        g_assert_false(disks[0].encrypted);
        g_assert_true(disks[0].read_only);
        g_assert_null(disks[0].alias);
        g_assert_cmpstr(disks[1].target, ==, "sdz");
        g_assert_null(disks[1].bus);
        g_assert_cmpstr(disks[1].device, ==, "lun");
        g_assert_null(disks[1].source);
        g_assert_true(disks[1].encrypted);
        g_assert_null(disks[1].encryption_format);
        g_assert_null(disks[1].secret_uuid);
        disk_info_array_free(disks, n);

        /* <encryption> both under <source> and under <disk>: the one under
         * <source> is what libvirt uses. */
        static const char both[] = "<domain><devices><disk type='file' device='disk'>"
                                   "<encryption format='legacy'><secret type='passphrase' uuid='old'/></encryption>"
                                   "<source file='/f'><encryption format='luks' engine='qemu'>"
                                   "<secret type='passphrase' uuid='new'/></encryption></source>"
                                   "<target dev='vdb' bus='virtio'/></disk></devices></domain>";
        DiskInfo d = {};
        g_assert_cmpint(domain_xml_find_disk(both, "vdb", &d), ==, 0);
        g_assert_cmpstr(d.encryption_format, ==, "luks");
        g_assert_cmpstr(d.secret_uuid, ==, "new");
        disk_info_free(&d);

        /* Duplicate targets: the first wins. */
        static const char dup[] = "<domain><devices>"
                                  "<disk type='file'><source file='/one'/><target dev='vdb'/></disk>"
                                  "<disk type='file'><source file='/two'/><target dev='vdb'/></disk>"
                                  "</devices></domain>";
        g_assert_cmpint(domain_xml_find_disk(dup, "vdb", &d), ==, 0);
        g_assert_cmpstr(d.source, ==, "/one");
        disk_info_free(&d);

        /* Whitespace inside attribute values, as libvirt would escape it. */
        static const char ws[] = "<domain><devices><disk type='file'><source file='&#10;a&#9;b&#13; '/>"
                                 "<target dev='vdb'/></disk></devices></domain>";
        g_assert_cmpint(domain_xml_find_disk(ws, "vdb", &d), ==, 0);
        g_assert_cmpstr(d.source, ==, "\na\tb\r ");
        disk_info_free(&d);
}

/* What libvirt 9.0 reports of a disk with a serial and discard='unmap'
 * (the start-up scan rebuilds Serial from it), and the shapes a serial
 * must not take. */
static void test_parse_serial_discard(void) {
        static const char disk[] = "<disk type='block' device='disk'>"
                                   "<driver name='qemu' type='raw' discard='unmap'/>"
                                   "<source dev='/dev/mapper/luksvol-x' index='1'/><backingStore/>"
                                   "<target dev='sdb' bus='scsi'/><serial>ABC-123_x.y</serial>"
                                   "<alias name='ua-luksvol-x'/></disk>";
        g_autofree char *dom = wrap_in_domain(disk);
        DiskInfo d = {};

        g_assert_cmpint(domain_xml_find_disk(dom, "sdb", &d), ==, 0);
        g_assert_cmpstr(d.serial, ==, "ABC-123_x.y");
        g_assert_true(d.discard);
        disk_info_free(&d);

        /* discard='ignore' passes none on; no serial element: none. */
        g_autofree char *ignore = wrap_in_domain("<disk type='file'><driver name='qemu' discard='ignore'/>"
                                                 "<source file='/x'/><target dev='vdb'/></disk>");
        g_assert_cmpint(domain_xml_find_disk(ignore, "vdb", &d), ==, 0);
        g_assert_false(d.discard);
        g_assert_null(d.serial);
        disk_info_free(&d);

        /* An empty serial is an empty string; markup inside one is not a
         * serial libvirt writes. */
        g_autofree char *empty = wrap_in_domain("<disk type='file'><source file='/x'/><target dev='vdb'/>"
                                                "<serial></serial></disk>");
        g_assert_cmpint(domain_xml_find_disk(empty, "vdb", &d), ==, 0);
        g_assert_cmpstr(d.serial, ==, "");
        disk_info_free(&d);
        g_autofree char *nested = wrap_in_domain("<disk type='file'><source file='/x'/><target dev='vdb'/>"
                                                 "<serial>a<b/>c</serial></disk>");
        g_assert_cmpint(domain_xml_find_disk(nested, "vdb", &d), ==, -EBADMSG);
}

static void test_parse_malformed(void) {
        static const char *const bad[] = {
                "",
                " ",
                "not xml",
                "<",
                "<domain>",
                "<domain><devices><disk></domain>",
                "<domain></Domain>",
                "<domain a='1' a='2'/>",
                "<domain><devices><disk type='file'><source file='/a'/><target dev='vdb'/></disk></devices></domain><x/>",
                "<?xml version='1.0'?>",
                "<?xml version='1.0'?><!-- only a comment -->",
                "<foo/>",
                "<x:domain xmlns:x='urn:x'/>",
                "<domain><devices><disk><source file='&foo;'/><target dev='vdb'/></disk></devices></domain>",
                "<domain><devices><disk><source file='&#0;'/><target dev='vdb'/></disk></devices></domain>",
                "<domain><devices><disk><source file='\xff'/><target dev='vdb'/></disk></devices></domain>",
                "<domain><devices><disk><source file='\xc0\xaf'/><target dev='vdb'/></disk></devices></domain>",
                "<domain><devices><disk><source file='a<b'/><target dev='vdb'/></disk></devices></domain>",
                "<domain><devices><disk type='file'><source file='/a'/></disk></devices></domain>",
                "<domain><devices><disk type='file'><source file='/a'/><target/></disk></devices></domain>",
                "<domain><devices><disk type='file'><source file='/a'/><target dev=''/></disk></devices></domain>",
                "<domain><devices><disk><target dev='vdb'/></disk><disk/></devices></domain>",
                "\xef\xbb\xbf\xef\xbb\xbf<domain/>",
                "<!DOCTYPE domain><domain/>",
                "<!DOCTYPE domain SYSTEM 'http://127.0.0.1:9/domain.dtd'><domain/>",
                "<!DOCTYPE domain SYSTEM '/etc/passwd'><domain/>",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                DiskInfo sentinel, d;
                DiskInfo *disks = (DiskInfo *) &sentinel;
                size_t n = 4242;

                memset(&sentinel, 0x5a, sizeof sentinel);
                d = sentinel;

                char *shown = g_strescape(bad[i], NULL);
                g_test_message("case %zu: %s", i, shown);
                g_free(shown);
                g_assert_cmpint(domain_xml_list_disks(bad[i], &disks, &n), ==, -EBADMSG);
                g_assert_true(disks == &sentinel);
                g_assert_cmpuint(n, ==, 4242);

                g_assert_cmpint(domain_xml_find_disk(bad[i], "vdb", &d), ==, -EBADMSG);
                g_assert_cmpmem(&d, sizeof d, &sentinel, sizeof sentinel);
        }
}

static void test_parse_entities(void) {
        /* Billion laughs, quadratic blow-up, external entities, parameter
         * entities: every DTD is refused before it is read, so all of these
         * fail at once instead of expanding. */
        GString *laughs = g_string_new("<?xml version='1.0'?>\n<!DOCTYPE domain [\n <!ENTITY l0 'lol'>\n");
        for (unsigned i = 1; i <= 12; i++) {
                g_string_append_printf(laughs, " <!ENTITY l%u '", i);
                for (unsigned j = 0; j < 10; j++)
                        g_string_append_printf(laughs, "&l%u;", i - 1);
                g_string_append(laughs, "'>\n");
        }
        g_string_append(laughs, "]>\n<domain><description>&l12;</description><devices>"
                                "<disk type='file' device='disk'><source file='&l12;'/>"
                                "<target dev='vdb' bus='virtio'/><alias name='&l12;'/></disk></devices></domain>");

        GString *quadratic = g_string_new("<!DOCTYPE domain [<!ENTITY a '");
        for (unsigned i = 0; i < 100000; i++)
                g_string_append_c(quadratic, 'a');
        g_string_append(quadratic, "'>]><domain><devices><disk><source file='");
        for (unsigned i = 0; i < 50000; i++)
                g_string_append(quadratic, "&a;");
        g_string_append(quadratic, "'/><target dev='vdb'/></disk></devices></domain>");

        const char *const docs[] = {
                laughs->str,
                quadratic->str,
                "<!DOCTYPE domain [<!ENTITY xxe SYSTEM 'file:///etc/hostname'>]>"
                "<domain><devices><disk><source file='&xxe;'/><target dev='vdb'/></disk></devices></domain>",
                "<!DOCTYPE domain [<!ENTITY xxe SYSTEM 'http://127.0.0.1:9/x'>]>"
                "<domain><devices><disk><source file='&xxe;'/><target dev='vdb'/></disk></devices></domain>",
                "<!DOCTYPE domain [<!ENTITY % p SYSTEM 'file:///etc/hostname'> %p;]><domain/>",
                "<!DOCTYPE domain [<!ENTITY harmless 'x'>]>"
                "<domain><devices><disk><source file='&harmless;'/><target dev='vdb'/></disk></devices></domain>",
                "<!DOCTYPE domain [<!ATTLIST source file CDATA '/etc/shadow'>]>"
                "<domain><devices><disk><source/><target dev='vdb'/></disk></devices></domain>",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(docs); i++) {
                DiskInfo *disks = NULL, d = {};
                size_t n = 0;
                gint64 t0 = g_get_monotonic_time();

                g_assert_cmpint(domain_xml_list_disks(docs[i], &disks, &n), ==, -EBADMSG);
                g_assert_cmpint(domain_xml_find_disk(docs[i], "vdb", &d), ==, -EBADMSG);
                /* Generous for sanitizer builds; an expansion would take
                 * minutes and gigabytes. */
                g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
        }

        g_string_free(laughs, TRUE);
        g_string_free(quadratic, TRUE);
}

static void test_parse_bounds(void) {
        DiskInfo *disks = NULL;
        size_t n = 0;

        /* Deep nesting stops at libxml2's depth limit, not the stack. */
        GString *deep = g_string_new("<domain><devices>");
        for (unsigned i = 0; i < 100000; i++)
                g_string_append(deep, "<a>");
        g_string_append(deep, "</devices></domain>");
        g_assert_cmpint(domain_xml_list_disks(deep->str, &disks, &n), ==, -EBADMSG);
        g_string_free(deep, TRUE);

        /* Input over the size cap is refused without parsing. */
        size_t big = 33 * 1024 * 1024;
        char *huge = g_malloc(big + 1);
        memset(huge, ' ', big);
        memcpy(huge, "<domain>", 8);
        memcpy(huge + big - 9, "</domain>", 9);
        huge[big] = '\0';
        g_assert_cmpint(domain_xml_list_disks(huge, &disks, &n), ==, -EBADMSG);
        g_free(huge);

        /* Many disks grow the array correctly. */
        GString *many = g_string_new("<domain><devices>");
        for (unsigned i = 0; i < 1000; i++)
                g_string_append_printf(many, "<disk type='block'><source dev='/dev/d%u'/><target dev='t%u'/></disk>", i,
                                       i);
        g_string_append(many, "</devices></domain>");
        g_assert_cmpint(domain_xml_list_disks(many->str, &disks, &n), ==, 0);
        g_assert_cmpuint(n, ==, 1000);
        for (unsigned i = 0; i < 1000; i++) {
                char t[32], s[32];
                snprintf(t, sizeof t, "t%u", i);
                snprintf(s, sizeof s, "/dev/d%u", i);
                g_assert_cmpstr(disks[i].target, ==, t);
                g_assert_cmpstr(disks[i].source, ==, s);
                g_assert_true(disks[i].block);
        }
        disk_info_array_free(disks, n);

        DiskInfo d = {};
        g_assert_cmpint(domain_xml_find_disk(many->str, "t999", &d), ==, 0);
        g_assert_cmpstr(d.source, ==, "/dev/d999");
        disk_info_free(&d);
        g_string_free(many, TRUE);
}

static void test_parse_invalid_args(void) {
        DiskInfo *disks = NULL, d = {};
        size_t n = 0;

        g_assert_cmpint(domain_xml_list_disks(NULL, &disks, &n), ==, -EINVAL);
        g_assert_cmpint(domain_xml_list_disks(live_xml, NULL, &n), ==, -EINVAL);
        g_assert_cmpint(domain_xml_list_disks(live_xml, &disks, NULL), ==, -EINVAL);
        g_assert_cmpint(domain_xml_find_disk(NULL, "vda", &d), ==, -EINVAL);
        g_assert_cmpint(domain_xml_find_disk(live_xml, NULL, &d), ==, -EINVAL);
        g_assert_cmpint(domain_xml_find_disk(live_xml, "", &d), ==, -EINVAL);
        g_assert_cmpint(domain_xml_find_disk(live_xml, "vda", NULL), ==, -EINVAL);
        g_assert_null(disks);
        g_assert_null(d.target);
}

static unsigned foreign_errors;

#if LIBXML_VERSION >= 21200
static void count_errors(G_GNUC_UNUSED void *ctx, G_GNUC_UNUSED const xmlError *error) {
#else
static void count_errors(G_GNUC_UNUSED void *ctx, G_GNUC_UNUSED xmlErrorPtr error) {
#endif
        foreign_errors++;
}

static void test_errors_quiet(void) {
        /* Nothing reaches stderr ... */
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        g_assert_cmpint(saved, >=, 0);
        FILE *capture = tmpfile();
        g_assert_nonnull(capture);
        g_assert_cmpint(dup2(fileno(capture), STDERR_FILENO), ==, STDERR_FILENO);

        /* ... and a handler the thread had installed is neither called nor
         * lost. */
        xmlSetStructuredErrorFunc(NULL, count_errors);

        DiskInfo *disks = NULL, d = {};
        size_t n = 0;
        static const char *const noisy[] = {
                "<domain><devices><disk>",
                "\xff\xfe<",
                "<domain>&nope;</domain>",
                "<!DOCTYPE domain [<!ENTITY a 'b'>]><domain/>",
                "<?xml version='1.0' encoding='EBCDIC-bogus'?><domain/>",
                "<?xml version='9.9'?><domain/>",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(noisy); i++) {
                (void) domain_xml_list_disks(noisy[i], &disks, &n);
                (void) domain_xml_find_disk(noisy[i], "vda", &d);
        }
        g_assert_cmpuint(foreign_errors, ==, 0);

        /* Our quiet handlers were removed again: libxml2 errors outside our
         * calls reach the thread's own handler. */
        xmlDoc *doc = xmlReadMemory("<a>", 3, NULL, NULL, XML_PARSE_NONET);
        g_assert_null(doc);
        g_assert_cmpuint(foreign_errors, >, 0);
        xmlSetStructuredErrorFunc(NULL, NULL);

        fflush(stderr);
        g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
        close(saved);
        struct stat st;
        g_assert_cmpint(fstat(fileno(capture), &st), ==, 0);
        g_assert_cmpint(st.st_size, ==, 0);
        fclose(capture);
}

/* ---- allocation failures inside libxml2 ---- */

/* Fails the n-th libxml2 allocation from now (counting from 0); -1: never. */
static long alloc_budget = -1;

static bool alloc_fails(void) {
        if (alloc_budget < 0)
                return false;
        if (alloc_budget == 0)
                return true;
        alloc_budget--;
        return false;
}

static void *failing_malloc(size_t n) {
        return alloc_fails() ? NULL : malloc(n);
}

static void *failing_realloc(void *p, size_t n) {
        return alloc_fails() ? NULL : realloc(p, n);
}

static char *failing_strdup(const char *s) {
        return alloc_fails() ? NULL : strdup(s);
}

static void test_oom(void) {
        /* Every libxml2 allocation failing in turn: each call returns either
         * -ENOMEM or the complete, correct answer — never a truncated
         * document (libxml2 2.9 keeps wellFormed set after an allocation
         * failure in its tree builder, so a parse could otherwise "succeed"
         * with disks missing), never a leak (run under ASan). */
        xmlFreeFunc old_free;
        xmlMallocFunc old_malloc;
        xmlReallocFunc old_realloc;
        xmlStrdupFunc old_strdup;
        g_assert_cmpint(xmlMemGet(&old_free, &old_malloc, &old_realloc, &old_strdup), ==, 0);
        g_assert_cmpint(xmlMemSetup(free, failing_malloc, failing_realloc, failing_strdup), ==, 0);

        DiskSpec spec = {
                .source = "/a<&>\xc3\xa9", .target = "sdb", .bus = "scsi", .secret_uuid = "u", .read_only = true
        };
        char *want_disk = NULL, *want_secret = NULL;
        g_assert_cmpint(disk_xml_build(&spec, &want_disk), ==, 0);
        g_assert_cmpint(secret_xml_build("id", "d<>\xc3\xa9", &want_secret), ==, 0);

        for (long i = 0;; i++) {
                char *xml = NULL;
                DiskInfo *disks = NULL, d = {};
                size_t n = 0;
                int a, b, c, e;

                alloc_budget = i;
                a = disk_xml_build(&spec, &xml);
                alloc_budget = -1;
                g_assert_true(a == -ENOMEM || (a == 0 && g_str_equal(xml, want_disk)));
                free(xml);
                xml = NULL;

                alloc_budget = i;
                b = secret_xml_build("id", "d<>\xc3\xa9", &xml);
                alloc_budget = -1;
                g_assert_true(b == -ENOMEM || (b == 0 && g_str_equal(xml, want_secret)));
                free(xml);

                alloc_budget = i;
                c = domain_xml_list_disks(live_xml, &disks, &n);
                alloc_budget = -1;
                g_assert_true(c == -ENOMEM || (c == 0 && n == 6));
                if (c == 0)
                        disk_info_array_free(disks, n);

                alloc_budget = i;
                e = domain_xml_find_disk(live_xml, "sdb", &d);
                alloc_budget = -1;
                g_assert_true(e == -ENOMEM ||
                              (e == 0 && g_str_equal(d.secret_uuid, "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f")));
                if (e == 0)
                        disk_info_free(&d);

                if (a == 0 && b == 0 && c == 0 && e == 0)
                        break; /* the budget now covers every allocation */
                g_assert_cmpint(i, <, 100000);
        }

        free(want_disk);
        free(want_secret);
        g_assert_cmpint(xmlMemSetup(old_free, old_malloc, old_realloc, old_strdup), ==, 0);
}

/* ---- threads ---- */

static gpointer thread_main(gpointer data) {
        unsigned id = GPOINTER_TO_UINT(data);

        for (unsigned i = 0; i < 200; i++) {
                char target[32], source[64];
                snprintf(target, sizeof target, "vd%u_%u", id, i);
                snprintf(source, sizeof source, "/img/<%u>&'%u'", id, i);
                DiskSpec spec = {
                        .block = i & 1,
                        .source = source,
                        .target = target,
                        .bus = "virtio",
                        .secret_uuid = (i & 2) ? "u" : NULL,
                        .read_only = i & 4,
                };
                check_disk_roundtrip(&spec);

                DiskInfo *disks = NULL;
                size_t n = 0;
                g_assert_cmpint(domain_xml_list_disks(live_xml, &disks, &n), ==, 0);
                g_assert_cmpuint(n, ==, 6);
                disk_info_array_free(disks, n);
                g_assert_cmpint(domain_xml_list_disks("<domain><devices>", &disks, &n), ==, -EBADMSG);
        }
        return NULL;
}

static void test_threads(void) {
        GThread *threads[8];

        for (unsigned i = 0; i < G_N_ELEMENTS(threads); i++)
                threads[i] = g_thread_new("disk-xml", thread_main, GUINT_TO_POINTER(i));
        for (unsigned i = 0; i < G_N_ELEMENTS(threads); i++)
                g_thread_join(threads[i]);
}

/* live_xml's disks: vda, hdc, sdb, sdc, vdb, vdc. */
/* The _running variants: running or not from the root's id (what
 * virDomainIsActive() says), in the same parse as the query. */
static void test_running(void) {
        static const char *const running[] = {
                "<domain type='qemu' id='7'><name>g</name><devices><disk><target dev='sda'/></disk></devices></domain>",
                "<domain type='qemu' id='0'><devices><disk><target dev='sda'/></disk></devices></domain>",
        };
        static const char *const stopped[] = {
                /* A stopped domain's XML (its configuration) has no id. */
                "<domain type='qemu'><name>g</name><devices><disk><target dev='sda'/></disk></devices></domain>",
                "<domain type='qemu' id='-1'><devices><disk><target dev='sda'/></disk></devices></domain>",
                "<domain type='qemu' id=''><devices><disk><target dev='sda'/></disk></devices></domain>",
                /* An id elsewhere is not the domain's. */
                "<domain><devices><disk id='3'><target dev='sda'/></disk></devices></domain>",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(running); i++) {
                DiskInfo d = {};
                char *t = NULL;

                g_assert_cmpint(domain_xml_find_disk_running(running[i], "sda", &d), ==, 0);
                g_assert_cmpstr(d.target, ==, "sda");
                disk_info_free(&d);
                g_assert_cmpint(domain_xml_find_disk_running(running[i], "sdb", &d), ==, -ENOENT);
                g_assert_cmpint(domain_xml_pick_target_running(running[i], NULL, "scsi", &t), ==, 0);
                g_assert_cmpstr(t, ==, "sdb");
                free(t);
                g_assert_cmpint(domain_xml_pick_target_running(running[i], "sda", "scsi", &t), ==, -EEXIST);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(stopped); i++) {
                DiskInfo d = {};
                char *t = NULL;

                g_assert_cmpint(domain_xml_find_disk_running(stopped[i], "sda", &d), ==, -ESRCH);
                g_assert_cmpint(domain_xml_pick_target_running(stopped[i], NULL, "scsi", &t), ==, -ESRCH);
                g_assert_null(t);
                /* The variants that do not ask answer as before. */
                g_assert_cmpint(domain_xml_find_disk(stopped[i], "sda", &d), ==, 0);
                disk_info_free(&d);
        }
        /* Malformed stays malformed, running or not. */
        DiskInfo d = {};
        char *t = NULL;
        g_assert_cmpint(domain_xml_find_disk_running("<domain type='qemu' id='7'", "sda", &d), ==, -EBADMSG);
        g_assert_cmpint(domain_xml_pick_target_running("<notadomain id='7'/>", NULL, "scsi", &t), ==, -EBADMSG);
        g_assert_cmpint(domain_xml_pick_target_running(NULL, NULL, "scsi", &t), ==, -EINVAL);
}

static void test_pick_target(void) {
        char *t = NULL;

        g_assert_cmpint(domain_xml_pick_target(live_xml, "sdb", "scsi", &t), ==, -EEXIST);
        g_assert_null(t);
        g_assert_cmpint(domain_xml_pick_target(live_xml, "sdd", "scsi", &t), ==, 0);
        g_assert_cmpstr(t, ==, "sdd");
        g_free(t);
        t = NULL;
        g_assert_cmpint(domain_xml_pick_target(live_xml, NULL, "scsi", &t), ==, 0);
        g_assert_cmpstr(t, ==, "sda");
        g_free(t);
        t = NULL;
        g_assert_cmpint(domain_xml_pick_target(live_xml, NULL, "virtio", &t), ==, 0);
        g_assert_cmpstr(t, ==, "vdd");
        g_free(t);
        t = NULL;
        g_assert_cmpint(domain_xml_pick_target("<domain><devices><disk>", NULL, "virtio", &t), ==, -EBADMSG);
        g_assert_null(t);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        /* As the daemon does in main(), before any thread. */
        disk_xml_init();

        g_test_add_func("/disk-xml/build/exact-output", test_build_exact_output);
        g_test_add_func("/disk-xml/build/roundtrip", test_build_roundtrip_combinations);
        g_test_add_func("/disk-xml/build/alias", test_build_alias);
        g_test_add_func("/disk-xml/build/rbd", test_build_rbd);
        g_test_add_func("/disk-xml/build/hostile-strings", test_build_hostile_strings);
        g_test_add_func("/disk-xml/build/long-strings", test_build_long_strings);
        g_test_add_func("/disk-xml/build/secret-hostile-strings", test_secret_hostile_strings);
        g_test_add_func("/disk-xml/build/invalid", test_build_invalid);
        g_test_add_func("/disk-xml/parse/live-libvirt", test_parse_live_libvirt);
        g_test_add_func("/disk-xml/parse/edge-shapes", test_parse_edge_shapes);
        g_test_add_func("/disk-xml/parse/serial-discard", test_parse_serial_discard);
        g_test_add_func("/disk-xml/parse/malformed", test_parse_malformed);
        g_test_add_func("/disk-xml/parse/entities", test_parse_entities);
        g_test_add_func("/disk-xml/parse/bounds", test_parse_bounds);
        g_test_add_func("/disk-xml/parse/invalid-args", test_parse_invalid_args);
        g_test_add_func("/disk-xml/parse/oom", test_oom);
        g_test_add_func("/disk-xml/errors-quiet", test_errors_quiet);
        g_test_add_func("/disk-xml/threads", test_threads);
        g_test_add_func("/disk-xml/pick-target", test_pick_target);
        g_test_add_func("/disk-xml/running", test_running);

        return g_test_run();
}
