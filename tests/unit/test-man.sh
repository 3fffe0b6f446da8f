#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the built manual pages:
#   - each renders with man -l (MANWIDTH=80) without warnings, and
#     groff -ww reports nothing; no rendered line is wider than 80 columns;
#   - luksvolumectl.1 names every command and option of luksvolumectl --help
#     and every long option of the client's getopt table;
#   - luksvolumed.8 names every option of luksvolumed --help and every long
#     option of the daemon's getopt table;
#   - org.example.LuksVolume1.5 names every interface, method and property
#     of the introspection XML, every error of daemon/errors.h and every
#     polkit action.
#
#   test-man.sh --man1 F --man5 F --man8 F --client EXE --daemon EXE
#               --xml F --errors F [--polkit F] [--client-source F]
#               [--daemon-source F]
#
# Exit 0 pass, 1 fail, 77 skip (man, groff or preconv missing).
set -euo pipefail

man1= man5= man8= client= daemon= xml= errors= polkit= client_src= daemon_src=
while [ $# -gt 0 ]; do
        case $1 in
        --man1) man1=$2 ;;
        --man5) man5=$2 ;;
        --man8) man8=$2 ;;
        --client) client=$2 ;;
        --daemon) daemon=$2 ;;
        --xml) xml=$2 ;;
        --errors) errors=$2 ;;
        --polkit) polkit=$2 ;;
        --client-source) client_src=$2 ;;
        --daemon-source) daemon_src=$2 ;;
        *) echo "test-man: unknown argument $1" >&2; exit 2 ;;
        esac
        shift 2
done
for v in man1 man5 man8 client daemon xml errors; do
        if [ -z "${!v}" ]; then
                echo "test-man: --$v is required" >&2
                exit 2
        fi
done

for tool in man groff preconv col; do
        if ! command -v "$tool" >/dev/null; then
                echo "test-man: SKIP: $tool is not installed"
                exit 77
        fi
done

export LC_ALL=C.UTF-8
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
        echo "FAIL: $*"
        failures=$((failures + 1))
}

# The roff source with font changes and escapes removed, one source line
# per line: scdoc never splits a word across source lines, while the
# rendered text is hyphenated and wrapped.
plain_roff() {
        sed -e 's/\\f[BIRP]//g' -e 's/\\f([A-Z][A-Z]//g' -e 's/\\-/-/g' -e 's/\\&//g' \
            -e "s/\\\\(aq/'/g" -e "s/\\\\\\*(Aq/'/g" -e 's/\\e/\\/g' "$1"
}

# check_word PAGE-NAME PLAIN-FILE WORD: WORD occurs not as part of a longer
# name (so --timeout does not count for --time, nor Busy for BusyX).
check_word() {
        local page=$1 file=$2 word=$3 re
        re=$(printf '%s' "$word" | sed -e 's/[][\.*^$+?(){}|]/\\&/g')
        if ! grep -qE -- "(^|[^A-Za-z0-9_.-])${re}([^A-Za-z0-9_.-]|\$|\.([^A-Za-z0-9_]|\$))" "$file"; then
                fail "$page does not mention '$word'"
        fi
}

render() {
        local page=$1 name out
        name=$(basename "$page")
        out=$tmp/$name

        if [ ! -s "$page" ]; then
                fail "$page is missing or empty"
                return
        fi

        groff -k -t -man -ww -z -Tutf8 "$page" >"$out.groff" 2>&1 || fail "groff failed on $name"
        if [ -s "$out.groff" ]; then
                fail "groff warns about $name:"
                sed 's/^/    /' "$out.groff"
        fi

        if ! MANWIDTH=80 man --warnings -l "$page" >"$out.txt" 2>"$out.err"; then
                fail "man -l $name failed"
        fi
        if [ -s "$out.err" ]; then
                fail "man --warnings reports on $name:"
                sed 's/^/    /' "$out.err"
        fi
        col -bx <"$out.txt" >"$out.plain"
        if [ ! -s "$out.plain" ] || ! grep -q '^NAME' "$out.plain"; then
                fail "man -l $name rendered nothing useful"
        fi
        local width
        width=$(wc -L <"$out.plain")
        if [ "$width" -gt 80 ]; then
                fail "$name renders lines $width columns wide at MANWIDTH=80:"
                awk 'length($0) > 80 { print "    " $0 }' "$out.plain"
        fi
        for section in NAME SYNOPSIS DESCRIPTION 'SEE ALSO'; do
                grep -q "^$section\$" "$out.plain" || fail "$name has no $section section"
        done

        plain_roff "$page" >"$out.roff"
        echo "rendered $name: $(wc -l <"$out.plain") lines"
}

