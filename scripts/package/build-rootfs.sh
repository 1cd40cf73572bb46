#!/usr/bin/env bash
# scripts/package/build-rootfs.sh — a minimal Debian bookworm root filesystem with
# systemd and udev, made once per machine with debootstrap and kept in the cache.
#
# Usage: build-rootfs.sh            prints the rootfs directory on stdout
#
# The rootfs lives in $QGA_TEST_CACHE/rootfs/bookworm (default cache
# /var/cache/qga-test) and is NEVER modified by the tests: they copy it
# (scripts/package/test-chroot.sh, test-vm.sh). A warm cache returns at once;
# a cold one runs debootstrap (root needed, Debian's mirror only; the time it
# took is kept in $QGA_TEST_CACHE/rootfs/bookworm/.qga-rootfs).
#
# debootstrap runs in a private mount namespace, so the /proc and /sys it
# mounts inside the target vanish with it even if it fails half-way: nothing
# of the host is ever mounted below a directory this script deletes.
set -euo pipefail

CACHE=${QGA_TEST_CACHE:-/var/cache/qga-test}
SUITE=bookworm
VARIANT=minbase
# systemd as init plus udev: what the package's unit and rule need in a VM; dbus
# for logind, which "shutdown +0" (guest-shutdown) needs, as on any real Debian
# guest; and the libraries of Debian's qemu-guest-agent 10.0.2, so the VM test can
# start from a guest running the real qemu-ga and replace it live.
INCLUDE=systemd,systemd-sysv,udev,dbus,libglib2.0-0,libnuma1,liburing2
RECIPE="suite=$SUITE variant=$VARIANT include=$INCLUDE"
DIR=$CACHE/rootfs
ROOTFS=$DIR/$SUITE
STAMP=$ROOTFS/.qga-rootfs
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '[build-rootfs] %s\n' "$*" >&2; }
die() { printf '[build-rootfs] ERROR: %s\n' "$*" >&2; exit 1; }

warm() { [[ -f $STAMP ]] && [[ $(head -n 1 "$STAMP") == "$RECIPE" ]]; }

if warm; then echo "$ROOTFS"; exit 0; fi

[[ $(id -u) -eq 0 ]] || die "must run as root to debootstrap $ROOTFS"
command -v debootstrap >/dev/null || die "debootstrap missing: run .ci/install-deps.sh"
command -v unshare >/dev/null || die "unshare missing (util-linux)"
[[ -f $KEYRING ]] || die "$KEYRING missing (debian-archive-keyring)"
mkdir -p "$DIR"
exec 8>"$DIR/.lock"
flock 8
if warm; then echo "$ROOTFS"; exit 0; fi     # another run built it meanwhile

# The mirror: the one the machine already uses for bookworm (private list made by
# .ci/install-deps.sh first, then the system's own sources).
mirror() {
    local f
    for f in "$CACHE/apt/sources.list" /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v s="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                         if ($(i+1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v s="$SUITE" 'tolower($1) == "uris:" { u = $2 }
                           tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
                           /^[ \t]*$/ { if (hit && u != "") { print u; exit } hit = 0 }
                           END { if (hit && u != "") print u }' "$f"
    done
}
MIRROR=$(mirror | awk 'NR == 1')   # awk reads all: no SIGPIPE under pipefail
[[ -n $MIRROR ]] || die "no $SUITE mirror found in the apt sources"

mkdir -p "$CACHE/logs"
LOGF=$CACHE/logs/debootstrap.log
BUILD=$(mktemp -d "$DIR/.build.XXXXXX")
chmod 755 "$BUILD"     # it becomes a root directory: mktemp made it 0700
cleanup() { [[ -n ${BUILD:-} && -d $BUILD ]] && rm -rf --one-file-system "$BUILD"; }
trap cleanup EXIT

log "debootstrap $SUITE ($VARIANT + $INCLUDE) from $MIRROR (log: $LOGF)"
T0=$(date +%s.%N)
if ! unshare --mount --propagation private \
        debootstrap --variant="$VARIANT" --include="$INCLUDE" --keyring="$KEYRING" \
        "$SUITE" "$BUILD" "$MIRROR" >"$LOGF" 2>&1; then
    tail -n 15 "$LOGF" >&2
    die "debootstrap failed (full log: $LOGF)"
fi
TOOK=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
# Nothing may still be mounted below BUILD (the namespace took the mounts along).
! grep -q " $BUILD/" /proc/self/mountinfo || die "mounts left below $BUILD"
# Downloaded .debs are not needed any more: keep the cache small.
rm -f "$BUILD"/var/cache/apt/archives/*.deb
{
    echo "$RECIPE"
    echo "mirror=$MIRROR"
    echo "debootstrap-seconds=$TOOK"
    echo "made=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$BUILD/.qga-rootfs"
[[ ! -e $ROOTFS ]] || rm -rf --one-file-system "$ROOTFS"
mv -T "$BUILD" "$ROOTFS"
BUILD=''
log "rootfs ready in ${TOOK}s ($(du -sh "$ROOTFS" | cut -f1)): $ROOTFS"
echo "$ROOTFS"
