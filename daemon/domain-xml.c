/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Parsing libvirt's domain XML with libxml2 (building: disk-xml.c).
 *
 * The domain XML comes from libvirtd, but we treat it as hostile
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
 *
 * Errors: -EBADMSG for anything that is not a well-formed, DTD-free
 * <domain> document whose disks all have <target dev>, -ENOMEM when an
 * allocation fails anywhere, libxml2 included.  libxml2 reports its own
 * allocation failures through the error handler rather than always failing
 * the parse, so the parser's errors are recorded and any error fails it. */

#include <stdint.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "disk-xml.h"
#include "util.h"
#include "volume-id.h"
#include "xml-internal.h"
#include "xml-node.h"

/* Far beyond any real domain XML (hundreds of disks and NICs stay well under
 * a megabyte), small enough that a runaway input cannot pin a worker. */
#define DOMAIN_XML_SIZE_MAX (32U * 1024U * 1024U)

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
        source = xml_first_child(holder, "source");
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

        for (unsigned depth = 0; depth < BACKING_CHAIN_MAX && (bs = xml_first_child(node, "backingStore")); depth++) {
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

        xmlNode *mirror = xml_first_child(disk, "mirror");
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
/* An RBD disk's source as the service spells it: "rbd:" + name. */
static int rbd_source_dup(xmlNode *source, DiskInfo *d) {
        _cleanup_free_ char *protocol = NULL, *name = NULL;
        int r;

        r = attr_dup(source, "protocol", &protocol);
        if (r < 0 || !streq_ptr(protocol, "rbd"))
                return r;
        r = attr_dup(source, "name", &name);
        if (r < 0 || !name)
                return r;
        d->rbd = true;
        if (asprintf(&d->source, "rbd:%s", name) < 0) {
                d->source = NULL;
                return -ENOMEM;
        }
        return 0;
}

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
                if (!source && xml_node_is(c, "source"))
                        source = c;
                else if (!target && xml_node_is(c, "target"))
                        target = c;
                else if (!alias && xml_node_is(c, "alias"))
                        alias = c;
                else if (!legacy_encryption && xml_node_is(c, "encryption"))
                        legacy_encryption = c;
                else if (!driver && xml_node_is(c, "driver"))
                        driver = c;
                else if (!serial && xml_node_is(c, "serial"))
                        serial = c;
                else if (xml_node_is(c, "readonly"))
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
                else if (streq(type, "network"))
                        r = rbd_source_dup(source, d);
                if (r < 0)
                        return r;

                encryption = xml_first_child(source, "encryption");
        }
        if (!encryption)
                encryption = legacy_encryption;

        if (encryption) {
                xmlNode *secret;

                d->encrypted = true;
                r = attr_dup(encryption, "format", &d->encryption_format);
                if (r < 0)
                        return r;

                secret = xml_first_child(encryption, "secret");
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
        quiet_errors_restore_structured();

        if (state.saw_oom || ctxt->errNo == XML_ERR_NO_MEMORY)
                return -ENOMEM;
        if (state.saw_doctype || state.saw_error || !doc || !ctxt->wellFormed)
                return -EBADMSG;
        if (doc->intSubset || doc->extSubset) /* cannot happen given the hook; be sure */
                return -EBADMSG;

        root = xmlDocGetRootElement(doc);
        if (!root || !xml_node_is(root, "domain"))
                return -EBADMSG;

        *ret_root = root;
        *ret_doc = TAKE_PTR(doc);
        return 0;
}

/* Whether the domain of that root is running: libvirt gives a running
 * domain's root element its id (virDomainIsActive() is the same fact,
 * def->id != -1), and writes no id for a domain that is not. */
static int root_running(const xmlNode *root) {
        char *id = NULL;
        int r;

        r = attr_dup(root, "id", &id);
        if (r < 0)
                return r;
        r = !isempty(id) && !streq(id, "-1");
        free(id);
        return r;
}

/* Parses domain_xml into ret_doc and ret_root; with must_run, a domain
 * that is not running is -ESRCH.  Under the caller's QUIET_XML_ERRORS,
 * which must cover the reading of the tree as well (xmlGetProp() and
 * friends report allocation failures too). */
