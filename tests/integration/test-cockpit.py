#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Cockpit page (cockpit/) in a real browser, against the real stack:
# headless Chromium (WebDriver, python3-selenium) → cockpit-ws → its
# cockpit-bridge → the sandbox's private system bus → the bus-activated
# daemon → polkitd → libvirtd → TCG guests.  Runs inside
# tests/sandbox/sandbox.sh (the daemon started with --detach-timeout=2, so
# the Busy case takes seconds) and speaks TAP, the plan last.
#
# Usage (inside the sandbox):
#   test-cockpit.py --luksvolumectl PATH --lib-sh PATH --manifest PATH
#                   [--screenshots DIR] [--tap] PAGE-FILE...
#
# The page is installed the way meson installs it (its files and the
# generated manifest, flat) into a scratch $XDG_DATA_DIRS/cockpit/luksvolume
# that only this test's cockpit-ws processes see.  Two of them run:
#   - port 9090 as the sandbox's lvadmin (uid 4202), a local session
#     (cockpit-ws --local-session): a delegated admin, not root — a polkit
#     rule written here grants the group lvgroup every action of the
#     service except attaches to the guest "forbidden" (the refusal case);
#   - port 9091 as the sandbox's plain user lvuser (uid 4201): polkit
#     refuses it, and the page must say so.
# The service is checked independently of the page with busctl (sd-bus):
# GetManagedObjects after every attach, error and detach.
#
# Screenshots of each state go to DIR (default: given by meson, the build's
# meson-logs/cockpit-screenshots/), or to $LV_COCKPIT_SCREENSHOTS if set.
# Any SEVERE browser console entry (a JavaScript exception, a CSP
# violation, a failed resource load) fails the test.
#
# Missing Chromium, chromedriver, python3-selenium or cockpit-ws/bridge is a
# failure, not a skip: tests/install-deps.sh installs them.

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

T0 = time.monotonic()

# ── TAP ──────────────────────────────────────────────────────────────────────

n_tests = 0
n_failed = 0


def ok(cond, desc, detail=None):
    global n_tests, n_failed
    n_tests += 1
    if cond:
        print(f"ok {n_tests} - {desc}", flush=True)
    else:
        n_failed += 1
        print(f"not ok {n_tests} - {desc}", flush=True)
        if detail:
            diag(detail)
    return cond


