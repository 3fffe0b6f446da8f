#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds the Debian package from a clean copy of the tree and checks it:
#
#   - dpkg-buildpackage -us -uc -b succeeds (including the unit suite that
#     debian/rules runs);
#   - the .deb holds every file a deployment needs, in Debian 12's places
#     (daemon, client, bus policy, activation file, introspection XML,
#     systemd unit, polkit actions, manual pages, bash completion), and
#     nothing below /usr/local;
#   - the generated files point at /usr/libexec/luksvolumed, the manual
#     pages render, and the maintainer scripts neither enable nor start the
#     unit;
#   - Depends is complete (the shared libraries, a system bus, polkitd) and
#     apt could install the package on this host (simulated; nothing is
#     installed);
#   - the second binary package, luksvolumed-cockpit (Architecture: all),
#     holds exactly the Cockpit page in /usr/share/cockpit/luksvolume/ (and
#     the main package none of it), its manifest is valid JSON naming the
#     upstream version and an existing page, every file the page loads is
#     in the package (or is Cockpit's ../base1/cockpit.js), and it depends
#     on cockpit-bridge and on luksvolumed of at least its own version.
#
# Prints both packages' file lists and lintian's verdict on them.  Runs standalone, as root (missing build
# dependencies are installed with apt-get build-dep; with them present,
# root is not needed).  Takes about 1-2 minutes on 4 cores.
#
#   tests/packaging/test-deb.sh
#
# Environment:
#   LV_DEB_FROM=worktree (default)  copy the files git knows or would add
#                                   (tracked + untracked, not ignored); in
#                                   a fresh clone that is exactly HEAD
#   LV_DEB_FROM=head                git archive HEAD (committed state only)
#   LV_DEB_KEEP=DIR                 copy the built .deb and logs to DIR
#
# Exit status: 0 pass, 1 fail.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
from=${LV_DEB_FROM:-worktree}
start=$(date +%s)

export LC_ALL=C.UTF-8
work=$(mktemp -d /tmp/luksvolumed-deb.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

failures=0
fail() {
        echo "test-deb: FAIL: $*"
        failures=$((failures + 1))
}
die() {
        echo "test-deb: $*" >&2
        exit 1
}

for tool in dpkg-buildpackage dpkg-deb dpkg-parsechangelog; do
        command -v "$tool" >/dev/null ||
                die "$tool is missing; install dpkg-dev (tests/install-deps.sh does)."
done

# ── a clean copy of the tree ──────────────────────────────────────────────
tree=$work/luksvolumed
mkdir -p "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        case $from in
        head)
                git -C "$src" archive --format=tar HEAD | tar -x -C "$tree"
                ;;
        worktree)
                # Files deleted in the work tree are listed by --cached but
                # gone: skip them.
                (cd "$src" && git ls-files -z --cached --others --exclude-standard |
                        while IFS= read -r -d '' f; do
                                [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
                        done) |
                        (cd "$src" && tar --null -T - -c -f -) | tar -x -C "$tree"
                ;;
        *)
                die "LV_DEB_FROM must be worktree or head, not '$from'."
                ;;
        esac
else
        tar -C "$src" -c -f - \
                --exclude='./build' --exclude='./build-*' --exclude='./obj-*' \
                --exclude='./.git' --exclude='./debian/.debhelper' \
                --exclude='./debian/luksvolumed' --exclude='./debian/tmp' . |
                tar -x -C "$tree"
fi
[ -f "$tree/debian/control" ] || die "$from has no debian/control (is debian/ committed?)"
# The Cockpit page is styled with PatternFly 5 from npm (cockpit/package-lock.json),
# which `npm ci` put in cockpit/node_modules (ignored by git).  A release
# tarball carries it as a source would carry any vendored build input; here
# the copy takes the one npm installed.
pf=cockpit/node_modules/@patternfly/patternfly
[ -f "$src/$pf/patternfly-base.css" ] ||
        die "$pf is missing: run npm ci in cockpit/ (tests/install-deps.sh does)"
