#!/usr/bin/env bash
# scripts/vm/build-initramfs.sh — build the test VM's initramfs around an agent binary.
#
# Usage:
#   build-initramfs.sh [options] AGENT_BINARY OUTDIR [-- EXTRA_AGENT_ARGS...]
#
# Writes OUTDIR/initrd.gz (cpio newc, gzip). The guest runs
#   <guest-path> -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 EXTRA_AGENT_ARGS...
# from /init (scripts/vm/guest/init), respawning it whenever it exits.
# A dynamically linked agent gets its ldd libraries copied at the same paths,
# so the reference qemu-ga from the cache works as well as a static build.
#
# Options:
#   --guest-path PATH   agent location in the guest (default /usr/sbin/qemu-ga)
#   --no-default-args   do not pass "-m virtio-serial -p /dev/virtio-ports/..."
#   --add SRC:DEST      also copy host file SRC to DEST in the guest (repeatable;
#                       ELF binaries bring their libraries; an executable DEST under
#                       /etc/qga-test/init.d/ runs just before the agent starts)
#   --module NAME       also load kernel module NAME (+ its dependencies) (repeatable)
#   --utmp-time S[.U]   login time of alice's utmp record (default 1700000000.250000)
#
# Needs (see .ci/install-deps.sh): /bin/busybox (busybox-static), cpio, gzip,
# the cached guest kernel modules under $QGA_TEST_CACHE/kernel/modules.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

