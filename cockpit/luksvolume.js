// SPDX-License-Identifier: LGPL-2.1-or-later
//
// luksvolumed's Cockpit page.  Talks to the service only over D-Bus, through
// cockpit.dbus; polkit (and Cockpit's administrative access, through
// superuser: "try") decides what the logged-in user may do.
//
//   - the volume list is live: cockpit's watch() on the service's
//     ObjectManager (GetManagedObjects, then InterfacesAdded/Removed and
//     PropertiesChanged) feeds a model of the volume objects;
//   - Attach / Detach / Probe are plain method calls; their typed errors are
//     shown next to the field they concern (errors.js);
//   - every visible text comes from strings.js.

import { S, f } from "./strings.js";
import { describe, isAuthError, nativeObstacle, sourceProblem } from "./errors.js";
import { $, el, tableCell, openDialog, closeDialog, clearDialog, setFieldError, setDialogAlert, takePassphrase } from "./dom.js";
import { createActions } from "./actions.js";
import { protectionCell } from "./protection.js";
import { createProgress } from "./progress.js";
import { icon, spinner } from "./icons.js";

const BUS_NAME = "org.example.LuksVolume1";
const MANAGER_PATH = "/org/example/LuksVolume1";
const MANAGER_IFACE = "org.example.LuksVolume1";
const VOLUME_IFACE = "org.example.LuksVolume1.Volume";
const VOLUME_PREFIX = MANAGER_PATH + "/volume/";
const OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager";
const ATTACH_FIELDS = ["domain", "source", "passphrase", "bus", "target", "mode"];

const client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });

// ── state ──────────────────────────────────────────────────────────────────

// Volume object path → its properties (plain values).
const volumes = new Map();
let volumesLoaded = false;
// Object path → { pending: bool, note: { kind: "busy" | "error", text } }:
// what the page knows about a detach of that volume.
const rowState = new Map();
// Probe("") → info, or null until known / when refused.
let hostFacts = null;
// Running guests offered by the attach dialog's datalist: [{name, uuid,
// state}] from the service's ListDomains.
let libvirtGuests = [];
let attachInFlight = false;
// Whether this account can be anything but refused: null until known,
// false once polkit refused the host facts (Probe(""), the same action as
// ListDomains): then Attach and Detach are disabled with the reason.  A
// refusal of one attach does not count: a rule may refuse one guest or
// source and allow others.
let mayManage = null;

// ── small DOM helpers ──────────────────────────────────────────────────────

// Fills data-text / data-text-ATTR from strings.js.
function applyStrings(root) {
    for (const node of root.querySelectorAll("*")) {
        for (const attr of node.getAttributeNames()) {
            if (!attr.startsWith("data-text"))
                continue;
            const key = node.getAttribute(attr);
            const text = S[key];
            if (text === undefined) {
                console.warn("luksvolume: no string", key);
                continue;
            }
            if (attr === "data-text")
                node.textContent = text;
            else
                node.setAttribute(attr.slice("data-text-".length), text);
        }
    }
    document.title = S.pageTitle;
}

// D-Bus variants ({t, v}) from GetManagedObjects and Probe → plain values.
function unwrap(value) {
    if (value && typeof value === "object" && "t" in value && "v" in value)
        return value.v;
    return value;
}

function unwrapDict(dict) {
    const out = {};
    for (const [k, v] of Object.entries(dict || {}))
        out[k] = unwrap(v);
    return out;
}

// ── page-level messages ────────────────────────────────────────────────────

function showBanner(title, text) {
    $("banner-title").textContent = title;
    $("banner-text").textContent = text;
    $("banner").hidden = false;
}

function hideBanner() {
    $("banner").hidden = true;
}

// An account polkit only refuses: say so once, next to the toolbar, and
// disable what would only be refused (the controls point at the reason
// with aria-describedby).
function setAccess(allowed) {
    mayManage = allowed;
    $("access-note-text").textContent = allowed ? "" : S.accessDenied;
    $("access-note").hidden = allowed;
    $("attach-open").disabled = !allowed;
    renderVolumes();
}

