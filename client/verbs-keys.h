/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The verbs that manage a volume's passphrases (its LUKS key slots). */

/* change-passphrase SOURCE [--passphrase-file --new-passphrase-file --pbkdf-iterations] */
int verb_change_passphrase(int argc, char **argv);
/* add-passphrase SOURCE [--passphrase-file --new-passphrase-file --pbkdf-iterations]: prints the slot */
int verb_add_passphrase(int argc, char **argv);
/* remove-passphrase SOURCE [--passphrase-file --force] */
int verb_remove_passphrase(int argc, char **argv);
/* verify SOURCE [--passphrase-file]: prints the slot */
int verb_verify(int argc, char **argv);
