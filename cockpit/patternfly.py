#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# patternfly.py PF_DIR OUTPUT COMPONENT[/FILE.css]... — the page's patternfly.css,
# made at build time from the npm package @patternfly/patternfly (the
# version package-lock.json pins; `npm ci` in cockpit/ puts it in
# cockpit/node_modules).  Nothing of PatternFly is kept in this tree.
#
# The output is PatternFly 5's base (its design tokens, light and
# pf-v5-theme-dark, and its resets) followed by the stylesheets of the
# components the page uses, each as PatternFly ships it.  One change: the
# base's @font-face rules point at PatternFly's own copies of the Red Hat
# fonts; the page uses the copies Cockpit's web server already serves
# (/cockpit/static/fonts, as Cockpit's own pages do), so the package ships
# no font files.  A face Cockpit does not have (the variable fonts, the
# icon fonts: the page uses neither) is left out rather than pointing at a
# file that is not there.

import re
import sys
from pathlib import Path

# Cockpit 287's /usr/share/cockpit/static/fonts (cockpit-ws).
COCKPIT_FONTS = {
    f"{family}-{style}.woff2"
    for family in ("RedHatDisplay", "RedHatText", "RedHatMono")
    for style in ("Regular", "Italic", "Medium", "MediumItalic", "Bold", "BoldItalic")
} | {"RedHatDisplay-Black.woff2", "RedHatDisplay-BlackItalic.woff2"}

FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}", re.S)
FONT_URL = re.compile(r'url\("\./assets/fonts/[^/"]+/([^/"]+)"\)')


def rewrite_face(match):
    face = match.group(0)
    urls = FONT_URL.findall(face)
    if not urls or any(u not in COCKPIT_FONTS for u in urls):
        return ""
    return FONT_URL.sub(lambda m: f'url("../../static/fonts/{m.group(1)}")', face)


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: patternfly.py PF_DIR OUTPUT COMPONENT...")
    pf = Path(sys.argv[1])
    version = re.search(r'"version"\s*:\s*"([^"]+)"', (pf / "package.json").read_text()).group(1)
    if not version.startswith("5."):
        sys.exit(f"patternfly.py: {pf} is PatternFly {version}, the page needs PatternFly 5")

    parts = [f"/* PatternFly {version} (MIT licence, https://www.patternfly.org), "
             f"made from @patternfly/patternfly by cockpit/patternfly.py:\n"
             f" * patternfly-base.css and the stylesheets of {', '.join(sys.argv[3:])}. */\n"]
    parts.append(FONT_FACE.sub(rewrite_face, (pf / "patternfly-base.css").read_text()))
    for component in sys.argv[3:]:
        # "Table" is every stylesheet of the component; "Table/table.css"
        # one of them.
        name = component.split("/")[0]
        sheets = ([pf / "components" / component] if component.endswith(".css")
                  else sorted((pf / "components" / component).glob("*.css")))
        if not sheets or not all(s.is_file() for s in sheets):
            sys.exit(f"patternfly.py: no stylesheet {component} in {pf}")
        for sheet in sheets:
            parts.append(f"\n/* components/{name}/{sheet.name} */\n")
            parts.append(sheet.read_text())
    Path(sys.argv[2]).write_text("".join(parts))


if __name__ == "__main__":
    main()
