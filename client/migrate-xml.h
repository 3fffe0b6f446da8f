/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The guest's domain XML as migrate reads and rewrites it (libxml2): which
 * disk a volume is, and the destination's name for its device.  Helpers:
 * 0 / negative errno, no logging. */

#include <stdbool.h>

#include <libxml/tree.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDocPtr, xmlFreeDoc);

/* Parses a <domain> document, loading nothing and substituting no entities.
 * -EBADMSG if it is not well-formed, has a DOCTYPE or is no <domain>;
 * -ENOMEM. */
int migrate_xml_parse(const char *xml, xmlDoc **ret);

/* The disk whose <target dev> is target: a copy of its <source dev> (NULL
 * if it has none) and whether its <driver> says discard='unmap'.  Either
 * ret may be NULL.  -ENOENT if the domain has no such disk; -ENOMEM. */
int migrate_xml_disk(xmlDoc *doc, const char *target, char **ret_source_dev, bool *ret_discard);

/* Makes dev the <source dev> of the (block) disk whose <target dev> is
 * target.  -ENOENT: no such disk; -EMEDIUMTYPE: not a block disk, or one
 * without <source>; -EINVAL: dev is no absolute path XML can carry;
 * -ENOMEM. */
int migrate_xml_set_source_dev(xmlDoc *doc, const char *target, const char *dev);

/* The document as text, malloc()ed.  -ENOMEM. */
int migrate_xml_format(xmlDoc *doc, char **ret);
