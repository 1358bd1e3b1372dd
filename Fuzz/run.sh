#!/usr/bin/env bash
# Runs every fuzz target (or those named) for FUZZ_SECONDS each (default 60), one after another with
# one job, over its committed corpus in Fuzz/corpus/<target>/ (new coverage goes to a scratch copy, so
# the committed seeds stay small). A crash leaves its input in Fuzz/crashes/<target>/ and stops with
# exit 1: turn it into a regression test, fix, and commit the input beside the test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
BUILD=.build/fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in Fuzz/Targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
fi
Fuzz/build.sh "${targets[@]}"
export OMP_WAIT_POLICY=passive ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
status=0
for t in "${targets[@]}"; do
    work="$BUILD/corpus/$t"
    mkdir -p "$work" "Fuzz/crashes/$t"
    dict=(); [ -f "Fuzz/dict/$t.dict" ] && dict=(-dict="Fuzz/dict/$t.dict")
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
    if ! "$BUILD/bin/fuzz-$t" "$work" Fuzz/corpus/"$t" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
            -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 -artifact_prefix="Fuzz/crashes/$t/" \
            -print_final_stats=1 2> "$BUILD/$t.log"; then
        echo "fuzz: $t FAILED (see $BUILD/$t.log and Fuzz/crashes/$t/)"; status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$BUILD/$t.log" | sed "s/^/  $t: /" || true
done
exit $status