GUEST_PATH=/usr/sbin/qemu-ga
DEFAULT_ARGS=1
ADDS=()
MODULES=(virtio_pci virtio_console virtio_blk virtio_net)   # + dependencies
UTMP_TIME=1700000000.250000
while [[ $# -gt 0 ]]; do
    case $1 in
        --guest-path) GUEST_PATH=$2; shift 2 ;;
        --no-default-args) DEFAULT_ARGS=0; shift ;;
        --add) ADDS+=("$2"); shift 2 ;;
        --module) MODULES+=("$2"); shift 2 ;;
        --utmp-time) UTMP_TIME=$2; shift 2 ;;
        -h|--help) usage ;;
        --) break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[[ $# -ge 2 ]] || usage
AGENT=$1 OUTDIR=$2; shift 2
if [[ $# -gt 0 ]]; then [[ $1 == -- ]] || die "unexpected argument '$1' (extra agent args go after --)"; shift; fi
EXTRA_ARGS=("$@")

[[ -f $AGENT && -x $AGENT ]] || die "agent binary '$AGENT' is not an executable file"
[[ -x /bin/busybox ]] && /bin/busybox --list-full >/dev/null 2>&1 \
    || die "/bin/busybox (busybox-static) missing: run .ci/install-deps.sh"
[[ -d $QGA_KMODULES/kernel ]] || die "no kernel modules at $QGA_KMODULES: run .ci/install-deps.sh"
command -v cpio >/dev/null || die "cpio missing: run .ci/install-deps.sh"

T0=$(now_s)
mkdir -p "$OUTDIR"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/qga-initrd.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# ---------------------------------------------------------------------------
# Copy helpers
# ---------------------------------------------------------------------------
is_elf() { [[ $(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ') == '177ELF' ]]; }

# copy_with_libs SRC DEST: SRC into the image at DEST; for a dynamic ELF also
# every library ldd resolves (and the ELF interpreter), at the same paths.
copy_with_libs() {
    local src=$1 dest=$2 lib
    mkdir -p "$STAGE$(dirname "$dest")"
    cp -L "$src" "$STAGE$dest"
    is_elf "$src" || return 0
    local out
    out=$(ldd "$src" 2>&1 || true)
    if grep -q 'not found' <<<"$out"; then
        die "$src: missing libraries: $(grep 'not found' <<<"$out" | awk '{printf "%s ", $1}')"
    fi
    for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"); do
        [[ -e $STAGE$lib ]] && continue
        mkdir -p "$STAGE$(dirname "$lib")"
        cp -L "$lib" "$STAGE$lib"
        DYNAMIC=1
    done
}

# ---------------------------------------------------------------------------
# Directory skeleton, busybox and the stand-ins
# ---------------------------------------------------------------------------
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,etc/qga-test/init.d,etc/qemu,proc,sys,dev,run,tmp,root,home/alice,mnt/data,var/log,var/lib,lib/modules/qga-test}
ln -s ../run "$STAGE/var/run"
ln -s ../run/lock "$STAGE/var/lock"
ln -s /proc/self/mounts "$STAGE/etc/mtab"
chmod 1777 "$STAGE/tmp"; chmod 0700 "$STAGE/root"

cp /bin/busybox "$STAGE/bin/busybox"
# Applet symlinks (/bin/ls -> /bin/busybox, ...) are not created on disk: they
# go straight into the hand-made cpio part at the end (fast, no forks).
APPLETS=()
declare -A APPLET_DIRS=()
while IFS= read -r applet; do
    case $applet in
        bin/busybox|linuxrc|sbin/init|bin/init) continue ;;           # the binary itself; /init is ours
        sbin/poweroff|sbin/halt|sbin/reboot) continue ;;              # stand-ins below
    esac
    APPLETS+=("$applet"); APPLET_DIRS[${applet%/*}]=1
done < <(/bin/busybox --list-full)
mkdir -p "${APPLET_DIRS[@]/#/$STAGE/}"

install -m 0755 "$QGA_VM_DIR/guest/init" "$STAGE/init"
install -m 0755 "$QGA_VM_DIR/guest/chpasswd" "$STAGE/usr/sbin/chpasswd"
install -m 0755 "$QGA_VM_DIR/guest/shutdown" "$STAGE/sbin/shutdown"
for p in poweroff halt reboot; do install -m 0755 "$QGA_VM_DIR/guest/power" "$STAGE/sbin/$p"; done
[[ " ${APPLETS[*]} " == *" sbin/hwclock "* ]] || die "busybox lacks hwclock (needed by guest-set-time)"

# ---------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------
DYNAMIC=0
copy_with_libs "$AGENT" "$GUEST_PATH"
chmod 0755 "$STAGE$GUEST_PATH"
AGENT_KIND="no shared libraries"
if [[ $DYNAMIC -eq 1 ]]; then
    AGENT_KIND="dynamic, libraries copied"
    # glibc loads NSS modules with dlopen (not listed by ldd): bring "files".
    nss=/lib/x86_64-linux-gnu/libnss_files.so.2
    [[ -e $nss ]] && copy_with_libs "$nss" "$nss"
fi
echo "$GUEST_PATH" >"$STAGE/etc/qga-test/agent.path"
{
    [[ $DEFAULT_ARGS -eq 1 ]] && printf '%s\n' -m virtio-serial -p "/dev/virtio-ports/$QGA_PORT_NAME"
    [[ ${#EXTRA_ARGS[@]} -gt 0 ]] && printf '%s\n' "${EXTRA_ARGS[@]}"
    true
} >"$STAGE/etc/qga-test/agent.args"

for spec in "${ADDS[@]}"; do
    src=${spec%%:*} dest=${spec#*:}
    [[ $src != "$spec" && $dest == /* ]] || die "--add wants SRC:/ABS/DEST, got '$spec'"
    if [[ -d $src ]]; then
        mkdir -p "$STAGE$dest"; cp -a "$src/." "$STAGE$dest/"
    else
        [[ -e $src ]] || die "--add: '$src' does not exist"
        copy_with_libs "$src" "$dest"
        [[ -x $src ]] && chmod 0755 "$STAGE$dest"
    fi
done

# ---------------------------------------------------------------------------
# Kernel modules, in dependency order (read from each .ko's .modinfo
# "depends=" string; there is no modprobe/depmod on the host)
# ---------------------------------------------------------------------------
declare -A MODFILE=() STATE=()
while IFS= read -r f; do
    b=${f##*/}; b=${b%%.ko*}; MODFILE[${b//-/_}]=$f
done < <(find "$QGA_KMODULES/kernel" -name '*.ko*')
ORDER=()
visit() {   # depth-first, dependencies first
    local m=${1//-/_} f dst deps d
    [[ ${STATE[$m]:-} == loaded ]] && return 0
    [[ ${STATE[$m]:-} == active ]] && die "module dependency cycle at $m"
    f=${MODFILE[$m]:-}
    if [[ -z $f ]]; then
        grep -q "/${m}.ko" "$QGA_KMODULES/modules.builtin" 2>/dev/null && { STATE[$m]=loaded; return 0; }
        die "kernel module $m not found under $QGA_KMODULES"
    fi
    STATE[$m]=active
    dst=$STAGE/lib/modules/qga-test/$m.ko
    case $f in
        *.ko.xz) xz -dc "$f" >"$dst" ;;
        *.ko.zst) zstd -qdc "$f" >"$dst" ;;
        *.ko.gz) gzip -dc "$f" >"$dst" ;;
        *) cp "$f" "$dst" ;;
    esac
    deps=$(tr '\0' '\n' <"$dst" | sed -n 's/^depends=//p' | head -n 1)
    for d in ${deps//,/ }; do visit "$d"; done
    STATE[$m]=loaded
    ORDER+=("$m")
}
for m in "${MODULES[@]}"; do visit "$m"; done
printf '%s.ko\n' "${ORDER[@]}" >"$STAGE/etc/qga-test/modules.order"

# ---------------------------------------------------------------------------
# /etc: identity files the agent's commands read
# ---------------------------------------------------------------------------
echo qga-test-vm >"$STAGE/etc/hostname"
cat >"$STAGE/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	qga-test-vm
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$STAGE/etc/os-release" <<'EOF'
PRETTY_NAME="QGA Test Linux 1.0 (initramfs)"
NAME="QGA Test Linux"
VERSION_ID="1.0"
VERSION="1.0 (initramfs)"
ID=qgatest
ID_LIKE=debian
VARIANT="Test VM"
VARIANT_ID=testvm
HOME_URL="https://example.invalid/"
EOF
cat >"$STAGE/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$STAGE/etc/group" <<'EOF'
root:x:0:
users:x:100:alice
alice:x:1000:
nogroup:x:65534:
EOF
cat >"$STAGE/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
alice:!:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0640 "$STAGE/etc/shadow"
cat >"$STAGE/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
shadow: files
hosts:  files dns
EOF

# ---------------------------------------------------------------------------
# utmp: glibc x86_64 `struct utmp` (= utmpx), 384 bytes, little-endian:
#   0 short ut_type; 2 pad; 4 int32 ut_pid; 8 char ut_line[32]; 40 char ut_id[4];
#   44 char ut_user[32]; 76 char ut_host[256]; 332 short e_termination, e_exit;
#   336 int32 ut_session; 340 int32 tv_sec, tv_usec; 348 int32 ut_addr_v6[4];
#   364 char reserved[20]; = 384
# Record 1: BOOT_TIME (2), record 2: USER_PROCESS (7) for alice on pts/0.
# ---------------------------------------------------------------------------
le() {   # le NBYTES VALUE: VALUE as little-endian binary
    local n=$1 v=$2 i esc='' b
    for ((i = 0; i < n; i++)); do printf -v b '\\%03o' $(((v >> (8 * i)) & 255)); esc+=$b; done
    printf "$esc"
}
str() {  # str LEN TEXT: TEXT NUL-padded to LEN bytes
    printf '%s' "$2"; head -c $(($1 - ${#2})) /dev/zero
}
utmp_record() {   # TYPE PID LINE ID USER HOST SEC USEC ADDR4(a.b.c.d or "")
    local type=$1 pid=$2 line=$3 id=$4 user=$5 host=$6 sec=$7 usec=$8 addr=$9
    le 2 "$type"; le 2 0; le 4 "$pid"
    str 32 "$line"; str 4 "$id"; str 32 "$user"; str 256 "$host"
    le 2 0; le 2 0; le 4 0            # ut_exit, ut_session
    le 4 "$sec"; le 4 "$usec"
    if [[ -n $addr ]]; then           # ut_addr_v6[0]: IPv4 in network byte order
        local IFS=. esc; set -- $addr; printf -v esc '\\%03o' "$@"; printf "$esc"
    else le 4 0; fi
    le 4 0; le 4 0; le 4 0
    head -c 20 /dev/zero
}
usec=${UTMP_TIME#*.}; [[ $usec == "$UTMP_TIME" ]] && usec=0
usec=$((10#$(printf '%-6s' "$usec" | tr ' ' 0 | cut -c1-6)))
sec=${UTMP_TIME%%.*}
{
    utmp_record 2 0 '~' '~~' reboot "$(cat "$QGA_TEST_CACHE/kernel/release" 2>/dev/null || echo linux)" "$((sec - 60))" 0 ''
    utmp_record 7 4242 pts/0 ts/0 alice 10.0.2.2 "$sec" "$usec" 10.0.2.2
} >"$STAGE/etc/qga-test/utmp"
[[ $(stat -c %s "$STAGE/etc/qga-test/utmp") -eq 768 ]] || die "utmp record size is not 384 bytes"

# ---------------------------------------------------------------------------
# Archive: main cpio of $STAGE (all files owned by root), followed by a
# hand-made newc part: /dev/console (the kernel opens it before /init runs;
# no mknod, so no root needed) and the busybox applet symlinks.
# ---------------------------------------------------------------------------
INO=$((0x7f000000))
pad() { local n=$1; while ((n-- > 0)); do printf '\0'; done; }
newc() {   # newc NAME MODE(octal) RDEVMAJOR RDEVMINOR [DATA]: one newc entry (builtins only)
    local name=$1 data=${5-} ns=$((${#1} + 1)) fs
    fs=${#data}
    INO=$((INO + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s' \
        "$INO" "$((8#$2))" 0 0 1 0 "$fs" 0 0 "$3" "$4" "$ns" 0 "$name"
    pad $((1 + (4 - (110 + ns) % 4) % 4))
    printf '%s' "$data"
    pad $(((4 - fs % 4) % 4))
}
{
    (cd "$STAGE" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
    newc dev/console 020600 5 1
    for a in "${APPLETS[@]}"; do newc "$a" 0120777 0 0 /bin/busybox; done
    newc 'TRAILER!!!' 0 0 0
} | gzip -n -6 >"$OUTDIR/initrd.gz.tmp"
mv -f "$OUTDIR/initrd.gz.tmp" "$OUTDIR/initrd.gz"

log "modules: ${ORDER[*]}"
log "agent: $AGENT -> $GUEST_PATH ($AGENT_KIND) args: $(tr '\n' ' ' <"$STAGE/etc/qga-test/agent.args")"
log "wrote $OUTDIR/initrd.gz ($(($(stat -c %s "$OUTDIR/initrd.gz") / 1024)) KiB) in $(elapsed "$T0") s"