static int parse_domain_checked(const char *domain_xml, bool must_run, xmlDoc **ret_doc, xmlNode **ret_root) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        r = parse_domain(domain_xml, &doc, &root);
        if (r < 0)
                return r;
        if (must_run) {
                r = root_running(root);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -ESRCH;
        }
        *ret_doc = TAKE_PTR(doc);
        *ret_root = root;
        return 0;
}

static int list_disks(xmlNode *root, DiskInfo **ret_disks, size_t *ret_n) {
        DiskInfo *disks = NULL;
        size_t n = 0, allocated = 0;
        int r;

        /* All <devices> sections, though libvirt writes exactly one. */
        for (xmlNode *devices = root->children; devices; devices = devices->next) {
                if (!xml_node_is(devices, "devices"))
                        continue;

                for (xmlNode *c = devices->children; c; c = c->next) {
                        if (!xml_node_is(c, "disk"))
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

int domain_xml_list_disks(const char *domain_xml, DiskInfo **ret_disks, size_t *ret_n) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        if (!domain_xml || !ret_disks || !ret_n)
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        r = parse_domain_checked(domain_xml, false, &doc, &root);
        if (r < 0)
                return r;
        return list_disks(root, ret_disks, ret_n);
}

/* Whether a <disk>'s <target dev> is target; a disk without one makes the
 * document invalid (-EBADMSG). */
static int disk_has_target(xmlNode *disk, const char *target, bool *ret) {
        xmlNode *t = xml_first_child(disk, "target");
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

static int find_disk(const char *domain_xml, bool must_run, const char *target, DiskInfo *ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        if (!domain_xml || isempty(target) || !ret)
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        r = parse_domain_checked(domain_xml, must_run, &doc, &root);
        if (r < 0)
                return r;

        /* Same rules as domain_xml_list_disks(): every disk must have a
         * <target dev>, matching or not, so that both functions agree on
         * which documents are valid.  The first match wins; libvirt never
         * reports two disks with one target. */
        xmlNode *match = NULL;
        for (xmlNode *devices = root->children; devices; devices = devices->next) {
                if (!xml_node_is(devices, "devices"))
                        continue;

                for (xmlNode *c = devices->children; c; c = c->next) {
                        bool is_target;

                        if (!xml_node_is(c, "disk"))
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

int domain_xml_find_disk(const char *domain_xml, const char *target, DiskInfo *ret) {
        return find_disk(domain_xml, false, target, ret);
}

int domain_xml_find_disk_running(const char *domain_xml, const char *target, DiskInfo *ret) {
        return find_disk(domain_xml, true, target, ret);
}

static int pick_target(const char *domain_xml, bool must_run, const char *wanted, const char *bus, char **ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        DiskInfo *disks = NULL;
        xmlNode *root;
        char **used;
        size_t n = 0;
        int r;

        if (!domain_xml || !ret)
                return -EINVAL;

        disk_xml_init();
        QUIET_XML_ERRORS;

        r = parse_domain_checked(domain_xml, must_run, &doc, &root);
        if (r < 0)
                return r;
        r = list_disks(root, &disks, &n);
        if (r < 0)
                return r;
        used = calloc(n + 1, sizeof *used);
        if (!used) {
                disk_info_array_free(disks, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                used[i] = disks[i].target;

        if (wanted) {
                r = 0;
                for (size_t i = 0; i < n && r >= 0; i++)
                        if (streq_ptr(used[i], wanted))
                                r = -EEXIST;
                if (r >= 0) {
                        *ret = strdup(wanted);
                        r = *ret ? 0 : -ENOMEM;
                }
        } else
                r = target_pick_free(bus, used, n, ret) < 0 ? -ENOSPC : 0;

        /* used borrows the disks' strings: the array goes first. */
        free(used);
        disk_info_array_free(disks, n);
        return r;
}

int domain_xml_pick_target(const char *domain_xml, const char *wanted, const char *bus, char **ret) {
        return pick_target(domain_xml, false, wanted, bus, ret);
}

int domain_xml_pick_target_running(const char *domain_xml, const char *wanted, const char *bus, char **ret) {
        return pick_target(domain_xml, true, wanted, bus, ret);
}
