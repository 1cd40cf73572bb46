#!/usr/bin/env bash
# scripts/build-deb.sh — build the Debian packages of the project.
#
# Usage: scripts/build-deb.sh [--out DIR] [--no-build] [--no-cli]
#
#   qga-agent_<version>_<arch>.deb  the guest agent: /usr/sbin/qemu-ga (+ qga-agent
#                                   link), systemd unit, udev rule, fsfreeze hook,
#                                   example /etc/qemu/qemu-ga.conf, man pages.
#                                   Provides/Conflicts/Replaces qemu-guest-agent.
#   qga_<version>_<arch>.deb        the host-side client qga (crates/cli), if present.
#
# Builds the release binaries (cargo build --release --locked; honours
# CARGO_TARGET_DIR), stages each package under DIR/stage/<package> from the
# sources in packaging/debian/, and assembles it with dpkg-deb --build
# (--root-owner-group: no fakeroot needed). Prints the .deb paths, one a line.
#
#   --out DIR    where the .debs go (default target/debian)
#   --no-build   package the binaries already in the target directory
#   --no-cli     only the agent package
#
# The version, maintainer and date come from packaging/debian/changelog (its
# version must be the workspace's, from Cargo.toml). File times are the
# changelog's date (SOURCE_DATE_EPOCH), so the same sources give the same .debs.
# Nothing is downloaded except crates by cargo. Needs dpkg-deb; dpkg-shlibdeps
# (dpkg-dev) computes Depends, with an objdump-based fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKGSRC=$ROOT/packaging/debian

log() { printf '[build-deb] %s\n' "$*" >&2; }
die() { printf '[build-deb] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

OUT=$ROOT/target/debian BUILD=1 CLI=1
[[ -d $ROOT/crates/cli ]] || CLI=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-cli) CLI=0; shift ;;
        -h|--help) usage ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
command -v dpkg-deb >/dev/null || die "dpkg-deb missing"

# ---------------------------------------------------------------------------
# Version, maintainer, date: from the changelog (Debian's usual source of truth)
# ---------------------------------------------------------------------------
CHANGELOG=$PKGSRC/changelog
VERSION=$(sed -n '1s/^[a-z0-9.+-]* (\([^)]*\)).*/\1/p' "$CHANGELOG")
TRAILER=$(grep -m 1 '^ -- ' "$CHANGELOG")
MAINTAINER=$(sed -E 's/^ -- (.*>)  .*/\1/' <<<"$TRAILER")
CHANGELOG_DATE=$(sed -E 's/^ -- .*>  (.*)$/\1/' <<<"$TRAILER")
[[ -n $VERSION && $MAINTAINER == *@*'>' && -n $CHANGELOG_DATE ]] \
    || die "cannot read version/maintainer/date from $CHANGELOG"
CARGO_VERSION=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version *=/ { print $2; exit }' Cargo.toml)
UPSTREAM=${VERSION#*:}; UPSTREAM=${UPSTREAM%-*}
[[ $UPSTREAM == "$CARGO_VERSION" ]] \
    || die "packaging/debian/changelog is at $VERSION but Cargo.toml at $CARGO_VERSION: add a changelog entry"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d "$CHANGELOG_DATE" +%s)}
MAN_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
ARCH=$(dpkg --print-architecture)

# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
AGENT_BIN=$TARGET_DIR/release/qga-agent
CLI_BIN=$TARGET_DIR/release/qga
if [[ $BUILD -eq 1 ]]; then
    pkgs=(-p qga-agent)
    [[ $CLI -eq 1 ]] && pkgs+=(-p qga-cli)
    log "cargo build --release ${pkgs[*]}"
    cargo build --quiet --release --locked "${pkgs[@]}" >&2
