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
#     installed).
#
# Prints the package's file list.  Runs standalone, as root (missing build
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

echo "test-deb: dpkg-buildpackage -us -uc -b (log: build.log)"
if ! (cd "$tree" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"
        die "dpkg-buildpackage failed"
fi
[ -f "$deb" ] || die "no $(basename "$deb") was built; found: $(cd "$work" && ls)"
echo "test-deb: built $(basename "$deb") ($(stat -c %s "$deb") bytes)"
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
        /usr/share/polkit-1/actions/org.example.LuksVolume1.policy
        /usr/share/man/man1/luksvolumectl.1.gz
        /usr/share/man/man5/org.example.LuksVolume1.5.gz
        /usr/share/man/man8/luksvolumed.8.gz
        /usr/share/bash-completion/completions/luksvolumectl
        /usr/share/doc/luksvolumed/copyright
        /usr/share/doc/luksvolumed/changelog.Debian.gz
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

# ── installable here? (simulated: nothing changes on this host) ──────────
if command -v apt-get >/dev/null && [ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]; then
        if apt-get install -s -qq "$deb" >"$work/apt-sim.txt" 2>&1; then
                echo "test-deb: apt-get -s install: installable ($(grep -c '^Inst ' "$work/apt-sim.txt") packages would be installed)"
        else
                fail "apt-get -s install cannot install the package:"
                sed 's/^/    /' "$work/apt-sim.txt"
        fi
else
        echo "test-deb: no apt lists; skipped the simulated install"
fi

if command -v lintian >/dev/null; then
        echo "test-deb: lintian:"
        lintian --no-tag-display-limit "$deb" 2>&1 | sed 's/^/    /' || true
fi

# ── report ────────────────────────────────────────────────────────────────
echo
echo "test-deb: dpkg-deb -I (control):"
sed -n '/^ Package:/,$p' "$work/info.txt"
echo
echo "test-deb: dpkg-deb -c:"
cat "$work/contents.txt"
echo

if [ -n "${LV_DEB_KEEP:-}" ]; then
        mkdir -p "$LV_DEB_KEEP"
        cp "$deb" "$work/build.log" "$work/contents.txt" "$LV_DEB_KEEP/"
        echo "test-deb: kept $(basename "$deb"), build.log and contents.txt in $LV_DEB_KEEP"
fi

elapsed=$(($(date +%s) - start))
if [ "$failures" -gt 0 ]; then
        echo "test-deb: $failures failure(s) (${elapsed} s)"
        exit 1
fi
echo "test-deb: OK: $(basename "$deb") has all ${#expected[@]} expected files and sane Depends (${elapsed} s)"
