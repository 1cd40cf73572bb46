#!/usr/bin/env bash
# scripts/vm/stop-vm.sh — stop the test VM started by run-vm.sh WORKDIR.
#
# Usage: stop-vm.sh WORKDIR
#
# Kills QEMU by the pid saved in WORKDIR/qemu.pid (never by name), after
# checking that this pid really is the qemu-system process of WORKDIR:
# SIGTERM, then SIGKILL after 5 s. Succeeds if the VM is already gone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
[[ -d $1 ]] || { log "no such directory $1: nothing to stop"; exit 0; }
WORKDIR=$(cd "$1" && pwd)
PIDFILE=$WORKDIR/qemu.pid

if [[ ! -f $PIDFILE ]]; then
    log "no $PIDFILE: nothing to stop"
    exit 0
fi
PID=$(cat "$PIDFILE")
if ! is_our_qemu "$PID" "$WORKDIR"; then
    log "QEMU (pid $PID) is not running"
    rm -f "$PIDFILE"
    exit 0
fi

kill -TERM "$PID" 2>/dev/null || true
for _ in $(seq 50); do
    is_our_qemu "$PID" "$WORKDIR" || break
    sleep 0.1
done
if is_our_qemu "$PID" "$WORKDIR"; then
    log "QEMU $PID ignored SIGTERM; sending SIGKILL"
    kill -KILL "$PID" 2>/dev/null || true
    sleep 0.2
fi
# A zombie (parent still alive and not reaping) counts as stopped.
if is_our_qemu "$PID" "$WORKDIR" && [[ $(awk '{print $3}' "/proc/$PID/stat" 2>/dev/null) != Z ]]; then
    die "could not stop QEMU $PID"
fi
rm -f "$PIDFILE"
log "stopped QEMU $PID"