fi
[[ -x $AGENT_BIN ]] || die "$AGENT_BIN missing (build it or drop --no-build)"
[[ $CLI -eq 0 || -x $CLI_BIN ]] || die "$CLI_BIN missing (build it, drop --no-build, or --no-cli)"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# shlibs_depends BINARY...: the Depends line for the shared libraries used.
shlibs_depends() {
    local tmp line
    if command -v dpkg-shlibdeps >/dev/null; then
        tmp=$(mktemp -d)
        mkdir "$tmp/debian"
        printf 'Source: qga\n\nPackage: qga\nArchitecture: any\n' >"$tmp/debian/control"
        line=$(cd "$tmp" && dpkg-shlibdeps -O "$@" 2>/dev/null) || { rm -rf "$tmp"; die "dpkg-shlibdeps $* failed"; }
        rm -rf "$tmp"
        sed -n 's/^shlibs:Depends=//p' <<<"$line"
    else
        # Fallback: glibc only, at the newest symbol version the binaries use.
        local v
        v=$(objdump -T "$@" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
        [[ -n $v ]] || die "cannot determine the glibc version needed by $*"
        ! ldd "$@" | grep -q 'libgcc_s' || echo -n 'libgcc-s1, '
        echo "libc6 (>= $v)"
    fi
}

# install_file MODE SRC DEST: copy with a fixed mode, expanding @VERSION@/@DATE@.
install_file() {
    local mode=$1 src=$2 dest=$3
    mkdir -p "$(dirname "$dest")"
    sed -e "s/@VERSION@/$VERSION/g" -e "s/@DATE@/$MAN_DATE/g" "$src" >"$dest"
    chmod "$mode" "$dest"
}

# install_bin SRC DEST: the (already stripped) binary without the sections
# dh_strip also drops (.comment, .note); the build id stays.
install_bin() {
    install -D -m 0755 "$1" "$2"
    if command -v strip >/dev/null; then
        strip --remove-section=.comment --remove-section=.note "$2"
    fi
}

install_gz() {   # install_gz SRC DEST.gz (gzip -9n: no name, no time stamp)
    mkdir -p "$(dirname "$2")"
    sed -e "s/@VERSION@/$VERSION/g" -e "s/@DATE@/$MAN_DATE/g" "$1" | gzip -9n >"$2"
    chmod 0644 "$2"
}

# finish_package STAGE NAME DEPENDS: control, md5sums, conffiles, times, dpkg-deb.
finish_package() {
    local stage=$1 name=$2 depends=$3 size deb
    # Installed-Size: KiB, as dpkg-gencontrol counts (each file rounded up).
    size=$(find "$stage" -path "$stage/DEBIAN" -prune -o \( -type f -o -type l \) -printf '%s\n' \
        | awk '{ s += int(($1 + 1023) / 1024) } END { print s + 0 }')
    sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@MAINTAINER@/$MAINTAINER/" \
        -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
        "$PKGSRC/$name.control.in" >"$stage/DEBIAN/control"
    ! grep -q '@[A-Z_]*@' "$stage/DEBIAN/control" || die "unexpanded field in $name's control"
    (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
        | xargs -0r md5sum) >"$stage/DEBIAN/md5sums"
    # Every file under /etc is a conffile (the user's edits survive upgrades).
    if [[ -d $stage/etc ]]; then
        (cd "$stage" && find etc -type f -printf '/%p\n' | LC_ALL=C sort) >"$stage/DEBIAN/conffiles"
        chmod 0644 "$stage/DEBIAN/conffiles"
    fi
    chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
    find "$stage" -type d -exec chmod 0755 {} +
    find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    deb=$OUT/${name}_${VERSION#*:}_$ARCH.deb
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    log "built $deb ($(stat -c %s "$deb") bytes)"
    echo "$deb"
}

new_stage() {   # new_stage NAME -> prints the fresh staging dir
    local stage=$OUT/stage/$1
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN"
    echo "$stage"
}

umask 022

# ---------------------------------------------------------------------------
# qga-agent
# ---------------------------------------------------------------------------
S=$(new_stage qga-agent)
install_bin "$AGENT_BIN" "$S/usr/sbin/qemu-ga"
ln -s qemu-ga "$S/usr/sbin/qga-agent"
install_file 0644 "$PKGSRC/qemu-guest-agent.service" "$S/lib/systemd/system/qemu-guest-agent.service"
install_file 0644 "$PKGSRC/60-qemu-guest-agent.rules" "$S/lib/udev/rules.d/60-qemu-guest-agent.rules"
install_file 0755 "$PKGSRC/fsfreeze-hook" "$S/etc/qemu/fsfreeze-hook"
mkdir -p "$S/etc/qemu/fsfreeze-hook.d"
install_file 0644 "$PKGSRC/qemu-ga.conf" "$S/etc/qemu/qemu-ga.conf"
install_gz "$PKGSRC/qemu-ga.8" "$S/usr/share/man/man8/qemu-ga.8.gz"
ln -s qemu-ga.8.gz "$S/usr/share/man/man8/qga-agent.8.gz"
install_file 0644 "$PKGSRC/copyright" "$S/usr/share/doc/qga-agent/copyright"
install_file 0644 "$PKGSRC/qga-agent.lintian-overrides" "$S/usr/share/lintian/overrides/qga-agent"
install_gz "$CHANGELOG" "$S/usr/share/doc/qga-agent/changelog.gz"
for script in preinst postinst prerm postrm; do
    install_file 0755 "$PKGSRC/qga-agent.$script" "$S/DEBIAN/$script"
done
finish_package "$S" qga-agent "$(shlibs_depends "$AGENT_BIN")"

# ---------------------------------------------------------------------------
# qga (host-side client)
# ---------------------------------------------------------------------------
if [[ $CLI -eq 1 ]]; then
    S=$(new_stage qga)
    install_bin "$CLI_BIN" "$S/usr/bin/qga"
    install_gz "$PKGSRC/qga.1" "$S/usr/share/man/man1/qga.1.gz"
    install_file 0644 "$PKGSRC/copyright" "$S/usr/share/doc/qga/copyright"
    install_gz "$CHANGELOG" "$S/usr/share/doc/qga/changelog.gz"
    install_file 0644 "$ROOT/crates/cli/README.md" "$S/usr/share/doc/qga/README.md"
    finish_package "$S" qga "$(shlibs_depends "$CLI_BIN")"
fi
