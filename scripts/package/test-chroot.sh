#!/usr/bin/env bash
# scripts/package/test-chroot.sh — install the packages into a Debian chroot and
# check that they give a working agent.
#
# Usage: test-chroot.sh [--keep] DEB_DIR
#
# DEB_DIR holds qga-agent_*.deb (and qga_*.deb if built) from scripts/build-deb.sh.
# A copy of the cached bookworm rootfs (scripts/package/build-rootfs.sh) gets:
#   1. qga-agent installed with dpkg -i: it must remove nothing, configure
#      cleanly, pass dpkg --verify/--audit and systemd-analyze verify, and
#      install again over itself (the upgrade path);
#   2. the installed /usr/sbin/qemu-ga run in the chroot on a unix socket must
#      answer guest-ping and guest-info to a client on the host (scripts/vm/
#      qga_send.py) and the installed qga client (inside the chroot);
#   3. the installed fsfreeze hook run with a few scripts in fsfreeze-hook.d;
#   4. dpkg --purge removing everything;
#   5. Debian's real qemu-guest-agent 10.0.2 installed first (from the reference
#      cache, --force-depends), then qga-agent must replace it: qemu-guest-agent
#      removed, its files and the /etc/qemu/fsfreeze-hook conffile taken over,
#      an operator's own /etc/qemu/qemu-ga.conf kept (no conffile prompt), and
#      a later purge of qemu-guest-agent must leave ours alone.
# Ends with "N passed, N failed"; exit status 1 if anything failed.
#
# Safety: nothing is installed on this host; the chroot has a policy-rc.d that
# forbids service starts, no /proc, /sys or /run of the host is mounted in it
# (so its maintainer scripts cannot reach the host's systemd or udev), and the
# agent started in it is stopped by its pid. Needs root (chroot).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HERE/../.." && pwd)
CACHE=${QGA_TEST_CACHE:-/var/cache/qga-test}
REF_DEB_DIR=$CACHE/qemu-ga-10.0.2

