// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Per-volume actions: the row's menu (a kebab button and a role=menu list,
// as PatternFly's Dropdown) and one dialog that serves each action —
// resize, the four key methods, rearm; detach goes to its own confirmation
// (luksvolume.js).  Every passphrase field is emptied however the dialog
// closes; the service's typed errors go to the field they concern.

import { S, f } from "./strings.js";
import { describeAction } from "./errors.js";
import { icon } from "./icons.js";
import { el, tableCell, $, setFieldError, setDialogAlert, clearDialog, closeDialog, openDialog, takePassphrase } from "./dom.js";

const MANAGER_PATH = "/org/example/LuksVolume1";
const MANAGER_IFACE = "org.example.LuksVolume1";
const VOLUME_IFACE = "org.example.LuksVolume1.Volume";
const MIB = 1024 * 1024;

// What each action asks for, says and calls.
const ACTIONS = {
    resize: {
        item: "actionResize", title: "titleResize", submit: "submitResize",
        fields: v => [
            { id: "size", type: "number", label: S.fieldSize,
              help: f(S.fieldSizeHelp, v.Size ? cockpit.format_bytes(v.Size, 1024) : "—"),
              value: v.Size ? String(Math.ceil(v.Size / MIB)) : "" },
            { id: "allow-shrink", type: "checkbox", label: S.fieldAllowShrink },
        ],
    },
    verify: {
        item: "actionVerify", title: "titleVerify", submit: "submitVerify",
        fields: () => [{ id: "passphrase", type: "password", label: S.fieldPassphrase }],
    },
    change: {
        item: "actionChange", title: "titleChange", submit: "submitChange", help: "keysHelp",
        fields: () => [
            { id: "passphrase", type: "password", label: S.fieldCurrentPassphrase },
            { id: "new-passphrase", type: "password", label: S.fieldNewPassphrase },
            { id: "confirm", type: "password", label: S.fieldConfirmPassphrase },
        ],
    },
    add: {
        item: "actionAdd", title: "titleAdd", submit: "submitAdd", help: "keysHelp",
        fields: () => [
            { id: "passphrase", type: "password", label: S.fieldExistingPassphrase },
            { id: "new-passphrase", type: "password", label: S.fieldNewPassphrase },
            { id: "confirm", type: "password", label: S.fieldConfirmPassphrase },
        ],
    },
    remove: {
        item: "actionRemove", title: "titleRemove", submit: "submitRemove", help: "removeWarning",
        destructive: true,
        fields: () => [
            { id: "passphrase", type: "password", label: S.fieldRemovePassphrase },
            { id: "force", type: "checkbox", label: S.fieldForce },
        ],
    },
    rearm: {
        item: "actionRearm", title: "titleRearm", submit: "submitRearm", help: "rearmHelp",
        fields: () => [{ id: "passphrase", type: "password", label: S.fieldPassphrase }],
    },
};

