#!/usr/bin/env bash
# The whole test suite: installs what the tests need (idempotent; needs root the first
# time), then unit, wire-protocol, differential (against the real qemu-ga 10.0.2) and
# test-VM tests. Prints cargo's per-suite results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
cargo test --workspace --locked
