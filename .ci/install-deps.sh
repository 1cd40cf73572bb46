#!/usr/bin/env bash
# .ci/install-deps.sh — install/fetch everything the test-VM harness needs.
#
# Run as root on a Debian 12 (bookworm) machine. Idempotent: a warm machine
# returns in well under a second. Network: Debian's mirror only.
#
#   1. Host packages (apt): busybox-static cpio e2fsprogs xz-utils, plus QEMU
#      from bookworm-backports (qemu-system-x86 10.x; bookworm's own 7.2 cannot
#      coexist with the already-installed qemu-utils 10.0.2).
#      bookworm-backports is NOT in the machine's apt sources, so every apt call
#      here uses a PRIVATE sources list + lists dir under $QGA_TEST_CACHE/apt
#      (the system's apt configuration is left untouched). We never use
#      `-t bookworm-backports` (it would silently upgrade unrelated packages);
#      only the four QEMU packages are named with /bookworm-backports.
#   2. Downloads (NOT installed) into $QGA_TEST_CACHE (default /var/cache/qga-test):
#        qemu-ga-10.0.2/usr/sbin/qemu-ga   reference agent (dpkg -x of the .deb)
#        kernel/vmlinuz                    guest kernel linux-image-6.1.0-N-cloud-amd64
#        kernel/modules                    its module tree (lib/modules/<release>)
#        kernel/release                    the kernel release string
#        rootfs/bookworm                   Debian rootfs (debootstrap minbase + systemd,
#                                          udev, dbus) for the package tests, made
#                                          by scripts/package/build-rootfs.sh (~75 s once)
#   3. Checks that Rust static linking works (gnu target + crt-static).
#
# Environment:
#   QGA_TEST_CACHE   cache dir (default /var/cache/qga-test)
#
# Exit status: 0 when everything is in place; non-zero with a one-line
# "ERROR: ..." reason otherwise. Long apt output goes to $QGA_TEST_CACHE/logs/.
set -euo pipefail

CACHE=${QGA_TEST_CACHE:-/var/cache/qga-test}
QGA_REF_VERSION=10.0.2                 # reference qemu-ga expected from bookworm-backports
HOST_PKGS=(busybox-static cpio e2fsprogs xz-utils libc6-dev
    # Debian packaging and its tests (crates/agent/tests/package.rs): dpkg-shlibdeps,
    # lintian (~130 packages, ~30 s once), shellcheck, dash and groff for the scripts
    # and man pages, debootstrap for the test rootfs.
    dpkg-dev lintian shellcheck dash groff-base debootstrap)
BPO_PKGS=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

T0=$(date +%s.%N)
log() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
pkg_installed() {   # pkg_installed NAME -> 0 if dpkg says "install ok installed"
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == "ii "* ]]
}
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root to $1"
}

# Private apt configuration (created lazily, `apt-get update` at most once per run).
APT_DIR=$CACHE/apt
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$APT_DIR/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::lists=$APT_DIR/lists"
    -o "APT::Sandbox::User=root"        # downloads into root-owned dirs without _apt warnings
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
)
APT_UPDATED=0
LOG_DIR=$CACHE/logs

# Run an apt command with the private config, output to a log; on failure
# show the tail of the log and die with a one-line reason.
apt_run() {   # apt_run LOGNAME WHAT-FOR apt-get|apt-cache ARGS...
    local logname=$1 what=$2; shift 2
    local logf=$LOG_DIR/$logname.log
    if ! DEBIAN_FRONTEND=noninteractive "$1" "${APT_OPTS[@]}" "${@:2}" >"$logf" 2>&1; then
        tail -n 15 "$logf" >&2 || true
        die "$what failed (full log: $logf)"
    fi
}