mkdir -p "$tree/$pf"
cp -r "$src/$pf/." "$tree/$pf/"
echo "test-deb: building from a copy of the $from in $tree"

# ── build dependencies ────────────────────────────────────────────────────
if ! (cd "$tree" && dpkg-checkbuilddeps) 2>"$work/builddeps.txt"; then
        cat "$work/builddeps.txt"
        [ "$(id -u)" -eq 0 ] || die "build dependencies are missing and this is not root."
        echo "test-deb: installing the build dependencies"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get build-dep -y -qq --no-install-recommends "$tree" >/dev/null
fi

# ── build ─────────────────────────────────────────────────────────────────
version=$(cd "$tree" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
deb=$work/luksvolumed_${version}_${arch}.deb
cdeb=$work/luksvolumed-cockpit_${version}_all.deb

echo "test-deb: dpkg-buildpackage -us -uc -b (log: build.log)"
if ! (cd "$tree" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"
        die "dpkg-buildpackage failed"
fi
[ -f "$deb" ] || die "no $(basename "$deb") was built; found: $(cd "$work" && ls)"
[ -f "$cdeb" ] || die "no $(basename "$cdeb") was built; found: $(cd "$work" && ls)"
echo "test-deb: built $(basename "$deb") ($(stat -c %s "$deb") bytes)"
echo "test-deb: built $(basename "$cdeb") ($(stat -c %s "$cdeb") bytes)"
grep -E '^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP)' "$work/build.log" | sed 's/^/    unit: /' || true

# ── contents ──────────────────────────────────────────────────────────────
dpkg-deb -c "$deb" >"$work/contents.txt"
# "./usr/bin/luksvolumectl" or "./path -> target" → the path alone.
awk '{ p = $6; sub(/^\./, "", p); print p }' "$work/contents.txt" >"$work/files.txt"

expected=(
        /usr/libexec/luksvolumed
        /usr/bin/luksvolumectl
        /usr/share/dbus-1/system.d/org.example.LuksVolume1.conf
        /usr/share/dbus-1/system-services/org.example.LuksVolume1.service
        /usr/share/dbus-1/interfaces/org.example.LuksVolume1.xml
        /lib/systemd/system/luksvolumed.service
        /lib/udev/rules.d/60-luksvolumed.rules
        /usr/share/polkit-1/actions/org.example.LuksVolume1.policy
        /usr/share/man/man1/luksvolumectl.1.gz
        /usr/share/man/man5/org.example.LuksVolume1.5.gz
        /usr/share/man/man8/luksvolumed.8.gz
        /usr/share/bash-completion/completions/luksvolumectl
        /usr/share/doc/luksvolumed/copyright
        /usr/share/doc/luksvolumed/changelog.Debian.gz
        /usr/share/lintian/overrides/luksvolumed
)
for f in "${expected[@]}"; do
        grep -qxF "$f" "$work/files.txt" || fail "the package lacks $f"
done
for f in /usr/libexec/luksvolumed /usr/bin/luksvolumectl; do
        grep -qE "^-rwxr-xr-x root/root .* \\.$f\$" "$work/contents.txt" ||
                fail "$f is not an executable owned by root (mode 0755)"
done
if grep -E '^/usr/local/|^/etc/systemd/|^/usr/lib/systemd/system/' "$work/files.txt"; then
        fail "the package installs below /usr/local, /etc/systemd or /usr/lib/systemd/system"
fi
if grep -E '^/usr/share/cockpit' "$work/files.txt"; then
        fail "luksvolumed itself ships Cockpit files (they belong in luksvolumed-cockpit)"
fi

x=$work/extract
dpkg-deb -x "$deb" "$x"
grep -qxF 'Exec=/usr/libexec/luksvolumed' "$x/usr/share/dbus-1/system-services/org.example.LuksVolume1.service" ||
        fail "the activation file does not Exec=/usr/libexec/luksvolumed"
grep -qxF 'SystemdService=luksvolumed.service' "$x/usr/share/dbus-1/system-services/org.example.LuksVolume1.service" ||
        fail "the activation file does not name luksvolumed.service"
grep -qxF 'ExecStart=/usr/libexec/luksvolumed' "$x/lib/systemd/system/luksvolumed.service" ||
        fail "the unit does not ExecStart=/usr/libexec/luksvolumed"
if ! grep -q '^WantedBy=' "$x/lib/systemd/system/luksvolumed.service"; then :; else
        fail "the unit has a WantedBy= (it is meant to be bus-activated only)"
fi
"$x/usr/bin/luksvolumectl" --version | grep -qF "$(echo "$version" | sed 's/-[^-]*$//')" ||
        fail "luksvolumectl --version does not report the upstream version"
"$x/usr/libexec/luksvolumed" --version >/dev/null || fail "luksvolumed --version failed"
if command -v groff >/dev/null; then
        for m in "$x"/usr/share/man/man*/*.gz; do
                w=$(zcat "$m" | groff -k -t -man -ww -z -Tutf8 2>&1) || fail "groff failed on $(basename "$m")"
                [ -z "$w" ] || fail "groff warns about $(basename "$m"): $w"
        done
fi
bash -n "$x/usr/share/bash-completion/completions/luksvolumectl" ||
        fail "the bash completion has syntax errors"

# ── maintainer scripts: no enabling, no starting, stop on removal ───────
ctrl=$work/control
dpkg-deb -e "$deb" "$ctrl"
for f in preinst postinst; do
        [ -f "$ctrl/$f" ] || continue
        if grep -nE 'deb-systemd-invoke +(start|restart|try-restart)|systemctl +(enable|start|restart)' "$ctrl/$f"; then
                fail "$f starts or enables the unit"
        fi
        # debhelper's --no-enable snippet re-enables only a unit the admin
        # enabled: every "enable" must sit under a was-enabled test.
        if grep -B3 -E 'deb-systemd-helper +enable' "$ctrl/$f" | grep -q . &&
           ! grep -B3 -E 'deb-systemd-helper +enable' "$ctrl/$f" | grep -q 'was-enabled'; then
                fail "$f enables the unit unconditionally"
        fi
done
grep -qE 'deb-systemd-invoke +stop +luksvolumed.service' "$ctrl/prerm" 2>/dev/null ||
        fail "prerm does not stop luksvolumed.service on removal"

# ── control fields ────────────────────────────────────────────────────────
dpkg-deb -I "$deb" >"$work/info.txt"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = luksvolumed ] || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', not $version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)'"
depends=$(field Depends)
case $depends in *'${'*) fail "Depends has an unsubstituted variable: $depends" ;; esac
for d in libc6 libsystemd0 libvirt0 libxml2 libcryptsetup12 polkitd 'default-dbus-system-bus | dbus-system-bus'; do
        case ", $depends," in
        *", $d "* | *", $d,"* | *", $d ("*) ;;
        *) fail "Depends lacks $d: $depends" ;;
        esac
done
case ", $(field Recommends)," in
*", libvirt-daemon-system"*) ;;
*) fail "Recommends lacks libvirt-daemon-system" ;;
esac

# ── luksvolumed-cockpit ───────────────────────────────────────────────────
dpkg-deb -c "$cdeb" >"$work/cockpit-contents.txt"
awk '{ p = $6; sub(/^\./, "", p); print p }' "$work/cockpit-contents.txt" >"$work/cockpit-files.txt"
page=/usr/share/cockpit/luksvolume
cockpit_expected=(
        $page/manifest.json
        $page/index.html
        $page/luksvolume.js
        $page/strings.js
        $page/errors.js
        $page/dom.js
        $page/actions.js
        $page/protection.js
        $page/progress.js
        $page/theme.js
        $page/icons.js
        $page/patternfly.css
        $page/po.de.js
        $page/luksvolume.css
        /usr/share/doc/luksvolumed-cockpit/copyright
        /usr/share/doc/luksvolumed-cockpit/changelog.Debian.gz
        /usr/share/lintian/overrides/luksvolumed-cockpit
)
for f in "${cockpit_expected[@]}"; do
        grep -qxF "$f" "$work/cockpit-files.txt" || fail "luksvolumed-cockpit lacks $f"
done
# Nothing else: only directories on the way to those files.
while read -r f; do
        case $f in
        */) ;;
        $page/* | /usr/share/doc/luksvolumed-cockpit/* | /usr/share/lintian/overrides/*)
                printf '%s\n' "${cockpit_expected[@]}" | grep -qxF "$f" ||
                        fail "luksvolumed-cockpit has an unexpected file $f" ;;
        *) fail "luksvolumed-cockpit installs outside the page and its docs: $f" ;;
        esac
done <"$work/cockpit-files.txt"
if grep -vE '^-rw-r--r-- root/root |^drwxr-xr-x root/root ' "$work/cockpit-contents.txt"; then
        fail "luksvolumed-cockpit has files not 0644 or directories not 0755 (root-owned)"
fi

cx=$work/extract-cockpit
dpkg-deb -x "$cdeb" "$cx"
# The manifest: JSON, this version, a Tools entry whose page exists.  Every
# file the page loads (src/href in the HTML, ES module imports) is in the
# package, except Cockpit's own ../base1/cockpit.js and ../base1/po.js; the
# page's "po.js" is served by Cockpit as one of its po.LANG.js.
python3 - "$cx$page" "$(echo "$version" | sed 's/-[^-]*$//')" >"$work/cockpit-check.txt" 2>&1 <<'PY' ||
import json, os, re, sys
page, upstream = sys.argv[1], sys.argv[2]
bad = []
m = json.load(open(os.path.join(page, "manifest.json")))
if m.get("version") != upstream:
    bad.append(f"manifest version {m.get('version')!r}, not {upstream!r}")
if m.get("requires", {}).get("cockpit") is None:
    bad.append("manifest has no requires.cockpit")
entries = [e for sect in ("tools", "menu", "dashboard") for e in m.get(sect, {}).values()]
if not entries:
    bad.append("manifest names no page (tools/menu/dashboard)")
for e in entries:
    if not os.path.isfile(os.path.join(page, e.get("path", ""))):
        bad.append(f"manifest path {e.get('path')!r} is not in the package")
refs = set()
for name in os.listdir(page):
    text = open(os.path.join(page, name), encoding="utf-8").read()
    if name.endswith(".html"):
        refs |= {(name, r) for r in re.findall(r'(?:src|href)="([^"#:]+)"', text)}
    elif name.endswith(".js"):
        refs |= {(name, r) for r in re.findall(r'^\s*import\b[^"\']*["\']([^"\']+)["\']', text, re.M)}
for origin, r in sorted(refs):
    if r in ("../base1/cockpit.js", "../base1/po.js"):
        continue
    if r == "po.js":
        if not any(re.fullmatch(r"po\.[A-Za-z_]+\.js", n) for n in os.listdir(page)):
            bad.append(f"{origin} loads po.js, but the package has no po.LANG.js")
        continue
    if r.startswith("/") or r.startswith(".."):
        bad.append(f"{origin} loads {r} from outside the package")
    elif not os.path.isfile(os.path.join(page, r)):
        bad.append(f"{origin} loads {r}, which is not in the package")
    if origin.endswith(".js") and not r.startswith("./"):
        bad.append(f"{origin} imports {r!r}: ES module imports need a ./ path")
if not any(r == "../base1/cockpit.js" for _, r in refs):
    bad.append("index.html does not load ../base1/cockpit.js")
for b in bad:
    print(b)
print(f"{len(refs)} references checked")
sys.exit(1 if bad else 0)
PY
        fail "the Cockpit page does not hold together: $(cat "$work/cockpit-check.txt")"
echo "test-deb: Cockpit page: $(tail -n1 "$work/cockpit-check.txt")"

cfield() { dpkg-deb -f "$cdeb" "$1"; }
[ "$(cfield Package)" = luksvolumed-cockpit ] || fail "Package is '$(cfield Package)'"
[ "$(cfield Version)" = "$version" ] || fail "luksvolumed-cockpit Version is '$(cfield Version)'"
[ "$(cfield Architecture)" = all ] || fail "luksvolumed-cockpit Architecture is '$(cfield Architecture)', not all"
cdepends=$(cfield Depends)
for d in 'cockpit-bridge (>= 287)' "luksvolumed (>= $version)"; do
        case ", $cdepends," in
        *", $d,"*) ;;
        *) fail "luksvolumed-cockpit Depends lacks $d: $cdepends" ;;
        esac
done

# ── installable here? (simulated: nothing changes on this host) ──────────
if command -v apt-get >/dev/null && [ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]; then
        if apt-get install -s -qq "$deb" >"$work/apt-sim.txt" 2>&1; then
                echo "test-deb: apt-get -s install: installable ($(grep -c '^Inst ' "$work/apt-sim.txt") packages would be installed)"
        else
                fail "apt-get -s install cannot install the package:"
                sed 's/^/    /' "$work/apt-sim.txt"
        fi
        if apt-get install -s -qq "$deb" "$cdeb" >"$work/apt-sim-cockpit.txt" 2>&1; then
                echo "test-deb: apt-get -s install (with luksvolumed-cockpit): installable ($(grep -c '^Inst ' "$work/apt-sim-cockpit.txt") packages would be installed)"
        else
                fail "apt-get -s install cannot install luksvolumed-cockpit:"
                sed 's/^/    /' "$work/apt-sim-cockpit.txt"
        fi
else
        echo "test-deb: no apt lists; skipped the simulated install"
fi

# lintian is clean and must stay so: any error or warning fails the test
# (overrides, with their reasons, are in debian/*.lintian-overrides).
# Not having lintian is a failure too, not a skip: the check must run in CI
# (tests/install-deps.sh installs it).
command -v lintian >/dev/null || fail "lintian is not installed (tests/install-deps.sh installs it)"
{
        echo "test-deb: lintian:"
        lintian_out=$(lintian --tag-display-limit 0 "$deb" "$cdeb" 2>&1 || true)
        printf '%s\n' "$lintian_out" | sed 's/^/    /'
        if printf '%s\n' "$lintian_out" | grep -qE '^[EW]: '; then
                fail "lintian reports errors or warnings"
        fi
}

# ── report ────────────────────────────────────────────────────────────────
echo
echo "test-deb: dpkg-deb -I (control):"
sed -n '/^ Package:/,$p' "$work/info.txt"
echo
echo "test-deb: dpkg-deb -c:"
cat "$work/contents.txt"
echo
echo "test-deb: luksvolumed-cockpit: dpkg-deb -I (control):"
dpkg-deb -I "$cdeb" | sed -n '/^ Package:/,$p'
echo
echo "test-deb: luksvolumed-cockpit: dpkg-deb -c:"
cat "$work/cockpit-contents.txt"
echo

if [ -n "${LV_DEB_KEEP:-}" ]; then
        mkdir -p "$LV_DEB_KEEP"
        cp "$deb" "$cdeb" "$work/build.log" "$work/contents.txt" "$work/cockpit-contents.txt" "$LV_DEB_KEEP/"
        echo "test-deb: kept $(basename "$deb"), $(basename "$cdeb"), build.log and the contents lists in $LV_DEB_KEEP"
fi

elapsed=$(($(date +%s) - start))
if [ "$failures" -gt 0 ]; then
        echo "test-deb: $failures failure(s) (${elapsed} s)"
        exit 1
fi
echo "test-deb: OK: $(basename "$deb") has all ${#expected[@]} expected files and sane Depends;" \
        "$(basename "$cdeb") has the Cockpit page (${#cockpit_expected[@]} files) (${elapsed} s)"
