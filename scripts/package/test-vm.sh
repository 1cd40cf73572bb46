#!/usr/bin/env bash
# scripts/package/test-vm.sh — boot a Debian guest with the package installed and
# show that udev + systemd start the agent when the virtio-serial port appears.
#
# Usage: test-vm.sh [--keep] DEB_DIR
#
# DEB_DIR holds qga-agent_*.deb and qga_*.deb (scripts/build-deb.sh). Steps:
#   1. copy the cached bookworm rootfs (systemd, udev; build-rootfs.sh), install
#      Debian's qemu-guest-agent 10.0.2 in it (chroot, service starts forbidden),
#      put qga-agent_*.deb in /root, make an ext4 disk image of it (mkfs.ext4 -d:
#      no loop mount) - a fleet guest before the switch;
#   2. boot it under QEMU as the root disk (scripts/vm/run-vm.sh with the
#      initramfs of scripts/vm/build-rootdisk-initramfs.sh, systemd as init):
#      run-vm.sh returns once qemu-ga answers on the host socket. Nothing in the
#      image enables the unit: udev's rule starts it;
#   3. replace it live: "systemd-run dpkg -i /root/qga-agent_*.deb" in the guest
#      (through qemu-ga's guest-exec). dpkg removes qemu-guest-agent (its prerm
#      stops the service), our postinst starts ours: the host socket answers
#      again, with the packaged binary's guest-info, without a reboot;
#   4. hot-unplug the port (QMP device_del): BindsTo= stops the service and it
#      stays stopped; plug it again (device_add): udev starts it again, once,
#      and the agent answers; systemd in the guest (asked through our
#      guest-exec) shows the unit static, wanted by the port's device unit,
#      running /usr/sbin/qemu-ga, never auto-restarted;
#   5. qga shutdown: our guest-shutdown powers the guest off through systemd
#      (logind) and QEMU exits by itself.
# The host side is the packaged qga client (dpkg -x of qga_*.deb); the service's
# start/stop lines come from the serial console (journald forwards to it).
# Ends with "N passed, N failed" and the timings; exit status 1 on failure.
#
# Safety: only the chroot copy and the VM get the package; the VM is stopped
# by its pid (stop-vm.sh) whatever happens. Needs root (chroot), QEMU and the
# guest kernel (.ci/install-deps.sh). Under TCG it takes 60-110 s (boot 20-45 s,
# depending on the load of the machine).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HERE/../.." && pwd)
VM=$ROOT_DIR/scripts/vm
CACHE=${QGA_TEST_CACHE:-/var/cache/qga-test}

TAG=test-vm
# shellcheck source=common.sh
. "$HERE/common.sh"
parse_deb_args "$@"
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
# 1. The guest image: Debian's qemu-guest-agent 10.0.2 installed, ours waiting
#    in /root (an operator's fleet before the switch)
# ---------------------------------------------------------------------------
REF_DEB=$(newest_file "$CACHE/qemu-ga-10.0.2"/qemu-guest-agent_*.deb)
[[ -n $REF_DEB ]] || die "Debian's qemu-guest-agent .deb missing in $CACHE/qemu-ga-10.0.2: run .ci/install-deps.sh"
T=$(now)
cp -a "$ROOTFS" "$R"
rm -f "$R/.qga-rootfs"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
cp "$REF_DEB" "$R/tmp/"
IN=(chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8)
if out=$("${IN[@]}" dpkg -i "/tmp/$(basename "$REF_DEB")" 2>&1 </dev/null); then
    ok "image: Debian's qemu-guest-agent installed"
else
    bad "image: Debian's qemu-guest-agent installed" "$out"
fi
rm -f "$R/usr/sbin/policy-rc.d" "$R/tmp/$(basename "$REF_DEB")"
cp "$AGENT_DEB" "$R/root/"
echo qga-pkg-vm >"$R/etc/hostname"
printf 'LABEL=qgaroot / ext4 rw,errors=remount-ro 0 1\n' >"$R/etc/fstab"
# Only udev may start the agent: no unit enables it.
expect_eq "image: nothing enables qemu-guest-agent.service" \
    "$(find "$R/etc/systemd" "$R/lib/systemd" -name 'qemu-guest-agent.service' -path '*.wants/*' 2>/dev/null)" ""
truncate -s 1G "$WORK/root.img"
mkfs.ext4 -q -F -L qgaroot -d "$R" "$WORK/root.img"
rm -rf --one-file-system "$R"
"$VM/build-rootdisk-initramfs.sh" "$WORK" 2>/dev/null
dpkg -x "$CLI_DEB" "$WORK/cli"
QGA=$WORK/cli/usr/bin/qga
dpkg -x "$AGENT_DEB" "$WORK/pkg"
IMAGE_TIME=$(since "$T")
log "image ready in ${IMAGE_TIME}s"

# What the packaged agent answers to guest-info, run here on a unix socket: the
# guest must answer the same once ours runs there.
mkdir -p "$WORK/local"
"$WORK/pkg/usr/sbin/qemu-ga" -m unix-listen -p "$WORK/local/s" -t "$WORK/local" >/dev/null 2>&1 &
LOCAL_PID=$!
OUR_INFO=$(python3 "$VM/qga_send.py" --wait 10 "$WORK/local/s" guest-info 2>/dev/null) || true
kill -TERM "$LOCAL_PID"; wait "$LOCAL_PID" || true
OUR_VERSION=$(sed -n 's/^{"return": {"version": "\([^"]*\)".*/\1/p' <<<"$OUR_INFO")
[[ -n $OUR_VERSION ]] || die "the packaged agent did not answer guest-info locally: $OUR_INFO"

