// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The few icons the page draws, as inline SVG (PatternFly's icon font is
// not shipped: Cockpit serves no copy of it, and six glyphs do not need
// one).  Each is decorative (aria-hidden): the text beside it says the same.

const PATHS = {
    check: "M8 0a8 8 0 1 0 0 16A8 8 0 0 0 8 0ZM6.9 11.8 3.4 8.3l1.3-1.3 2.2 2.2 4.4-4.4 1.3 1.3-5.7 5.7Z",
    warning: "M8 .8 0 15h16L8 .8Zm.9 12.1H7.1v-1.7h1.8v1.7Zm0-3H7.1L6.8 5.4h2.4L8.9 9.9Z",
    danger: "M8 0a8 8 0 1 0 0 16A8 8 0 0 0 8 0Zm.9 12.2H7.1v-1.8h1.8v1.8Zm0-3.2H7.1L6.8 3.8h2.4L8.9 9Z",
    kebab: "M8 1.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3Zm0 5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3Zm0 5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3Z",
    pending: "M8 0a8 8 0 1 0 0 16A8 8 0 0 0 8 0Zm0 2a6 6 0 1 1 0 12A6 6 0 0 1 8 2Z",
    lock: "M8 0a4 4 0 0 0-4 4v2H3v10h10V6h-1V4a4 4 0 0 0-4-4Zm0 2a2 2 0 0 1 2 2v2H6V4a2 2 0 0 1 2-2Z",
};

const NS = "http://www.w3.org/2000/svg";

// One SVG element with its attributes and children.
function svgElement(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs))
        node.setAttribute(name, value);
    node.append(...children);
    return node;
}

export function icon(name) {
    return svgElement("svg", {
        class: "lv-icon",
        viewBox: "0 0 16 16",
        width: "1em",
        height: "1em",
        fill: "currentColor",
        "aria-hidden": "true",
    }, svgElement("path", { d: PATHS[name] }));
}

// PatternFly's spinner: an SVG circle PatternFly's CSS animates.
export function spinner(size) {
    return svgElement("svg", {
        class: `pf-v5-c-spinner pf-m-${size || "md"}`,
        role: "progressbar",
        viewBox: "0 0 100 100",
        "aria-hidden": "true",
    }, svgElement("circle", { class: "pf-v5-c-spinner__path", cx: "50", cy: "50", r: "45", fill: "none" }));
}
