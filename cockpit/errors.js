// SPDX-License-Identifier: LGPL-2.1-or-later
//
// D-Bus errors of org.example.LuksVolume1 → where the page shows them and
// in which words.  Pure functions: no DOM, no D-Bus.

import { S, f } from "./strings.js";

const SVC = "org.example.LuksVolume1.Error.";
const DBUS = "org.freedesktop.DBus.Error.";

// The daemon's own message, made to end like a sentence.
function sentence(message) {
    const m = (message || "").trim();
    if (!m)
        return "";
    return /[.!?]$/.test(m) ? m : m + ".";
}

// InvalidArgs carries no field name; the daemon's messages name the
// argument or option they are about (daemon/manager-bus.c, options.c,
// source.c).  Unknown messages stay page-level.
function invalidArgsField(message) {
    const m = message || "";
    if (/domain name/i.test(m))
        return "domain";
    if (/passphrase/i.test(m))
        return "passphrase";
    if (/^Target '|'target'/.test(m))
        return "target";
    if (/'bus'/.test(m))
        return "bus";
    if (/'mode'/.test(m))
        return "mode";
    if (/source/i.test(m))
        return "source";
    return null;
}

// What the page checks of a source before asking the service: an absolute
// path, or an RBD image "rbd:POOL/IMAGE" (the service checks the names).
export function sourceProblem(source) {
    if (!source)
        return S.errRequired;
    if (source.startsWith("/") || /^rbd:[^/]+\/./.test(source))
        return null;
    return S.errAbsolute;
}

// Is this a refusal by polkit (or by the bus)?
export function isAuthError(err) {
    const name = err && err.name;
    return name === DBUS + "AccessDenied" ||
           name === DBUS + "InteractiveAuthorizationRequired" ||
           (err && err.problem === "access-denied");
}

// A refusal in one short sentence of the page's own: polkit's message
// names action ids, which mean nothing to the person at the page.
export function refusalText(err, what) {
    if (err && err.name === DBUS + "InteractiveAuthorizationRequired")
        return S.refusedNeedsAuth;
    return {
        attach: S.refusedAttach,
        detach: S.refusedDetach,
        probe: S.refusedProbe,
        resize: S.refusedResize,
        rearm: S.refusedAttach,
        verify: S.refusedKeys,
        change: S.refusedKeys,
        add: S.refusedKeys,
        remove: S.refusedKeys,
    }[what] || S.refused;
}

// A row action's error → { field, text, auth }: field is one of the
// action dialog's ("passphrase", "new-passphrase", "size") or null for its
// alert.
export function describeAction(err, action) {
    const name = (err && err.name) || "";
    const message = (err && err.message) || "";
    const msg = sentence(message);

    if (isAuthError(err))
        return { field: null, text: refusalText(err, action), auth: true };
    switch (name) {
    case SVC + "BadPassphrase":
        return { field: "passphrase", text: S.errBadPassphrase };
    case SVC + "NotSupported":
        return { field: action === "resize" ? "size" : null, text: f(S.errActionNotSupported, msg).trim() };
    case SVC + "Busy":
        return { field: null, text: f(S.errBusy, msg) };
    case SVC + "NoSuchVolume":
        return { field: null, text: S.errNoSuchVolume };
    case DBUS + "InvalidArgs":
        if (action === "resize")
            return { field: "size", text: msg };
        if (/new passphrase/i.test(message))
            return { field: "new-passphrase", text: msg };
        if (/passphrase/i.test(message))
            return { field: "passphrase", text: msg };
        return { field: null, text: msg };
    }
    return describe(err, action);
}

// describe(err, what) → { field, text, auth }   (what: "attach", "detach", …)
//   field: "domain" | "source" | "passphrase" | "bus" | "target" | "mode"
//          | null (page level, or the dialog's own alert)
//   auth:  true for polkit's refusals (the page shows its banner)
export function describe(err, what) {
    const name = (err && err.name) || "";
    const message = err && err.message;
    const msg = sentence(message);

    if (isAuthError(err))
        return { field: null, text: refusalText(err, what), auth: true };

    switch (name) {
    case SVC + "BadPassphrase":
        return { field: "passphrase", text: S.errBadPassphrase };
    case SVC + "NotLuks":
        return { field: "source", text: S.errNotLuks };
    case SVC + "AlreadyAttached":
        return { field: "source", text: f(S.errAlreadyAttached, msg).trim() };
    case SVC + "InUse":
        return { field: "source", text: f(S.errInUse, msg).trim() };
    case SVC + "NoSuchDomain":
        return { field: "domain", text: S.errNoSuchDomain };
    case SVC + "DomainNotRunning":
        return { field: "domain", text: S.errDomainNotRunning };
    case SVC + "TargetInUse":
        return { field: "target", text: S.errTargetInUse };
    case SVC + "NotSupported":
        return { field: "mode", text: f(S.errNotSupported, msg).trim() };
    case SVC + "NoSuchVolume":
        return { field: null, text: S.errNoSuchVolume };
    case SVC + "Busy":
        return { field: null, text: f(S.errBusy, msg) };
    case DBUS + "InvalidArgs":
        return { field: invalidArgsField(message), text: f(S.errInvalid, msg) };
    }

    // Not a D-Bus error: a problem of cockpit's channel (service gone,
    // bridge disconnected, …).
    const text = message || (err && err.problem ? cockpit.message(err) : String(err));
    return { field: null, text: f(S.errFailed, sentence(text)) };
}

// Why auto mode would not let QEMU decrypt a probed volume: the service's
// own reason when it gives one (native-obstacle, API v1.1), else derived
// from the LUKS version and the host's facts.
export function nativeObstacle(info, host) {
    if (typeof info["native-obstacle"] === "string" && info["native-obstacle"])
        return info["native-obstacle"];
    const version = info["luks-version"];
    if (version !== undefined && version !== 1)
        return f(S.obstacleLuks2, version);
    if (host && host["native-luks"] === false)
        return S.obstacleHost;
    return S.obstacleUnknown;
}