function showStatus(text) {
    $("status-text").textContent = text;
}

// ── host facts ─────────────────────────────────────────────────────────────

// One term and its value in a PatternFly description list.
function fact(attrs, term, value) {
    return el("div", { class: "pf-v5-c-description-list__group lv-fact", ...attrs },
              el("dt", { class: "pf-v5-c-description-list__term" },
                 el("span", { class: "pf-v5-c-description-list__text" }, term)),
              el("dd", { class: "pf-v5-c-description-list__description" },
                 el("div", { class: "pf-v5-c-description-list__text" }, value)));
}

function renderHost() {
    const dl = $("host-facts");
    dl.replaceChildren();
    if (!hostFacts)
        return;
    const h = hostFacts;
    const yesNo = (flag, key) => el("span", { class: flag ? "lv-yes" : "lv-no", "data-fact": key },
                                     flag ? S.available : S.notAvailable);
    const rows = [
        [S.hostService, el("span", { "data-fact": "version" }, h.version || "—")],
        [S.hostLibvirt, el("span", { "data-fact": "libvirt-version" }, h["libvirt-version"] || "—")],
        [S.hostHypervisor, el("span", { "data-fact": "hypervisor" },
                              [h.hypervisor, h["hypervisor-version"]].filter(Boolean).join(" ") || "—")],
        [S.hostNative, yesNo(h["native-luks"], "native-luks")],
        [S.hostDmCrypt, yesNo(h["dm-crypt"], "dm-crypt")],
    ];
    for (const [term, value] of rows)
        dl.append(fact({}, term, value));
}

function loadHost() {
    $("host-message").textContent = S.hostLoading;
    return client.call(MANAGER_PATH, MANAGER_IFACE, "Probe", ["", {}], { type: "sa{sv}" })
            .then(([info]) => {
                hostFacts = unwrapDict(info);
                setAccess(true);
                $("host-message").textContent = "";
                renderHost();
            })
            .catch(err => {
                hostFacts = null;
                renderHost();
                if (isAuthError(err)) {
                    $("host-message").textContent = S.hostRefused;
                    setAccess(false);
                } else {
                    const d = describe(err);
                    $("host-message").textContent = f(S.hostFailed, d.text);
                    showBanner(d.text, "");
                }
            });
}

// ── volume list ────────────────────────────────────────────────────────────

