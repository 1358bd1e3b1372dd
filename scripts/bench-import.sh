#!/usr/bin/env bash
# Import throughput: a generated 5,000,000-row interactions CSV into RecDB (`rdbctl import`)
# versus sqlite3's `.import` into a table with an index on (user, timestamp), same file, same run,
# alternating A/B so machine drift hits both. Prints rows/s and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-5000000}
RUNS=${RUNS:-3}
work=${BENCH_DIR:-.cache/bench-import}
mkdir -p "$work"
csv="$work/interactions-$ROWS.csv"
if [ ! -f "$csv" ]; then
  echo "generating $csv ($ROWS rows: 100k users, 50k items, Zipf-like item popularity)..." >&2
  awk -v n="$ROWS" 'BEGIN { srand(42); print "user,item,timestamp";
    for (r = 0; r < n; r++) { u = int(rand() * 100000); i = int(50000 * rand() ^ 3);
      printf "u%d,i%d,%d\n", u, i, 1600000000 + r } }' > "$csv"
fi
swift build -c release --product rdbctl 2>&1 | tail -1 >&2
R=.build/release/rdbctl
recdb_times=(); sqlite_times=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$work/db.recdb"; $R init "$work/db.recdb" >/dev/null
  s=$(date +%s.%N); $R import interactions "$work/db.recdb" "$csv" --json >/dev/null; e=$(date +%s.%N)
  recdb_times+=("$(echo "$e - $s" | bc -l)")
  rm -f "$work/bench.sqlite"
  s=$(date +%s.%N)
  sqlite3 "$work/bench.sqlite" <<SQL
CREATE TABLE interactions(user TEXT NOT NULL, item TEXT NOT NULL, timestamp INTEGER NOT NULL);
CREATE INDEX interactions_user_time ON interactions(user, timestamp);
.mode csv
.import --skip 1 $csv interactions
SQL
  e=$(date +%s.%N)
  sqlite_times+=("$(echo "$e - $s" | bc -l)")
  echo "run $run: recdb ${recdb_times[-1]} s, sqlite3 ${sqlite_times[-1]} s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rt=$(median "${recdb_times[@]}"); st=$(median "${sqlite_times[@]}")
rows_recdb=$(echo "$ROWS / $rt" | bc -l); rows_sqlite=$(echo "$ROWS / $st" | bc -l)
printf 'import of %d rows (median of %d): RecDB %.2f s (%.0f rows/s), sqlite3 %.2f s (%.0f rows/s), RecDB is %.2fx sqlite3\n' \
  "$ROWS" "$RUNS" "$rt" "$rows_recdb" "$st" "$rows_sqlite" "$(echo "$st / $rt" | bc -l)"
printf '{"bench":"import","rows":%d,"recdb_s":%.3f,"sqlite3_s":%.3f,"recdb_rows_per_s":%.0f,"sqlite3_rows_per_s":%.0f,"speedup":%.3f}\n' \
  "$ROWS" "$rt" "$st" "$rows_recdb" "$rows_sqlite" "$(echo "$st / $rt" | bc -l)"
