#!/usr/bin/env bash
# Builds a fully static qga-agent (glibc with crt-static): one file that runs in any
# x86_64 Linux guest, and what the test VM boots. Prints the binary's path.
#
# Note: a static glibc binary resolves users through /etc/nsswitch.conf without
# loadable NSS modules; "files" works, "systemd"/"sss" lookups do not.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --release -p qga-agent \
    --target x86_64-unknown-linux-gnu --target-dir target/static "$@"
echo "$PWD/target/static/x86_64-unknown-linux-gnu/release/qga-agent"
