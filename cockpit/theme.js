// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Cockpit's light/dark theme for this page.  A classic script loaded in
// <head> before anything renders, so the page never flashes light under a
// dark shell.  Cockpit's shell keeps the user's choice in localStorage
// "shell:style" ("auto", "light" or "dark"; same origin as this frame), and
// tells open frames at once with a "cockpit-style" event ({detail: {style}})
// on their window; "auto" follows the browser's prefers-color-scheme.  The
// class on <html> is PatternFly 5's pf-v5-theme-dark, and PatternFly 4's
// pf-theme-dark, which Cockpit 287's own pages use.

(function () {
    "use strict";

    const query = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

    function apply(style) {
        if (!style) {
            try {
                style = window.localStorage.getItem("shell:style");
            } catch (e) {
                style = null;
            }
        }
        const dark = style === "dark" || ((style || "auto") === "auto" && !!query && query.matches);
        const root = document.documentElement;
        root.classList.toggle("pf-v5-theme-dark", dark);
        root.classList.toggle("pf-theme-dark", dark);
    }

    window.addEventListener("storage", ev => {
        if (ev.key === "shell:style")
            apply(ev.newValue);
    });
    window.addEventListener("cockpit-style", ev => {
        if (ev instanceof CustomEvent && ev.detail)
            apply(ev.detail.style);
    });
    if (query && query.addEventListener)
        query.addEventListener("change", () => apply());
    apply();
})();