function compareTargets(a, b) {
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

// Why a cryptsetup-mode volume is not decrypted by QEMU: the service's
// native-obstacle from Probe(Source), asked once per source; until it
// answers (or if it refuses), what the page can derive.
const obstacles = new Map();

function cryptsetupWhy(v) {
    if (!obstacles.has(v.Source)) {
        obstacles.set(v.Source, null);
        client.call(MANAGER_PATH, MANAGER_IFACE, "Probe", [v.Source, {}], { type: "sa{sv}" })
                .then(([info]) => {
                    const o = unwrapDict(info)["native-obstacle"];
                    if (o) {
                        obstacles.set(v.Source, o);
                        renderVolumes();
                    }
                })
                .catch(() => {});
    }
    return obstacles.get(v.Source) || nativeObstacle({ "luks-version": v.LuksVersion }, hostFacts);
}

// The column's name on the cell: narrow screens show it beside the value.
function labelled(td, label) {
    td.dataset.label = label;
    return td;
}

function volumeRows(path, v, showSize, columns) {
    const st = rowState.get(path) || {};
    const detaching = v.State === "detaching";

    const td = tableCell;
    const row = el("tr", {
        class: "pf-v5-c-table__tr lv-volume" + (detaching ? " lv-volume-detaching" : ""),
        "data-path": path,
        "data-target": v.Target,
        "data-mode": v.Mode,
        "data-state": v.State,
    },
    el("th", { scope: "row", class: "pf-v5-c-table__th lv-target", "data-label": S.colTarget }, v.Target,
       v.LuksVersion ? el("span", { class: "lv-luks" }, f(S.luksVersion, v.LuksVersion)) : null),
    td({ "data-label": S.colBus }, v.Bus),
    td({ class: "lv-source", "data-label": S.colSource }, el("code", { title: v.Source }, v.Source)),
    labelled(protectionCell(v, v.Mode === "cryptsetup" ? cryptsetupWhy(v) : null), S.colProtection),
    td({ "data-label": S.colState }, el("span", { class: detaching ? "lv-state lv-state-detaching" : "lv-state" },
                    detaching ? S.stateDetaching : v.State === "attached" ? S.stateAttached
                        : v.State === "saved" ? S.stateSaved : v.State)),
    td({ "data-label": S.colAccess }, v.ReadOnly ? S.readOnly : S.readWrite),
    showSize ? td({ class: "lv-size", "data-label": S.colSize },
                  typeof v.Size === "number" ? cockpit.format_bytes(v.Size, 1024) : "—") : null,
    actions.cell(path, v));

    const rows = [row];
    if (st.note) {
        const retry = st.note.kind === "busy"
            ? el("button", {
                type: "button",
                class: "pf-v5-c-button pf-m-secondary pf-m-small",
                "aria-label": f(S.retryDetachLabel, v.Target, v.Domain),
                "data-focus-key": "retry:" + path,
                disabled: st.pending,
                onclick: () => detach(path),
            }, S.retryDetach)
            : null;
        // An inline PatternFly alert under the row: a busy detach (with
        // its retry) or a failed one.
        const busy = st.note.kind === "busy";
        rows.push(el("tr", { class: "pf-v5-c-table__tr lv-note-row", "data-note-for": path },
                     tableCell({ colspan: columns },
                        el("div", { class: `pf-v5-c-alert pf-m-inline pf-m-${busy ? "warning" : "danger"} lv-note lv-note-${st.note.kind}`,
                                    role: "alert" },
                           el("div", { class: "pf-v5-c-alert__icon" }, icon(busy ? "warning" : "danger")),
                           el("p", { class: "pf-v5-c-alert__title" }, st.note.text),
                           retry ? el("div", { class: "pf-v5-c-alert__action-group" }, retry) : null))));
    }
    return rows;
}

// PatternFly's empty state: what the list is for, and the way to fill it.
function emptyState() {
    const attach = el("button", { type: "button", class: "pf-v5-c-button pf-m-primary", disabled: mayManage === false,
                                  "aria-describedby": mayManage === false ? "access-note" : null,
                                  onclick: ev => openAttach(ev) }, S.attachOpen);
    return el("div", { class: "pf-v5-c-empty-state pf-m-sm lv-empty", id: "volumes-empty" },
              el("div", { class: "pf-v5-c-empty-state__content" },
                 el("div", { class: "pf-v5-c-empty-state__header" },
                    el("div", { class: "pf-v5-c-empty-state__icon" }, icon("lock")),
                    el("div", { class: "pf-v5-c-empty-state__title" },
                       el("h3", { class: "pf-v5-c-empty-state__title-text" }, S.volumesEmpty))),
                 el("div", { class: "pf-v5-c-empty-state__body" }, S.volumesEmptyBody),
                 el("div", { class: "pf-v5-c-empty-state__footer" },
                    el("div", { class: "pf-v5-c-empty-state__actions" }, attach))));
}

function renderVolumes() {
    const container = $("volumes");
    const focused = document.activeElement;
    const focusKey = focused && focused.dataset ? focused.dataset.focusKey : undefined;

    container.replaceChildren();
    const pending = progress.pendingRow();
    if (pending)
        container.append(pending);
    if (!volumesLoaded) {
        container.append(el("div", { class: "lv-loading" }, spinner("lg"), el("p", { class: "lv-muted" }, S.volumesLoading)));
        return;
    }
    if (volumes.size === 0) {
        if (!pending)
            container.append(emptyState());
        return;
    }

    const showSize = [...volumes.values()].some(v => typeof v.Size === "number");
    const columns = showSize ? 8 : 7;

    // Group by guest (its UUID: names can be reused), sorted by name.
    const guests = new Map();
    for (const [path, v] of volumes) {
        const key = v.DomainUUID || v.Domain;
        if (!guests.has(key))
            guests.set(key, { name: v.Domain, uuid: v.DomainUUID, list: [] });
        guests.get(key).list.push([path, v]);
    }
    const sorted = [...guests.values()].sort((a, b) => (a.name || "").localeCompare(b.name || ""));

    for (const g of sorted) {
        g.list.sort((a, b) => compareTargets(a[1].Target || "", b[1].Target || ""));
        const headingId = "guest-" + (g.uuid || g.name).replace(/[^A-Za-z0-9_-]/g, "_");
        // Fixed column widths (luksvolume.css) keep the guests' tables aligned.
        const cols = [["target", S.colTarget], ["bus", S.colBus], ["source", S.colSource],
            ["protection", S.colProtection], ["state", S.colState], ["access", S.colAccess]];
        if (showSize)
            cols.push(["size", S.colSize]);
        const head = el("tr", {},
                        ...cols.map(([key, text]) => el("th", { scope: "col", class: "pf-v5-c-table__th lv-col-" + key }, text)),
                        el("th", { scope: "col", class: "pf-v5-c-table__th lv-col-actions" },
                           el("span", { class: "pf-v5-screen-reader" }, S.colActions)));
        head.className = "pf-v5-c-table__tr";
        const body = el("tbody", { class: "pf-v5-c-table__tbody" });
        for (const [path, v] of g.list)
            body.append(...volumeRows(path, v, showSize, columns));
        container.append(
            el("section", { class: "lv-guest", "data-domain": g.name, "aria-labelledby": headingId },
               el("h3", { id: headingId, class: "pf-v5-c-title pf-m-lg" }, g.name,
                  g.uuid ? el("span", { class: "lv-uuid" }, f(S.guestUuid, g.uuid)) : null),
               el("div", { class: "lv-table-wrap" },
                  // pf-m-grid-md: below PatternFly's md breakpoint each row
                  // stacks, every cell beside its column's name (data-label).
                  el("table", { class: "pf-v5-c-table pf-m-compact pf-m-grid-md " + (showSize ? "lv-table lv-table-size" : "lv-table"),
                                "aria-labelledby": headingId },
                     el("thead", { class: "pf-v5-c-table__thead" }, head), body))));
    }

    if (focusKey) {
        const again = container.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
        if (again)
            again.focus();
    }
}

function renderDomainList() {
    const guests = new Map(libvirtGuests.map(g => [g.name, g]));
    for (const v of volumes.values())
        if (v.Domain && !guests.has(v.Domain))
            guests.set(v.Domain, { name: v.Domain });
    $("attach-domain-list").replaceChildren(
        ...[...guests.keys()].sort().map(n => {
            const g = guests.get(n);
            return el("option", { value: n, label: g.state && g.state !== "running" ? f(S.guestState, n, g.state) : null });
        }));
}

// cockpit's watch() notifications: { path: { iface: { prop: value } | null } }.
// The first notification of a path and interface carries every property,
// later ones only the changes; null means the interface went away.
function onNotify(event, data) {
    let changed = false;
    for (const [path, ifaces] of Object.entries(data || {})) {
        if (!path.startsWith(VOLUME_PREFIX) || !(VOLUME_IFACE in ifaces))
            continue;
        const props = ifaces[VOLUME_IFACE];
        if (props === null) {
            volumes.delete(path);
            rowState.delete(path);
        } else {
            const known = volumes.get(path);
            const changes = unwrapDict(props);
            // A change of an object the page does not know yet (one
            // resync() dropped while cockpit's watch went on) is not a
            // volume to show: its full properties come with the next
            // notification or resync.
            if (!known && !("Domain" in changes))
                continue;
            volumes.set(path, { ...(known || {}), ...changes });
        }
        changed = true;
    }
    if (changed) {
        renderVolumes();
        renderDomainList();
    }
}

// Reads every volume again, for when the service was restarted: a new
// instance rebuilds its volumes from libvirt, and the ones that vanished
// meanwhile never announced it.
function resync() {
    return client.call(MANAGER_PATH, OBJECT_MANAGER_IFACE, "GetManagedObjects", [],
                       { type: "" })
            .then(([objects]) => {
                volumes.clear();
                for (const [path, ifaces] of Object.entries(objects || {})) {
                    if (path.startsWith(VOLUME_PREFIX) && ifaces[VOLUME_IFACE])
                        volumes.set(path, unwrapDict(ifaces[VOLUME_IFACE]));
                }
                for (const path of rowState.keys())
                    if (!volumes.has(path))
                        rowState.delete(path);
                volumesLoaded = true;
                renderVolumes();
                renderDomainList();
            })
            .catch(err => showBanner(describe(err).text, ""));
}

const progress = createProgress({ client, rerender: () => renderVolumes() });

const actions = createActions({
    client,
    volumes,
    rowState,
    allowed: () => mayManage,
    showStatus: text => showStatus(text),
    rerender: () => renderVolumes(),
    confirmDetach: (path, opener) => confirmDetach(path, opener),
});

function startWatching() {
    client.addEventListener("notify", onNotify);
    let owner = null;
    client.addEventListener("owner", (event, newOwner) => {
        if (newOwner && owner && newOwner !== owner)
            resync();
        if (newOwner)
            owner = newOwner;
    });
    client.addEventListener("close", (event, options) => {
        showBanner(f(S.serviceUnavailable, cockpit.message(options || {})), "");
    });
    return client.watch({ path_namespace: MANAGER_PATH })
            .then(() => {
                volumesLoaded = true;
                renderVolumes();
                renderDomainList();
            })
            .catch(err => {
                volumesLoaded = true;
                renderVolumes();
                showBanner(describe(err).text, "");
            });
}

// Running guests, from the service (ListDomains, authorized like the host
// facts): the page needs no libvirt access of its own.  A refusal or an
// older service leaves the list to the guests of attached volumes.
function loadLibvirtGuests() {
    return client.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains", [{}], { type: "a{sv}" })
            .then(([list]) => {
                libvirtGuests = list.map(([name, uuid, state]) => ({ name, uuid, state }));
                renderDomainList();
            })
            .catch(() => {});
}

// ── detach ─────────────────────────────────────────────────────────────────

function confirmDetach(path, opener) {
    const v = volumes.get(path);
    if (!v)
        return;
    const dialog = $("detach-dialog");
    $("detach-title").textContent = f(S.detachTitle, v.Target, v.Domain);
    $("detach-body").textContent = f(S.detachBody, v.Target, v.Source);
    dialog.dataset.path = path;
    // Focus on Cancel: the destructive button is never the default, so
    // that Enter pressed twice (or held) on the row's Detach cancels.
    openDialog(dialog, opener, $("detach-cancel"));
}

function detach(path) {
    const v = volumes.get(path) || {};
    const target = v.Target;
    const domain = v.Domain;
    rowState.set(path, { ...(rowState.get(path) || {}), pending: true });
    renderVolumes();
    return client.call(MANAGER_PATH, MANAGER_IFACE, "Detach", [path, {}], { type: "oa{sv}" })
            .then(() => {
                rowState.delete(path);
                showStatus(f(S.detached, target, domain));
            })
            .catch(err => {
                let note;
                if (err.name === "org.example.LuksVolume1.Error.Busy") {
                    note = { kind: "busy", text: f(S.detachBusy, target) };
                } else {
                    const d = describe(err, "detach");
                    note = { kind: "error", text: d.auth ? d.text : f(S.detachFailed, d.text) };
                }
                if (volumes.has(path))
                    rowState.set(path, { pending: false, note });
                else
                    showStatus(note.text);
            })
            .finally(renderVolumes);
}

// ── attach ─────────────────────────────────────────────────────────────────

function openAttach(ev) {
    const form = $("attach-form");
    $("attach-passphrase").value = "";
    if (!attachInFlight) {
        clearDialog("attach", ATTACH_FIELDS);
        $("attach-progress").textContent = "";
    }
    loadLibvirtGuests();
    renderDomainList();
    openDialog($("attach-dialog"), ev.currentTarget, form.elements.domain.value ? $("attach-source") : $("attach-domain"));
}

// While an attach runs, the form is frozen; Cancel, the close button and
// Escape then cancel the attach (progress.js) instead of only closing.
function setAttachBusy(busy) {
    attachInFlight = busy;
    for (const node of $("attach-form").querySelectorAll("input, select, button[type=submit]"))
        node.disabled = busy;
}

function closeAttachDialog() {
    if (attachInFlight)
        progress.cancel();
    else
        closeDialog($("attach-dialog"));
}

function submitAttach(ev) {
    ev.preventDefault();
    if (attachInFlight)
        return;
    clearDialog("attach", ATTACH_FIELDS);

    const domain = $("attach-domain").value.trim();
    const source = $("attach-source").value.trim();
    const target = $("attach-target").value.trim();
    const bus = $("attach-bus").value;
    const mode = $("attach-mode").value;
    const readOnly = $("attach-readonly").checked;
    const passInput = $("attach-passphrase");

    let firstBad = null;
    const bad = (field, text) => {
        const input = setFieldError("attach", field, text);
        firstBad = firstBad || input;
    };
    if (!domain)
        bad("domain", S.errRequired);
    if (sourceProblem(source))
        bad("source", sourceProblem(source));
    if (!passInput.value)
        bad("passphrase", S.errRequired);
    if (firstBad) {
        firstBad.focus();
        return;
    }

    // The passphrase leaves the input here (dom.js: takePassphrase).
    let b64 = takePassphrase(passInput);

    const options = {
        bus: cockpit.variant("s", bus),
        mode: cockpit.variant("s", mode),
        "read-only": cockpit.variant("b", readOnly),
    };
    if (target)
        options.target = cockpit.variant("s", target);

    setAttachBusy(true);
    options["request-id"] = cockpit.variant("s", progress.start(domain, source));
    let call = client.call(MANAGER_PATH, MANAGER_IFACE, "Attach", [domain, source, b64, options],
                           { type: "ssaya{sv}" });
    b64 = null;
    const dialog = $("attach-dialog");

    call.then(([path]) => {
        call = null;
        setAttachBusy(false);
        progress.end();
        const v = volumes.get(path) || {};
        showStatus(f(S.attached, source, domain, v.Target || path));
        $("attach-source").value = "";
        $("attach-target").value = "";
        if (dialog.open)
            closeDialog(dialog);
    }).catch(err => {
        call = null;
        setAttachBusy(false);
        progress.end();
        if (err && err.name === "org.example.LuksVolume1.Error.Cancelled") {
            showStatus(f(S.attachCancelled, source, domain));
            if (dialog.open)
                closeDialog(dialog);
            return;
        }
        const d = describe(err, "attach");
        if (!dialog.open) {
            // Closed while the call ran: report on the page.
            showBanner(d.text, "");
            return;
        }
        let focus;
        if (d.field) {
            focus = setFieldError("attach", d.field, d.text);
        } else {
            setDialogAlert("attach", d.text);
            focus = $("attach-submit");
        }
        // The passphrase is gone from the page; say so where it was typed.
        if (d.field !== "passphrase")
            setFieldError("attach", "passphrase", S.fieldPassphraseCleared);
        focus.focus();
    });
}

// ── probe ──────────────────────────────────────────────────────────────────

function renderProbe(info) {
    const dl = $("probe-result");
    dl.replaceChildren();
    const add = (key, term, value) =>
        dl.append(fact({ "data-probe": key }, term, value));

    add("luks-version", S.probeLuksVersion, f(S.luksVersion, info["luks-version"]));
    if (info.uuid)
        add("uuid", S.probeUuid, el("code", {}, info.uuid));
    if (info.cipher)
        add("cipher", S.probeCipher, info.cipher);
    if (info["key-size"] !== undefined)
        add("key-size", S.probeKeySize, f(S.probeKeySizeBits, info["key-size"]));
    if (info["active-keyslots"] !== undefined)
        add("active-keyslots", S.probeKeyslots, String(info["active-keyslots"]));
    if (typeof info.size === "number")
        add("size", S.probeSize, cockpit.format_bytes(info.size, 1024));
    if (info["native-capable"] !== undefined) {
        add("native-capable", S.probeNative, info["native-capable"]
            ? el("span", { class: "lv-yes" }, S.probeNativeYes)
            : el("span", { class: "lv-no" }, f(S.probeNativeNo, nativeObstacle(info, hostFacts))));
    }
    if (info.attached !== undefined) {
        let text = S.probeAttachedNo;
        if (info.attached && info.attached !== "/") {
            const v = volumes.get(info.attached);
            text = v ? f(S.probeAttachedYes, v.Target, v.Domain) : f(S.probeAttachedOther, info.attached);
        }
        add("attached", S.probeAttached, text);
    }
    dl.hidden = false;
}

function openProbe(ev) {
    clearDialog("probe", ["source"]);
    $("probe-result").hidden = true;
    $("probe-progress").textContent = "";
    openDialog($("probe-dialog"), ev.currentTarget, $("probe-source"));
}

function submitProbe(ev) {
    ev.preventDefault();
    clearDialog("probe", ["source"]);
    $("probe-result").hidden = true;
    const source = $("probe-source").value.trim();
    if (sourceProblem(source)) {
        setFieldError("probe", "source", sourceProblem(source)).focus();
        return;
    }
    $("probe-progress").textContent = S.probing;
    $("probe-submit").disabled = true;
    client.call(MANAGER_PATH, MANAGER_IFACE, "Probe", [source, {}], { type: "sa{sv}" })
            .then(([info]) => renderProbe(unwrapDict(info)))
            .catch(err => {
                const d = describe(err, "probe");
                // Probe has one field: every field-bound error is the source's.
                if (d.field)
                    setFieldError("probe", "source", d.text).focus();
                else
                    setDialogAlert("probe", d.text);
            })
            .finally(() => {
                $("probe-progress").textContent = "";
                $("probe-submit").disabled = false;
            });
}

// ── start ──────────────────────────────────────────────────────────────────

function init() {
    applyStrings(document);

    $("banner-dismiss").addEventListener("click", () => {
        hideBanner();
        $("attach-open").focus();
    });
    $("attach-open").addEventListener("click", openAttach);
    $("attach-form").addEventListener("submit", submitAttach);
    $("attach-cancel").addEventListener("click", closeAttachDialog);
    // Escape while an attach runs: cancel it, keep the dialog until the
    // service answers.
    $("attach-dialog").addEventListener("cancel", ev => {
        if (attachInFlight) {
            ev.preventDefault();
            progress.cancel();
        }
    });
    progress.init();
    // However the dialog closes (Cancel, Escape, a successful attach), a
    // typed passphrase must not wait in the page for the next opening.
    // Escape fires "cancel" before "close"; clear on both, and on opening.
    for (const type of ["cancel", "close"])
        $("attach-dialog").addEventListener(type, () => {
            $("attach-passphrase").value = "";
        });
    for (const button of document.querySelectorAll("[data-close]"))
        button.addEventListener("click", () => button.dataset.close === "attach-dialog"
            ? closeAttachDialog()
            : closeDialog($(button.dataset.close)));
    actions.init();
    $("probe-open").addEventListener("click", openProbe);
    $("probe-form").addEventListener("submit", submitProbe);
    $("probe-cancel").addEventListener("click", () => $("probe-dialog").close());
    $("detach-cancel").addEventListener("click", () => $("detach-dialog").close());
    $("detach-form").addEventListener("submit", ev => {
        ev.preventDefault();
        const dialog = $("detach-dialog");
        const path = dialog.dataset.path;
        dialog.close();
        if (path)
            detach(path);
    });

    renderVolumes();
    Promise.allSettled([startWatching(), loadHost()])
            .then(() => $("page").setAttribute("aria-busy", "false"));
}

init();
