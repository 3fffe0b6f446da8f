/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Building and parsing libvirt XML with libxml2.
 *
 * Building: every caller-supplied string becomes an attribute value
 * (xmlNewProp) or a text node (xmlNewTextChild); the serializer escapes it.
 * Nothing is ever pasted into markup.  Output is just the root element
 * (<disk>…</disk> or <secret>…</secret>), without an XML declaration and
 * without a trailing newline; libvirt accepts that, and it keeps the strings
 * easy to embed in logs.  Non-ASCII characters come out as character
 * references, so the output is plain ASCII whatever the input.
 *
 * Parsing: the domain XML comes from libvirtd, but we treat it as hostile
 * anyway because it echoes strings other parties chose (paths, aliases,
 * metadata).  The parser never loads anything from the network or disk,
 * never substitutes entities, and refuses any document that has a DOCTYPE
 * at all: libvirt never emits one, and without a DTD there are no entities
 * to expand (billion laughs, external entities) — an undeclared entity
 * reference is a fatal well-formedness error.  The DOCTYPE is refused from
 * a SAX hook the moment the parser sees it, before the internal subset is
 * even read.  libxml2's own limits (no XML_PARSE_HUGE) bound nesting depth
 * and node sizes; we bound the input size.
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
#include "util.h"
#include "volume-id.h"

/* Far beyond any real domain XML (hundreds of disks and NICs stay well under
 * a megabyte), small enough that a runaway input cannot pin a worker. */
#define DOMAIN_XML_SIZE_MAX (32U * 1024U * 1024U)

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDocPtr, xmlFreeDoc);
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlParserCtxtPtr, xmlFreeParserCtxt);
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

/* The calling thread's libxml2 error handlers, saved so that we can put back
 * whatever the thread had (libvirt or a test may have installed its own). */
typedef struct QuietErrors {
        xmlGenericErrorFunc generic;
        void *generic_ctx;
        xmlStructuredErrorFunc structured;
        void *structured_ctx;
} QuietErrors;

