/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Building libvirt XML with libxml2 (parsing: domain-xml.c).
 *
 * Building: every caller-supplied string becomes an attribute value
 * (xmlNewProp) or a text node (xmlNewTextChild); the serializer escapes it.
 * Nothing is ever pasted into markup.  Output is just the root element
 * (<disk>…</disk> or <secret>…</secret>), without an XML declaration and
 * without a trailing newline; libvirt accepts that, and it keeps the strings
 * easy to embed in logs.  Non-ASCII characters come out as character
 * references, so the output is plain ASCII whatever the input.
 *
 * Errors: -EINVAL for bad arguments (including strings XML 1.0 cannot
 * carry), -EBADMSG for anything that is not a well-formed, DTD-free
 * <domain> document whose disks all have <target dev>, -ENOMEM when an
 * allocation fails anywhere, libxml2 included.  libxml2 reports its own
 * allocation failures through the error handler rather than always failing
 * the parse, so the parser's errors are recorded and any error fails it.
 *
 * Threads: the daemon calls these from worker threads.  libxml2 (2.9, built
 * with thread support as distributions ship it) is thread-safe once
 * xmlInitParser() has run, but that first call is not; see
 * disk_xml_init().  Error handlers are per-thread state in libxml2, so the
 * quiet handlers installed around each call affect only the calling thread
 * and are restored afterwards. */

#include <pthread.h>
#include <stdint.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>

#include "disk-xml.h"
#include "xml-internal.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlBufferPtr, xmlBufferFree);

/* ---- library set-up and error silencing ---- */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void) {
        /* Checks header/library compatibility and runs xmlInitParser(). */
        LIBXML_TEST_VERSION;
}

void disk_xml_init(void) {
        /* pthread_once makes concurrent first calls from our own threads
         * safe; it cannot protect against another library initializing
         * libxml2 at the same moment, hence the advice to call this from
         * main() before any thread starts. */
        (void) pthread_once(&xml_once, xml_init_once);
}

static void quiet_generic(_unused_ void *ctx, _unused_ const char *msg, ...) {
}

#if LIBXML_VERSION >= 21200
static void quiet_structured(_unused_ void *ctx, _unused_ const xmlError *error) {
}
#else
static void quiet_structured(_unused_ void *ctx, _unused_ xmlErrorPtr error) {
}
#endif

QuietErrors quiet_errors_push(void) {
        QuietErrors q = {
                .generic = xmlGenericError,
                .generic_ctx = xmlGenericErrorContext,
                .structured = xmlStructuredError,
                .structured_ctx = xmlStructuredErrorContext,
        };

        /* A structured handler takes precedence for most errors; the
         * generic one catches the few paths that bypass it. */
        xmlSetGenericErrorFunc(NULL, quiet_generic);
        xmlSetStructuredErrorFunc(NULL, quiet_structured);
        return q;
}

void quiet_errors_restore_structured(void) {
        xmlSetStructuredErrorFunc(NULL, quiet_structured);
}

void quiet_errors_pop(QuietErrors *q) {
        xmlSetGenericErrorFunc(q->generic_ctx, q->generic);
        xmlSetStructuredErrorFunc(q->structured_ctx, q->structured);
}

/* ---- building ---- */

/* True if s is strict UTF-8 (no overlong forms, surrogates or code points
 * beyond U+10FFFF) made only of characters XML 1.0 can carry.  Anything else
 * (a stray Latin-1 byte in a path, a control character) cannot be written as
 * well-formed XML at all, so we refuse it instead of letting the serializer
 * guess. */
static bool xml_string_valid(const char *s) {
        const uint8_t *p = (const uint8_t *) s;

        while (*p) {
                uint32_t c;
                size_t n;

                if (*p < 0x80) {
                        c = *p;
                        n = 1;
                } else if ((*p & 0xe0) == 0xc0) {
                        c = *p & 0x1f;
                        n = 2;
                } else if ((*p & 0xf0) == 0xe0) {
                        c = *p & 0x0f;
                        n = 3;
                } else if ((*p & 0xf8) == 0xf0) {
                        c = *p & 0x07;
                        n = 4;
                } else
                        return false;

                for (size_t i = 1; i < n; i++) {
                        if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
                                return false;
                        c = (c << 6) | (p[i] & 0x3f);
                }

                if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000))
                        return false; /* overlong */

                /* XML 1.0 Char production. */
                if (!(c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) ||
                      (c >= 0x10000 && c <= 0x10ffff)))
                        return false;

                p += n;
        }
        return true;
}

