#!/bin/bash
# Interleaved speed comparison: Learn (learn-bench) vs the PyTorch reference, SASRec id on Beauty,
# same configuration, CPU, 2 threads, N epochs each, ROUNDS rounds (A/B interleaved so that both see
# the same machine load). Run from the package root:
#   Benchmarks/LearnBench/compare_speed.sh [EPOCHS=2] [ROUNDS=2]
# Prints one line per run: implementation, round, median train seconds/epoch, eval seconds.
set -euo pipefail
EPOCHS=${1:-2}; ROUNDS=${2:-2}
DATA=../shared/data/amazon-beauty/Beauty.txt
PY=${PYTHON:-$HOME/refvenv/bin/python}
swift build -c release --product learn-bench >/dev/null
BIN=$(swift build -c release --show-bin-path)/learn-bench
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BIN" --data "$DATA" --arch sasrec --items id --max-epochs "$EPOCHS" --quiet |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print("learn  ", '"$r"', d["seconds_per_epoch"], d["eval_seconds_per_epoch"], "GFLOP/s", round(d["train_gflops"],1))'
  "$PY" ../shared/reference/seqrec_ref.py --data "$DATA" --model sasrec --item-mode id --threads 2 --max-epochs "$EPOCHS" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print("pytorch", '"$r"', d["train_s_per_epoch"], d["eval_s_per_epoch"])'
done
