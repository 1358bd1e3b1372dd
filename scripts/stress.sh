#!/usr/bin/env bash
# The long concurrency stress (issue #11), release build, real processes. Not part of `make test`.
#  1. StressTests with ROUNDS rounds (default 100): 2 imports that grow the map + an add-event loop + a
#     train, and 8 readers, at random offsets; 0 signal deaths, exact counts, readers see only committed
#     states, verify clean.
#  2. Reproduction A, TRIALS times (default 20): a 2.5M-row import, and after ~1 s an add-event into the same
#     database (used to die with "double free" and lose the write).
#  3. Reproduction B, TRIALS times: two 400k-row imports into a fresh database at once.
# Every process starts with a 1 MiB map (RDBCTL_INITIAL_MAP_SIZE), so they grow it under each other.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-100}
TRIALS=${TRIALS:-20}
export OMP_WAIT_POLICY=passive
work=${STRESS_DIR:-.cache/stress}
mkdir -p "$work"

swift build -c release -Xswiftc -enable-testing --build-tests 2>&1 | tail -1 >&2
start=$(date +%s)
RECDB_STRESS_ROUNDS=$ROUNDS swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing \
  --filter StressTests 2>&1 | grep -E "stress:|error:|Executed" | tail -4
echo "stress rounds: $ROUNDS in $(( $(date +%s) - start )) s" >&2

R=.build/release/rdbctl
export RDBCTL_INITIAL_MAP_SIZE=1048576
gen() {  # rows first → CSV of `rows` interactions over 100k users and 50k items
  awk -v n="$1" -v f="$2" 'BEGIN { srand(f); print "user,item,timestamp";
    for (r = 0; r < n; r++) printf "u%d,i%d,%d\n", int(rand() * 100000), int(rand() * 50000), f + r }'
}
[ -f "$work/big.csv" ] || gen 2500000 1 > "$work/big.csv"
[ -f "$work/a.csv" ] || gen 400000 2 > "$work/a.csv"
[ -f "$work/b.csv" ] || gen 400000 3 > "$work/b.csv"
count() { $R stats "$1" --json | sed -E 's/.*"interactions":([0-9]+).*/\1/'; }

failures=0
for t in $(seq 1 "$TRIALS"); do
  rm -rf "$work/dbA"; $R init "$work/dbA" >/dev/null; $R put-item "$work/dbA" item0 >/dev/null
  ( $R import interactions "$work/dbA" "$work/big.csv" --json >/dev/null 2>"$work/imp.err"; echo $? > "$work/imp.rc" ) &
  sleep 1
  set +e; $R add-event "$work/dbA" u1 item0 --timestamp 5 >/dev/null 2>"$work/add.err"; add=$?; set -e
  wait
  n=$(count "$work/dbA"); v=$($R verify "$work/dbA" >/dev/null 2>&1 && echo clean || echo DAMAGED)
  if [ "$add" != 0 ] || [ "$(cat "$work/imp.rc")" != 0 ] || [ "$n" != 2500001 ] || [ "$v" != clean ]; then
    failures=$((failures + 1)); echo "A$t: add-event $add import $(cat "$work/imp.rc") rows $n verify $v $(cat "$work/add.err" "$work/imp.err")"
  fi
done
echo "reproduction A (2.5M-row import + add-event): $((TRIALS - failures)) of $TRIALS passed"
failuresA=$failures; failures=0
for t in $(seq 1 "$TRIALS"); do
  rm -rf "$work/dbB"; $R init "$work/dbB" >/dev/null
  ( $R import interactions "$work/dbB" "$work/a.csv" --json >/dev/null 2>"$work/a.err"; echo $? > "$work/a.rc" ) &
  ( $R import interactions "$work/dbB" "$work/b.csv" --json >/dev/null 2>"$work/b.err"; echo $? > "$work/b.rc" ) &
  wait
  n=$(count "$work/dbB"); v=$($R verify "$work/dbB" >/dev/null 2>&1 && echo clean || echo DAMAGED)
  if [ "$(cat "$work/a.rc")" != 0 ] || [ "$(cat "$work/b.rc")" != 0 ] || [ "$n" != 800000 ] || [ "$v" != clean ]; then
    failures=$((failures + 1)); echo "B$t: $(cat "$work/a.rc") $(cat "$work/b.rc") rows $n verify $v $(cat "$work/a.err" "$work/b.err")"
  fi
done
echo "reproduction B (two 400k-row imports at once): $((TRIALS - failures)) of $TRIALS passed"
[ "$failuresA" = 0 ] && [ "$failures" = 0 ]
