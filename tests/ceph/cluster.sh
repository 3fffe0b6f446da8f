#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A throwaway single-node Ceph for the `ceph` test suite (issue 18): one
# monitor, one OSD that keeps its objects in RAM (memstore), cephx on, on
# loopback ports nobody else uses, everything under one directory.  No mgr:
# RBD I/O, pools and images need only the monitor and the OSD (the mgr
# serves statistics and modules, and costs a Python interpreter).
#
#   tests/ceph/cluster.sh start DIR   # prints "ceph: cluster up in N ms"
#   tests/ceph/cluster.sh stop DIR
#
# After start, DIR/ceph.conf and DIR/ceph.client.admin.keyring reach the
# cluster (CEPH_CONF=DIR/ceph.conf for the ceph and rbd tools), with a pool
# named "rbd" initialised for RBD.  Debian's ceph-mon, ceph-osd and
# ceph-common are the whole of it (tests/install-deps.sh).
set -euo pipefail

die() { echo "ceph: $*" >&2; exit 1; }

# A free TCP port on 127.0.0.1 (the kernel picks; racy only against
# another process binding the same instant).
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

start() {
        local dir=$1 t0 fsid port port1 conf
        t0=$(now_ms)
        for b in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd; do
                command -v "$b" >/dev/null || die "$b is missing (tests/install-deps.sh installs Debian's ceph-mon, ceph-osd, ceph-common)"
        done
        rm -rf "$dir"
        mkdir -p "$dir"/{mon,osd,run,log}
        fsid=$(cat /proc/sys/kernel/random/uuid)
        port=$(free_port)
        port1=$(free_port)
        conf=$dir/ceph.conf

        cat > "$conf" <<EOF
[global]
fsid = $fsid
# Both protocols: msgr2 for Ceph's own tools, v1 for any client that
# names the monitor as a plain address.
mon host = [v2:127.0.0.1:$port,v1:127.0.0.1:$port1]
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
# One OSD: every pool has one replica, and nothing waits for a second.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
mon allow pool delete = true
# No mgr: don't warn about it, and don't let PG autoscaling need it.
mon warn on pool no redundancy = false
osd pool default pg autoscale mode = off
# A client that dies without closing (a killed test helper) loses its
# watch after 5 s, not 30.
osd client watch timeout = 5
ms bind port min = 6800
ms bind port max = 7300

[client]
keyring = $dir/ceph.client.admin.keyring

[mon]
mon data = $dir/mon/\$name
keyring = $dir/mon.keyring

[osd]
osd data = $dir/osd/\$name
keyring = $dir/osd/\$name/keyring
osd objectstore = memstore
# memstore keeps every object in RAM: 1 GiB of address space, used as
# written (tests write a few MiB).
memstore device bytes = 1073741824
osd journal size = 0
EOF

        # Keys: the monitor's own, and client.admin's with every capability.
        ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
        ceph-authtool --create-keyring "$dir/ceph.client.admin.keyring" --gen-key -n client.admin \
                --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
        ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/ceph.client.admin.keyring" >/dev/null
        monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$port1]" "$dir/monmap" >/dev/null

        ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
        ceph-mon -c "$conf" -i a

        export CEPH_CONF=$conf
        local osd_uuid id
        osd_uuid=$(cat /proc/sys/kernel/random/uuid)
        id=$(timeout 60 ceph osd new "$osd_uuid")
        mkdir -p "$dir/osd/osd.$id"
        ceph-osd -c "$conf" -i "$id" --mkfs --mkkey --no-mon-config --osd-uuid "$osd_uuid" 2>"$dir/log/osd-mkfs.log" ||
                { cat "$dir/log/osd-mkfs.log" >&2; die "ceph-osd --mkfs failed"; }
        timeout 60 ceph auth add "osd.$id" osd 'allow *' mon 'allow profile osd' -i "$dir/osd/osd.$id/keyring" 2>/dev/null
        ceph-osd -c "$conf" -i "$id" 2>>"$dir/log/osd-start.log"

        timeout 60 ceph osd pool create rbd 8 8 >/dev/null 2>&1
        timeout 60 rbd pool init rbd
        # Ready when a write goes through the OSD, not when the map says so.
        local i
        for i in $(seq 1 600); do
                if timeout 10 rados -p rbd put lv-ready /etc/hostname 2>/dev/null; then
                        rados -p rbd rm lv-ready
                        echo "ceph: cluster up in $(( $(now_ms) - t0 )) ms (mon 127.0.0.1:$port/$port1, memstore OSD, cephx; $dir)"
                        return 0
                fi
                sleep 0.1
        done
        die "the OSD did not take a write within 60 s (logs in $dir/log)"
}

stop() {
        local dir=$1 f pid
        for f in "$dir"/run/*.pid; do
                [ -e "$f" ] || continue
                pid=$(cat "$f")
                kill "$pid" 2>/dev/null || true
        done
        for f in "$dir"/run/*.pid; do
                [ -e "$f" ] || continue
                pid=$(cat "$f")
                for _ in $(seq 1 50); do
                        kill -0 "$pid" 2>/dev/null || continue 2
                        sleep 0.1
                done
                # Still there after 5 s (and so still the daemon we asked).
                kill -9 "$pid" 2>/dev/null || true
        done
        rm -rf "$dir"
}

case ${1:-} in
        start) start "${2:?usage: cluster.sh start DIR}" ;;
        stop) stop "${2:?usage: cluster.sh stop DIR}" ;;
        *) echo "usage: tests/ceph/cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
