// SPDX-License-Identifier: LGPL-2.1-or-later
//
// An attach in flight: its steps as the service reports them (the
// AttachProgress signal, sent to this session alone for the attach's
// request-id), shown in the attach dialog and as a pending row in the
// volume list; and its cancellation (CancelAttach), which the service
// honours until the disk is being plugged in.

import { icon, spinner } from "./icons.js";
import { S, f } from "./strings.js";
import { el, $ } from "./dom.js";

const MANAGER_PATH = "/org/example/LuksVolume1";
const MANAGER_IFACE = "org.example.LuksVolume1";
const STEPS = ["checking", "deriving-key", "plugging"];

export function createProgress(ctx) {
    // ctx: { client, rerender() }
    let current = null;   // { id, domain, source, step, cancel: null | "asked" | "late" | "unsupported" }

    function newId() {
        const rand = window.crypto && window.crypto.randomUUID
            ? window.crypto.randomUUID()
            : Date.now() + "-" + Math.random().toString(16).slice(2);
        return "cockpit-" + rand;
    }

    function renderSteps() {
        const list = $("attach-steps");
        if (!current) {
            list.hidden = true;
            list.replaceChildren();
            $("attach-progress").textContent = "";
            return;
        }
        const at = STEPS.indexOf(current.step);
        list.hidden = false;
        // PatternFly's progress stepper: done steps pf-m-success, the
        // running one pf-m-current with a spinner, the rest pf-m-pending.
        list.replaceChildren(...STEPS.map((step, i) => el("li", {
            class: "pf-v5-c-progress-stepper__step lv-step "
                + (i < at ? "pf-m-success lv-step-done" : i === at ? "pf-m-current pf-m-info lv-step-current" : "pf-m-pending lv-step-todo"),
            "data-step": step,
            "aria-current": i === at ? "step" : null,
        }, el("div", { class: "pf-v5-c-progress-stepper__step-connector" },
              el("span", { class: "pf-v5-c-progress-stepper__step-icon" },
                 i < at ? icon("check") : i === at ? spinner("sm") : null)),
        el("div", { class: "pf-v5-c-progress-stepper__step-main" },
           el("div", { class: "pf-v5-c-progress-stepper__step-title" }, S["step_" + step.replace("-", "_")])))));
        const note = { asked: S.cancelling, late: S.cancelTooLate, unsupported: S.cancelUnsupported }[current.cancel];
        $("attach-progress").textContent = note || "";
    }

    function onSignal(path, iface, signal, args) {
        const [id, step] = args || [];
        if (!current || id !== current.id || !STEPS.includes(step))
            return;
        // Never backwards (signals and replies may cross).
        if (STEPS.indexOf(step) > STEPS.indexOf(current.step))
            current.step = step;
        renderSteps();
        ctx.rerender();
    }

    function init() {
        ctx.client.subscribe({ path: MANAGER_PATH, interface: MANAGER_IFACE, member: "AttachProgress" }, onSignal);
    }

    // A new attach: returns its request id.
    function start(domain, source) {
        current = { id: newId(), domain, source, step: "checking", cancel: null };
        renderSteps();
        ctx.rerender();
        return current.id;
    }

    function end() {
        current = null;
        renderSteps();
        ctx.rerender();
    }

    // Asks the service to abandon the attach; the Attach call then answers
    // Error.Cancelled (or completes, when it was too late).
    function cancel() {
        if (!current || current.cancel === "asked")
            return;
        const mine = current;
        mine.cancel = "asked";
        renderSteps();
        ctx.client.call(MANAGER_PATH, MANAGER_IFACE, "CancelAttach", [mine.id], { type: "s" })
                .then(([cancelled]) => {
                    if (!cancelled && current === mine) {
                        mine.cancel = "late";
                        renderSteps();
                    }
                })
                .catch(() => {
                    if (current === mine) {
                        mine.cancel = "unsupported";
                        renderSteps();
                    }
                });
    }

    // The pending row of the volume list, or null.
    function pendingRow() {
        if (!current)
            return null;
        return el("div", { class: "lv-pending", id: "pending-attach", role: "status", "data-step": current.step },
                  spinner("md"),
                  el("span", {}, f(S.pendingAttach, current.source, current.domain), " ",
                     el("strong", {}, S["step_" + current.step.replace("-", "_")])),
                  current.cancel === "asked" ? el("span", { class: "lv-muted" }, " " + S.cancelling) : null);
    }

    return { init, start, end, cancel, pendingRow, active: () => current !== null };
}
