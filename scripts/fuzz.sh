#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time budget each:
#   scripts/fuzz.sh [SECONDS]        (default 60 per target)
# Installs cargo-fuzz if missing (needs a C++ compiler for libFuzzer). Starts from the checked-in seeds (fuzz/seeds/<target>)
# plus what earlier runs found (fuzz/corpus/<target>, not in git). Exits non-zero on any
# crash, leak or timeout (the input is left in fuzz/artifacts/<target>/), and prints
# the number of executions per target; the summary also goes to
# target/fuzz-summary.txt. RUSTC_BOOTSTRAP=1 lets cargo-fuzz's nightly flags work on
# stable.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
[[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never

# Pinned for reproducible CI (about 2 minutes to build on two cores).
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

targets=$(cd fuzz && cargo fuzz list)
summary=()
status=0
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log="fuzz/target/$t.log"
    mkdir -p fuzz/target
    echo "== fuzz $t for ${SECS} s"
    # The first corpus directory receives new inputs; the seeds stay untouched.
    # -rss_limit_mb: QEMU's JSON limits allow 64 MiB tokens; keep libFuzzer's default
    # 2 GiB guard. -timeout: one input taking more than 10 s counts as a hang.
    set +e
    (cd fuzz && cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n 1 || true)
    [[ -n $runs ]] || runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [[ $rc -ne 0 ]]; then
        tail -n 40 "$log"
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} executions; see $log and fuzz/artifacts/$t/")
        status=1
    else
        summary+=("$t: ${runs:-?} executions in ${SECS} s, no crash; corpus $corpus inputs")
    fi
done

mkdir -p target
printf '%s\n' "== fuzz (cargo-fuzz, ${SECS} s per target)" "${summary[@]}" | tee target/fuzz-summary.txt
exit $status
