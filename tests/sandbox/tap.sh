# SPDX-License-Identifier: LGPL-2.1-or-later
# TAP plumbing for the shell tests run inside sandbox.sh.
# shellcheck shell=bash

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
diag() { sed 's/^/# /' "$@"; }

# check DESCRIPTION COMMAND...: one test point from a command's status.
check() {
        local desc=$1; shift
        if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
