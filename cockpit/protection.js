// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The "Decryption" cell of a volume's row: who decrypts it, in words, an
// icon and a colour (never colour alone); a native row through a header
// shim says so (and names its device-mapper device, ciphertext only).  A cryptsetup-mode row also says
// why QEMU does not decrypt it (the service's native-obstacle from Probe of
// its source, or what the page can derive) and warns that its cleartext
// exists on this host.  Pure: no D-Bus, so the browser test can render
// rows the sandbox cannot make (it has no device-mapper).

import { S, f } from "./strings.js";
import { el, tableCell } from "./dom.js";
import { icon } from "./icons.js";

// A PatternFly label: icon and text, in the colour of what it says.
function badge(cls, color, glyph, text, attrs) {
    return el("span", { class: `pf-v5-c-label pf-m-${color} lv-badge ${cls}`, ...attrs },
              el("span", { class: "pf-v5-c-label__content" },
                 glyph ? el("span", { class: "pf-v5-c-label__icon" }, icon(glyph)) : null,
                 el("span", { class: "pf-v5-c-label__text" }, text)));
}

// why: the reason text, or null while unknown.
export function protectionCell(v, why) {
    if (v.Mode === "native") {
        return tableCell({ class: "lv-protection" },
                  badge("lv-badge-native", "green", "lock", S.nativeBadge, { "data-mode": "native" }),
                  " ",
                  el("span", { class: "lv-mode-text" }, S.nativeText),
                  v.NativeHeader === "shim"
                      ? el("span", { class: "lv-shim", "data-shim": "" }, S.nativeShimText, " ",
                           el("code", {}, v.ShimDevice || ""))
                      : null);
    }
    if (v.Mode === "cryptsetup") {
        return tableCell({ class: "lv-protection" },
                  badge("lv-badge-host", "orange", "warning", S.cryptsetupBadge, { "data-mode": "cryptsetup" }),
                  " ",
                  el("span", { class: "lv-mode-text" }, S.cryptsetupText),
                  v.MapperDevice
                      ? el("span", { class: "lv-mapper" }, f(S.cryptsetupMapper, ""),
                           el("code", {}, v.MapperDevice))
                      : null,
                  why ? el("span", { class: "lv-why", "data-why": "" }, f(S.cryptsetupWhy, why)) : null,
                  el("span", { class: "lv-cleartext-warning", role: "note" }, icon("warning"), " ", S.cryptsetupWarning));
    }
    return tableCell({ class: "lv-protection" },
              badge("", "grey", null, S.unknownModeBadge), " ",
              el("span", { class: "lv-mode-text" }, f(S.unknownModeText, v.Mode || "")));
}