# Write the private sources list: the machine's bookworm* entries (deb822
# *.sources and one-line *.list/sources.list) + bookworm-backports next to
# every plain "bookworm" entry, same mirror URI.
write_private_sources() {
    local out=$APT_DIR/sources.list.new f
    : >"$out"
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
        function flush(   nu, ns, u, s, uris, suites, opt) {
          if (!("types" in F)) { delete F; return }
          if (("enabled" in F) && tolower(F["enabled"]) == "no") { delete F; return }
          if (F["types"] !~ /(^|[ \t])deb([ \t]|$)/) { delete F; return }
          opt = ""
          if (("signed-by" in F) && F["signed-by"] !~ /BEGIN PGP/) opt = " [signed-by=" F["signed-by"] "]"
          nu = split(F["uris"], uris, /[ \t]+/); ns = split(F["suites"], suites, /[ \t]+/)
          for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) {
            if (uris[u] == "" || suites[s] !~ /^bookworm/) continue
            print "deb" opt " " uris[u] " " suites[s] " " F["components"]
            if (suites[s] == "bookworm") print "deb" opt " " uris[u] " bookworm-backports " F["components"]
          }
          delete F
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/   { if (last != "") F[last] = F[last] " " $0; next }
        { k = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
          gsub(/^[ \t]+|[ \t]+$/, "", v); F[k] = v; last = k }
        END { flush() }' "$f" >>"$out"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # one-line format: deb [opts] URI SUITE COMPONENTS...
        awk '$1 == "deb" {
               i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
               if ($(i+1) !~ /^bookworm/) next
               print
               if ($(i+1) == "bookworm") { $(i+1) = "bookworm-backports"; print }
             }' "$f" >>"$out"
    done
    sort -u "$out" -o "$out"
    grep -q ' bookworm-backports ' "$out" \
        || die "no bookworm entry found in /etc/apt/sources.list{,.d} to derive bookworm-backports from"
    mv -f "$out" "$APT_DIR/sources.list"
}

apt_update_once() {
    [[ $APT_UPDATED -eq 1 ]] && return 0
    need_root "run apt-get"
    mkdir -p "$APT_DIR/lists/partial" "$LOG_DIR"
    write_private_sources
    log "apt-get update (private sources: $APT_DIR/sources.list)"
    apt_run apt-update "apt-get update" apt-get -q update
    APT_UPDATED=1
}

apt_install() {   # apt_install PKG... (names may carry /bookworm-backports)
    apt_update_once
    log "apt-get install $*"
    # --no-remove: abort instead of removing anything (protects qemu-utils 10.0.2 etc.)
    apt_run apt-install "apt-get install $*" apt-get -q -y --no-install-recommends --no-remove install "$@"
}

# Download one package's .deb (not installed) into DIR; sets DEB to its path.
DEB=''
apt_download() {   # apt_download DIR PKGSPEC
    apt_update_once
    local dir=$1 spec=$2
    mkdir -p "$dir"
    ( cd "$dir" && DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" -q download "$spec" ) \
        >"$LOG_DIR/apt-download.log" 2>&1 \
        || { tail -n 5 "$LOG_DIR/apt-download.log" >&2; die "apt-get download $spec failed"; }
    DEB=$(find "$dir" -maxdepth 1 -name '*.deb' | head -n 1)
    [[ -n $DEB ]] || die "apt-get download $spec left no .deb in $dir"
}

mkdir -p "$CACHE" 2>/dev/null || need_root "create $CACHE"
mkdir -p "$LOG_DIR" 2>/dev/null || true
# Serialize concurrent runs (e.g. parallel test binaries calling this script).
[[ -e $CACHE/.lock ]] || : >"$CACHE/.lock" 2>/dev/null || need_root "write $CACHE"
exec 9<"$CACHE/.lock"
flock 9

# ---------------------------------------------------------------------------
# 1. Host packages
# ---------------------------------------------------------------------------
missing=()
for p in "${HOST_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
command -v python3 >/dev/null || missing+=(python3)

qemu_ok=1
for p in "${BPO_PKGS[@]}"; do pkg_installed "$p" || qemu_ok=0; done
if [[ $qemu_ok -eq 1 ]] && ! dpkg --compare-versions "$(pkg_version qemu-system-x86)" ge 1:8.0; then
    qemu_ok=0   # bookworm's 7.2 is installed: replace with the backports build
fi
if [[ $qemu_ok -eq 0 ]]; then
    for p in "${BPO_PKGS[@]}"; do missing+=("$p/bookworm-backports"); done
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    qemu_utils_before=$(pkg_version qemu-utils)
    apt_install "${missing[@]}"
    if [[ -n $qemu_utils_before && "$(pkg_version qemu-utils)" != "$qemu_utils_before" ]]; then
        die "qemu-utils changed from $qemu_utils_before to $(pkg_version qemu-utils)"
    fi
else
    log "host packages: ok (qemu-system-x86 $(pkg_version qemu-system-x86))"
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not on PATH after install"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (busybox-static)"

# ---------------------------------------------------------------------------
# 2a. Reference agent qemu-ga 10.0.2 (extracted, not installed)
# ---------------------------------------------------------------------------
QGA_DIR=$CACHE/qemu-ga-$QGA_REF_VERSION
QGA_BIN=$QGA_DIR/usr/sbin/qemu-ga

if [[ ! -x $QGA_BIN ]]; then
    need_root "fetch qemu-ga"
    tmp=$(mktemp -d "$CACHE/.qga.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    apt_download "$tmp" qemu-guest-agent/bookworm-backports; deb=$DEB
    ver=$(dpkg-deb -f "$deb" Version)
    case $ver in
        *:"$QGA_REF_VERSION"+*|"$QGA_REF_VERSION"+*) ;;
        *) die "bookworm-backports has qemu-guest-agent $ver, expected upstream $QGA_REF_VERSION" ;;
    esac
    dpkg -x "$deb" "$tmp/root"
    cp "$deb" "$tmp/root/"          # keep the .deb next to its contents, for reference
    rm -rf "$QGA_DIR"
    mv -T "$tmp/root" "$QGA_DIR"
    rm -rf "$tmp"; trap - EXIT
    log "fetched qemu-guest-agent $ver -> $QGA_DIR"
