#!/usr/bin/env bash
# `make test-tsan`: the tests that run threads or other processes, under ThreadSanitizer.
#
# Debug build (TSan needs no optimisation to see races) in its own scratch directory, so it never clobbers the
# normal .build. The rdbctl the process tests start is built with TSan too, and reports from it fail those tests
# (non-zero exit). Any ThreadSanitizer report in the output fails the run, whatever the exit status says.
# Faiss, OpenBLAS and libgomp are not instrumented; no suppression has been needed so far — if one ever is, it goes
# in scripts/tsan.supp with a comment saying why, and only for third-party code.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
# Threads: training next to serving, concurrent user vectors, concurrent index searches with writes, the encoder's
# workers and lanes, database training/recommend-for-many-users/embedding. Processes: ProcessTests, and the training
# tests that run rdbctl next to a writer; nested and concurrent transactions; snapshot-exact searches while writers write.
FILTER=${TSAN_FILTER:-'LearnTests.ConcurrencyTests|LearnTests.ModelTests/testConcurrentUserRepresentationsMatchSerial|LearnTests.SentenceEncoderModelTests|IndexTests.VectorIndexTests/testConcurrentSearchesWithWrites|RecDBTests.ProcessTests|RecDBTests.TrainingTests|RecDBTests.EmbeddingTests|RecDBTests.TransactionNestingTests|RecDBTests.IsolationTests'}

"$SWIFT" build --build-tests --sanitize=thread --scratch-path .build-tsan
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export TSAN_OPTIONS="second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp ${TSAN_OPTIONS:-}"
export OMP_WAIT_POLICY=passive
status=0
"$SWIFT" test --skip-build --sanitize=thread --scratch-path .build-tsan --disable-swift-testing --filter "$FILTER" \
    2>&1 | tee "$log" || status=$?
if grep -q "ThreadSanitizer" "$log"; then
    echo "test-tsan: FAILED: ThreadSanitizer reported races (see above)" >&2
    exit 1
fi
[ "$status" -eq 0 ] || { echo "test-tsan: FAILED: tests failed (exit $status)" >&2; exit "$status"; }
echo "test-tsan: passed, no ThreadSanitizer reports"
