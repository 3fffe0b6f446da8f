// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Small DOM helpers the page's modules share: element building, dialogs,
// field errors, and taking a passphrase out of its input.

export const $ = id => document.getElementById(id);

// el("td", { class: "x", "data-path": p }, child, "text", …)
export function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false)
            continue;
        if (k === "class")
            node.className = v;
        else if (k === "onclick")
            node.addEventListener("click", v);
        else
            node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
        if (c === undefined || c === null || c === false)
            continue;
        node.append(c instanceof Node ? c : String(c));
    }
    return node;
}

// A PatternFly table cell: <td> with the table's cell class and any more.
export function tableCell(attrs, ...children) {
    const more = attrs && attrs.class ? " " + attrs.class : "";
    return el("td", { ...attrs, class: "pf-v5-c-table__td" + more }, ...children);
}

// Focus moves with the element that had it across re-renders: elements
// that can be re-created carry data-focus-key.
export function restoreFocus(node) {
    if (node && node.isConnected) {
        node.focus();
        return;
    }
    const key = node && node.dataset && node.dataset.focusKey;
    const again = key && document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    (again || $("attach-open")).focus();
}

// Native <dialog> in modal mode: the rest of the page is inert, Tab stays
// inside, Escape closes it.  Focus goes to a chosen control on opening and
// back to the control that opened it on closing.
export function openDialog(dialog, opener, focusTarget) {
    dialog.showModal();
    (focusTarget || dialog.querySelector("input, select, button")).focus();
    dialog.addEventListener("close", () => restoreFocus(opener), { once: true });
}

// Closes a dialog, emptying its passphrase fields first: the "close" event
// comes later, as a task of its own, and a closed dialog must not hold a
// typed secret even for that long.
export function closeDialog(dialog) {
    for (const input of dialog.querySelectorAll("input[type=password]"))
        input.value = "";
    dialog.close();
}

// Clears the field errors (of fields, or all of the dialog) and the alert.
export function clearDialog(prefix, fields) {
    const dialog = $(`${prefix}-dialog`);
    const errors = fields
        ? fields.map(field => $(`${prefix}-${field}-error`)).filter(Boolean)
        : [...dialog.querySelectorAll(".lv-field-error")];
    for (const msg of errors) {
        msg.textContent = "";
        msg.hidden = true;
    }
    for (const input of dialog.querySelectorAll("[aria-invalid]")) {
        input.removeAttribute("aria-invalid");
        input.closest(".pf-v5-c-form-control")?.classList.remove("pf-m-error");
    }
    $(`${prefix}-alert-text`).textContent = "";
    $(`${prefix}-alert`).hidden = true;
}

export function setFieldError(prefix, field, text) {
    const msg = $(`${prefix}-${field}-error`);
    msg.textContent = text;
    msg.hidden = false;
    const input = $(`${prefix}-${field}`);
    input.setAttribute("aria-invalid", "true");
    input.closest(".pf-v5-c-form-control")?.classList.add("pf-m-error");
    return input;
}

export function setDialogAlert(prefix, text) {
    $(`${prefix}-alert-text`).textContent = text;
    $(`${prefix}-alert`).hidden = false;
}

// The passphrase as bytes for an `ay` argument (cockpit's D-Bus JSON wants
// base64).  The input and the byte array are overwritten before the call
// goes out; the base64 string and the JSON frame cockpit.js builds from it
// are immutable JavaScript strings, dropped after the call for the garbage
// collector (nothing can overwrite them).
export function takePassphrase(input) {
    const bytes = new TextEncoder().encode(input.value);
    input.value = "";
    const b64 = cockpit.base64_encode(bytes);
    bytes.fill(0);
    return b64;
}
