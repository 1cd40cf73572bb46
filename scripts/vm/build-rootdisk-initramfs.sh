#!/usr/bin/env bash
# scripts/vm/build-rootdisk-initramfs.sh — a tiny initramfs that boots a real root
# filesystem from a virtio disk (the sibling of build-initramfs.sh, which puts
# the whole guest in the initramfs).
#
# Usage: build-rootdisk-initramfs.sh OUTDIR
#
# Writes OUTDIR/initrd-rootdisk.gz. Its /init (busybox) loads the virtio
# modules the cloud kernel has as modules (virtio_pci, virtio_blk,
# virtio_console, with their dependencies), finds the root disk by its virtio
# serial number, mounts it read-write and switch_roots to its /sbin/init
# (systemd in the Debian image of scripts/package/build-rootfs.sh).
# Kernel command line (run-vm.sh --append):
#   qga.root_serial=SERIAL   serial of the root disk (default QGAROOT):
#                            -device virtio-blk-pci,drive=...,serial=QGAROOT
#   qga.init=PATH            init to start (default /sbin/init)
# The serial, not /dev/vdX, names the disk: run-vm.sh's data disk is a
# virtio-blk device too, and probe order follows PCI slots.
# On failure /init prints why on the console and powers off.
#
# Needs: /bin/busybox (busybox-static), cpio, the cached kernel modules
# ($QGA_TEST_CACHE/kernel/modules). Builds in well under a second.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 1 ]] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
OUTDIR=$1
[[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) missing: run .ci/install-deps.sh"
[[ -d $QGA_KMODULES/kernel ]] || die "no kernel modules at $QGA_KMODULES: run .ci/install-deps.sh"
command -v cpio >/dev/null || die "cpio missing: run .ci/install-deps.sh"

T0=$(now_s)
mkdir -p "$OUTDIR"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/qga-rootdisk-initrd.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$STAGE/bin/busybox"

# Modules in dependency order, from each .ko's modinfo "depends=" (no depmod here).
declare -A MODFILE=() SEEN=()
while IFS= read -r f; do
    b=${f##*/}; b=${b%%.ko*}; MODFILE[${b//-/_}]=$f
done < <(find "$QGA_KMODULES/kernel" -name '*.ko*')
ORDER=()
add_module() {
    local m=${1//-/_} f dst deps d
    [[ -n ${SEEN[$m]:-} ]] && return 0
    SEEN[$m]=1
    f=${MODFILE[$m]:-}
    if [[ -z $f ]]; then
        grep -q "/$m.ko" "$QGA_KMODULES/modules.builtin" 2>/dev/null && return 0
        die "kernel module $m not found under $QGA_KMODULES"
    fi
    dst=$STAGE/lib/modules/$m.ko
    case $f in
        *.ko.xz) xz -dc "$f" >"$dst" ;;
        *.ko.zst) zstd -qdc "$f" >"$dst" ;;
        *.ko.gz) gzip -dc "$f" >"$dst" ;;
        *) cp "$f" "$dst" ;;
    esac
    deps=$(tr '\0' '\n' <"$dst" | sed -n 's/^depends=//p' | head -n 1)
    for d in ${deps//,/ }; do add_module "$d"; done
    ORDER+=("$m")
}
for m in virtio_pci virtio_blk virtio_console; do add_module "$m"; done
printf '%s\n' "${ORDER[@]}" >"$STAGE/lib/modules/order"

cat >"$STAGE/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "rootdisk-initramfs: $*" >/dev/console; sleep 1; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
serial=QGAROOT init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case $arg in
        qga.root_serial=*) serial=${arg#*=} ;;
        qga.init=*) init=${arg#*=} ;;
    esac
done
for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || echo "rootdisk-initramfs: insmod $m failed" >/dev/console
done
dev=''
for _ in $(seq 100); do
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$serial" ] && dev=/dev/${b##*/}
    done
    [ -n "$dev" ] && [ -b "$dev" ] && break
    dev=''
    sleep 0.1
done
[ -n "$dev" ] || fail "no virtio disk with serial $serial"
mount -t ext4 -o rw "$dev" /newroot || fail "cannot mount $dev"
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "no $init on $dev"
umount /proc /sys /dev
exec switch_root /newroot "$init"
EOF
chmod 0755 "$STAGE/init"

# The kernel opens /dev/console before /init runs: appended as a hand-made newc
# archive (the kernel reads concatenated archives), so no mknod and no root.
newc() {   # newc NAME MODE(octal) RDEVMAJOR RDEVMINOR: one data-less newc entry
    local ns=$((${#1} + 1)) pad
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        $((0x7f000001)) $((8#$2)) 0 0 1 0 0 0 0 "$3" "$4" "$ns" 0 "$1"
    for ((pad = (4 - (110 + ns) % 4) % 4; pad > 0; pad--)); do printf '\0'; done
}
{
    (cd "$STAGE" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
    newc dev/console 020600 5 1
    newc 'TRAILER!!!' 0 0 0
} | gzip -n -6 >"$OUTDIR/initrd-rootdisk.gz.tmp"
mv -f "$OUTDIR/initrd-rootdisk.gz.tmp" "$OUTDIR/initrd-rootdisk.gz"
log "modules: ${ORDER[*]}"
log "wrote $OUTDIR/initrd-rootdisk.gz ($(($(stat -c %s "$OUTDIR/initrd-rootdisk.gz") / 1024)) KiB) in $(elapsed "$T0") s"
