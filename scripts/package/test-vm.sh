#!/usr/bin/env bash
# scripts/package/test-vm.sh — boot a Debian guest with the package installed and
# show that udev + systemd start the agent when the virtio-serial port appears.
#
# Usage: test-vm.sh [--keep] DEB_DIR
#
# DEB_DIR holds qga-agent_*.deb and qga_*.deb (scripts/build-deb.sh). Steps:
#   1. copy the cached bookworm rootfs (systemd + udev; build-rootfs.sh), dpkg -i
#      qga-agent in it (chroot, service starts forbidden), turn it into an ext4
#      disk image (mkfs.ext4 -d: no loop mount);
#   2. boot it under QEMU as the root disk (scripts/vm/run-vm.sh with the
#      initramfs of scripts/vm/build-rootdisk-initramfs.sh, systemd as init):
#      run-vm.sh returns once the agent answers guest-sync on the host socket.
#      Nothing in the image starts the agent but the package's udev rule and
#      unit (the unit is static: no [Install], nothing enabled);
#   3. from the host, with the packaged qga client: ping, info, and fsinfo showing
#      / as the ext4 disk with serial QGAROOT; the serial console (journald
#      forwards to it) shows systemd starting qemu-guest-agent.service once;
#   4. hot-unplug the port (QMP device_del): BindsTo= stops the service and it
#      stays stopped; plug it again (device_add): udev starts it again, once,
#      and the agent answers;
#   5. qga shutdown: the agent's guest-shutdown powers the guest off through
#      systemd (logind) and QEMU exits by itself.
# Ends with "N passed, N failed" and the timings; exit status 1 on failure.
#
# Safety: only the chroot copy and the VM get the package; the VM is stopped
# by its pid (stop-vm.sh) whatever happens. Needs root (chroot), QEMU and the
# guest kernel (.ci/install-deps.sh). Under TCG it takes about 30 s (boot ~15 s).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HERE/../.." && pwd)
VM=$ROOT_DIR/scripts/vm