static QuietErrors quiet_errors_push(void) {
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

static void quiet_errors_pop(QuietErrors *q) {
        xmlSetGenericErrorFunc(q->generic_ctx, q->generic);
        xmlSetStructuredErrorFunc(q->structured_ctx, q->structured);
}

#define QUIET_XML_ERRORS _cleanup_(quiet_errors_pop) _unused_ QuietErrors _quiet_ = quiet_errors_push()

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

int disk_xml_build(const DiskSpec *spec, char **ret_xml) {
        xmlNode *disk, *driver, *source, *target;
        int r;

        if (!spec || !ret_xml)
                return -EINVAL;
        if (!field_valid(spec->source) || !field_valid(spec->target) || !field_valid(spec->bus))
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

        if ((r = set_attr(disk, "type", spec->block ? "block" : "file")) < 0 ||
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

/* ---- parsing ---- */

/* Frees the strings a DiskInfo owns (not the struct itself: find_disk fills
 * a caller-owned one) and resets it, so a second call is harmless. */
void disk_info_free(DiskInfo *d) {
        if (!d)
                return;
        free(d->target);
        free(d->bus);
        free(d->device);
        free(d->source);
        free(d->encryption_format);
        free(d->secret_uuid);
        free(d->alias);
        free(d->serial);
        strv_free(d->other_sources);
        *d = (DiskInfo){};
}

bool disk_info_is_ours(const DiskInfo *d, const char *domain_uuid, const char *target) {
        _cleanup_free_ char *alias = NULL;

        return disk_alias_build(domain_uuid, target, &alias) >= 0 && streq_ptr(d->alias, alias);
}

void disk_info_array_free(DiskInfo *d, size_t n) {
        if (!d)
                return;
        for (size_t i = 0; i < n; i++)
                disk_info_free(d + i);
        free(d);
}

/* libvirt's elements live in no namespace; a namespaced <x:disk> (say in
 * <metadata>) is somebody else's and must not match. */
static bool node_is(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

static xmlNode *first_child(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent->children; c; c = c->next)
                if (node_is(c, name))
                        return c;
        return NULL;
}

/* The text nodes from first on, concatenated, into a malloc()ed string; a
 * node of any other kind (an entity reference, an element) → -EBADMSG. */
static int text_nodes_dup(const xmlNode *first, char **ret) {
        size_t len = 0;
        char *s, *p;

        for (const xmlNode *c = first; c; c = c->next) {
                if (c->type != XML_TEXT_NODE)
                        return -EBADMSG;
                len += c->content ? strlen((const char *) c->content) : 0;
        }

        s = p = malloc(len + 1);
        if (!s)
                return -ENOMEM;
        for (const xmlNode *c = first; c; c = c->next)
                if (c->content)
                        p = stpcpy(p, (const char *) c->content);
        *p = '\0';

        *ret = s;
        return 0;
}

/* Copies the value of the un-namespaced attribute name into a malloc()ed
 * string, or NULL if there is no such attribute.  We read the attribute's
 * text children ourselves rather than calling xmlGetProp(), which would
 * expand entity references; with DTDs refused there should be none, and if
 * one shows up anyway the document is rejected. */
static int attr_dup(const xmlNode *n, const char *name, char **ret) {
        for (const xmlAttr *a = n->properties; a; a = a->next)
                if (!a->ns && xmlStrEqual(a->name, BAD_CAST name))
                        return text_nodes_dup(a->children, ret);

        *ret = NULL;
        return 0;
}

/* The text of an element into a malloc()ed string; anything but text
 * inside it makes the document invalid. */
static int text_dup(const xmlNode *n, char **ret) {
        return text_nodes_dup(n->children, ret);
}

/* The host path of a <source> under an element whose type attribute (or,
 * for a <mirror>, its own file= attribute) says file or block; NULL for
 * other types. */
static int host_path_of(xmlNode *holder, char **ret) {
        _cleanup_free_ char *type = NULL;
        xmlNode *source;
        int r;

        *ret = NULL;
        r = attr_dup(holder, "type", &type);
        if (r < 0)
                return r;
        source = first_child(holder, "source");
        if (!source)
                return 0;
        if (streq_ptr(type, "block"))
                return attr_dup(source, "dev", ret);
        if (!type || streq(type, "file"))
                return attr_dup(source, "file", ret);
        return 0;
}

static int strv_push(char ***l, size_t *n, char *s) {
        char **p = reallocarray(*l, *n + 2, sizeof(char *));
        if (!p)
                return -ENOMEM;
        p[(*n)++] = s;
        p[*n] = NULL;
        *l = p;
        return 0;
}

/* Depth bound for <backingStore> chains: libvirt's own limit is far below. */
#define BACKING_CHAIN_MAX 64

static int other_sources_from_node(xmlNode *disk, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        xmlNode *node = disk, *bs;
        int r;

        for (unsigned depth = 0; depth < BACKING_CHAIN_MAX && (bs = first_child(node, "backingStore")); depth++) {
                char *path;

                r = host_path_of(bs, &path);
                if (r < 0)
                        return r;
                if (path && strv_push(&l, &n, path) < 0) {
                        free(path);
                        return -ENOMEM;
                }
                node = bs;
        }

        xmlNode *mirror = first_child(disk, "mirror");
        if (mirror) {
                char *path;

                r = host_path_of(mirror, &path);
                if (r < 0)
                        return r;
                if (path && strv_push(&l, &n, path) < 0) {
                        free(path);
                        return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(l);
        return 0;
}

/* Fills d from one <disk> element whose type attribute is type (NULL if
 * absent); on failure d holds what was filled so far, for the caller to
 * free. */
static int disk_fill(xmlNode *node, const char *type, DiskInfo *d) {
        xmlNode *source = NULL, *target = NULL, *alias = NULL, *encryption = NULL, *legacy_encryption = NULL,
                *driver = NULL, *serial = NULL;
        int r = 0;

        /* libvirt's default when type is absent is a file. */
        d->block = streq_ptr(type, "block");

        r = attr_dup(node, "device", &d->device);
        if (r < 0)
                return r;
        if (!d->device) {
                /* Likewise, a disk without device= is a plain disk. */
                d->device = strdup("disk");
                if (!d->device)
                        return -ENOMEM;
        }

        /* The first of each; libvirt emits at most one.  Only direct children
         * count: <mirror> and <backingStore> carry <source>s of their own. */
        for (xmlNode *c = node->children; c; c = c->next) {
                if (!source && node_is(c, "source"))
                        source = c;
                else if (!target && node_is(c, "target"))
                        target = c;
                else if (!alias && node_is(c, "alias"))
                        alias = c;
                else if (!legacy_encryption && node_is(c, "encryption"))
                        legacy_encryption = c;
                else if (!driver && node_is(c, "driver"))
                        driver = c;
                else if (!serial && node_is(c, "serial"))
                        serial = c;
                else if (node_is(c, "readonly"))
                        d->read_only = true;
        }

        /* Every disk libvirt reports has <target dev>; callers rely on it. */
        if (!target)
                return -EBADMSG;
        r = attr_dup(target, "dev", &d->target);
        if (r < 0)
                return r;
        if (isempty(d->target))
                return -EBADMSG;
        r = attr_dup(target, "bus", &d->bus);
        if (r < 0)
                return r;

        if (source) {
                /* type='file' → file=, type='block' → dev=; other types
                 * (network, volume, dir, nvme) have no host path to report. */
                if (d->block)
                        r = attr_dup(source, "dev", &d->source);
                else if (!type || streq(type, "file"))
                        r = attr_dup(source, "file", &d->source);
                if (r < 0)
                        return r;

                encryption = first_child(source, "encryption");
        }
        if (!encryption)
                encryption = legacy_encryption;

        if (encryption) {
                xmlNode *secret;

                d->encrypted = true;
                r = attr_dup(encryption, "format", &d->encryption_format);
                if (r < 0)
                        return r;

                secret = first_child(encryption, "secret");
                if (secret) {
                        r = attr_dup(secret, "uuid", &d->secret_uuid);
                        if (r < 0)
                                return r;
                }
        }

        if (alias) {
                r = attr_dup(alias, "name", &d->alias);
                if (r < 0)
                        return r;
        }

        if (serial) {
                r = text_dup(serial, &d->serial);
                if (r < 0)
                        return r;
        }

        if (driver) {
                _cleanup_free_ char *discard = NULL;

                r = attr_dup(driver, "discard", &discard);
                if (r < 0)
                        return r;
                d->discard = streq_ptr(discard, "unmap");
        }

        r = other_sources_from_node(node, &d->other_sources);
        if (r < 0)
                return r;

        return 0;
}

/* Fills *ret from one <disk> element. */
static int disk_from_node(xmlNode *node, DiskInfo *ret) {
        DiskInfo d = {};
        char *type = NULL;
        int r;

        r = attr_dup(node, "type", &type);
        if (r >= 0)
                r = disk_fill(node, type, &d);
        free(type);
        if (r < 0) {
                disk_info_free(&d);
                return r;
        }
        *ret = d;
        return 0;
}

/* What a parse saw besides the tree it built. */
typedef struct ParseState {
        bool saw_doctype;
        bool saw_error;
        bool saw_oom;
} ParseState;

/* Records every error the parser raises.  We cannot rely on the parser's
 * own verdict alone: libxml2 2.9 stops on an allocation failure in the tree
 * builder without clearing wellFormed, and hands back a truncated document
 * that would look like a domain with fewer disks. */
#if LIBXML_VERSION >= 21200
static void record_error(void *userdata, const xmlError *error) {
#else
static void record_error(void *userdata, xmlErrorPtr error) {
#endif
        ParseState *state = userdata;

        if (!error || error->level < XML_ERR_ERROR)
                return; /* warnings (odd version numbers, relative namespace URIs) are harmless */

        state->saw_error = true;
        if (error->code == XML_ERR_NO_MEMORY)
                state->saw_oom = true;
}

/* SAX hook called when the parser meets <!DOCTYPE …>, before it reads the
 * internal subset: stop right there, so no entity is ever declared. */
static void refuse_doctype(void *ctx, _unused_ const xmlChar *name, _unused_ const xmlChar *external_id,
                           _unused_ const xmlChar *system_id) {
        xmlParserCtxt *ctxt = ctx;

        ((ParseState *) ctxt->_private)->saw_doctype = true;
        xmlStopParser(ctxt);
}

/* Parses domain_xml and returns its <domain> root element via *ret_root;
 * the caller frees *ret_doc.  Must run under QUIET_XML_ERRORS, which puts
 * back the thread's error handler replaced here. */
static int parse_domain(const char *domain_xml, xmlDoc **ret_doc, xmlNode **ret_root) {
        _cleanup_(xmlFreeParserCtxtp) xmlParserCtxt *ctxt = NULL;
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        ParseState state = {};
        size_t size;
        xmlNode *root;

        size = strlen(domain_xml);
        if (size > DOMAIN_XML_SIZE_MAX)
                return -EBADMSG;

        ctxt = xmlNewParserCtxt();
        if (!ctxt)
                return -ENOMEM;

        /* The SAX2 tree builder passes the parser context as the callback
         * context, and leaves _private to us. */
        ctxt->_private = &state;
        ctxt->sax->internalSubset = refuse_doctype;
        ctxt->sax->externalSubset = NULL;
        /* With no per-context structured handler (sax->serror is NULL), all
         * parser errors go to the calling thread's one: record them there,
         * silently. */
        ctxt->sax->serror = NULL;
        xmlSetStructuredErrorFunc(&state, record_error);

        /* Deliberately absent: XML_PARSE_NOENT (would substitute entities),
         * XML_PARSE_DTDLOAD/DTDATTR/DTDVALID (would read DTDs),
         * XML_PARSE_HUGE (would lift the size and depth limits),
         * XML_PARSE_XINCLUDE, XML_PARSE_RECOVER (we want hard failure).
         * The input is a C string from libvirt, always UTF-8; saying so
         * overrides whatever the document declares. */
        doc = xmlCtxtReadMemory(ctxt, domain_xml, (int) size, NULL, "UTF-8",
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);

        /* Back to the quiet handler before state goes out of scope. */
        xmlSetStructuredErrorFunc(NULL, quiet_structured);

        if (state.saw_oom || ctxt->errNo == XML_ERR_NO_MEMORY)
                return -ENOMEM;
        if (state.saw_doctype || state.saw_error || !doc || !ctxt->wellFormed)
                return -EBADMSG;
        if (doc->intSubset || doc->extSubset) /* cannot happen given the hook; be sure */
                return -EBADMSG;

        root = xmlDocGetRootElement(doc);
        if (!root || !node_is(root, "domain"))
                return -EBADMSG;

        *ret_root = root;
        *ret_doc = TAKE_PTR(doc);
        return 0;
}

int domain_xml_list_disks(const char *domain_xml, DiskInfo **ret_disks, size_t *ret_n) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        DiskInfo *disks = NULL;
        size_t n = 0, allocated = 0;
        xmlNode *root;
        int r;

        if (!domain_xml || !ret_disks || !ret_n)
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        r = parse_domain(domain_xml, &doc, &root);
        if (r < 0)
                return r;

        /* All <devices> sections, though libvirt writes exactly one. */
        for (xmlNode *devices = root->children; devices; devices = devices->next) {
                if (!node_is(devices, "devices"))
                        continue;

                for (xmlNode *c = devices->children; c; c = c->next) {
                        if (!node_is(c, "disk"))
                                continue;

                        if (n == allocated) {
                                size_t m = allocated ? allocated * 2 : 8;
                                DiskInfo *p;

                                /* The count is bounded by the input size, so
                                 * m * sizeof cannot overflow in practice;
                                 * reallocarray checks anyway. */
                                p = reallocarray(disks, m, sizeof(DiskInfo));
                                if (!p) {
                                        disk_info_array_free(disks, n);
                                        return -ENOMEM;
                                }
                                disks = p;
                                allocated = m;
                        }

                        r = disk_from_node(c, disks + n);
                        if (r < 0) {
                                disk_info_array_free(disks, n);
                                return r;
                        }
                        n++;
                }
        }

        *ret_disks = disks; /* NULL when there are no disks */
        *ret_n = n;
        return 0;
}

/* Whether a <disk>'s <target dev> is target; a disk without one makes the
 * document invalid (-EBADMSG). */
static int disk_has_target(xmlNode *disk, const char *target, bool *ret) {
        xmlNode *t = first_child(disk, "target");
        char *dev = NULL;
        int r;

        if (!t)
                return -EBADMSG;
        r = attr_dup(t, "dev", &dev);
        if (r < 0)
                return r;
        r = isempty(dev) ? -EBADMSG : 0;
        *ret = r >= 0 && streq(dev, target);
        free(dev);
        return r;
}

int domain_xml_find_disk(const char *domain_xml, const char *target, DiskInfo *ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        if (!domain_xml || isempty(target) || !ret)
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        r = parse_domain(domain_xml, &doc, &root);
        if (r < 0)
                return r;

        /* Same rules as domain_xml_list_disks(): every disk must have a
         * <target dev>, matching or not, so that both functions agree on
         * which documents are valid.  The first match wins; libvirt never
         * reports two disks with one target. */
        xmlNode *match = NULL;
        for (xmlNode *devices = root->children; devices; devices = devices->next) {
                if (!node_is(devices, "devices"))
                        continue;

                for (xmlNode *c = devices->children; c; c = c->next) {
                        bool is_target;

                        if (!node_is(c, "disk"))
                                continue;
                        r = disk_has_target(c, target, &is_target);
                        if (r < 0)
                                return r;
                        if (!match && is_target)
                                match = c;
                }
        }

        if (match)
                return disk_from_node(match, ret);

        return -ENOENT;
}
