#!/usr/bin/env bash
# scripts/vm/shell.sh — one command for a human: build, boot, play.
#
# Usage:
#   shell.sh [-i|--interactive] [--workdir DIR] [AGENT_BINARY] [-- EXTRA_AGENT_ARGS...]
#
# Builds an initramfs around AGENT_BINARY (default: the reference qemu-ga
# 10.0.2 from $QGA_TEST_CACHE), boots the test VM in DIR (default
# $QGA_VM_WORKDIR or /tmp/qga-vm), waits for the agent and prints how to talk
# to it. A VM already running in DIR is stopped first.
#   -i, --interactive   then open a qga_send.py prompt on the agent socket and
#                       stop the VM when the prompt is left (Ctrl-D)
# Examples:
#   scripts/vm/shell.sh -i
#   scripts/vm/shell.sh target/x86_64-unknown-linux-gnu/release/qemu-ga -- -v
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

INTERACTIVE=0
WORKDIR=${QGA_VM_WORKDIR:-/tmp/qga-vm}
while [[ $# -gt 0 ]]; do
    case $1 in
        -i|--interactive) INTERACTIVE=1; shift ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 0 ;;
        *) break ;;
    esac
done
AGENT=$QGA_REF_AGENT
if [[ $# -gt 0 && $1 != -- ]]; then AGENT=$1; shift; fi
[[ -x $AGENT ]] || die "agent $AGENT not found (reference agent: run .ci/install-deps.sh as root)"

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
"$QGA_VM_DIR/stop-vm.sh" "$WORKDIR" >/dev/null
"$QGA_VM_DIR/build-initramfs.sh" "$AGENT" "$WORKDIR" "$@"
"$QGA_VM_DIR/run-vm.sh" "$WORKDIR"

SEND="$QGA_VM_DIR/qga_send.py $WORKDIR/qga.sock"
cat <<EOF

  VM is up: QEMU pid $(cat "$WORKDIR/qemu.pid"), agent socket $WORKDIR/qga.sock
  Talk to it:   $SEND guest-info
                $SEND 'guest-exec {"path": "/bin/ps", "capture-output": true}'
                $SEND                 # interactive prompt
  Console:      tail -f $WORKDIR/console.log   (agent output: /tmp/agent.log in the guest)
  QMP:          $WORKDIR/qmp.sock
  Stop:         $QGA_VM_DIR/stop-vm.sh $WORKDIR

EOF
if [[ $INTERACTIVE -eq 1 ]]; then
    python3 "$QGA_VM_DIR/qga_send.py" "$WORKDIR/qga.sock" || true
    "$QGA_VM_DIR/stop-vm.sh" "$WORKDIR"
fi