export function createActions(ctx) {
    // ctx: { client, volumes (Map), rowState (Map), allowed() → bool|null,
    //        showStatus(text), rerender(), confirmDetach(path, opener) }
    let openMenu = null;         // path of the row whose menu is open
    let current = null;          // { action, path, v } of the open dialog
    let busy = false;

    function closeMenu(focusKebab) {
        if (openMenu === null)
            return;
        const path = openMenu;
        openMenu = null;
        ctx.rerender();
        if (focusKebab) {
            const k = document.querySelector(`[data-focus-key="${CSS.escape("kebab:" + path)}"]`);
            if (k)
                k.focus();
        }
    }

    function menuItems(menu) {
        return [...menu.querySelectorAll("[role=menuitem]:not(:disabled)")];
    }

    function onMenuKey(ev) {
        const menu = ev.currentTarget;
        const items = menuItems(menu);
        const i = items.indexOf(document.activeElement);
        if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
            ev.preventDefault();
            const d = ev.key === "ArrowDown" ? 1 : -1;
            items[(i + d + items.length) % items.length]?.focus();
        } else if (ev.key === "Home" || ev.key === "End") {
            ev.preventDefault();
            items[ev.key === "Home" ? 0 : items.length - 1]?.focus();
        } else if (ev.key === "Escape") {
            ev.preventDefault();
            ev.stopPropagation();
            closeMenu(true);
        } else if (ev.key === "Tab") {
            closeMenu(false);
        }
    }

    // The actions cell of a row: kebab + menu.
    function cell(path, v) {
        const st = ctx.rowState.get(path) || {};
        const allowed = ctx.allowed() !== false;
        const open = openMenu === path;
        const menuId = "menu-" + path.replace(/[^A-Za-z0-9_-]/g, "_");
        const refused = allowed ? null : "access-note";

        // PatternFly's menu: list items (role none) holding the menuitem
        // buttons; a description line under an item says why it is off.
        const item = (action, text, extra) => el("li", {
            role: "none",
            class: "pf-v5-c-menu__list-item" + (action === "detach" ? " pf-m-danger" : "")
                + (!allowed || extra?.disabled ? " pf-m-disabled" : ""),
        }, el("button", {
            type: "button",
            role: "menuitem",
            class: "pf-v5-c-menu__item lv-menu-item",
            "data-action": action,
            "data-focus-key": action + ":" + path,
            "aria-describedby": extra?.why || refused,
            disabled: !allowed || extra?.disabled,
            onclick: ev => {
                const opener = document.querySelector(`[data-focus-key="${CSS.escape("kebab:" + path)}"]`);
                openMenu = null;
                ctx.rerender();
                const again = document.querySelector(`[data-focus-key="${CSS.escape("kebab:" + path)}"]`) || opener;
                if (action === "detach")
                    ctx.confirmDetach(path, again);
                else
                    openAction(action, path, again);
                ev.stopPropagation();
            },
        }, el("span", { class: "pf-v5-c-menu__item-main" },
              el("span", { class: "pf-v5-c-menu__item-text" }, text)),
        extra?.note ? el("span", { class: "pf-v5-c-menu__item-description lv-menu-note", id: extra.noteId }, extra.note) : null));
        const separator = () => el("li", { class: "pf-v5-c-divider", role: "separator" });

        const roNote = "ro-" + menuId;
        const items = [
            item("detach", st.pending ? S.detaching : S.actionDetach, { disabled: st.pending }),
            item("resize", S.actionResize, v.ReadOnly
                ? { disabled: true, note: S.readOnlyNoResize, noteId: roNote, why: roNote }
                : undefined),
            separator(),
            item("verify", S.actionVerify),
            item("change", S.actionChange),
            item("add", S.actionAdd),
            item("remove", S.actionRemove),
        ];
        if (v.State === "saved")
            items.push(separator(), item("rearm", S.actionRearm));

        const menu = el("div", { class: "pf-v5-c-menu lv-menu", hidden: !open },
                        el("div", { class: "pf-v5-c-menu__content" },
                           el("ul", { class: "pf-v5-c-menu__list", role: "menu", id: menuId,
                                      "aria-label": f(S.rowMenu, v.Target, v.Domain) }, ...items)));
        menu.addEventListener("keydown", onMenuKey);
        const kebab = el("button", {
            type: "button",
            class: "pf-v5-c-menu-toggle pf-m-plain lv-kebab" + (open ? " pf-m-expanded" : ""),
            "aria-haspopup": "menu",
            "aria-expanded": open ? "true" : "false",
            "aria-controls": menuId,
            "aria-label": f(S.rowMenu, v.Target, v.Domain),
            "data-focus-key": "kebab:" + path,
            onclick: ev => {
                ev.stopPropagation();
                openMenu = open ? null : path;
                ctx.rerender();
                if (openMenu) {
                    const m = document.getElementById(menuId);
                    m && menuItems(m)[0]?.focus();
                }
            },
        }, icon("kebab"));
        return tableCell({ class: "pf-v5-c-table__action lv-actions" },
                  el("div", { class: "lv-menu-wrap" }, kebab, menu));
    }

    // ── the action dialog ──

    // A PatternFly form group: label, control, help and error text.
    function field(spec) {
        const id = "action-" + spec.id;
        if (spec.type === "checkbox") {
            return el("div", { class: "pf-v5-c-form__group lv-field" },
                      el("div", { class: "pf-v5-c-form__group-control" },
                         el("div", { class: "pf-v5-c-check" },
                            el("input", { id, type: "checkbox", class: "pf-v5-c-check__input" }),
                            el("label", { for: id, class: "pf-v5-c-check__label" }, spec.label))));
        }
        const input = el("input", {
            id, type: spec.type, autocomplete: spec.type === "password" ? "off" : null,
            inputmode: spec.type === "number" ? "numeric" : null, min: spec.type === "number" ? "1" : null,
            spellcheck: "false",
            "aria-describedby": (spec.help ? id + "-help " : "") + id + "-error",
        });
        if (spec.value)
            input.value = spec.value;
        const helper = (cls, pid, text, hidden) =>
            el("div", { class: "pf-v5-c-form__helper-text" },
               el("div", { class: "pf-v5-c-helper-text" },
                  el("div", { class: "pf-v5-c-helper-text__item" + (cls === "lv-field-error" ? " pf-m-error" : "") },
                     el("p", { class: "pf-v5-c-helper-text__item-text " + cls, id: pid, hidden }, text))));
        return el("div", { class: "pf-v5-c-form__group lv-field" },
                  el("div", { class: "pf-v5-c-form__group-label" },
                     el("label", { for: id, class: "pf-v5-c-form__label" },
                        el("span", { class: "pf-v5-c-form__label-text" }, spec.label))),
                  el("div", { class: "pf-v5-c-form__group-control" },
                     el("span", { class: "pf-v5-c-form-control" }, input),
                     spec.help ? helper("lv-help", id + "-help", spec.help, false) : null,
                     helper("lv-field-error", id + "-error", "", true)));
    }

    function openAction(action, path, opener) {
        const v = ctx.volumes.get(path);
        const a = ACTIONS[action];
        if (!v || !a)
            return;
        current = { action, path, v, fields: a.fields(v).map(s => s.id) };
        const dialog = $("action-dialog");
        dialog.dataset.action = action;
        clearDialog("action");
        $("action-title").textContent = f(S[a.title], v.Target, v.Domain);
        $("action-help").textContent = a.help ? S[a.help] : "";
        $("action-fields").replaceChildren(...a.fields(v).map(field));
        const submit = $("action-submit");
        submit.textContent = S[a.submit];
        submit.className = "pf-v5-c-button " + (a.destructive ? "pf-m-danger" : "pf-m-primary");
        // A destructive action is never the form's default: Enter in its
        // field does nothing, only the button does it.
        submit.type = a.destructive ? "button" : "submit";
        openDialog(dialog, opener, $("action-fields").querySelector("input"));
    }

    function emptyDialog() {
        // Removing the inputs drops what was typed; clear them first so no
        // value waits in a detached node either.
        for (const input of $("action-dialog").querySelectorAll("input[type=password]"))
            input.value = "";
        $("action-fields").replaceChildren();
        current = null;
    }

    function setBusy(on) {
        busy = on;
        for (const node of $("action-form").querySelectorAll("input, button#action-submit"))
            node.disabled = on;
        $("action-progress").textContent = on ? S.working : "";
    }

    function call(action, path, v) {
        const opts = {};
        const pass = () => takePassphrase($("action-passphrase"));
        switch (action) {
        case "resize": {
            const mib = Number($("action-size").value);
            const shrink = $("action-allow-shrink").checked;
            if (!Number.isInteger(mib) || mib <= 0)
                return Promise.reject({ local: "size", text: S.errSize });
            if (shrink)
                opts["allow-shrink"] = cockpit.variant("b", true);
            return ctx.client.call(path, VOLUME_IFACE, "Resize", [mib * MIB, opts], { type: "ta{sv}" })
                    .then(() => f(S.resizedTo, v.Target, v.Domain, cockpit.format_bytes(mib * MIB, 1024)));
        }
        case "verify":
            return ctx.client.call(MANAGER_PATH, MANAGER_IFACE, "VerifyPassphrase", [v.Source, pass(), {}],
                                   { type: "saya{sv}" })
                    .then(([slot]) => f(S.verified, slot, v.Target));
        case "change":
        case "add": {
            const np = $("action-new-passphrase");
            const confirm = $("action-confirm");
            if (!np.value)
                return Promise.reject({ local: "new-passphrase", text: S.errRequired });
            if (np.value !== confirm.value) {
                confirm.value = "";
                return Promise.reject({ local: "confirm", text: S.errConfirm });
            }
            confirm.value = "";
            const method = action === "change" ? "ChangePassphrase" : "AddPassphrase";
            return ctx.client.call(MANAGER_PATH, MANAGER_IFACE, method, [v.Source, pass(), takePassphrase(np), {}],
                                   { type: "sayaya{sv}" })
                    .then(reply => action === "change" ? f(S.changed, v.Target) : f(S.added, v.Target, reply[0]));
        }
        case "remove":
            if ($("action-force").checked)
                opts.force = cockpit.variant("b", true);
            return ctx.client.call(MANAGER_PATH, MANAGER_IFACE, "RemovePassphrase", [v.Source, pass(), opts],
                                   { type: "saya{sv}" })
                    .then(() => f(S.removed, v.Target));
        case "rearm":
            return ctx.client.call(path, VOLUME_IFACE, "Rearm", [pass(), {}], { type: "aya{sv}" })
                    .then(() => f(S.rearmed, v.Target, v.Domain));
        }
        return Promise.reject(new Error("unknown action " + action));
    }

    function submit(ev) {
        if (ev)
            ev.preventDefault();
        if (busy || !current)
            return;
        const { action, path, v, fields } = current;
        clearDialog("action", fields);
        if (fields.includes("passphrase") && !$("action-passphrase").value) {
            setFieldError("action", "passphrase", S.errRequired).focus();
            return;
        }
        setBusy(true);
        let p;
        try {
            p = call(action, path, v);
        } catch (e) {
            p = Promise.reject(e);
        }
        const dialog = $("action-dialog");
        p.then(text => {
            setBusy(false);
            ctx.showStatus(text);
            if (dialog.open)
                closeDialog(dialog);
        }).catch(err => {
            setBusy(false);
            if (!dialog.open || !current) {
                ctx.showStatus(describeAction(err, action).text);
                return;
            }
            let focus;
            const d = err && err.local ? { field: err.local, text: err.text } : describeAction(err, action);
            if (d.field && fields.includes(d.field)) {
                focus = setFieldError("action", d.field, d.text);
            } else {
                setDialogAlert("action", d.text);
                focus = $("action-submit");
            }
            // What was typed is gone from the page; say so at the field.
            for (const id of ["passphrase", "new-passphrase"])
                if (fields.includes(id) && d.field !== id && id !== "confirm" && !$("action-" + id).value &&
                    !(err && err.local))
                    setFieldError("action", id, S.fieldPassphraseCleared);
            focus.focus();
        });
    }

    function init() {
        $("action-form").addEventListener("submit", ev => {
            ev.preventDefault();
            if (current && ACTIONS[current.action].destructive)
                return;
            submit();
        });
        $("action-submit").addEventListener("click", ev => {
            if (ev.currentTarget.type === "button")
                submit();
        });
        $("action-cancel").addEventListener("click", () => closeDialog($("action-dialog")));
        for (const type of ["cancel", "close"])
            $("action-dialog").addEventListener(type, () => {
                for (const input of $("action-dialog").querySelectorAll("input[type=password]"))
                    input.value = "";
            });
        // "close" is dispatched after the dialog closed, as a task of its
        // own: by then the next action may have opened it again.
        $("action-dialog").addEventListener("close", () => {
            if (!busy && !$("action-dialog").open)
                emptyDialog();
        });
        document.addEventListener("click", ev => {
            if (openMenu !== null && !ev.target.closest(".lv-menu-wrap"))
                closeMenu(false);
        });
    }

    return { cell, init, closeMenu };
}
