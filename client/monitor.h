/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* monitor: follows InterfacesAdded/Removed and PropertiesChanged of volume
 * objects, one line (or one JSON object) per event, until SIGINT or
 * SIGTERM. */
int verb_monitor(int argc, char **argv);
