/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* migrate's view of the guest's domain XML.
 *
 * A cryptsetup-mode or header-shim volume reaches QEMU as a device-mapper
 * device, and the destination's service prepares its own when it stages the
 * volume.  That device may have another name than the source's: a
 * destination service with DeviceTag= names its devices differently, and
 * several libvirt hosts on one kernel (containers, the test sandbox) cannot
 * share a name at all.  The guest's XML on the destination must then name
 * the destination's device, so migrate rewrites the <source dev> of those
 * disks and hands the result to libvirt as VIR_MIGRATE_PARAM_DEST_XML.
 *
 * The document comes from the source's libvirtd; it is parsed with libxml2
 * (no network, no DTD: one is refused, so no entity is ever defined) and
 * changed only through the tree, so a device name is an attribute value the
 * serializer escapes, never markup. */

#include <limits.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "migrate-xml.h"
#include "xml-node.h"

/* A malloc()ed copy of n's un-namespaced attribute name, or NULL if it has
 * none. */
static int attr_dup(xmlNode *n, const char *name, char **ret) {
        xmlChar *v;
        char *s;

        *ret = NULL;
        if (!xmlHasNsProp(n, BAD_CAST name, NULL))
                return 0;
        /* Present, so NULL here can only be an allocation failure. */
        v = xmlGetNoNsProp(n, BAD_CAST name);
        if (!v)
                return -ENOMEM;
        s = strdup((const char *) v);
        xmlFree(v);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int attr_is(xmlNode *n, const char *name, const char *value) {
        xmlChar *v;
        int r;

        if (!xmlHasNsProp(n, BAD_CAST name, NULL))
                return 0;
        /* Present, so NULL here can only be an allocation failure. */
        v = xmlGetNoNsProp(n, BAD_CAST name);
        if (!v)
                return -ENOMEM;
        r = streq((const char *) v, value);
        xmlFree(v);
        return r;
}

/* domain/devices/disk with <target dev='target'/>: libvirt keeps targets
 * unique within a domain. */
static int find_disk(xmlDoc *doc, const char *target, xmlNode **ret) {
        xmlNode *root = xmlDocGetRootElement(doc);

        for (xmlNode *devices = root->children; devices; devices = devices->next) {
                if (!xml_node_is(devices, "devices"))
                        continue;
                for (xmlNode *disk = devices->children; disk; disk = disk->next) {
                        xmlNode *t = xml_node_is(disk, "disk") ? xml_first_child(disk, "target") : NULL;
                        int r;

                        if (!t)
                                continue;
                        r = attr_is(t, "dev", target);
                        if (r < 0)
                                return r;
                        if (r > 0) {
                                *ret = disk;
                                return 0;
                        }
                }
        }
        return -ENOENT;
}

int migrate_xml_parse(const char *xml, xmlDoc **ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        size_t len = strlen(xml);
        xmlNode *root;

        if (len > INT_MAX)
                return -EBADMSG;
        xmlResetLastError();
        /* NOERROR/NOWARNING: the caller reports the failure as one line. */
        doc = xmlReadMemory(xml, (int) len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                const xmlError *e = xmlGetLastError();
                return e && e->code == XML_ERR_NO_MEMORY ? -ENOMEM : -EBADMSG;
        }
        root = xmlDocGetRootElement(doc);
        /* libvirt never writes a DOCTYPE; without one no entity exists. */
        if (xmlGetIntSubset(doc) || !root || !xml_node_is(root, "domain"))
                return -EBADMSG;
        *ret = TAKE_PTR(doc);
        return 0;
}

int migrate_xml_disk(xmlDoc *doc, const char *target, char **ret_source_dev, bool *ret_discard) {
        xmlNode *disk, *source, *driver;
        int r, discard = 0;

        r = find_disk(doc, target, &disk);
        if (r < 0)
                return r;
        driver = xml_first_child(disk, "driver");
        if (driver && ret_discard) {
                discard = attr_is(driver, "discard", "unmap");
                if (discard < 0)
                        return discard;
        }
        /* Last: nothing can fail after the copy. */
        source = xml_first_child(disk, "source");
        if (ret_source_dev) {
                *ret_source_dev = NULL;
                if (source) {
                        r = attr_dup(source, "dev", ret_source_dev);
                        if (r < 0)
                                return r;
                }
        }
        if (ret_discard)
                *ret_discard = discard > 0;
        return 0;
}

/* Device paths are the destination service's answer: anything but a plain
 * absolute path (printable ASCII, as device-mapper names are) is refused
 * rather than written into the guest's definition. */
static bool dev_valid(const char *dev) {
        if (dev[0] != '/')
                return false;
        for (const char *p = dev; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

int migrate_xml_set_source_dev(xmlDoc *doc, const char *target, const char *dev) {
        xmlNode *disk, *source;
        int r;

        if (!dev_valid(dev))
                return -EINVAL;
        r = find_disk(doc, target, &disk);
        if (r < 0)
                return r;
        /* <source dev> means a device only in a type='block' disk. */
        r = attr_is(disk, "type", "block");
        if (r < 0)
                return r;
        source = xml_first_child(disk, "source");
        if (r == 0 || !source)
                return -EMEDIUMTYPE;
        if (!xmlSetProp(source, BAD_CAST "dev", BAD_CAST dev))
                return -ENOMEM;
        return 0;
}

int migrate_xml_format(xmlDoc *doc, char **ret) {
        xmlChar *buf = NULL;
        char *s;
        int len = 0;

        /* Unformatted: the rest of the document stays as libvirt wrote it. */
        xmlDocDumpMemory(doc, &buf, &len);
        if (!buf)
                return -ENOMEM;
        s = strndup((const char *) buf, len);
        /* It may carry graphics passwords (see verbs-migrate.c). */
        explicit_bzero(buf, len);
        xmlFree(buf);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}