static bool field_valid(const char *s) {
        return !isempty(s) && xml_string_valid(s);
}

/* Serializes the document's root element alone into a malloc()ed string. */
static int dump_root(xmlDoc *doc, char **ret) {
        _cleanup_(xmlBufferFreep) xmlBuffer *buf = NULL;
        xmlSaveCtxt *save;
        long r;
        int k;

        buf = xmlBufferCreate();
        if (!buf)
                return -ENOMEM;

        /* Encoding NULL: non-ASCII is written as character references. */
        save = xmlSaveToBuffer(buf, NULL, XML_SAVE_NO_DECL);
        if (!save)
                return -ENOMEM;

        r = xmlSaveDoc(save, doc);
        k = xmlSaveClose(save);
        if (r < 0 || k < 0)
                return -ENOMEM; /* input was validated; only allocation can fail here */

        const char *content = (const char *) xmlBufferContent(buf);
        int len = xmlBufferLength(buf);
        if (!content || len <= 0)
                return -ENOMEM;

        /* The serializer ends the document with a newline; drop it. */
        while (len > 0 && content[len - 1] == '\n')
                len--;

        char *s = strndup(content, (size_t) len);
        if (!s)
                return -ENOMEM;

        *ret = s;
        return 0;
}

static xmlNode *new_element(xmlNode *parent, const char *name) {
        return xmlNewChild(parent, NULL, BAD_CAST name, NULL);
}

/* Attribute values are stored verbatim by xmlNewProp (no entity parsing),
 * and escaped on output. */
static int set_attr(xmlNode *node, const char *name, const char *value) {
        return xmlNewProp(node, BAD_CAST name, BAD_CAST value) ? 0 : -ENOMEM;
}

static xmlDoc *new_doc_with_root(const char *root_name, xmlNode **ret_root) {
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
        if (!doc)
                return NULL;

        xmlNode *root = xmlNewDocNode(doc, NULL, BAD_CAST root_name, NULL);
        if (!root) {
                xmlFreeDoc(doc);
                return NULL;
        }
        xmlDocSetRootElement(doc, root);

        *ret_root = root;
        return doc;
}

/* protocol='rbd' name=…, then how QEMU's librbd reaches the cluster: the
 * host's Ceph configuration (monitors) and a libvirt 'ceph' secret holding
 * the client's key, so no key is ever in the XML or on the bus. */
static int rbd_source_build(xmlNode *source, const DiskSpec *spec) {
        int r;

        if ((r = set_attr(source, "protocol", "rbd")) < 0 || (r = set_attr(source, "name", spec->rbd_name)) < 0)
                return r;
        if (spec->ceph_config) {
                xmlNode *config = new_element(source, "config");
                if (!config)
                        return -ENOMEM;
                if ((r = set_attr(config, "file", spec->ceph_config)) < 0)
                        return r;
        }
        if (spec->ceph_secret_uuid) {
                xmlNode *auth = new_element(source, "auth"), *secret;
                if (!auth)
                        return -ENOMEM;
                if (spec->ceph_user && (r = set_attr(auth, "username", spec->ceph_user)) < 0)
                        return r;
                secret = new_element(auth, "secret");
                if (!secret)
                        return -ENOMEM;
                if ((r = set_attr(secret, "type", "ceph")) < 0 ||
                    (r = set_attr(secret, "uuid", spec->ceph_secret_uuid)) < 0)
                        return r;
        }
        return 0;
}

