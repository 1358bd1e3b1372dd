#!/usr/bin/env bash
# CPU time of a delta import into an empty database and into a fresh copy of a large one (issue #13),
# for one or more rdbctl binaries alternated in the same run — for a loaded machine, where wall-clock
# ratios swing more than the changes they would measure. Per round, for each binary: `rdbctl init` +
# import, then `cp -r` of the large database + import, each under `perf stat -e
# task-clock,user_time,system_time`. Prints every run, then medians per binary and target.
#
#   ROUNDS=6 DB=.cache/bench-import/recdb-50000000 DELTA=.cache/bench-import/delta2.csv \
#     scripts/bench-import-cpu.sh /path/to/rdbctl-main .build/release/rdbctl
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
DB=${DB:-.cache/bench-import/recdb-50000000}
DELTA=${DELTA:-.cache/bench-import/delta2.csv}
work=${BENCH_DIR:-.cache/bench-import}/cpu-runs
[ $# -ge 1 ] || { echo "usage: $0 RDBCTL..." >&2; exit 2; }
[ -f "$DB/data.mdb" ] || { echo "no $DB (run scripts/bench-import.sh once)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is needed" >&2; exit 1; }
command -v bc >/dev/null || { echo "bc is needed" >&2; exit 1; }
bins=("$@")
export OMP_WAIT_POLICY=passive
mkdir -p "$work"
log="$work/runs.txt"; : >"$log"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start" >&2
# Runs are logged under the binary's argument number, so two paths that end alike never share a median.
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!bins[@]}"; do
    r=${bins[$i]}
    for target in empty copy; do
      rm -rf "$work/db"
      if [ "$target" = empty ]; then "$r" init "$work/db" >/dev/null; else cp -r "$DB" "$work/db"; sync; fi
      start=$(date +%s.%N)
      perf stat -x, -e task-clock,user_time,system_time -o "$work/stat.txt" "$r" import interactions "$work/db" "$DELTA" --json >/dev/null
      end=$(date +%s.%N)
      awk -F, -v bin="$i" -v t="$target" -v wall="$(echo "$end - $start" | bc -l)" '
        /task-clock/ {tc=$1} /user_time/ {u=$1/1e6} /system_time/ {s=$1/1e6}
        END {printf "%s %s wall_s %.3f task_clock_ms %.0f user_ms %.0f sys_ms %.0f\n", bin, t, wall, tc, u, s}' "$work/stat.txt" | tee -a "$log"
    done
  done
done
rm -rf "$work/db"
echo "medians:"
for i in "${!bins[@]}"; do
  for target in empty copy; do
    awk -v n="$i" -v bin="${bins[$i]}" -v t="$target" '
      $1 != n || $2 != t {next}
      {k++; w[k]=$4; c[k]=$6; u[k]=$8; s[k]=$10}
      function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
                                    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      END {printf "  %s into %s (%d runs): wall %.3f s, task-clock %.0f ms, user %.0f ms, sys %.0f ms\n", bin, t, k, med(w, k), med(c, k), med(u, k), med(s, k)}' "$log"
  done
done
echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end" >&2
