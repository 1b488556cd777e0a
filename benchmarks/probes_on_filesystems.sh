#!/bin/bash
# Every probe of ../shared/probes, ROUNDS times (default 3), with its work folder (PROBE_DIR) on
# the machine's own disk, on a 1 GiB tmpfs and on a 1 GiB exFAT stick (a loop file through FUSE).
# Each probe also uses /dev/shm, so each round crosses a filesystem too. Needs root, strace, and
# exfat-fuse with exfatprogs (apt-get install exfat-fuse exfatprogs).
#   FLOWERSORT=venv/bin/flowersort PYTHON=venv/bin/python bash benchmarks/probes_on_filesystems.sh
#
# The exFAT stick is mounted as a desktop mounts a user's stick: every file and folder on it
# belongs to the user who plugged it in (probeowner, the probes' archive owner), folders 0755 and
# files 0644 (exFAT stores no owner or mode: uid, gid, dmask and fmask say them for the whole
# stick; chown and chmod on it change nothing). mount.exfat-fuse adds allow_other and
# default_permissions itself, so root reaches it and the kernel checks every user's rights.
# Mounted with its defaults instead (owner root, mode 0777), everyone can change every folder on
# it, and a root run rightly refuses to sort there without --run-as: the probes would test that
# refusal, not the attacks they play. exFAT has no symbolic links, so an attack that plants one
# fails there (ln: Function not implemented) and the probe checks that nothing leaked all the same.
# 1 GiB each: folder-swap-deletes keeps two 200 MB photos in its work folder; on 256 MiB its cp
# ran out of room, classify stopped at once (its score cache full), and the swap it waits for
# (a temporary in the target) never came: inconclusive every time, never a race lost.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PROBES=${PROBES:-$HERE/../../shared/probes}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
for u in probeowner probeother; do id -u $u >/dev/null 2>&1 || useradd -M -s /bin/sh $u; done
WORK=$(mktemp -d /var/tmp/probes-fs.XXXXXX) && chmod 755 "$WORK"  # the probe users must reach their homes below
cleanup() {
    umount "$WORK/tmpfs" 2>/dev/null
    fusermount -u "$WORK/exfat" 2>/dev/null || umount "$WORK/exfat" 2>/dev/null
    [ -n "${LOOP:-}" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p -m 755 "$WORK/disk" "$WORK/tmpfs" "$WORK/exfat"
mount -t tmpfs -o size=1g,mode=755 tmpfs "$WORK/tmpfs"
truncate -s 1G "$WORK/exfat.img" && mkfs.exfat "$WORK/exfat.img" >/dev/null
LOOP=$(losetup --find --show "$WORK/exfat.img")
mount.exfat-fuse -o "uid=$(id -u probeowner),gid=$(id -g probeowner),dmask=0022,fmask=0133" \
    "$LOOP" "$WORK/exfat" >/dev/null 2>&1 || { echo "cannot mount the exFAT stick"; exit 1; }
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