def diag(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def bail(msg):
    print("Bail out! " + msg, flush=True)
    sys.exit(1)


# ── arguments and environment ───────────────────────────────────────────────

ap = argparse.ArgumentParser()
ap.add_argument("--luksvolumectl", required=True)
ap.add_argument("--lib-sh", required=True)
ap.add_argument("--manifest", required=True)
ap.add_argument("--screenshots", default="")
ap.add_argument("--tap", action="store_true")
ap.add_argument("page_files", nargs="+")
args = ap.parse_args()
# Paths as meson gives them may be relative to the build directory.
args.luksvolumectl = os.path.abspath(args.luksvolumectl)
args.lib_sh = os.path.abspath(args.lib_sh)
args.manifest = os.path.abspath(args.manifest)
args.page_files = [os.path.abspath(p) for p in args.page_files]

if not os.environ.get("LV_SANDBOX_DIR") or not os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"):
    bail("not inside tests/sandbox/sandbox.sh")

BUS = "org.example.LuksVolume1"
MANAGER = "/org/example/LuksVolume1"
VOLUME_IFACE = "org.example.LuksVolume1.Volume"
COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LV_USER_UID = 4201
LV_ADMIN_UID = 4202
LV_GROUP = "lvgroup"
FORBIDDEN_GUEST = "forbidden"
PASS = "cockpit test passphrase"
WRONG = "not the passphrase"
IMAGES = "/var/lib/libvirt/images"      # a tmpfs of the sandbox

W = os.path.join(os.environ["LV_SANDBOX_DIR"], "cockpit")
SHOTS = os.environ.get("LV_COCKPIT_SCREENSHOTS") or args.screenshots or os.path.join(W, "screenshots")
os.makedirs(W, exist_ok=True)
os.makedirs(SHOTS, exist_ok=True)
os.chdir(W)
diag(f"screenshots: {SHOTS}")

virsh = ["virsh", "-q", "-c", os.environ.get("LV_LIBVIRT_URI", "qemu:///system")]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def wait_for(fn, timeout=30.0, interval=0.1):
    """fn's first truthy result within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = fn()
        except Exception:        # noqa: BLE001 — a page mid-render, a stale element
            r = None
        if r:
            return r
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def managed_volumes():
    """The service's volumes, as busctl (sd-bus, not the page) reports them:
    {path: {prop: value}}."""
    r = run(["busctl", "--system", "--json=short", "call", BUS, MANAGER,
             "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"])
    if r.returncode != 0:
        raise RuntimeError("GetManagedObjects failed: " + r.stderr)
    data = json.loads(r.stdout)["data"][0]
    out = {}
    for path, ifaces in data.items():
        if VOLUME_IFACE in ifaces:
            out[path] = {k: v["data"] for k, v in ifaces[VOLUME_IFACE].items()}
    return out


def volume_summary():
    return sorted((v["Domain"], v["Target"], v["Mode"], v["State"]) for v in managed_volumes().values())


# ── prerequisites ───────────────────────────────────────────────────────────

missing = [p for p in (COCKPIT_WS, "/usr/bin/cockpit-bridge", CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
except ImportError as e:
    missing.append(f"python3-selenium ({e})")
if not ok(not missing, "cockpit-ws, cockpit-bridge, chromium, chromedriver and python3-selenium are installed",
          "missing: " + ", ".join(missing) + " (run tests/install-deps.sh)"):
    print(f"1..{n_tests}")
    sys.exit(1)

# ── fixtures: images, guests, the installed page ────────────────────────────

with open("key", "w") as fh:
    fh.write(PASS)
os.chmod("key", 0o600)


def lib(func, *a):
    r = run(["bash", "-c", 'source "$0"; "$@"', args.lib_sh, func, *a])
    if r.returncode != 0:
        bail(f"{func} {' '.join(a)} failed: {r.stderr}")


for name in ("web-data.img", "db-archive.img", "scratch.img"):
    lib("lv_make_luks1_image", f"{IMAGES}/{name}", "key")
# Not LUKS at all, and a LUKS2 volume (which QEMU cannot decrypt).
with open(f"{IMAGES}/plain.img", "wb") as fh:
    fh.truncate(4 << 20)
os.chmod(f"{IMAGES}/plain.img", 0o644)
with open(f"{IMAGES}/luks2.img", "wb") as fh:
    fh.truncate(18 << 20)
r = run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "--key-file=key", f"{IMAGES}/luks2.img"])
if r.returncode != 0:
    bail("cryptsetup luksFormat --type luks2 failed: " + r.stderr)
# A volume whose key slot costs seconds of PBKDF2: the window in which an
# attach can be watched and cancelled.
with open(f"{IMAGES}/slow.img", "wb") as fh:
    fh.truncate(18 << 20)
r = run(["cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "6000000",
         "--key-file=key", f"{IMAGES}/slow.img"])
if r.returncode != 0:
    bail("cryptsetup luksFormat of slow.img failed: " + r.stderr)
os.chmod(f"{IMAGES}/slow.img", 0o644)
for guest in ("web1", "db1"):
    lib("lv_start_guest", guest)

# The page, installed as meson installs it, where only our cockpit-ws see it.
share = os.path.join(W, "share")
pkg = os.path.join(share, "cockpit", "luksvolume")
os.makedirs(pkg, exist_ok=True)
for f in args.page_files + [args.manifest]:
    shutil.copy(f, pkg)
for d, _, files in os.walk(share):
    os.chmod(d, 0o755)
    for f in files:
        os.chmod(os.path.join(d, f), 0o644)


def session_env(name, uid):
    """A private HOME and XDG directories per cockpit session: nothing from
    the host's ~/.local/share/cockpit may shadow the page under test."""
    home = os.path.join(W, "home-" + name)
    for sub in ("", ".local/share", ".config", "run"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    for d, _, _ in os.walk(home):
        os.chown(d, uid, uid)
    os.chmod(os.path.join(home, "run"), 0o700)
    return dict(os.environ, HOME=home, XDG_DATA_HOME=os.path.join(home, ".local/share"),
                XDG_CONFIG_HOME=os.path.join(home, ".config"), XDG_RUNTIME_DIR=os.path.join(home, "run"),
                XDG_DATA_DIRS=f"{share}:/usr/share", LANG="C.UTF-8")


# The delegated admin's polkit rule: by group, as an administrator would
# write it (polkit/examples/50-luksvolume-group.rules), with one exception so
# that a refusal of a real call can be seen by someone the page lets try.
ADMIN_RULE = f"""
polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.example.luksvolume1.") != 0 || !subject.isInGroup("{LV_GROUP}"))
        return polkit.Result.NOT_HANDLED;
    if (action.id == "org.example.luksvolume1.attach" && action.lookup("domain") == "{FORBIDDEN_GUEST}")
        return polkit.Result.NO;
    return polkit.Result.YES;
}});
"""
with open(os.path.join(os.environ["LV_POLKIT_RULES_DIR"], "50-cockpit-admin.rules"), "w") as fh:
    fh.write(ADMIN_RULE)


def admin_rule_loaded():
    r = run(["setpriv", f"--reuid={LV_ADMIN_UID}", f"--regid={LV_ADMIN_UID}", "--clear-groups",
             "busctl", "--system", "call", BUS, MANAGER, "org.example.LuksVolume1", "Probe", "sa{sv}", "", "0"])
    return r.returncode == 0


if not wait_for(admin_rule_loaded, 15, 0.5):
    bail("polkitd did not apply the delegated admin's rule within 15 s")

procs = []


def start_cockpit_ws(port, name, uid):
    env = session_env(name, uid)
    cmd = [COCKPIT_WS, "-p", str(port), "-a", "127.0.0.1", "--no-tls", "--local-session=cockpit-bridge"]
    if uid != 0:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + cmd
    log = open(os.path.join(W, f"cockpit-ws-{name}.log"), "w")
    p = subprocess.Popen(cmd, env=env, cwd=env["HOME"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    procs.append(p)

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    if not wait_for(listening, 10):
        bail(f"cockpit-ws ({name}) did not listen on port {port}; see {log.name}")
    return p


# ── browser ─────────────────────────────────────────────────────────────────

browser_home = os.path.join(W, "home-browser")
os.makedirs(browser_home, exist_ok=True)
opts = webdriver.ChromeOptions()
opts.binary_location = CHROMIUM
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,960",
          "--force-device-scale-factor=1", "--lang=en-US", "--no-first-run",
          f"--user-data-dir={W}/chromium-profile"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(CHROMEDRIVER, log_path=os.path.join(W, "chromedriver.log"),
                  env=dict(os.environ, HOME=browser_home))

console = []            # every browser console entry, with the session it came from


def collect_console(session):
    for entry in driver.get_log("browser"):
        console.append((session, entry))


def page_height():
    return js("""
        const page = document.getElementById('page').getBoundingClientRect().bottom + window.scrollY + 16;
        const dialogs = [...document.querySelectorAll('dialog[open]')].map(d => d.offsetHeight + 64);
        const menus = [...document.querySelectorAll('.lv-menu:not([hidden])')]
            .map(m => m.getBoundingClientRect().bottom + window.scrollY + 16);
        return Math.ceil(Math.max(page, ...dialogs, ...menus));""")


def set_width(width, height=900):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 768})


def shot(name, width=1280):
    """A PNG of the page as it is at that width, the viewport cut to the
    content's height (the page, or an open dialog with some margin) so no
    empty band shows."""
    set_width(width)
    set_width(width, max(int(page_height()), 400))
    try:
        driver.save_screenshot(os.path.join(SHOTS, name + ".png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def js(script, *a):
    return driver.execute_script(script, *a)


def open_page(port):
    driver.get(f"http://127.0.0.1:{port}/cockpit/@localhost/luksvolume/index.html")
    return wait_for(lambda: js("return document.getElementById('page')?.getAttribute('aria-busy') === 'false'"), 30)


def by_id(i):
    return driver.find_element(By.ID, i)


def row_js(domain, target):
    return (f"document.querySelector('section.lv-guest[data-domain=\"{domain}\"] "
            f"tr.lv-volume[data-target=\"{target}\"]')")


def field_error(field, prefix="attach"):
    """(visible text, is it next to its field) of a field's error."""
    return js("""
        const [prefix, field] = arguments;
        const input = document.getElementById(prefix + '-' + field);
        const err = document.getElementById(prefix + '-' + field + '-error');
        if (!err || err.hidden || !err.textContent)
            return null;
        const beside = input.closest('.lv-field').contains(err) &&
                       (input.getAttribute('aria-describedby') || '').split(' ').includes(err.id) &&
                       input.getAttribute('aria-invalid') === 'true';
        return [err.textContent, beside];
    """, prefix, field)


def visible_field_errors(prefix="attach"):
    return js("""
        return [...document.querySelectorAll('#' + arguments[0] + '-dialog .lv-field-error')]
            .filter(e => !e.hidden).map(e => e.id);
    """, prefix)


def set_text(i, value):
    el = by_id(i)
    el.clear()
    if value:
        el.send_keys(value)


def attach_dialog(domain, source, passphrase, bus="scsi", target="", mode="auto", read_only=False, wait=True):
    """Fills the attach dialog (opening it if needed), submits, and waits
    until the call has finished (unless not wait).  Returns whether the
    dialog closed."""
    if not js("return document.getElementById('attach-dialog').open"):
        by_id("attach-open").click()
        wait_for(lambda: js("return document.getElementById('attach-dialog').open"), 5)
    set_text("attach-domain", domain)
    set_text("attach-source", source)
    set_text("attach-passphrase", passphrase)
    Select(by_id("attach-bus")).select_by_value(bus)
    set_text("attach-target", target)
    Select(by_id("attach-mode")).select_by_value(mode)
    if by_id("attach-readonly").is_selected() != read_only:
        by_id("attach-readonly").click()
    by_id("attach-submit").click()
    if not wait:
        return False
    wait_for(lambda: js("return !document.getElementById('attach-submit').disabled"), 60)
    return not js("return document.getElementById('attach-dialog').open")


def close_dialogs():
    js("document.querySelectorAll('dialog[open]').forEach(d => d.close())")


driver = None


def visible_text():
    return js("return document.body.innerText")


def open_row_action(domain, target, action):
    """Clicks a row's action: an item of its menu (opened first), or for
    detach the row's own button on a page without menus."""
    return js("""
        const [domain, target, action] = arguments;
        const row = document.querySelector('section.lv-guest[data-domain="' + domain + '"] ' +
                                           'tr.lv-volume[data-target="' + target + '"]');
        if (!row) return false;
        const kebab = row.querySelector('.lv-kebab');
        if (kebab && kebab.getAttribute('aria-expanded') !== 'true') kebab.click();
        let item = row.querySelector('[data-action="' + action + '"]');
        if (!item && action === 'detach') item = row.querySelector('.lv-actions button');
        if (!item || item.disabled) return false;
        item.click();
        return true;""", domain, target, action)


def ctl_verify(source, passphrase):
    """luksvolumectl verify as root: (exit status, stdout) — the service's
    answer, independent of the page."""
    with open("verify-key", "w") as fh:
        fh.write(passphrase)
    r = run([args.luksvolumectl, "verify", source, "--passphrase-file=verify-key", "--no-ask-password"])
    return r.returncode, r.stdout.strip()


def action_dialog(domain, target, action, **fields):
    """Opens a row action's dialog through its menu, fills fields (id →
    text, or bool for a checkbox), clicks its button, waits for the call."""
    open_row_action(domain, target, action)
    wait_for(lambda: js("return document.getElementById('action-dialog').open"), 5)
    for fid, value in fields.items():
        e = by_id("action-" + fid)
        if isinstance(value, bool):
            if e.is_selected() != value:
                e.click()
        else:
            e.clear()
            e.send_keys(value)
    by_id("action-submit").click()
    wait_for(lambda: js("return !document.getElementById('action-submit').disabled"), 60)
    return wait_for(lambda: js("return !document.getElementById('action-dialog').open"), 2)


def row_menu_checks():
    src = f"{IMAGES}/web-data.img"
    # The menu from the keyboard: Enter opens it on its first item, the
    # arrows move, Escape closes it and gives focus back to the kebab.
    js(f"{row_js('web1', 'sda')}.querySelector('.lv-kebab').focus()")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    first = wait_for(lambda: js("return document.activeElement.dataset.action"), 5)
    driver.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    second = js("return document.activeElement.dataset.action")
    items = js(f"""return [...{row_js('web1', 'sda')}.querySelectorAll('[role=menuitem]')]
                   .map(i => i.dataset.action + (i.disabled ? ':disabled' : ''))""")
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    back = js("return document.activeElement.classList.contains('lv-kebab') && "
              "document.activeElement.getAttribute('aria-expanded')")
    ok(first == "detach" and second == "resize" and back == "false"
       and items == ["detach", "resize", "verify", "change", "add", "remove"],
       "row menu: Enter opens it on Detach, arrows move, Escape closes it back on the kebab; "
       "detach, resize, the four key actions (no rearm: not saved)", f"{first} {second} {back} {items}")
    js(f"{row_js('web1', 'sda')}.querySelector('.lv-kebab').click()")
    shot("06b-row-menu")
    close_dialogs()
    js("document.body.click()")
    ro = js(f"""const i = {row_js('db1', 'sda')}.querySelector('[data-action=resize]');
               const why = document.getElementById(i.getAttribute('aria-describedby') || '');
               return [i.disabled, why && why.textContent]""")
    ok(ro[0] and "read-only" in (ro[1] or ""), "a read-only volume's Resize is disabled, with the reason", ro)

    # Verify: wrong passphrase at its field; right one names the slot.
    action_dialog("web1", "sda", "verify", passphrase=WRONG)
    err = wait_for(lambda: field_error("passphrase", "action"), 30)
    ok(err and err[0] == "This passphrase opens none of the volume's key slots." and err[1],
       "verify with a wrong passphrase: BadPassphrase at the passphrase field", err)
    close_dialogs()
    closed = action_dialog("web1", "sda", "verify", passphrase=PASS)
    status = js("return document.getElementById('status').textContent")
    ok(closed and "opens key slot 0" in status, "verify with the right one: the page names key slot 0", status)

    # Add: the two new ones must match (checked before any call), then slot 1.
    action_dialog("web1", "sda", "add", **{"passphrase": PASS, "new-passphrase": "second one", "confirm": "second 0ne"})
    err = field_error("confirm", "action")
    ok(err and err[0] == "The two new passphrases differ." and ctl_verify(src, "second one")[0] != 0,
       "add with two different new passphrases: refused at the confirmation, nothing added", err)
    close_dialogs()
    closed = action_dialog("web1", "sda", "add", **{"passphrase": PASS, "new-passphrase": "second one",
                                                    "confirm": "second one"})
    status = js("return document.getElementById('status').textContent")
    v = ctl_verify(src, "second one")
    ok(closed and "key slot 1" in status and v == (0, "slot: 1"),
       "add a passphrase: the page names slot 1, and the service opens slot 1 with it", f"{status!r} {v}")

    # Change with a wrong current passphrase: at the current field, nothing changed.
    action_dialog("web1", "sda", "change", **{"passphrase": WRONG, "new-passphrase": "third", "confirm": "third"})
    err = wait_for(lambda: field_error("passphrase", "action"), 30)
    ok(err and err[0].startswith("This passphrase opens none") and ctl_verify(src, "third")[0] != 0,
       "change with a wrong current passphrase: BadPassphrase at that field, nothing changed", err)
    # Escape: every passphrase field of the dialog is empty at once.
    by_id("action-new-passphrase").send_keys(Keys.ESCAPE)
    left = js("return [...document.querySelectorAll('#action-dialog input[type=password]')].map(i => i.value)")
    ok(not js("return document.getElementById('action-dialog').open") and all(x == "" for x in left),
       "Escape closes an action dialog and no typed passphrase stays in the page", left)

    # Remove: Enter in its field does not remove (the destructive button is
    # never the default); the button does.
    open_row_action("web1", "sda", "remove")
    wait_for(lambda: js("return document.getElementById('action-dialog').open"), 5)
    by_id("action-passphrase").send_keys("second one")
    by_id("action-passphrase").send_keys(Keys.ENTER)
    time.sleep(1.5)
    still = js("return document.getElementById('action-dialog').open") and ctl_verify(src, "second one")[0] == 0
    by_id("action-submit").click()
    removed = wait_for(lambda: js("return !document.getElementById('action-dialog').open"), 30)
    left = js("""return [document.getElementById('action-alert').textContent,
                         ...[...document.querySelectorAll('#action-dialog .lv-field-error')].map(e => e.textContent),
                         document.getElementById('status').textContent]""")
    close_dialogs()
    ok(still and removed and ctl_verify(src, "second one")[0] != 0 and ctl_verify(src, PASS)[0] == 0,
       "remove a passphrase: Enter in the field does nothing, the button removes it; the first still opens",
       f"still={still} removed={removed} {left} verify: {ctl_verify(src, 'second one')} {ctl_verify(src, PASS)}")

    # Resize: a shrink without the checkbox is refused at the size field;
    # growing shows in the service's Size and in the row.
    action_dialog("web1", "sda", "resize", size="8")
    err = wait_for(lambda: field_error("size", "action"), 30)
    ok(err and err[1], "resize below the current size without 'Allow shrinking': refused at the size field", err)
    close_dialogs()
    closed = action_dialog("web1", "sda", "resize", size="32")
    size = wait_for(lambda: js(f"return {row_js('web1', 'sda')}?.querySelector('.lv-size')?.textContent === '32 MiB'"), 30)
    svc = [v["Size"] for v in managed_volumes().values() if v["Domain"] == "web1" and v["Target"] == "sda"]
    ok(closed and size and svc == [32 << 20], "resize to 32 MiB: the service's Size and the row say 32 MiB", svc)

    # A cryptsetup-mode row (the sandbox has no device-mapper, so the
    # service cannot make one: protection.js is pure and rendered as is).
    cell = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./protection.js').then(m => {
            const td = m.protectionCell({ Mode: 'cryptsetup', MapperDevice: '/dev/mapper/luksvol-x', LuksVersion: 2 },
                                        'QEMU decrypts only LUKS1.');
            done(td.textContent);
        }).catch(e => done('error: ' + e));""")
    ok("decrypted on the host" in cell and "Why on the host: QEMU decrypts only LUKS1." in cell
       and "cleartext exists on this host" in cell,
       "a cryptsetup-mode row says why it is not QEMU and warns that the cleartext is on the host", cell)

    # A native row through a header shim (issue 17; no device-mapper here
    # either): it says so and names the shim's device.
    cell = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./protection.js').then(m => {
            const shim = m.protectionCell({ Mode: 'native', NativeHeader: 'shim',
                                            ShimDevice: '/dev/mapper/luksvol-shim-x' }, null);
            const own = m.protectionCell({ Mode: 'native', NativeHeader: 'volume', ShimDevice: '' }, null);
            done([shim.textContent, own.textContent]);
        }).catch(e => done(['error: ' + e, '']));""")
    ok("decrypted by QEMU" in cell[0] and "one-time LUKS1 header" in cell[0]
       and "/dev/mapper/luksvol-shim-x" in cell[0] and "one-time" not in cell[1],
       "a native row through a header shim says so and names its device; one with the volume's header does not",
       cell)


# ═════ as a delegated admin ══════════════════════════════════════════════════
def rearm_checks():
    """Rearm from the row menu of a saved volume (the delegated admin): the
    item appears only then, a wrong passphrase is shown at its field, the
    right one re-arms, and the restored guest gets its volume back."""
    state = f"{IMAGES}/save1.state"
    lib("lv_start_guest", "save1")
    lib("lv_make_luks1_image", f"{IMAGES}/save-data.img", "key")
    r = run([args.luksvolumectl, "attach", "save1", f"{IMAGES}/save-data.img", "--bus=scsi",
             "--passphrase-file=key", "--no-ask-password"])
    row = wait_for(lambda: js(f"return !!{row_js('save1', 'sda')}"), 15)
    saved = run(virsh + ["save", "save1", state])
    saved_row = wait_for(lambda: ("save1", "sda", "native", "saved") in volume_summary()
                         and js(f"return {row_js('save1', 'sda')}?.dataset.state === 'saved'"), 30)
    open_row_action("save1", "sda", "rearm")
    opened = wait_for(lambda: js("return document.getElementById('action-dialog').open"), 5)
    ok(r.returncode == 0 and row and saved.returncode == 0 and saved_row and opened,
       "a saved guest's volume: its row says saved and its menu offers Rearm",
       f"{r.returncode} {r.stderr} {saved.stderr} {saved_row} {opened}")
    close_dialogs()

    # What Rearm is for: libvirtd lost the ephemeral secret (a restart).
    # With the secret still there it has nothing to do (and checks nothing).
    secret = [v["SecretUUID"] for v in managed_volumes().values() if v["Domain"] == "save1"]
    gone = secret and run(virsh + ["secret-undefine", secret[0]]).returncode == 0
    action_dialog("save1", "sda", "rearm", passphrase="not the passphrase")
    err = wait_for(lambda: field_error("passphrase", "action"), 10)
    ok(gone and err and "passphrase" in err[0].lower() and err[1] and "org.example" not in err[0],
       "Rearm (the secret lost) with a wrong passphrase: the service's BadPassphrase in words, at the field",
       f"{secret} {gone} {err}")
    close_dialogs()

    closed = action_dialog("save1", "sda", "rearm", passphrase=PASS)
    status = wait_for(lambda: js("return document.getElementById('status').textContent")
                      if "ready for the restore" in (js("return document.getElementById('status').textContent")
                                                     or "") else None, 15)
    defined = secret and run(virsh + ["secret-get-value", secret[0]]).returncode != 0 and \
        secret[0] in run(virsh + ["secret-list"]).stdout
    restored = run(virsh + ["restore", state])
    back = wait_for(lambda: ("save1", "sda", "native", "attached") in volume_summary(), 30)
    ok(closed and status and defined and restored.returncode == 0 and back,
       "Rearm with the right passphrase: the dialog closes, the page says the volume is ready for the restore, "
       "the secret is back (private: its value unreadable); the restored guest has it attached again",
       f"{closed} {status!r} {defined} {restored.stderr} {back}")
    vol = [p for p, v in managed_volumes().items() if v["Domain"] == "save1"]
    for p in vol:
        run([args.luksvolumectl, "detach", p, "--no-ask-password"])
    run(virsh + ["destroy", "save1"])
    if os.path.exists(state):
        os.unlink(state)


def root_checks():
    start_cockpit_ws(9090, "admin", LV_ADMIN_UID)
    loaded = open_page(9090)
    facts = js("""return Object.fromEntries([...document.querySelectorAll('[data-fact]')]
                                          .map(e => [e.dataset.fact, e.textContent]))""") or {}
    ok(loaded and facts.get("native-luks") == "available" and facts.get("version")
       and facts.get("libvirt-version", "")[:1].isdigit(),
       "page loads as a delegated admin (group rule); host facts from Probe(''): versions, native LUKS available",
       json.dumps(facts))
    ok(js("return !!document.getElementById('volumes-empty')") and volume_summary() == [],
       "no volume yet: the page says so, and so does the service")
    ok(js("return document.getElementById('banner').hidden"), "no banner for the delegated admin")
    shot("01-empty")

    # Accessibility basics: every control in the dialogs is labelled, and the
    # attach dialog works from the keyboard.
    unlabelled = js("""
        return [...document.querySelectorAll('dialog input, dialog select')]
            .filter(e => !document.querySelector('label[for="' + e.id + '"]')).map(e => e.id);""")
    ok(unlabelled == [], "every input and select in the dialogs has a <label for>", unlabelled)
    by_id("attach-open").send_keys(Keys.ENTER)
    opened = wait_for(lambda: js("return document.getElementById('attach-dialog').open"), 5)
    focus_in = js("return document.activeElement.id")
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    closed = wait_for(lambda: js("return !document.getElementById('attach-dialog').open"), 5)
    focus_back = js("return document.activeElement.id")
    ok(opened and focus_in == "attach-domain" and closed and focus_back == "attach-open",
       "keyboard: Enter opens the attach dialog with focus on Guest, Escape closes it, focus returns",
       f"opened={opened} focus={focus_in} closed={closed} focus after={focus_back}")

    # A passphrase typed and then abandoned must not wait in the page for
    # whoever opens the dialog next: checked as soon as the dialog is closed
    # (Cancel, Escape, the close button), not only when it opens again.
    after_close = {}
    for how in ("cancel", "escape", "close-button"):
        by_id("attach-open").click()
        wait_for(lambda: js("return document.getElementById('attach-dialog').open"), 5)
        set_text("attach-passphrase", "abandoned secret 20ch")
        if how == "cancel":
            by_id("attach-cancel").click()
        elif how == "escape":
            by_id("attach-passphrase").send_keys(Keys.ESCAPE)
        else:
            js("document.querySelector('#attach-dialog .lv-dialog-close')?.click()")
        closed = wait_for(lambda: js("return !document.getElementById('attach-dialog').open"), 5)
        after_close[how] = js("return document.getElementById('attach-passphrase').value") if closed else "still open"
        close_dialogs()
    ok(after_close == {"cancel": "", "escape": "", "close-button": ""},
       "a passphrase typed, then Cancel, Escape or the dialog's close button: the field is empty once it closed",
       after_close)

    by_id("attach-open").click()
    guests = wait_for(lambda: (lambda g: g if {"web1", "db1"} <= set(g) else None)(
        js("return [...document.querySelectorAll('#attach-domain-list option')].map(o => o.value)")), 10)
    ok(guests, "the guest field offers the running guests (datalist from the service's ListDomains, no virsh)", guests)
    shot("02-attach-dialog")

    # ── wrong passphrase ──
    attach_dialog("web1", f"{IMAGES}/web-data.img", WRONG)
    err = wait_for(lambda: field_error("passphrase"), 30)
    others = visible_field_errors()
    ok(err and err[0] == "This passphrase opens none of the volume's key slots." and err[1]
       and others == ["attach-passphrase-error"],
       "a wrong passphrase: the passphrase error is shown next to the passphrase field (and only there)",
       f"{err} {others}")
    ok(volume_summary() == [], "… and nothing was attached (GetManagedObjects)", volume_summary())
    ok(js("return document.getElementById('attach-passphrase').value") == "",
       "… and the passphrase input was cleared")
    shot("03-wrong-passphrase")

    # ── other typed errors, each next to its field, nothing attached ──
    cases = [
        ("not LUKS → at the source", dict(domain="web1", source=f"{IMAGES}/plain.img"), "source",
         "This is not a LUKS volume"),
        ("no such guest → at the guest", dict(domain="no-such-guest", source=f"{IMAGES}/web-data.img"), "domain",
         "There is no guest with this name or UUID."),
        ("a malformed target (InvalidArgs) → at the target",
         dict(domain="web1", source=f"{IMAGES}/web-data.img", target="xyz1"), "target", "Option 'target'"),
        ("native mode for LUKS2 (NotSupported) → at the mode",
         dict(domain="web1", source=f"{IMAGES}/luks2.img", mode="native"), "mode",
         "This mode cannot be used"),
    ]
    for desc, kw, field, want in cases:
        attach_dialog(passphrase=PASS, **kw)
        err = wait_for(lambda: field_error(field), 30)
        ok(err and err[0].startswith(want) and err[1] and volume_summary() == [],
           f"{desc}, nothing attached", f"{err} {visible_field_errors()} {volume_summary()}")

    # ── attach through the dialog ──
    closed = attach_dialog("web1", f"{IMAGES}/web-data.img", PASS)
    row = wait_for(lambda: js(f"""const r = {row_js('web1', 'sda')};
        return r && [r.dataset.mode, r.querySelector('.lv-protection').textContent,
                     r.querySelector('.lv-badge-native') !== null]"""), 30)
    ok(closed and row and row[0] == "native" and "decrypted by QEMU — no cleartext on the host" in row[1] and row[2],
       "attach a LUKS1 volume through the dialog: its row shows mode native, "
       "'decrypted by QEMU — no cleartext on the host'", row)
    vols = managed_volumes()
    ok([(v["Domain"], v["Target"], v["Mode"], v["Source"], v["ReadOnly"]) for v in vols.values()]
       == [("web1", "sda", "native", f"{IMAGES}/web-data.img", False)],
       "… and the service has exactly that volume (GetManagedObjects)", vols)
    ok(js("return document.getElementById('attach-passphrase').value") == ""
       and "Attached" in js("return document.getElementById('status').textContent"),
       "… the passphrase input is empty and the page reports the attach")
    shot("04-attached")

    # Errors that need an attached volume.
    for desc, kw, field, want in [
        ("the same source again (AlreadyAttached) → at the source",
         dict(domain="db1", source=f"{IMAGES}/web-data.img"), "source", "This volume is already attached."),
        ("a target the guest uses (TargetInUse) → at the target",
         dict(domain="web1", source=f"{IMAGES}/db-archive.img", target="sda"), "target",
         "The guest already has a disk on this target."),
    ]:
        attach_dialog(passphrase=PASS, **kw)
        err = wait_for(lambda: field_error(field), 30)
        ok(err and err[0].startswith(want) and err[1] and len(managed_volumes()) == 1,
           f"{desc}, nothing attached", f"{err} {visible_field_errors()} {volume_summary()}")
    close_dialogs()

    # ── an attach in flight: its steps, a pending row, a Cancel that cancels ──
    def secrets():
        return len(run(virsh + ["secret-list"]).stdout.strip().splitlines())

    def current_step():
        return js("""const s = document.querySelector('#attach-steps [aria-current=step]');
                     const row = document.getElementById('pending-attach');
                     return s && row && [s.dataset.step, row.textContent]""")

    before, n_secrets = volume_summary(), secrets()
    attach_dialog("web1", f"{IMAGES}/slow.img", PASS, wait=False)
    step = wait_for(lambda: (lambda s: s if s and s[0] == "deriving-key" else None)(current_step()), 30)
    shot("04c-attach-progress")
    by_id("attach-cancel").click()
    asked = js("return [document.getElementById('attach-dialog').open, "
               "document.getElementById('attach-progress').textContent]")
    closed = wait_for(lambda: js("return !document.getElementById('attach-dialog').open"), 60)
    status = js("return document.getElementById('status').textContent")
    time.sleep(3)       # what the derivation would have needed to go on to the plug
    ok(step and "slow.img" in step[1] and asked == [True, "Cancelling…"] and closed
       and status.startswith("Cancelled:") and volume_summary() == before and secrets() == n_secrets
       and js("return document.getElementById('pending-attach') === null")
       and "sdb" not in run(virsh + ["domblklist", "web1"]).stdout,
       "an attach in flight shows its steps and a pending row; Cancel cancels it: nothing attached, "
       "no secret, no disk", f"{step} {asked} {status!r} {volume_summary()} secrets {n_secrets}→{secrets()}")

    # This time from the keyboard: Escape during an attach asks to cancel
    # too, and does not just close the dialog.
    attach_dialog("web1", f"{IMAGES}/slow.img", PASS, wait=False)
    plugging = wait_for(lambda: (lambda s: s if s and s[0] == "plugging" else None)(current_step()), 30)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    late = wait_for(lambda: js("""return document.getElementById('attach-dialog').open &&
                                  document.getElementById('attach-progress').textContent.startsWith('Too late')"""), 10)
    closed = wait_for(lambda: js("return !document.getElementById('attach-dialog').open"), 60)
    row = wait_for(lambda: js(f"return {row_js('web1', 'sdb')} !== null"), 15)
    ok(plugging and late and closed and row,
       "Escape once the disk is being plugged in: the dialog stays, says it is too late to cancel, "
       "and the volume appears", f"{plugging} {late}")
    run([args.luksvolumectl, "detach", "web1:sdb"])
    wait_for(lambda: js(f"return {row_js('web1', 'sdb')} === null"), 15)

    # ── a refusal of a real call: one short sentence, once, no action id ──
    attach_dialog(FORBIDDEN_GUEST, f"{IMAGES}/scratch.img", PASS)
    alert = wait_for(lambda: js("const a = document.getElementById('attach-alert'); return !a.hidden && a.textContent"), 30)
    text = visible_text()
    ok(alert and alert.count(".") == 1 and len(alert) < 90 and "org.example" not in text
       and "polkit" not in alert and text.count(alert) == 1
       and js("return document.getElementById('banner').hidden"),
       "a refused attach: one short sentence in the dialog, shown once, no polkit action id", f"{alert!r}")
    ok(len(managed_volumes()) == 1, "… and nothing was attached")
    shot("04b-refused")
    close_dialogs()

    # ── a volume attached elsewhere appears without a reload ──
    js("window.lvNoReload = 'still here'")
    r = run([args.luksvolumectl, "attach", "db1", f"{IMAGES}/db-archive.img", "--bus=scsi",
             "--read-only", "--passphrase-file=key", "--no-ask-password"])
    row = wait_for(lambda: js(f"const r = {row_js('db1', 'sda')}; return r && r.textContent"), 15)
    ok(r.returncode == 0 and row and "read-only" in row and js("return window.lvNoReload") == "still here",
       "a volume attached meanwhile with luksvolumectl appears without a reload (grouped under db1)",
       f"{r.returncode} {r.stderr} {row}")
    shot("05-two-guests")

    # ── probe ──
    by_id("probe-open").click()
    wait_for(lambda: js("return document.getElementById('probe-dialog').open"), 5)

    def probe(path):
        set_text("probe-source", path)
        by_id("probe-submit").click()
        return wait_for(lambda: js("""
            const r = document.getElementById('probe-result');
            if (document.getElementById('probe-submit').disabled) return null;
            if (!r.hidden)
                return Object.fromEntries([...r.querySelectorAll('[data-probe]')]
                                          .map(e => [e.dataset.probe, e.querySelector('dd').textContent]));
            const e = document.getElementById('probe-source-error');
            return e.hidden ? null : {error: e.textContent};"""), 30)

    p1 = probe(f"{IMAGES}/web-data.img")
    ok(p1 and p1.get("luks-version") == "LUKS1" and p1.get("cipher", "").startswith("aes-xts-plain64")
       and p1.get("key-size", "").endswith("bits") and p1.get("active-keyslots") == "1"
       and p1.get("native-capable", "").startswith("yes") and p1.get("attached") == "yes, as sda on web1",
       "probe of an attached LUKS1 image: version, cipher, key size, key slots, native possible, attached where",
       p1)
    shot("06-probe")
    p2 = probe(f"{IMAGES}/luks2.img")
    ok(p2 and p2.get("luks-version") == "LUKS2"
       and p2.get("native-capable", "").startswith("no — ")
       and "LUKS1 only" in p2.get("native-capable", ""),
       "probe of a LUKS2 image: native not possible, and why", p2)
    p3 = probe(f"{IMAGES}/plain.img")
    ok(p3 and p3.get("error", "").startswith("This is not a LUKS volume"),
       "probe of a plain file: NotLuks shown at the source", p3)
    # RBD images are sources too (issue 18): the page passes "rbd:" on, and
    # the service's own check of the name comes back at the field.
    p4 = probe("rbd:rbd/not a name")
    ok(p4 and p4.get("error", "").startswith("The source is not valid"),
       "probe of an rbd: source goes to the service, its name refused at the source", p4)
    p5 = probe("images/data.img")
    ok(p5 and "rbd:POOL/IMAGE" in p5.get("error", ""),
       "a relative path is refused by the page, which names both source forms", p5)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    ok(wait_for(lambda: js("return !document.getElementById('probe-dialog').open"), 5)
       and js("return document.activeElement.id") == "probe-open",
       "Escape closes the probe dialog, focus returns to its button")

    row_menu_checks()
    rearm_checks()

    # ── the detach confirmation: focus on Cancel, a double Enter detaches nothing ──
    open_row_action("web1", "sda", "detach")
    opened = wait_for(lambda: js("return document.getElementById('detach-dialog').open"), 5)
    focus = js("return document.activeElement.id")
    ok(opened and focus == "detach-cancel",
       "the detach confirmation opens with focus on Cancel, not on the destructive button", focus)
    close_dialogs()
    before = volume_summary()
    # Keyboard only: Enter on the row's detach control, Enter again at once.
    open_row_action("web1", "sda", "none")          # opens the row's menu, if any
    js(f"""const r = {row_js('web1', 'sda')};
           (r.querySelector('[data-action="detach"]') || r.querySelector('.lv-actions button')).focus();""")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    time.sleep(0.1)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    time.sleep(3)
    ok(volume_summary() == before and js("return !document.getElementById('detach-dialog').open"),
       "a double Enter on the detach control detaches nothing (the second Enter cancels)",
       f"{before} → {volume_summary()}")
    close_dialogs()

    # ── detach through the page ──
    def click_detach(domain, target):
        open_row_action(domain, target, "detach")
        wait_for(lambda: js("return document.getElementById('detach-dialog').open"), 5)
        by_id("detach-confirm").click()

    click_detach("web1", "sda")
    gone = wait_for(lambda: js(f"return {row_js('web1', 'sda')} === null"), 30)
    ok(gone and volume_summary() == [("db1", "sda", "native", "attached")]
       and "Detached sda from web1." in js("return document.getElementById('status').textContent"),
       "detach through the page removes the row, and the service's volume", volume_summary())

    # ── Busy: an OS-less guest never releases a virtio disk ──
    r = run([args.luksvolumectl, "attach", "web1", f"{IMAGES}/scratch.img", "--bus=virtio",
             "--passphrase-file=key", "--no-ask-password"])
    vda = wait_for(lambda: js(f"return {row_js('web1', 'vda')} !== null"), 15)
    click_detach("web1", "vda")
    note = wait_for(lambda: js(f"""
        const n = document.querySelector('tr[data-note-for] .lv-note-busy');
        const r = {row_js('web1', 'vda')};
        return n && r && [n.textContent, r.dataset.state, !!n.querySelector('button')]"""), 30)
    ok(r.returncode == 0 and vda and note and "has not released vda yet" in note[0]
       and note[1] == "detaching" and note[2]
       and ("web1", "vda", "native", "detaching") in volume_summary(),
       "a detach the guest does not complete (Busy): explained, state 'detaching', retry button",
       f"{r.stderr} {note} {volume_summary()}")
    shot("07-busy")
    js("document.querySelector('tr[data-note-for] .lv-note-busy button')?.click()")
    retried = wait_for(lambda: js("return document.querySelector('tr[data-note-for] .lv-note-busy button')?.disabled"), 5)
    again = wait_for(lambda: js("""const b = document.querySelector('tr[data-note-for] .lv-note-busy button');
                                  return b && !b.disabled"""), 30)
    ok(retried and again and ("web1", "vda", "native", "detaching") in volume_summary(),
       "the retry button detaches again (and gets Busy again: the guest still holds it)")

    collect_console("root")


    # ── the service restarts: the page follows the new instance ──
    # A kill -9, and a disk taken from a guest behind the service's back
    # while it is down: the next instance (activated by busctl here) rebuilds
    # its volumes from libvirt without that one, and never announces its
    # absence; the page must notice the new owner of the name and re-read.
    r = run(["busctl", "--system", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
             "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s", BUS])
    t_restart = time.monotonic()
    os.kill(int(r.stdout.split()[1]), signal.SIGKILL)
    r = run(virsh + ["detach-disk", "db1", "sda", "--live"])
    wait_for(lambda: "sda" not in run(virsh + ["domblklist", "db1"]).stdout, 10)
    after = wait_for(lambda: volume_summary(), 15)        # activates the next instance
    want = sorted([d, t] for d, t, _, _ in after or [])

    def page_rows():
        return js("""return [...document.querySelectorAll('tr.lv-volume')]
                         .map(r => [r.closest('section').dataset.domain, r.dataset.target]).sort()""")
    rows = wait_for(lambda: page_rows() == want, 15)
    diag(f"restart: the page showed the new instance's volumes after {time.monotonic() - t_restart:.1f} s")
    ok(r.returncode == 0 and after and ("db1", "sda") not in [(d, t) for d, t, _, _ in after] and rows,
       "after a daemon restart the page shows the new instance's volumes (one removed meanwhile is gone)",
       f"{r.stderr} service: {after} page: {page_rows()}")


# ═════ theme, phone width, translation (the delegated admin's session) ═══════
def sideways():
    """Elements wider than the viewport make the page scroll sideways:
    (document's scroll width, viewport width, open dialogs that scroll)."""
    return js("""return [document.documentElement.scrollWidth, window.innerWidth,
                         [...document.querySelectorAll('dialog[open]')]
                             .filter(d => d.scrollWidth > d.clientWidth).map(d => d.id)]""")


def is_dark():
    return js("""const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
                 return [document.documentElement.classList.contains('pf-v5-theme-dark'),
                         (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255]""")


def theme_checks():
    # A fuller page for the pictures: a second guest's volume again.
    run([args.luksvolumectl, "attach", "db1", f"{IMAGES}/db-archive.img", "--bus=scsi", "--read-only",
         "--passphrase-file=key", "--no-ask-password"])
    open_page(9090)
    wait_for(lambda: js(f"return {row_js('db1', 'sda')} !== null"), 15)
    js("localStorage.setItem('shell:style', 'light')")
    js("window.dispatchEvent(new CustomEvent('cockpit-style', {detail: {style: 'light'}}))")
    light = is_dark()
    fonts = js("return document.fonts.check('14px RedHatText') && [...document.fonts].some(f => f.status === 'loaded')")
    ok(light[0] is False and light[1] > 0.8 and fonts, "light theme by default; Red Hat Text loaded from Cockpit",
       f"{light} fonts={fonts}")
    shot("10-light-desktop")

    # PatternFly 5's own stylesheets, not a look-alike: patternfly.css (made
    # from the npm package at build time) is loaded, the page's controls are
    # PatternFly components, and PatternFly's rules style them (its primary
    # button colour, its modal box, its grid table, its menu toggle).
    pf = js("""const sheet = [...document.styleSheets].find(s => (s.href || '').endsWith('/patternfly.css'));
               const rules = sheet ? sheet.cssRules.length : 0;
               const primary = getComputedStyle(document.getElementById('attach-open')).backgroundColor;
               const modal = getComputedStyle(document.getElementById('attach-dialog')).getPropertyValue('--pf-v5-c-modal-box--BackgroundColor').trim();
               const row = document.querySelector('tr.lv-volume');
               return [rules, primary, modal,
                       !!row && row.closest('table').classList.contains('pf-v5-c-table'),
                       !!document.querySelector('.lv-kebab.pf-v5-c-menu-toggle'),
                       !!document.querySelector('.lv-badge.pf-v5-c-label'),
                       [...document.querySelectorAll('#page button, dialog button')].every(b => b.classList.contains('pf-v5-c-button')
                           || b.classList.contains('pf-v5-c-menu-toggle') || b.classList.contains('pf-v5-c-menu__item'))]""")
    ok(pf[0] > 1000 and pf[1] == "rgb(0, 102, 204)" and pf[2] != "" and all(pf[3:]),
       "PatternFly 5's own CSS: patternfly.css loaded; buttons, modal boxes, table, menu toggle and labels are its components",
       f"{pf}")

    # Phone width: nothing scrolls sideways, the page nor the dialogs.
    set_width(480)
    time.sleep(0.5)
    page = sideways()
    shot("11-light-phone", 480)
    set_width(480)
    by_id("attach-open").click()
    wait_for(lambda: js("return document.getElementById('attach-dialog').open"), 5)
    dialog = sideways()
    shot("12-light-phone-attach", 480)
    close_dialogs()
    set_width(480)
    open_row_action("web1", "vda", "none")
    menu = sideways()
    js("document.body.click()")
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    ok(page[0] <= page[1] == 480 and dialog[0] <= 480 and not dialog[2] and menu[0] <= 480,
       "at 480 px nothing scrolls sideways: the page, the attach dialog, an open row menu",
       f"page {page} dialog {dialog} menu {menu}")

    # Dark: the shell's "cockpit-style" event switches at once; after a
    # reload the stored choice applies before anything renders.
    js("localStorage.setItem('shell:style', 'dark')")
    js("window.dispatchEvent(new CustomEvent('cockpit-style', {detail: {style: 'dark'}}))")
    dark = is_dark()
    open_page(9090)
    wait_for(lambda: js(f"return {row_js('db1', 'sda')} !== null"), 15)
    again = is_dark()
    ok(dark[0] and dark[1] < 0.15 and again[0] and again[1] < 0.15,
       "dark theme: Cockpit's style event sets pf-v5-theme-dark and a dark page; kept across a reload",
       f"{dark} {again}")
    shot("13-dark-desktop")
    shot("14-dark-phone", 480)
    open_row_action("web1", "vda", "none")
    shot("15-dark-row-menu")
    js("document.body.click()")
    js("localStorage.setItem('shell:style', 'auto')")

    # Translation: Cockpit's language cookie → po.js in that language.
    driver.add_cookie({"name": "CockpitLang", "value": "de", "path": "/"})
    open_page(9090)
    german = js("return [document.querySelector('h1').textContent, document.getElementById('attach-open').textContent]")
    driver.delete_cookie("CockpitLang")
    open_page(9090)
    english = js("return document.querySelector('h1').textContent")
    ok(german == ["Verschlüsselte Gast-Datenträger", "Datenträger anhängen …"] and english == "Encrypted guest volumes",
       "translations through Cockpit's po.js: German with CockpitLang=de, English without", f"{german} {english}")


# ═════ as an unprivileged user ═══════════════════════════════════════════════
def user_checks():
    before = volume_summary()
    start_cockpit_ws(9091, "lvuser", LV_USER_UID)
    loaded = open_page(9091)
    note = wait_for(lambda: js("""const b = document.getElementById('access-note');
                                 return b && !b.hidden && b.textContent"""), 30)
    host_msg = js("return document.getElementById('host-message').textContent")
    rows = js("return document.querySelectorAll('tr.lv-volume').length")
    ok(loaded and note and host_msg and visible_text().count(note) == 1,
       "an unprivileged login is told once that it may not manage volumes here", f"{note!r} {host_msg!r}")
    ok(js("return document.getElementById('banner').hidden"), "… in no alarm banner", visible_text())
    ok(rows == len(before), "… and still sees the volumes (reading them needs no authorization)",
       f"{rows} rows, service has {before}")
    text = visible_text()
    ok("org.example" not in text and "polkit refused" not in text,
       "… in words, without polkit's action ids", text)
    attach = js("""const b = document.getElementById('attach-open');
                   const why = (b.getAttribute('aria-describedby') || '').split(' ')
                       .map(i => document.getElementById(i)).filter(e => e && !e.hidden && e.textContent);
                   return [b.disabled, why.map(e => e.textContent).join(' ')]""")
    ok(attach[0] and attach[1], "… Attach is disabled, with the reason next to it", attach)
    detach = js("""return [...document.querySelectorAll('tr.lv-volume')].map(r => {
                       const c = r.querySelector('[data-action="detach"]') || r.querySelector('.lv-actions button');
                       const why = (c && c.getAttribute('aria-describedby') || '').split(' ')
                           .map(i => document.getElementById(i)).filter(e => e && !e.hidden && e.textContent);
                       return c && c.disabled && why.map(e => e.textContent).join(' ');
                   })""")
    ok(detach and all(detach), "… and every row's Detach is disabled, with the reason", detach)
    ok(volume_summary() == before, "… nothing changed", volume_summary())
    shot("08-unprivileged-attach")
    close_dialogs()
    shot("09-unprivileged")
    collect_console("lvuser")



def section(name, fn):
    """Runs one group of checks; an exception (an element that never
    appeared, …) fails it without stopping the other group."""
    try:
        fn()
    except Exception:        # noqa: BLE001 — report, go on
        ok(False, f"the {name} checks ran to the end", traceback.format_exc())


try:
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_script_timeout(30)

    section("root", root_checks)
    collect_console("root")
    section("theme and layout", theme_checks)
    collect_console("root")
    section("unprivileged", user_checks)
    collect_console("lvuser")
except Exception:        # noqa: BLE001 — report, then the plan
    ok(False, "the browser test ran to the end", traceback.format_exc())
finally:
    if driver:
        try:
            collect_console("end")
        except Exception:   # noqa: BLE001
            pass
        driver.quit()
    for p in procs:
        p.terminate()
    for guest in ("web1", "db1"):
        run(virsh + ["destroy", guest])

severe = [(s, e) for s, e in console if e.get("level") == "SEVERE"]
for s, e in console:
    if e.get("level") != "SEVERE":
        diag(f"console ({s}) {e.get('level')}: {e.get('message')}")
ok(not severe,
   f"no browser console errors (JavaScript exceptions, CSP violations, failed loads) in {len(console)} entries",
   "\n".join(f"({s}) {e.get('message')}" for s, e in severe))

diag(f"wall time: {time.monotonic() - T0:.1f} s")
print(f"1..{n_tests}", flush=True)
sys.exit(1 if n_failed else 0)
