/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by disk-xml.c (building, and libxml2's set-up) and domain-xml.c
 * (parsing), included by nothing else. */

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDocPtr, xmlFreeDoc);
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlParserCtxtPtr, xmlFreeParserCtxt);

/* The calling thread's libxml2 error handlers, saved so that we can put back
 * whatever the thread had (libvirt or a test may have installed its own). */
typedef struct QuietErrors {
        xmlGenericErrorFunc generic;
        void *generic_ctx;
        xmlStructuredErrorFunc structured;
        void *structured_ctx;
} QuietErrors;

/* Silences libxml2's error output on the calling thread (errors are
 * returned, not printed); pop puts back what the thread had. */
QuietErrors quiet_errors_push(void);
void quiet_errors_pop(QuietErrors *q);
/* Under QUIET_XML_ERRORS, after a handler of one's own: the quiet
 * structured handler again. */
void quiet_errors_restore_structured(void);
#define QUIET_XML_ERRORS _cleanup_(quiet_errors_pop) _unused_ QuietErrors _quiet_ = quiet_errors_push()