TAG=test-chroot
# shellcheck source=common.sh
. "$HERE/common.sh"
parse_deb_args "$@"
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot)"

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); printf 'ok   %s\n' "$1"; }
bad() { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$1"; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/     | /'; }
# check NAME COMMAND...: passes when COMMAND succeeds.
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }
# expect_eq NAME GOT WANT
expect_eq() { if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1" "got:  $2"$'\n'"want: $3"; fi; }
# expect_match NAME TEXT REGEX
expect_match() { if grep -Eq -- "$3" <<<"$2"; then ok "$1"; else bad "$1" "no /$3/ in:"$'\n'"$2"; fi; }
expect_no_match() { if ! grep -Eq -- "$3" <<<"$2"; then ok "$1"; else bad "$1" "unexpected /$3/ in:"$'\n'"$2"; fi; }

T0=$(now)
ROOTFS=$("$HERE/build-rootfs.sh")
log "rootfs: $ROOTFS ($(since "$T0")s)"

# Short path: the agent's socket lives below it (sun_path is 108 bytes).
WORK=$(mktemp -d /tmp/qga-pkg.XXXXXX)
R=$WORK/root
AGENT_PID=''
cleanup() {
    if [[ -n $AGENT_PID ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    if [[ $KEEP -eq 1 ]]; then
        log "kept $WORK"
    elif grep -q " $WORK" /proc/self/mountinfo; then
        log "something is mounted below $WORK: not deleting it"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT

T=$(now)
cp -a "$ROOTFS" "$R"
rm -f "$R/.qga-rootfs"
# The usual chroot guard: invoke-rc.d and our postinst must start nothing.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
mkdir -p "$R/tmp/debs"
cp "$AGENT_DEB" ${CLI_DEB:+"$CLI_DEB"} "$R/tmp/debs/"
log "chroot copied in $(since "$T")s: $R"
IN=(chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8)
A=/tmp/debs/$(basename "$AGENT_DEB")

# shellcheck disable=SC2016  # ${...} is dpkg-query's format syntax
status_of() { "${IN[@]}" dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------
# 1. Install
# ---------------------------------------------------------------------------
expect_eq "rootfs has no qemu-guest-agent" "$(status_of qemu-guest-agent)" ""
T=$(now)
if out=$("${IN[@]}" dpkg -i "$A" 2>&1 </dev/null); then ok "dpkg -i qga-agent"; else bad "dpkg -i qga-agent" "$out"; fi
log "dpkg -i took $(since "$T")s"
printf '%s\n' "$out" | sed 's/^/     > /'
expect_no_match "installing removes, replaces or deconfigures nothing" "$out" \
    'Removing|Replacing|considering removing|Deconfiguring|[Ww]arning|[Ee]rror'
expect_eq "qga-agent is installed" "$(status_of qga-agent)" "ii "
expect_eq "dpkg --audit is clean" "$("${IN[@]}" dpkg --audit 2>&1)" ""
expect_eq "dpkg --verify qga-agent is clean" "$("${IN[@]}" dpkg --verify qga-agent 2>&1)" ""
# shellcheck disable=SC2016
expect_eq "qga-agent provides qemu-guest-agent" \
    "$("${IN[@]}" dpkg-query -W -f='${Provides}' qga-agent)" "qemu-guest-agent"
check "systemd-analyze verify qemu-guest-agent.service" \
    "${IN[@]}" systemd-analyze verify /lib/systemd/system/qemu-guest-agent.service
expect_eq "/usr/sbin/qga-agent links to qemu-ga" "$(readlink "$R/usr/sbin/qga-agent")" "qemu-ga"
expect_match "qemu-ga -V" "$("${IN[@]}" /usr/sbin/qemu-ga -V 2>&1)" '^QEMU Guest Agent [0-9]'
expect_match "qemu-ga --help names qga-agent" "$("${IN[@]}" /usr/sbin/qemu-ga --help 2>&1)" 'qga-agent'
expect_eq "installed qemu-ga.conf keeps every default (-D)" \
    "$("${IN[@]}" /usr/sbin/qemu-ga -D 2>&1)" \
    "$("${IN[@]}" QGA_CONF=/nonexistent /usr/sbin/qemu-ga -D 2>&1)"
expect_match "the default config read is /etc/qemu/qemu-ga.conf" \
    "$("${IN[@]}" sh -c 'printf "[general]\nverbose=true\n" >/tmp/v.conf; cp /etc/qemu/qemu-ga.conf /tmp/keep.conf; cp /tmp/v.conf /etc/qemu/qemu-ga.conf; /usr/sbin/qemu-ga -D; cp /tmp/keep.conf /etc/qemu/qemu-ga.conf' 2>&1)" \
    '^verbose=true$'
# Reinstalling runs the upgrade path of the maintainer scripts (postinst configure <old>).
if out=$("${IN[@]}" dpkg -i "$A" 2>&1 </dev/null); then ok "dpkg -i qga-agent again (upgrade path)"; else bad "dpkg -i qga-agent again (upgrade path)" "$out"; fi
expect_match "dpkg unpacked it over the installed version" "$out" 'Unpacking qga-agent .* over \('
expect_eq "dpkg --verify qga-agent is clean after the reinstall" "$("${IN[@]}" dpkg --verify qga-agent 2>&1)" ""
if [[ -n $CLI_DEB ]]; then
    C=/tmp/debs/$(basename "$CLI_DEB")
    if out=$("${IN[@]}" dpkg -i "$C" 2>&1 </dev/null); then ok "dpkg -i qga"; else bad "dpkg -i qga" "$out"; fi
    expect_match "qga --version" "$("${IN[@]}" qga --version 2>&1)" '^qga [0-9]'
fi

# ---------------------------------------------------------------------------
# 2. The installed agent answers a host client
# ---------------------------------------------------------------------------
mkdir -p "$R/run/qga"
T=$(now)
"${IN[@]}" /usr/sbin/qemu-ga -m unix-listen -p /run/qga/qga.sock -t /run/qga \
    >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
SOCK=$R/run/qga/qga.sock
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.05; done
if replies=$(python3 "$ROOT_DIR/scripts/vm/qga_send.py" --timeout 10 "$SOCK" guest-ping guest-info 2>&1); then
    ok "host client synced with the chrooted agent ($(since "$T")s after start)"
else
    bad "host client synced with the chrooted agent" "$replies"$'\n'"$(cat "$WORK/agent.log")"
fi
expect_eq "guest-ping over the host socket" "$(sed -n 1p <<<"$replies")" '{"return": {}}'
info=$(sed -n 2p <<<"$replies")
expect_match "guest-info has a version" "$info" '^\{"return": \{"version": "[0-9][^"]*", "supported_commands": \['
expect_match "guest-info lists guest-ping enabled" "$info" '\{"enabled": true, "name": "guest-ping", "success-response": true\}'
if [[ -n $CLI_DEB ]]; then
    check "installed qga pings the agent" "${IN[@]}" qga -s /run/qga/qga.sock ping
fi
kill -TERM "$AGENT_PID"
rc=0; wait "$AGENT_PID" || rc=$?
AGENT_PID=''
expect_eq "agent exits 0 on SIGTERM" "$rc" 0
expect_match "agent wrote its state file" "$(cat "$R/run/qga/qga.state" 2>&1)" '^\[global\]$'

# ---------------------------------------------------------------------------
# 3. The installed fsfreeze hook (run directly: freezing in a chroot would
#    freeze this host's filesystems)
# ---------------------------------------------------------------------------
D=$R/etc/qemu/fsfreeze-hook.d
printf '#!/bin/sh\necho "a got $*"\n' >"$D/10-a"
printf '#!/bin/sh\necho "b fails" >&2\nexit 3\n' >"$D/20-b"
printf '#!/bin/sh\necho "leftover ran"\n' >"$D/30-c.dpkg-old"
printf '#!/bin/sh\necho "not executable ran"\n' >"$D/40-d"
chmod 0755 "$D/10-a" "$D/20-b" "$D/30-c.dpkg-old"
rm -f "$R/var/log/qga-fsfreeze-hook.log"
check "fsfreeze-hook freeze exits 0 despite a failing script" "${IN[@]}" /etc/qemu/fsfreeze-hook freeze
hooklog=$(cat "$R/var/log/qga-fsfreeze-hook.log" 2>&1 || true)
# "<date>: <message>" lines from the hook; the rest is the scripts' output.
DATED='^[A-Z][a-z][a-z] .* [0-9]{4}: '
expect_eq "fsfreeze-hook log" "$(grep -E "$DATED" <<<"$hooklog" | sed -E "s/$DATED//")" \
"Executing /etc/qemu/fsfreeze-hook.d/10-a freeze
/etc/qemu/fsfreeze-hook.d/10-a finished successfully
Executing /etc/qemu/fsfreeze-hook.d/20-b freeze
Error: /etc/qemu/fsfreeze-hook.d/20-b finished with status=3"
expect_eq "scripts' output is logged" "$(grep -Ev "$DATED" <<<"$hooklog")" "a got freeze
b fails"
expect_no_match "leftovers and non-executables are skipped" "$hooklog" 'ran$'
rm -f "$D"/*

# ---------------------------------------------------------------------------
# 4. Purge
# ---------------------------------------------------------------------------
if out=$("${IN[@]}" dpkg --purge qga-agent ${CLI_DEB:+qga} 2>&1 </dev/null); then ok "dpkg --purge"; else bad "dpkg --purge" "$out"; fi
left=''
for f in /usr/sbin/qemu-ga /usr/sbin/qga-agent /etc/qemu/qemu-ga.conf /etc/qemu/fsfreeze-hook \
         /etc/qemu/fsfreeze-hook.d /lib/systemd/system/qemu-guest-agent.service \
         /lib/udev/rules.d/60-qemu-guest-agent.rules /usr/share/man/man8/qemu-ga.8.gz \
         /var/log/qga-fsfreeze-hook.log /usr/bin/qga; do
    [[ -e $R$f || -L $R$f ]] && left+="$f "
done
expect_eq "purge leaves no file behind" "$left" ""
expect_eq "qga-agent is gone" "$(status_of qga-agent)" ""

# ---------------------------------------------------------------------------
# 5. Replacing Debian's qemu-guest-agent
# ---------------------------------------------------------------------------
REF_DEB=$(newest_file "$REF_DEB_DIR"/qemu-guest-agent_*.deb)
if [[ -z $REF_DEB ]]; then
    bad "Debian's qemu-guest-agent .deb in $REF_DEB_DIR (run .ci/install-deps.sh)"
else
    cp "$REF_DEB" "$R/tmp/debs/"
    Q=/tmp/debs/$(basename "$REF_DEB")
    # Its libraries are not in the minimal rootfs; only the package relations matter here.
    if out=$("${IN[@]}" dpkg --force-depends -i "$Q" 2>&1 </dev/null); then
        ok "qemu-guest-agent installed first"
    else
        bad "qemu-guest-agent installed first" "$out"
    fi
    # The operator's own config for qemu-ga (Debian ships none) must survive,
    # without a conffile prompt (stdin is /dev/null: a prompt would fail dpkg).
    printf '[general]\nblock-rpcs=guest-exec\n' >"$R/etc/qemu/qemu-ga.conf"
    T=$(now)
    if out=$("${IN[@]}" dpkg -i "$A" 2>&1 </dev/null); then ok "dpkg -i qga-agent over qemu-guest-agent"; else bad "dpkg -i qga-agent over qemu-guest-agent" "$out"; fi
    log "replacing install took $(since "$T")s"
    printf '%s\n' "$out" | sed 's/^/     > /'
    expect_match "dpkg removed qemu-guest-agent in favour of qga-agent" "$out" \
        'yes, will remove qemu-guest-agent in favour of qga-agent'
    expect_eq "qga-agent is installed" "$(status_of qga-agent)" "ii "
    expect_match "qemu-guest-agent is removed (config files kept)" "$(status_of qemu-guest-agent)" '^.c $'
    expect_match "/usr/sbin/qemu-ga is ours" "$("${IN[@]}" /usr/sbin/qemu-ga --help 2>&1)" 'qga-agent'
    owners=$("${IN[@]}" dpkg -S /usr/sbin/qemu-ga /etc/qemu/fsfreeze-hook \
        /lib/systemd/system/qemu-guest-agent.service /lib/udev/rules.d/60-qemu-guest-agent.rules 2>&1 \
        | cut -d: -f1 | sort -u)
    expect_eq "the shared paths belong to qga-agent" "$owners" "qga-agent"
    check "/etc/qemu/fsfreeze-hook is our script" cmp "$R/etc/qemu/fsfreeze-hook" "$ROOT_DIR/packaging/debian/fsfreeze-hook"
    expect_eq "the operator's qemu-ga.conf is kept" "$(cat "$R/etc/qemu/qemu-ga.conf")" \
        "$(printf '[general]\nblock-rpcs=guest-exec')"
    expect_eq "no conffile leftovers" "$(cd "$R/etc/qemu" && ls -d qemu-ga.conf?* 2>/dev/null)" ""
    expect_match "the agent reads it" "$("${IN[@]}" /usr/sbin/qemu-ga -D 2>&1)" '^block-rpcs=guest-exec$'
    if out=$("${IN[@]}" dpkg --purge qemu-guest-agent 2>&1 </dev/null); then ok "purging qemu-guest-agent afterwards"; else bad "purging qemu-guest-agent afterwards" "$out"; fi
    expect_eq "dpkg --verify: only the operator's qemu-ga.conf differs" \
        "$("${IN[@]}" dpkg --verify qga-agent 2>&1)" "??5?????? c /etc/qemu/qemu-ga.conf"
    expect_eq "dpkg --audit still clean" "$("${IN[@]}" dpkg --audit 2>&1)" ""
fi

log "total $(since "$T0")s"
echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
