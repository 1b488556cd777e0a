#!/bin/bash
# Every probe of ../shared/probes, ROUNDS times (default 3), with its work folder (PROBE_DIR) on
# the machine's own disk, on a small tmpfs and on an exFAT stick (a loop file through FUSE).
# Each probe also uses /dev/shm, so each round crosses a filesystem too. Needs root.
#   FLOWERSORT=venv/bin/flowersort PYTHON=venv/bin/python bash benchmarks/probes_on_filesystems.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PROBES=${PROBES:-$HERE/../../shared/probes}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
WORK=$(mktemp -d /var/tmp/probes-fs.XXXXXX) && chmod 755 "$WORK"  # the probe users must reach their homes below
cleanup() {
    umount "$WORK/tmpfs" 2>/dev/null
    fusermount -u "$WORK/exfat" 2>/dev/null || umount "$WORK/exfat" 2>/dev/null
    [ -n "${LOOP:-}" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p -m 755 "$WORK/disk" "$WORK/tmpfs" "$WORK/exfat"
mount -t tmpfs -o size=256m,mode=755 tmpfs "$WORK/tmpfs"
truncate -s 256M "$WORK/exfat.img" && mkfs.exfat "$WORK/exfat.img" >/dev/null
LOOP=$(losetup --find --show "$WORK/exfat.img")
mount.exfat-fuse "$LOOP" "$WORK/exfat" >/dev/null 2>&1
failed=0
for fs in disk tmpfs exfat; do
    for round in $(seq "$ROUNDS"); do
        for probe in "$PROBES"/*.sh; do
            name=$(basename "$probe" .sh)
            [ "$name" = common ] && continue
            dir="$WORK/$fs/p"
            for attempt in 1 2 3; do  # a race that did not happen is tried again, not counted
                rm -rf "$dir"; mkdir -p -m 755 "$dir"
                line=$(PROBE_DIR=$dir bash "$probe" 2>/dev/null </dev/null | grep '^PROBE ' | tail -1)
                case "$line" in *": inconclusive"*) ;; *) break ;; esac
            done
            [ -n "$line" ] || line="PROBE $name: FAIL (printed no verdict)"
            case "$line" in *": ok"*|*": skipped"*) ;; *) failed=$((failed + 1)) ;; esac
            echo "$fs round $round (attempt $attempt): $line"
        done
    done
done
echo "probes not ok: $failed"
[ "$failed" = 0 ]