# ---------------------------------------------------------------------------
# 2. Boot: run-vm.sh returns when the agent (Debian's) answers on the host socket
# ---------------------------------------------------------------------------
T=$(now)
if "$VM/run-vm.sh" --initrd "$WORK/initrd-rootdisk.gz" --append 'qga.root_serial=QGAROOT systemd.journald.forward_to_console=1' \
        --mem 512 --timeout 300 --lifetime 900 "$WORK" -- \
        -drive "file=$WORK/root.img,if=none,id=root0,format=raw" \
        -device virtio-blk-pci,drive=root0,serial=QGAROOT >"$WORK/run-vm.out" 2>&1; then
    BOOT_TIME=$(cat "$WORK/boot-time")
    ok "systemd guest booted; qemu-ga answered ${BOOT_TIME}s after QEMU started"
else
    bad "systemd guest booted and qemu-ga answered" "$(tail -n 5 "$WORK/run-vm.out")"$'\n'"$(tail -n 30 "$WORK/console.log")"
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
version() { sed -n 's/^{"return": {"version": "\([^"]*\)".*/\1/p' <<<"$1"; }
check_cmd() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }

expect_eq "the guest runs Debian's qemu-ga 10.0.2" \
    "$(version "$(q raw '{"execute":"guest-info"}' 2>&1)")" "10.0.2"
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
expect_eq "udev + systemd started qemu-guest-agent.service once" "$(unit_events)" \
"Started qemu-guest-agent.service"

# ---------------------------------------------------------------------------
# 2b. Replace it live, as an operator would: dpkg -i in the running guest (run
#     through qemu-ga's guest-exec in a transient unit of its own, since the
#     old package's prerm stops the agent and with it its cgroup)
# ---------------------------------------------------------------------------
T=$(now)
check_cmd "dpkg -i qga-agent started in the guest (systemd-run)" \
    q exec -- /usr/bin/systemd-run --no-block --unit=qga-replace \
    /usr/bin/dpkg -i "/root/$(basename "$AGENT_DEB")"
got=''
for _ in $(seq 120); do
    got=$(version "$(q -t 5 raw '{"execute":"guest-info"}' 2>/dev/null)")
    [[ $got == "$OUR_VERSION" ]] && break
    sleep 1
done
REPLACE_TIME=$(since "$T")
expect_eq "qga-agent answers after the live replacement (${REPLACE_TIME}s)" "$got" "$OUR_VERSION"
expect_eq "its guest-info is the packaged binary's" \
    "$(q raw '{"execute":"guest-info"}' 2>&1)" "$OUR_INFO"
for _ in $(seq 100); do grep -aq 'qga-replace.service: Deactivated successfully' "$CONSOLE" && break; sleep 0.1; done
expect_match "dpkg -i in the guest succeeded" "$(tr -d '\r' <"$CONSOLE" | grep -a 'qga-replace.service')" \
    'qga-replace\.service: Deactivated successfully'
wait_events 3 || true
expect_eq "the old agent was stopped (its prerm), ours started (our postinst)" \
    "$(unit_events | grep -E '^(Started|Stopped)')" \
"Started qemu-guest-agent.service
Stopped qemu-guest-agent.service
Started qemu-guest-agent.service"
check_cmd "qga ping (exit 0)" q ping

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
# systemd's own view, asked through our agent's guest-exec
gsh() { q exec -- /bin/sh -c "$1" 2>&1; }
# shellcheck disable=SC2016  # expanded in the guest
expect_eq "in the guest: the service is active, static, never auto-restarted" \
    "$(gsh 'for p in ActiveState UnitFileState NRestarts; do echo "$p=$(systemctl show -p $p --value qemu-guest-agent.service)"; done')" \
"ActiveState=active
UnitFileState=static
NRestarts=0"
# The unit that wants the service is the device unit of the port named
# org.qemu.guest_agent.0 (systemctl quotes unit names with escapes: eval).
# shellcheck disable=SC2016  # expanded in the guest
expect_eq "in the guest: the port's device unit wants it (the udev rule's SYSTEMD_WANTS)" \
    "$(gsh 'eval "set -- $(systemctl show -p WantedBy --value qemu-guest-agent.service)"
            for u in "$@"; do cat "$(systemctl show -p SysFSPath --value "$u")/name"; done')" \
    "org.qemu.guest_agent.0"
# shellcheck disable=SC2016  # expanded in the guest
expect_eq "in the guest: its main process is /usr/sbin/qemu-ga, without options" \
    "$(gsh 'pid=$(systemctl show -p MainPID --value qemu-guest-agent.service); readlink /proc/$pid/exe; tr "\0" " " </proc/$pid/cmdline')" \
    "/usr/sbin/qemu-ga
/usr/sbin/qemu-ga "
# shellcheck disable=SC2016  # ${...} is dpkg-query's format syntax
# "ic": removed by dpkg in favour of ours, its config files (init script) kept.
expect_eq "in the guest: qga-agent installed, qemu-guest-agent removed" \
    "$(gsh 'dpkg-query -W -f="\${Package} \${db:Status-Abbrev}\n" qga-agent qemu-guest-agent' | cut -c1-19)" \
    "qemu-guest-agent ic
qga-agent ii "

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

log "timings: image ${IMAGE_TIME}s, boot to first agent reply ${BOOT_TIME}s, live replacement ${REPLACE_TIME}s, unplug to stop ${UNPLUG_TIME}s, re-plug to reply ${REPLUG_TIME}s, shutdown ${SHUTDOWN_TIME}s, total $(since "$T0")s"
echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
