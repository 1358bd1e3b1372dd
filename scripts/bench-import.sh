#!/usr/bin/env bash
# Import at app scale (issue #13): RecDB `rdbctl import interactions` vs sqlite3 on the same
# generated CSV (`rdbctl generate`: lognormal histories, Zipf items, rows in global time order),
# interleaved in the same run (RecDB, sqlite3, RecDB, sqlite3, …), medians of RUNS.
#
# sqlite3's best documented bulk path, as a fair durable peer: `.import` into a plain table, then
# `CREATE INDEX ON t(user, timestamp)` (building the index after loading is sqlite's advice), with
# its defaults: journal_mode=DELETE, synchronous=FULL (it fsyncs its commits, as RecDB's LMDB commit
# does), the default page cache (a 256 MiB cache_size took twice the CPU time in a same-run check at 5M).
#
# Per size: rows/s of both and the ratio; data.mdb bytes per event vs the sqlite file's bytes per row;
# peak anonymous RSS (RssAnon, sampled every 0.1 s from /proc/PID/status: file-backed map pages
# excluded) and peak total RSS (VmHWM). Then, on the largest size: the same for the sequence-file
# layout, a 1M-row import (old and new users) into the database that already holds it against the
# same rows into an empty database (alternated, INTO_RUNS pairs), latest-50
# read p50/p99 (`scale-bench`), and a kill -9 trial in the middle of a 20M-row import. With
# TRAIN_MODEL=1, a small SASRec is trained on the largest database (hidden 16, 1 block, 1 epoch,
# sampled softmax with 512 negatives; validation and test rank the full catalogue for a fixed sample
# of EVAL_USERS users, default 2000: every one of 1M users would take hours) and `recommend` p50/p99
# measured through it (`scale-bench --recommend`).
#
# Files from 64 MiB are imported writing through the memory map (rdbctl's choice; see README), so
# RecDB's anonymous memory holds the sort run and the id maps but not LMDB's dirty pages.
#
#   SIZES="5000000 20000000 50000000" RUNS=3 make bench-import
# Only the delta pairs, on the largest database of an earlier full run (which already holds the default
# delta; DELTA names another): ONLY_INTO=1 DELTA=FILE SKIP_BUILD=1 scripts/bench-import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"5000000 20000000 50000000"}
RUNS=${RUNS:-3}
LARGEST_RUNS=${LARGEST_RUNS:-$RUNS}  # runs at the largest size and of its sequence file
INTO_RUNS=${INTO_RUNS:-$RUNS}  # pairs of the delta into an empty and into the largest database
KILL_ROWS=${KILL_ROWS:-20000000}
work=${BENCH_DIR:-.cache/bench-import}
mkdir -p "$work"
export OMP_WAIT_POLICY=passive
if [ -z "${SKIP_BUILD:-}" ]; then
  swift build -c release --product rdbctl 2>&1 | tail -1 >&2
  swift build -c release --product scale-bench 2>&1 | tail -1 >&2
fi
R=${RDBCTL:-.build/release/rdbctl}
B=${SCALE_BENCH:-.build/release/scale-bench}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start (shared with other jobs)" >&2

