/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The verbs that only look: probe, list, list-domains and status (text, or --json). */

/* probe [SOURCE] */
int verb_probe(int argc, char **argv);
/* list [--domain DOMAIN] */
int verb_list(int argc, char **argv);
/* list-domains */
int verb_list_domains(int argc, char **argv);
/* status VOLUME-PATH|DOMAIN:TARGET */
int verb_status(int argc, char **argv);
