#!/usr/bin/env bash
# Our agent and the real qemu-ga 10.0.2 side by side: builds the release agent and the
# benchmark, then runs it. Arguments go to qga-bench:
#
#   scripts/bench.sh                 # full run, a few minutes; target/bench/latest.json
#   scripts/bench.sh --quick         # smoke test of a few seconds (CI: no timing checks)
#   scripts/bench.sh --only read,write --chunks 4M,48M --json /tmp/rw.json
#   scripts/bench.sh --ours "$(scripts/build-static.sh)"   # the static build instead
#
# qemu-ga comes from .ci/install-deps.sh (or --reference PATH / QGA_REFERENCE).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p qga-agent -p qga-bench
exec target/release/qga-bench "$@"