int disk_xml_build(const DiskSpec *spec, char **ret_xml) {
        xmlNode *disk, *driver, *source, *target;
        int r;

        if (!spec || !ret_xml)
                return -EINVAL;
        if (!field_valid(spec->rbd_name ? spec->rbd_name : spec->source) || !field_valid(spec->target) ||
            !field_valid(spec->bus))
                return -EINVAL;
        if ((spec->ceph_config && !field_valid(spec->ceph_config)) ||
            (spec->ceph_user && !field_valid(spec->ceph_user)) ||
            (spec->ceph_secret_uuid && !field_valid(spec->ceph_secret_uuid)))
                return -EINVAL;
        if (spec->secret_uuid && !field_valid(spec->secret_uuid))
                return -EINVAL;
        if (spec->alias && !field_valid(spec->alias))
                return -EINVAL;
        if (spec->serial && !field_valid(spec->serial))
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        _cleanup_(xmlFreeDocp) xmlDoc *doc = new_doc_with_root("disk", &disk);
        if (!doc)
                return -ENOMEM;

        if ((r = set_attr(disk, "type",
                          spec->rbd_name ? "network"
                          : spec->block  ? "block"
                                         : "file")) < 0 ||
            (r = set_attr(disk, "device", "disk")) < 0)
                return r;

        driver = new_element(disk, "driver");
        if (!driver)
                return -ENOMEM;
        if ((r = set_attr(driver, "name", "qemu")) < 0 || (r = set_attr(driver, "type", "raw")) < 0)
                return r;
        if (spec->discard && (r = set_attr(driver, "discard", "unmap")) < 0)
                return r;

        source = new_element(disk, "source");
        if (!source)
                return -ENOMEM;
        if (spec->rbd_name)
                r = rbd_source_build(source, spec);
        else
                r = set_attr(source, spec->block ? "dev" : "file", spec->source);
        if (r < 0)
                return r;

        if (spec->secret_uuid) {
                /* Under <source>, where libvirt ≥ 7 expects it for native
                 * QEMU decryption (the legacy place is under <disk>). */
                xmlNode *encryption = new_element(source, "encryption");
                if (!encryption)
                        return -ENOMEM;
                if ((r = set_attr(encryption, "format", "luks")) < 0)
                        return r;

                xmlNode *secret = new_element(encryption, "secret");
                if (!secret)
                        return -ENOMEM;
                if ((r = set_attr(secret, "type", "passphrase")) < 0 ||
                    (r = set_attr(secret, "uuid", spec->secret_uuid)) < 0)
                        return r;
        }

        target = new_element(disk, "target");
        if (!target)
                return -ENOMEM;
        if ((r = set_attr(target, "dev", spec->target)) < 0 || (r = set_attr(target, "bus", spec->bus)) < 0)
                return r;

        if (spec->read_only && !new_element(disk, "readonly"))
                return -ENOMEM;

        /* A text node (xmlNewTextChild escapes; xmlNewChild would parse
         * entity references in it). */
        if (spec->serial && !xmlNewTextChild(disk, NULL, BAD_CAST "serial", BAD_CAST spec->serial))
                return -ENOMEM;

        if (spec->alias) {
                xmlNode *alias = new_element(disk, "alias");
                if (!alias)
                        return -ENOMEM;
                if ((r = set_attr(alias, "name", spec->alias)) < 0)
                        return r;
        }

        return dump_root(doc, ret_xml);
}

int secret_xml_build_with_uuid(const char *uuid, const char *usage_id, const char *description, char **ret_xml) {
        xmlNode *secret, *usage;
        int r;

        if (!ret_xml || !field_valid(usage_id) || (uuid && !uuid_valid(uuid)))
                return -EINVAL;
        /* The description is optional: NULL or "" leaves it out. */
        if (description && !xml_string_valid(description))
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        _cleanup_(xmlFreeDocp) xmlDoc *doc = new_doc_with_root("secret", &secret);
        if (!doc)
                return -ENOMEM;

        /* Ephemeral: never written to libvirt's disk; private: the value
         * cannot be read back through the API. */
        if ((r = set_attr(secret, "ephemeral", "yes")) < 0 || (r = set_attr(secret, "private", "yes")) < 0)
                return r;

        /* xmlNewTextChild, not xmlNewChild: the latter parses its content
         * argument for entity references. */
        /* A given UUID: the secret a saved domain's disk names, defined
         * again (libvirt picks one otherwise). */
        if (uuid && !xmlNewTextChild(secret, NULL, BAD_CAST "uuid", BAD_CAST uuid))
                return -ENOMEM;
        if (!isempty(description) && !xmlNewTextChild(secret, NULL, BAD_CAST "description", BAD_CAST description))
                return -ENOMEM;

        usage = new_element(secret, "usage");
        if (!usage)
                return -ENOMEM;
        if ((r = set_attr(usage, "type", "volume")) < 0)
                return r;
        if (!xmlNewTextChild(usage, NULL, BAD_CAST "volume", BAD_CAST usage_id))
                return -ENOMEM;

        return dump_root(doc, ret_xml);
}

int secret_xml_build(const char *usage_id, const char *description, char **ret_xml) {
        return secret_xml_build_with_uuid(NULL, usage_id, description, ret_xml);
}