fi

# Its shared libraries must be present on the host (so it can run there and so
# build-initramfs.sh can copy them into the guest). Install missing ones from
# the package's Depends (names only; apt picks bookworm versions).
if ldd "$QGA_BIN" 2>/dev/null | grep -q 'not found'; then
    log "qemu-ga: missing shared libraries: $(ldd "$QGA_BIN" | awk '/not found/ {printf "%s ", $1}')"
    deps=$(dpkg-deb -f "$QGA_DIR"/*.deb Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v '^$')
    need=()
    for d in $deps; do pkg_installed "$d" || need+=("$d"); done
    [[ ${#need[@]} -gt 0 ]] && apt_install "${need[@]}"
    ! ldd "$QGA_BIN" | grep -q 'not found' || die "qemu-ga still has unresolved libraries: $(ldd "$QGA_BIN" | grep 'not found' | tr -s ' \t\n' ' ')"
fi
qga_v=$("$QGA_BIN" -V 2>&1 || true)
[[ $qga_v == "QEMU Guest Agent $QGA_REF_VERSION" ]] || die "$QGA_BIN -V printed '$qga_v'"
log "reference agent: $QGA_BIN ($qga_v)"

# ---------------------------------------------------------------------------
# 2b. Guest kernel linux-image-6.1.0-N-cloud-amd64 (newest N in bookworm*)
# ---------------------------------------------------------------------------
KDIR=$CACHE/kernel
if [[ ! -f $KDIR/vmlinuz || ! -d $KDIR/modules || ! -s $KDIR/release ]]; then
    need_root "fetch the guest kernel"
    apt_update_once
    kpkg=$(apt-cache "${APT_OPTS[@]}" pkgnames linux-image-6.1.0- 2>/dev/null \
            | grep -E '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | sort -V | tail -n 1 || true)
    [[ -n $kpkg ]] || die "no linux-image-6.1.0-*-cloud-amd64 package found in bookworm"
    krel=${kpkg#linux-image-}
    mkdir -p "$KDIR"
    tmp=$(mktemp -d "$KDIR/.dl.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    log "downloading $kpkg (~27 MB)"
    apt_download "$tmp" "$kpkg"; deb=$DEB
    dpkg -x "$deb" "$tmp/root"
    [[ -f $tmp/root/boot/vmlinuz-$krel ]] || die "$kpkg has no boot/vmlinuz-$krel"
    [[ -d $tmp/root/lib/modules/$krel ]] || die "$kpkg has no lib/modules/$krel"
    rm -rf "${KDIR:?}/$krel"
    mv -T "$tmp/root" "$KDIR/$krel"
    rm -rf "$tmp"; trap - EXIT
    # Stable paths (symlinks into the versioned tree).
    ln -sfn "$krel/boot/vmlinuz-$krel" "$KDIR/vmlinuz"
    ln -sfn "$krel/lib/modules/$krel" "$KDIR/modules"
    echo "$krel" >"$KDIR/release"
    log "guest kernel $krel -> $KDIR/vmlinuz"
fi
log "guest kernel: $KDIR/vmlinuz ($(cat "$KDIR/release"))"

# ---------------------------------------------------------------------------
# 2c. Debian rootfs for the package tests (debootstrap; warm: instant)
# ---------------------------------------------------------------------------
ROOTFS_SCRIPT=$(cd "$(dirname "$0")/.." && pwd)/scripts/package/build-rootfs.sh
[[ -x $ROOTFS_SCRIPT ]] || die "$ROOTFS_SCRIPT missing or not executable"
rootfs=$("$ROOTFS_SCRIPT") || die "scripts/package/build-rootfs.sh failed (log: $LOG_DIR/debootstrap.log)"
log "package test rootfs: $rootfs ($(grep -m 1 '^debootstrap-seconds=' "$rootfs/.qga-rootfs" | cut -d= -f2) s to make)"

# ---------------------------------------------------------------------------
# 3a. Rust's musl target: scripts/build-static.sh builds the static agent (what
#     the test VM boots) against musl, 1.1 MB with no shared library at all. Without
#     it (no rustup, no network) that script falls back to glibc + crt-static.
# ---------------------------------------------------------------------------
if command -v rustup >/dev/null; then
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
        log "adding Rust target x86_64-unknown-linux-musl"
        rustup target add x86_64-unknown-linux-musl >"$LOG_DIR/rustup-musl.log" 2>&1 \
            || log "warning: could not add the musl target (see $LOG_DIR/rustup-musl.log); static builds use glibc"
    fi
fi

# ---------------------------------------------------------------------------
# 3. Rust: static binaries = gnu target + `-C target-feature=+crt-static`
#    (pass --target x86_64-unknown-linux-gnu explicitly so build scripts and
#    proc-macros stay dynamic). Verified once per rustc version with a
#    hello-world calling getpwnam, getaddrinfo and getutxent.
#    glibc warns at link time "Using 'getpwnam' in statically linked
#    applications requires at runtime the shared libraries from the glibc
#    version used for linking" (rustc hides linker warnings; gcc -static shows
#    them, so we probe with gcc too). In practice: the built-in "files" NSS
#    backend works without any libnss_*.so (checked in the test VM), but if
#    /etc/nsswitch.conf names another source (this host: "passwd: files
#    systemd") a lookup that "files" cannot answer dlopen()s libnss_systemd.so.2
#    into the static binary, which then CRASHES (SIGSEGV seen here for
#    getpwnam of a missing user). The test VM's nsswitch.conf says "files" only.
# ---------------------------------------------------------------------------
if command -v rustc >/dev/null; then
    rustc_id=$(rustc -vV | awk '/^release:|^commit-hash:/ {printf "%s-", $2}')
    stamp=$CACHE/rust-static-ok.$rustc_id
    if [[ ! -f $stamp ]]; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        cat >"$tmp/hello.rs" <<'EOF'
use std::ffi::CString;
use std::net::ToSocketAddrs;
use std::os::raw::{c_char, c_void};
extern "C" {
    fn getpwnam(name: *const c_char) -> *mut c_void;
    fn setutxent();
    fn getutxent() -> *mut c_void;
    fn endutxent();
}
fn main() {
    let root = CString::new("root").unwrap();
    let pw = unsafe { getpwnam(root.as_ptr()) };
    let addrs = ("localhost", 0).to_socket_addrs().map(|a| a.count()).unwrap_or(0);
    let mut n = 0;
    unsafe { setutxent(); while !getutxent().is_null() { n += 1; } endutxent(); }
    println!("getpwnam(root)={} getaddrinfo(localhost)={} utmp-records={}", !pw.is_null(), addrs, n);
}
EOF
        host=$(rustc -vV | awk '/^host:/ {print $2}')
        if ! rustc -O -W linker-messages -C target-feature=+crt-static --target "$host" \
                "$tmp/hello.rs" -o "$tmp/hello" >"$tmp/build.log" 2>&1; then
            cat "$tmp/build.log" >&2
            die "static Rust build (gnu + crt-static) failed; is libc6-dev installed?"
        fi
        file -b "$tmp/hello" 2>/dev/null | grep -q 'static' \
            || ! ldd "$tmp/hello" >/dev/null 2>&1 || die "crt-static produced a dynamic binary"
        out=$("$tmp/hello") || die "static hello-world failed to run"
        warn=''
        if command -v gcc >/dev/null; then
            printf '#include <pwd.h>\n#include <netdb.h>\nint main(void){struct addrinfo *r; return getaddrinfo("localhost",0,0,&r) + !getpwnam("root");}\n' >"$tmp/probe.c"
            gcc -static "$tmp/probe.c" -o "$tmp/probe" >"$tmp/gcc.log" 2>&1 || true
            warn=$(grep -o "Using '[a-z_]*' in statically linked" "$tmp/gcc.log" | cut -d"'" -f2 | sort -u | tr '\n' ' ' || true)
        fi
        {
            echo "target=$host flags=-C target-feature=+crt-static"
            echo "run: $out"
            echo "glibc static-link warnings (gcc probe): ${warn:-none}"
        } >"$stamp"
        rm -rf "$tmp"; trap - EXIT
        log "rust static link ($host + crt-static): ok — $out"
        [[ -z $warn ]] || log "  note: glibc warns about static $warn(NSS: only 'files' is safe in a static binary)"
    else
        log "rust static link: ok (cached: $stamp)"
    fi
    command -v cargo-nextest >/dev/null || log "note: cargo-nextest not installed (cargo test works too)"
else
    log "note: rustc not found; skipping the static-link check"
fi

log "done in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s (cache: $CACHE)"
