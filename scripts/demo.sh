#!/usr/bin/env bash
# The agent end to end: build qga-agent and qga, start the agent on a local unix
# socket (as qemu-ga's own tests do), and drive it with qga. Only commands that are
# safe on this machine are sent here; `--vm` runs the demo inside a throwaway QEMU
# guest instead (needs .ci/install-deps.sh first) and adds a freeze/thaw.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n$ '; printf '%q ' "$@"; printf '\n'; "$@"; }

echo "Building (release)..."
cargo build --release --quiet -p qga-agent -p qga-cli
QGA=target/release/qga

work=$(mktemp -d /tmp/qga-demo.XXXXXX)
cleanup() {
    if [[ -n ${agent_pid:-} ]]; then kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null || true; fi
    if [[ -n ${vm:-} ]]; then scripts/vm/stop-vm.sh "$work/vm" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ ${1:-} == --vm ]]; then
    vm=1
    agent=$(scripts/build-static.sh)
    mkdir -p "$work/vm"
    echo "Booting a test VM with the agent on virtio-serial..."
    scripts/vm/build-initramfs.sh "$agent" "$work/vm" >/dev/null
    scripts/vm/run-vm.sh --lifetime 600 "$work/vm" >/dev/null
    sock=$work/vm/qga.sock
    guest_file=/mnt/data/blob
else
    sock=$work/qga.sock
    # Its log (and, with no syslog socket here, its audit lines) go to a file.
    target/release/qga-agent -m unix-listen -p "$sock" -t "$work" 2>"$work/agent.log" &
    agent_pid=$!
    for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
    guest_file=$work/blob.copy
fi
export QGA_SOCKET=$sock

step "$QGA" ping
step "$QGA" info
step "$QGA" osinfo
step "$QGA" exec -- sh -c 'echo "hello from $(uname -n)"; echo "this goes to stderr" >&2; exit 3' || echo "(exit status $?)"
head -c 3000000 /dev/urandom > "$work/blob"
step "$QGA" cp "$work/blob" ":$guest_file"
step "$QGA" exec -- ls -l "$guest_file"
step "$QGA" cp ":$guest_file" "$work/blob.back"
step cmp "$work/blob" "$work/blob.back"
step "$QGA" fsinfo
step "$QGA" ifaddr
step "$QGA" vcpus
step "$QGA" --json time
if [[ -n ${vm:-} ]]; then
    step "$QGA" fsfreeze freeze /mnt/data
    step "$QGA" fsfreeze status
    step "$QGA" fsfreeze thaw
    step "$QGA" shutdown
fi
echo
echo "Demo finished."
