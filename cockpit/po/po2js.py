#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# po2js.py LANG.po po.LANG.js — a gettext catalogue as the script Cockpit
# serves for "po.js" in that language: cockpit.locale({...}) with
# {msgid: [null, msgstr]} entries (msgctxt as "CONTEXT\u0004MSGID", as
# cockpit.gettext looks them up).  Untranslated and fuzzy entries are left
# out (the English text is used).  Only the subset of the PO format that
# xgettext/msgmerge write is read.

import json
import re
import sys


def unquote(s):
    return json.loads(s)     # a PO string literal is a JSON string literal here


def parse(path):
    entries, cur, key, fuzzy = [], {}, None, False
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                entries.append((cur, fuzzy))
            cur, key, fuzzy = {}, None, False
            continue
        if line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
            continue
        if line.startswith("#"):
            continue
        m = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+(".*")$', line)
        if m:
            key = m.group(1)
            cur[key] = unquote(m.group(2))
        elif line.startswith('"') and key:
            cur[key] += unquote(line)
        else:
            sys.exit(f"{path}: cannot read: {line}")
    if cur:
        entries.append((cur, fuzzy))
    return entries


def main():
    src, out = sys.argv[1], sys.argv[2]
    lang = re.sub(r"\.po$", "", src.rsplit("/", 1)[-1])
    catalogue = {"": {"language": lang, "language-direction": "ltr"}}
    for e, fuzzy in parse(src):
        msgid = e.get("msgid", "")
        if not msgid or fuzzy:
            continue
        if "msgid_plural" in e:
            forms = [e[k] for k in sorted(k for k in e if k.startswith("msgstr["))]
            if all(forms):
                catalogue[msgid] = [e["msgid_plural"]] + forms
            continue
        if e.get("msgstr"):
            key = e["msgctxt"] + "\u0004" + msgid if "msgctxt" in e else msgid
            catalogue[key] = [None, e["msgstr"]]
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("cockpit.locale(" + json.dumps(catalogue, ensure_ascii=False, indent=1, sort_keys=True) + ");\n")


main()