log() { printf '[test-vm] %s\n' "$*" >&2; }
die() { printf '[test-vm] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

KEEP=0
[[ ${1:-} == --keep ]] && { KEEP=1; shift; }
[[ $# -eq 1 ]] || die "usage: $0 [--keep] DEB_DIR"
DEB_DIR=$(cd "$1" && pwd)
newest_file() { local f last=''; for f in "$@"; do [[ -f $f ]] && last=$f; done; echo "$last"; }
AGENT_DEB=$(newest_file "$DEB_DIR"/qga-agent_*.deb)
CLI_DEB=$(newest_file "$DEB_DIR"/qga_*.deb)
[[ -n $AGENT_DEB ]] || die "no qga-agent_*.deb in $DEB_DIR"
[[ -n $CLI_DEB ]] || die "no qga_*.deb in $DEB_DIR (the host side of this test is the packaged qga)"
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing (e2fsprogs)"

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$1"; }
bad() { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$1"; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/     | /'; }
expect_eq() { if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1" "got:  $2"$'\n'"want: $3"; fi; }
expect_match() { if grep -Eq -- "$3" <<<"$2"; then ok "$1"; else bad "$1" "no /$3/ in:"$'\n'"$2"; fi; }

T0=$(now)
ROOTFS=$("$HERE/build-rootfs.sh")
# Short path: run-vm.sh's sockets live in it (sun_path is 108 bytes).
WORK=$(mktemp -d /tmp/qga-pvm.XXXXXX)
R=$WORK/root
cleanup() {
    "$VM/stop-vm.sh" "$WORK" >/dev/null 2>&1 || true
    if [[ $KEEP -eq 1 ]]; then
        log "kept $WORK"
    elif grep -q " $WORK" /proc/self/mountinfo; then
        log "something is mounted below $WORK: not deleting it"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# 1. The guest image
# ---------------------------------------------------------------------------
T=$(now)
cp -a "$ROOTFS" "$R"
rm -f "$R/.qga-rootfs"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
cp "$AGENT_DEB" "$R/tmp/"
IN=(chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8)
if out=$("${IN[@]}" dpkg -i "/tmp/$(basename "$AGENT_DEB")" 2>&1 </dev/null); then
    ok "dpkg -i qga-agent in the image"
else
    bad "dpkg -i qga-agent in the image" "$out"
fi
rm -f "$R/usr/sbin/policy-rc.d" "$R/tmp/$(basename "$AGENT_DEB")"
echo qga-pkg-vm >"$R/etc/hostname"
printf 'LABEL=qgaroot / ext4 rw,errors=remount-ro 0 1\n' >"$R/etc/fstab"
# Nothing but the package may start the agent: no unit enables it.
expect_eq "nothing in the image enables qemu-guest-agent.service" \
    "$(find "$R/etc/systemd" "$R/lib/systemd" -name 'qemu-guest-agent.service' -path '*.wants/*' 2>/dev/null)" ""
truncate -s 1G "$WORK/root.img"
mkfs.ext4 -q -F -L qgaroot -d "$R" "$WORK/root.img"
rm -rf --one-file-system "$R"
"$VM/build-rootdisk-initramfs.sh" "$WORK" 2>/dev/null
dpkg -x "$CLI_DEB" "$WORK/cli"
QGA=$WORK/cli/usr/bin/qga
IMAGE_TIME=$(since "$T")
log "image ready in ${IMAGE_TIME}s"

# ---------------------------------------------------------------------------
# 2. Boot: run-vm.sh returns when the agent answers on the host socket
# ---------------------------------------------------------------------------
T=$(now)
if "$VM/run-vm.sh" --initrd "$WORK/initrd-rootdisk.gz" --append 'qga.root_serial=QGAROOT systemd.journald.forward_to_console=1' \
        --mem 512 --timeout 300 --lifetime 900 "$WORK" -- \
        -drive "file=$WORK/root.img,if=none,id=root0,format=raw" \
        -device virtio-blk-pci,drive=root0,serial=QGAROOT >"$WORK/run-vm.out" 2>&1; then
    BOOT_TIME=$(cat "$WORK/boot-time")
    ok "systemd guest booted; the agent answered ${BOOT_TIME}s after QEMU started"
else
    bad "systemd guest booted and the agent answered" "$(tail -n 5 "$WORK/run-vm.out")"$'\n'"$(tail -n 30 "$WORK/console.log")"
    echo "$PASS passed, $FAIL failed"
    exit 1
fi
SOCK=$WORK/qga.sock
CONSOLE=$WORK/console.log
q() { "$QGA" -s "$SOCK" -t 30 "$@"; }
# unit_events: the service's start/stop lines systemd logged (journald forwards
# them to the serial console: systemd.journald.forward_to_console=1).
unit_events() {
    tr -d '\r' <"$CONSOLE" | grep -aoE 'systemd\[1\]: (Started|Stopped|Stopping|Starting) qemu-guest-agent\.service|qemu-guest-agent\.service: Scheduled restart job' \
        | sed 's/^systemd\[1\]: //'
}
# wait_events N: until the console shows N start/stop events (at most 60 s)
wait_events() { for _ in $(seq 600); do [[ $(unit_events | grep -cE '^(Started|Stopped)') -ge $1 ]] && return 0; sleep 0.1; done; return 1; }

check_cmd() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }
check_cmd "qga ping (exit 0)" q ping
expect_match "qga info: the agent's version" "$(q info 2>&1)" '[0-9]+\.[0-9]+\.[0-9]+'
fsinfo=$(q raw '{"execute":"guest-get-fsinfo"}' 2>&1)
root_fs=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])["return"]
for fs in r:
    if fs["mountpoint"] == "/":
        print(fs["type"], " ".join(sorted(d.get("serial", "") for d in fs["disk"])))
' "$fsinfo" 2>&1)
expect_eq "the guest runs from the Debian disk (/ is ext4 on serial QGAROOT)" "$root_fs" "ext4 QGAROOT"
wait_events 1 || true
expect_eq "systemd started the service once, nobody restarted it" "$(unit_events)" \
"Started qemu-guest-agent.service"

# ---------------------------------------------------------------------------
# 3. Hot-unplug and re-plug the port
# ---------------------------------------------------------------------------
if out=$(python3 "$HERE/qmp_port.py" "$WORK/qmp.sock" unplug 2>&1); then ok "QMP: port unplugged ($out)"; else bad "QMP: port unplugged" "$out"; fi
# The agent sees the port vanish (read error) and may exit before systemd handles
# the device removal: Restart=always then restarts it once, and the stop job of
# BindsTo= ends that instance (real qemu-ga behaves the same). What counts: the
# service ends up stopped and stays stopped while the port is gone.
T=$(now)
settled() {   # the last start/stop event is "Stopped" and nothing changed for 2 s
    local before after
    for _ in $(seq 60); do
        before=$(unit_events)
        sleep 2
        after=$(unit_events)
        [[ $before == "$after" && $(grep -E '^(Started|Stopped)' <<<"$after" | tail -n 1) == Stopped* ]] && return 0
    done
    return 1
}
if settled; then UNPLUG_TIME=$(since "$T"); else UNPLUG_TIME=-; fi
GONE=$(unit_events | grep -E '^(Started|Stopped)')
expect_eq "BindsTo= stopped the service when the port went away (settled after ${UNPLUG_TIME}s)" \
    "$(tail -n 1 <<<"$GONE")" "Stopped qemu-guest-agent.service"
if out=$(python3 "$HERE/qmp_port.py" "$WORK/qmp.sock" plug 2>&1); then ok "QMP: port plugged again ($out)"; else bad "QMP: port plugged again" "$out"; fi
T=$(now)
if python3 "$VM/qga_send.py" -q --wait 120 --pid "$(cat "$WORK/qemu.pid")" "$SOCK" </dev/null; then
    REPLUG_TIME=$(since "$T")
    ok "the agent answers again ${REPLUG_TIME}s after the port reappeared"
else
    REPLUG_TIME=-
    bad "the agent answers again after the port reappeared" "$(tail -n 20 "$CONSOLE")"
fi
wait_events $(($(wc -l <<<"$GONE") + 1)) || true
expect_eq "udev started it again, once" \
    "$(unit_events | grep -E '^(Started|Stopped)' | tail -n +$(($(wc -l <<<"$GONE") + 1)))" \
    "Started qemu-guest-agent.service"
check_cmd "qga ping after the re-plug" q ping

# ---------------------------------------------------------------------------
# 4. guest-shutdown through systemd
# ---------------------------------------------------------------------------
QPID=$(cat "$WORK/qemu.pid")
T=$(now)
shutdown_out=$(q shutdown 2>&1) || true
for _ in $(seq 600); do [[ -d /proc/$QPID ]] || break; sleep 0.1; done
if [[ -d /proc/$QPID ]]; then
    SHUTDOWN_TIME=-
    bad "qga shutdown powers the guest off" "qga shutdown: $shutdown_out"$'\n'"$(tail -n 20 "$CONSOLE")"
else
    SHUTDOWN_TIME=$(since "$T")
    ok "qga shutdown powered the guest off; QEMU exited after ${SHUTDOWN_TIME}s"
fi

log "timings: image ${IMAGE_TIME}s, boot to first agent reply ${BOOT_TIME}s, unplug to stop ${UNPLUG_TIME}s, re-plug to reply ${REPLUG_TIME}s, shutdown ${SHUTDOWN_TIME}s, total $(since "$T0")s"
echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
