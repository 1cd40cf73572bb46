# scripts/vm/common.sh — shared settings for the test-VM harness (sourced, not run).
# shellcheck shell=bash

QGA_TEST_CACHE=${QGA_TEST_CACHE:-/var/cache/qga-test}        # filled by .ci/install-deps.sh
QGA_VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)      # this folder
QGA_REF_AGENT=$QGA_TEST_CACHE/qemu-ga-10.0.2/usr/sbin/qemu-ga # reference agent (dynamic)
QGA_KERNEL=${QGA_KERNEL:-$QGA_TEST_CACHE/kernel/vmlinuz}
QGA_KMODULES=${QGA_KMODULES:-$QGA_TEST_CACHE/kernel/modules}
QGA_PORT_NAME=org.qemu.guest_agent.0

_qga_tag=${0##*/}
log() { printf '[%s] %s\n' "$_qga_tag" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$_qga_tag" "$*" >&2; exit 1; }

# now_s: seconds since the epoch with sub-second precision (for timings).
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.2f", b - a }'; }

# is_our_qemu PID WORKDIR: true if PID is a live qemu-system process started
# for WORKDIR (guards against killing an unrelated process that reused the pid).
is_our_qemu() {
    local pid=$1 dir=$2 cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmd == *qemu-system-* && $cmd == *"$dir/qga.sock"* ]]
}