long_options_of_source() {
        # { "name", required_argument, ... } entries of a getopt_long table.
        grep -oE '\{ *"[a-z][a-z0-9-]*", *(no|required|optional)_argument' "$1" |
                sed -E 's/^\{ *"([^"]*)".*/--\1/' | sort -u
}

render "$man1"
render "$man5"
render "$man8"

ctl=$tmp/$(basename "$man1").roff
dbus=$tmp/$(basename "$man5").roff
daemon_page=$tmp/$(basename "$man8").roff

# ── luksvolumectl(1) against luksvolumectl --help ─────────────────────────
"$client" --help >"$tmp/ctl-help"
# Command lines are indented by exactly two blanks; continuations by more.
commands=$(awk '/^Commands:/ { f = 1; next } f && /^$/ { f = 0 } f && /^  [a-z]/ { print $1 }' "$tmp/ctl-help")
[ -n "$commands" ] || fail "no commands found in luksvolumectl --help"
for c in $commands; do
        check_word luksvolumectl.1 "$ctl" "$c"
        grep -qE "^$c( |\$)" "$ctl" || fail "luksvolumectl.1 has no entry for the command '$c'"
done
options=$( (grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' "$tmp/ctl-help" | sed 's/^[ ,]//'
            grep -oE -- '(^| )-[a-zA-Z] ' "$tmp/ctl-help" | tr -d ' '
            [ -z "$client_src" ] || long_options_of_source "$client_src") | sort -u)
[ -n "$options" ] || fail "no options found in luksvolumectl --help"
for o in $options; do
        check_word luksvolumectl.1 "$ctl" "$o"
done
for code in $(sed -n '/^Exit status:/,$p' "$tmp/ctl-help" | grep -oE '(^| )[0-9] [a-z]' | grep -oE '[0-9]'); do
        grep -qE "^(\\|  )?$code\$" "$ctl" || fail "luksvolumectl.1 has no exit status $code"
done
grep -q '^\.SH EXIT STATUS' "$ctl" || fail "luksvolumectl.1 has no EXIT STATUS section"

# ── luksvolumed(8) against luksvolumed --help ─────────────────────────────
"$daemon" --help >"$tmp/daemon-help"
options=$( (grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' "$tmp/daemon-help" | sed 's/^[ ,]//'
            grep -oE -- '(^| )-[a-zA-Z] ' "$tmp/daemon-help" | tr -d ' '
            [ -z "$daemon_src" ] || long_options_of_source "$daemon_src") | sort -u)
[ -n "$options" ] || fail "no options found in luksvolumed --help"
for o in $options; do
        check_word luksvolumed.8 "$daemon_page" "$o"
done
grep -q '^\.SH EXIT STATUS' "$daemon_page" || fail "luksvolumed.8 has no EXIT STATUS section"

# ── org.example.LuksVolume1(5) against the XML, errors.h, the policy ──────
names=$( (sed -nE 's/.*<interface name="([^"]+)".*/\1/p' "$xml"
          sed -nE 's/.*<method name="([^"]+)".*/\1/p' "$xml"
          sed -nE 's/.*<property name="([^"]+)".*/\1/p' "$xml"
          sed -nE 's/.*<signal name="([^"]+)".*/\1/p' "$xml") | sort -u)
[ -n "$names" ] || fail "no names found in $xml"
for n in $names; do
        check_word org.example.LuksVolume1.5 "$dbus" "$n"
done
# Methods with their full signatures: "Attach(s domain, s source, ...)".
for m in $(sed -nE 's/.*<method name="([^"]+)".*/\1/p' "$xml"); do
        grep -qE "^\\.SS $m\\(" "$dbus" || fail "org.example.LuksVolume1.5 has no section for the method $m"
done

errs=$( (sed -nE 's/.*LV_ERROR\("([A-Za-z]+)"\).*/org.example.LuksVolume1.Error.\1/p' "$errors"
         grep -oE '"org\.freedesktop\.DBus\.Error\.[A-Za-z]+"' "$errors" | tr -d '"') | sort -u)
[ "$(printf '%s\n' "$errs" | grep -c .)" -ge 10 ] || fail "found only $(printf '%s\n' "$errs" | grep -c .) error names in $errors"
for e in $errs; do
        check_word org.example.LuksVolume1.5 "$dbus" "$e"
done

if [ -n "$polkit" ]; then
        for a in $(sed -nE 's/.*<action id="([^"]+)".*/\1/p' "$polkit"); do
                check_word org.example.LuksVolume1.5 "$dbus" "$a"
                check_word luksvolumed.8 "$daemon_page" "$a"
        done
fi

if [ "$failures" -gt 0 ]; then
        echo "test-man: $failures failure(s)"
        exit 1
fi
echo "test-man: all pages render cleanly and document every command, option, method, property, error and action"
