/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Walking libvirt's domain XML with libxml2: shared by the daemon's disk
 * parser (daemon/domain-xml.c) and luksvolumectl's migration rewrite
 * (client/migrate-xml.c).  Header-only: libcommon does not link libxml2. */

#include <stdbool.h>

#include <libxml/tree.h>

/* libvirt's elements live in no namespace; a namespaced <x:disk> (say in
 * <metadata>) is somebody else's and must not match. */
static inline bool xml_node_is(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

static inline xmlNode *xml_first_child(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent->children; c; c = c->next)
                if (xml_node_is(c, name))
                        return c;
        return NULL;
}
