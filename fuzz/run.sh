#!/usr/bin/env bash
# Runs every cargo-fuzz target of wirestream for SECONDS each (default 60),
# one target and one libFuzzer job at a time, then prints the executions per
# target. Exits non-zero if any target found a crash.
#
#   fuzz/run.sh [seconds] [target...]
#
# Installs cargo-fuzz (and the nightly toolchain it builds with) when
# missing. The committed corpus, fuzz/corpus/<target>, is only read: new
# inputs go to fuzz/target/corpus/<target> and crashes to
# fuzz/artifacts/<target> (both ignored by git). To fold new inputs into the
# committed corpus, minimize them (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
[ "$#" -gt 0 ] && shift
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(classify server_session client_session registry pair)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain (cargo-fuzz builds with it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Two cores, shared: one build job, one fuzzing job.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
mkdir -p target/fuzz-logs
status=0
summary=()
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    log="target/fuzz-logs/$t.log"
    mkdir -p "$work" "artifacts/$t"
    echo "== $t: ${secs}s (log: fuzz/$log)"
    # --debug-assertions: arithmetic overflow panics instead of wrapping.
    if cargo +nightly fuzz run --debug-assertions "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        result="no crash"
    else
        result="FAILED: see fuzz/$log and fuzz/artifacts/$t"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    summary+=("$t: ${execs:-?} executions in ${secs}s, $result")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