# sample_memory PID: samples its memory every 0.1 s until it ends; prints "peak_anon_kib peak_hwm_kib".
sample_memory() {
  local pid=$1 anon=0 hwm=0 a h
  while kill -0 "$pid" 2>/dev/null; do
    read -r a h < <(awk '/^RssAnon/{a=$2} /^VmHWM/{h=$2} END{print a+0, h+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
    [ "${a:-0}" -gt "$anon" ] && anon=$a
    [ "${h:-0}" -gt "$hwm" ] && hwm=$h
    sleep 0.1
  done
  echo "$anon $hwm"
}
# measure OUT cmd...: runs cmd, samples its memory; prints "seconds peak_anon_kib peak_hwm_kib exit_code".
# The clock stops when `wait` returns, not at the sampler's next 0.1 s tick (a 0.5 s import was off by up to 20 %).
measure() {
  local out=$1; shift
  local start end pid sampler anon hwm rc
  start=$(date +%s.%N)
  "$@" >"$out" 2>&1 &
  pid=$!
  sample_memory "$pid" >"$out.memory" &
  sampler=$!
  set +e; wait "$pid"; rc=$?; set -e
  end=$(date +%s.%N)
  wait "$sampler" || true
  read -r anon hwm <"$out.memory"
  rm -f "$out.memory"
  echo "$(echo "$end - $start" | bc -l) $anon $hwm $rc"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
fsize() { stat -c %s "$1"; }

sqlite_sql() {  # sqlite_sql CSV > FILE: the peer's script
  cat <<SQL
CREATE TABLE interactions(user TEXT NOT NULL, item TEXT NOT NULL, timestamp INTEGER NOT NULL);
.mode csv
.import --skip 1 $1 interactions
CREATE INDEX interactions_user_time ON interactions(user, timestamp);
SQL
}

results=()
largest=0
if [ -n "${ONLY_INTO:-}" ]; then  # the delta pairs alone, on the largest database a full run left
  largest=${SIZES##* }
  [ -f "$work/recdb-$largest/data.mdb" ] || { echo "ONLY_INTO: no $work/recdb-$largest (run the full benchmark once)" >&2; exit 1; }
  SIZES=""
fi
for rows in $SIZES; do
  csv="$work/app-$rows.csv"
  [ -f "$csv" ] || { echo "generating $csv..." >&2; $R generate "$csv" --rows "$rows" >&2; }
  rt=(); st=(); ra=(); rh=(); sa=(); sh=(); rb=0; sb=0
  runs=$RUNS; [ "$rows" = "${SIZES##* }" ] && runs=$LARGEST_RUNS
  for run in $(seq 1 "$runs"); do
    rm -rf "$work/recdb-$rows"; $R init "$work/recdb-$rows" >/dev/null
    read -r t a h rc < <(measure "$work/recdb.log" $R import interactions "$work/recdb-$rows" "$csv" --json)
    [ "$rc" = 0 ] || { cat "$work/recdb.log" >&2; exit 1; }
    rt+=("$t"); ra+=("$a"); rh+=("$h"); rb=$(fsize "$work/recdb-$rows/data.mdb")
    rm -f "$work/sqlite-$rows.db"
    sqlite_sql "$csv" >"$work/peer.sql"
    read -r t a h rc < <(measure "$work/sqlite.log" sqlite3 "$work/sqlite-$rows.db" ".read $work/peer.sql")
    [ "$rc" = 0 ] || { cat "$work/sqlite.log" >&2; exit 1; }
    st+=("$t"); sa+=("$a"); sh+=("$h"); sb=$(fsize "$work/sqlite-$rows.db")
    echo "  $rows rows, run $run: RecDB ${rt[-1]} s (anon peak ${ra[-1]} KiB, total ${rh[-1]} KiB), sqlite3 ${st[-1]} s (anon ${sa[-1]} KiB, total ${sh[-1]} KiB)" >&2
    rm -f "$work/sqlite-$rows.db"
  done
  mrt=$(median "${rt[@]}"); mst=$(median "${st[@]}")
  line=$(printf '{"bench":"import","rows":%d,"runs":%d,"recdb_s":%.2f,"sqlite3_s":%.2f,"recdb_rows_per_s":%.0f,"sqlite3_rows_per_s":%.0f,"ratio":%.2f,"recdb_bytes_per_event":%.2f,"sqlite3_bytes_per_row":%.2f,"bytes_ratio":%.3f,"recdb_anon_peak_mib":%.0f,"recdb_rss_peak_mib":%.0f,"sqlite3_anon_peak_mib":%.0f,"sqlite3_rss_peak_mib":%.0f}' \
    "$rows" "$runs" "$mrt" "$mst" "$(echo "$rows / $mrt" | bc -l)" "$(echo "$rows / $mst" | bc -l)" "$(echo "$mst / $mrt" | bc -l)" \
    "$(echo "$rb / $rows" | bc -l)" "$(echo "$sb / $rows" | bc -l)" "$(echo "$rb / $sb" | bc -l)" \
    "$(echo "$(median "${ra[@]}") / 1024" | bc -l)" "$(echo "$(median "${rh[@]}") / 1024" | bc -l)" \
    "$(echo "$(median "${sa[@]}") / 1024" | bc -l)" "$(echo "$(median "${sh[@]}") / 1024" | bc -l)")
  echo "$line"; results+=("$line")
  largest=$rows
done

# The sequence-file layout of the largest size (the same histories), RecDB only: sqlite has no such import.
if [ -z "${ONLY_INTO:-}" ]; then
seqfile="$work/app-$largest.txt"
[ -f "$seqfile" ] || $R generate "$seqfile" --rows "$largest" --format sequences >&2
qt=(); qa=(); qh=()
for run in $(seq 1 "$LARGEST_RUNS"); do
  rm -rf "$work/recdb-seq"; $R init "$work/recdb-seq" >/dev/null
  read -r t a h rc < <(measure "$work/recdb.log" $R import interactions "$work/recdb-seq" "$seqfile" --format sequences --json)
  [ "$rc" = 0 ] || { cat "$work/recdb.log" >&2; exit 1; }
  qt+=("$t"); qa+=("$a"); qh+=("$h")
done
mqt=$(median "${qt[@]}")
printf '{"bench":"import-sequences","rows":%d,"runs":%d,"recdb_s":%.2f,"recdb_rows_per_s":%.0f,"recdb_bytes_per_event":%.2f,"recdb_anon_peak_mib":%.0f,"recdb_rss_peak_mib":%.0f}\n' \
  "$largest" "$LARGEST_RUNS" "$mqt" "$(echo "$largest / $mqt" | bc -l)" "$(echo "$(fsize "$work/recdb-seq/data.mdb") / $largest" | bc -l)" \
  "$(echo "$(median "${qa[@]}") / 1024" | bc -l)" "$(echo "$(median "${qh[@]}") / 1024" | bc -l)"
rm -rf "$work/recdb-seq"
fi

# 1M more rows (users u990000… at 50M: half of them have events, half are new; later times), imported
# alternately into an empty database and into a fresh copy of the largest one (empty, existing, empty,
# …; INTO_RUNS pairs), whole processes by the wall clock, medians: the goal is the same rate into both.
# The last copy (the largest database plus the delta) replaces the largest database for the reads below.
offset=$(( largest / 50 > 10000 ? largest / 50 - 10000 : 0 ))
delta=${DELTA:-"$work/delta-1000000-from-u$offset.csv"}  # DELTA: another file (one the database has not imported)
[ -f "$delta" ] || $R generate "$delta" --rows 1000000 --seed 7 --user-offset "$offset" --start-time 1700000000 >&2
et=(); xt=(); ei=(); xi=(); xa=()
for run in $(seq 1 "$INTO_RUNS"); do
  rm -rf "$work/into-empty"; $R init "$work/into-empty" >/dev/null
  read -r t a h rc < <(measure "$work/recdb.log" $R import interactions "$work/into-empty" "$delta" --json)
  [ "$rc" = 0 ] || { cat "$work/recdb.log" >&2; exit 1; }
  et+=("$t"); ei+=("$(tail -1 "$work/recdb.log" | sed 's/.*"seconds":\([0-9.e-]*\).*/\1/')")
  rm -rf "$work/into-existing"; cp -r "$work/recdb-$largest" "$work/into-existing"; sync
  read -r t a h rc < <(measure "$work/recdb.log" $R import interactions "$work/into-existing" "$delta" --json)
  [ "$rc" = 0 ] || { cat "$work/recdb.log" >&2; exit 1; }
  xt+=("$t"); xa+=("$a"); xi+=("$(tail -1 "$work/recdb.log" | sed 's/.*"seconds":\([0-9.e-]*\).*/\1/')")
  echo "  1M-row delta, pair $run: into empty ${et[-1]} s (${ei[-1]} s inside), into the $largest-event copy ${xt[-1]} s (${xi[-1]} s inside)" >&2
done
summary=$(tail -1 "$work/recdb.log")
rm -rf "$work/into-empty"
# ONLY_INTO keeps the largest database as it was (the delta's ledger entry would refuse the next run).
if [ -n "${ONLY_INTO:-}" ]; then rm -rf "$work/into-existing"; else rm -rf "$work/recdb-$largest"; mv "$work/into-existing" "$work/recdb-$largest"; fi
met=$(median "${et[@]}"); mxt=$(median "${xt[@]}")
printf '{"bench":"import-into-existing","existing_events":%d,"rows":1000000,"pairs":%d,"empty_s":%.3f,"existing_s":%.3f,"empty_rows_per_s":%.0f,"existing_rows_per_s":%.0f,"existing_vs_empty":%.3f,"empty_inside_s":%.3f,"existing_inside_s":%.3f,"existing_anon_peak_mib":%.0f,"summary":%s}\n' \
  "$largest" "$INTO_RUNS" "$met" "$mxt" "$(echo "1000000 / $met" | bc -l)" "$(echo "1000000 / $mxt" | bc -l)" "$(echo "$met / $mxt" | bc -l)" \
  "$(median "${ei[@]}")" "$(median "${xi[@]}")" "$(echo "$(median "${xa[@]}") / 1024" | bc -l)" "$summary"
if [ -n "${ONLY_INTO:-}" ]; then echo "machine load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2; exit 0; fi

# Latest-50 reads on the largest database (plus the delta).
$B "$work/recdb-$largest" --samples 20000 | tail -1
if [ -n "${TRAIN_MODEL:-}" ]; then
  $R train "$work/recdb-$largest" --model small --loss sampled --negatives 512 --hidden 16 --blocks 1 --epochs 1 \
    --eval-users "${EVAL_USERS:-2000}" --json | tail -1
  $B "$work/recdb-$largest" --samples 20000 --recommend small | tail -1
fi

# kill -9 in the middle of a 20M-row import: afterwards the database holds all or nothing, verifies
# clean, and no temporary file is left.
kcsv="$work/app-$KILL_ROWS.csv"
[ -f "$kcsv" ] || $R generate "$kcsv" --rows "$KILL_ROWS" >&2
rm -rf "$work/kill"; $R init "$work/kill" >/dev/null
$R import interactions "$work/kill" "$kcsv" --json >/dev/null 2>&1 &
pid=$!
sleep "${KILL_AFTER:-6}"
kill -9 "$pid" 2>/dev/null && killed=1 || killed=0
wait "$pid" 2>/dev/null || true
events=$($R stats "$work/kill" --json | sed 's/.*"interactions":\([0-9]*\).*/\1/')
verify=$($R verify "$work/kill" >/dev/null 2>&1 && echo clean || echo FAILED)
leftover=$(ls -A "$work/kill" | { grep -v -x -e data.mdb -e lock.mdb || true; } | wc -l)
# A killed map writer leaves data.mdb as long as its map (allocated, unreferenced): the next one cuts it back.
printf '{"bench":"kill-9-during-import","rows":%d,"killed_mid_import":%d,"events_after":%s,"verify":"%s","leftover_files":%d,"data_mdb_bytes_after":%d}\n' \
  "$KILL_ROWS" "$killed" "$events" "$verify" "$leftover" "$(fsize "$work/kill/data.mdb")"
[ "$verify" = clean ] && [ "$leftover" = 0 ] && { [ "$events" = 0 ] || [ "$events" = "$KILL_ROWS" ]; } || { echo "kill -9 trial FAILED" >&2; exit 1; }
echo "machine load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
