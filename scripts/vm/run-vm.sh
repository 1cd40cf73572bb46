#!/usr/bin/env bash
# scripts/vm/run-vm.sh — boot the test VM and wait until its agent answers.
#
# Usage:
#   run-vm.sh [options] WORKDIR [-- EXTRA_QEMU_ARGS...]
#
# Boots $QGA_TEST_CACHE/kernel/vmlinuz + WORKDIR/initrd.gz (build it with
# build-initramfs.sh AGENT WORKDIR) under qemu-system-x86_64 and returns once
# the agent answered guest-sync-delimited on WORKDIR/qga.sock, leaving the VM
# running in the background. Files in WORKDIR:
#   qga.sock     agent channel (virtio-serial port org.qemu.guest_agent.0)
#   qmp.sock     QMP monitor          console.log  guest serial console
#   qemu.pid     QEMU's pid           qemu.log     QEMU's own stdout/stderr
#   data.img     64 MiB ext4 data disk (serial QGADISK0, /mnt/data in the guest),
#                created if missing
#   boot-time    seconds from QEMU start to the first agent reply
# Stop it with stop-vm.sh WORKDIR (or guest-shutdown; QEMU then exits by itself).
#
# Options:
#   --initrd FILE     initramfs (default WORKDIR/initrd.gz)
#   --kernel FILE     kernel (default $QGA_TEST_CACHE/kernel/vmlinuz)
#   --timeout S       how long to wait for the agent (default 60)
#   --no-wait         return right after starting QEMU
#   --smp N           vCPUs (default 2: cpu1 can be offlined)
#   --mem MB          memory (default 256)
#   --append TEXT     extra kernel command line
#   --lifetime S      safety net: kill the VM after S seconds (default 0 = never)
#   --fresh-disk      recreate data.img even if it exists
# Acceleration: TCG, unless /sys/module/kvm_intel or /sys/module/kvm_amd exists
# (the nested kvm_pvm /dev/kvm on the CI machines cannot run these kernels).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

INITRD='' KERNEL=$QGA_KERNEL TIMEOUT=60 WAIT=1 SMP=2 MEM=256 APPEND='' LIFETIME=0 FRESH=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --initrd) INITRD=$2; shift 2 ;;
        --kernel) KERNEL=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-wait) WAIT=0; shift ;;
        --smp) SMP=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --append) APPEND=$2; shift 2 ;;
        --lifetime) LIFETIME=$2; shift 2 ;;
        --fresh-disk) FRESH=1; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || usage
mkdir -p "$1"
WORKDIR=$(cd "$1" && pwd); shift
if [[ $# -gt 0 ]]; then [[ $1 == -- ]] || die "unexpected argument '$1'"; shift; fi
EXTRA_QEMU=("$@")
INITRD=${INITRD:-$WORKDIR/initrd.gz}

[[ -f $KERNEL ]] || die "kernel $KERNEL missing: run .ci/install-deps.sh"
[[ -f $INITRD ]] || die "initramfs $INITRD missing: run build-initramfs.sh AGENT $WORKDIR"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run .ci/install-deps.sh"
# sun_path holds 108 bytes: keep the socket paths short enough.
[[ ${#WORKDIR} -le 95 ]] || die "WORKDIR path too long for unix sockets (${#WORKDIR} > 95 chars): $WORKDIR"

if [[ -f $WORKDIR/qemu.pid ]] && is_our_qemu "$(cat "$WORKDIR/qemu.pid")" "$WORKDIR"; then
    die "a VM is already running for $WORKDIR (pid $(cat "$WORKDIR/qemu.pid")); stop-vm.sh $WORKDIR first"
fi
rm -f "$WORKDIR"/{qga.sock,qmp.sock,qemu.pid,boot-time}

# Data disk: raw, ext4, made once (kept between boots unless --fresh-disk).
if [[ $FRESH -eq 1 || ! -f $WORKDIR/data.img ]]; then
    rm -f "$WORKDIR/data.img"
    qemu-img create -q -f raw "$WORKDIR/data.img" 64M
    mkfs.ext4 -q -F -L qgadata "$WORKDIR/data.img"
fi

if [[ -e /sys/module/kvm_intel || -e /sys/module/kvm_amd ]] && [[ -w /dev/kvm ]]; then
    ACCEL=(-accel kvm -cpu host)
else
    ACCEL=(-accel tcg)
fi

QEMU=(qemu-system-x86_64 "${ACCEL[@]}" -m "$MEM" -smp "$SMP"
    -nodefaults -display none -no-reboot
    -kernel "$KERNEL" -initrd "$INITRD"
    -append "console=ttyS0 quiet panic=-1 $APPEND"
    -serial "file:$WORKDIR/console.log"
    -device virtio-serial-pci
    -chardev "socket,id=qga0,path=$WORKDIR/qga.sock,server=on,wait=off"
    -device "virtserialport,chardev=qga0,name=$QGA_PORT_NAME"
    -drive "file=$WORKDIR/data.img,if=none,id=d0,format=raw,discard=unmap"
    -device virtio-blk-pci,drive=d0,serial=QGADISK0
    -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0
    -qmp "unix:$WORKDIR/qmp.sock,server=on,wait=off"
    "${EXTRA_QEMU[@]}")
printf '%q ' "${QEMU[@]}" >"$WORKDIR/qemu.cmdline"; echo >>"$WORKDIR/qemu.cmdline"

T0=$(now_s)
# setsid: the VM survives Ctrl-C in the caller's terminal; stdio goes to files
# so callers that capture our output (e.g. Rust tests) are not kept waiting.
setsid "${QEMU[@]}" </dev/null >"$WORKDIR/qemu.log" 2>&1 &
PID=$!
echo "$PID" >"$WORKDIR/qemu.pid"
log "QEMU pid $PID (${ACCEL[*]}), console: $WORKDIR/console.log"

if [[ $LIFETIME -gt 0 ]]; then
    # Watchdog: polls once a second, ends by itself when QEMU is gone.
    (
        end=$((SECONDS + LIFETIME))
        while is_our_qemu "$PID" "$WORKDIR"; do
            if [[ $SECONDS -ge $end ]]; then
                echo "[run-vm.sh] lifetime of ${LIFETIME}s reached, killing QEMU $PID" >>"$WORKDIR/qemu.log"
                kill "$PID" 2>/dev/null || true
                break
            fi
            sleep 1
        done
    ) </dev/null >/dev/null 2>&1 &
    disown
fi

[[ $WAIT -eq 1 ]] || exit 0

if ! python3 "$QGA_VM_DIR/qga_send.py" -q --wait "$TIMEOUT" --pid "$PID" "$WORKDIR/qga.sock" </dev/null; then
    status="still running"
    is_our_qemu "$PID" "$WORKDIR" || status="exited"
    log "QEMU $status; last console lines:"
    tail -n 20 "$WORKDIR/console.log" >&2 || true
    [[ -s $WORKDIR/qemu.log ]] && { log "qemu.log:"; tail -n 5 "$WORKDIR/qemu.log" >&2; }
    die "agent did not answer guest-sync within ${TIMEOUT}s (QEMU $status; stop-vm.sh $WORKDIR)"
fi
took=$(elapsed "$T0")
echo "$took" >"$WORKDIR/boot-time"
log "agent answered guest-sync ${took}s after QEMU start; socket: $WORKDIR/qga.sock"
