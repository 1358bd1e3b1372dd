#!/bin/bash
# Interleaved speed comparison: GRU4Rec training through rdbctl vs the PyTorch reference's GRU4Rec
# (../shared/reference/seqrec_ref.py --model gru4rec), id items on Beauty, RecBole's defaults (item size 64,
# one GRU layer of 128, dropout 0.3, batch 256, maxlen 50, full-softmax CE), CPU, 2 threads each, EPOCHS
# epochs per run, ROUNDS rounds (A/B interleaved so that both see the same machine load). Needs the database
# of scripts/gru4rec-e2e.sh (.cache/gru4rec-beauty.recdb); each rdbctl run adds a version of model "speed".
#   scripts/gru4rec-speed.sh [EPOCHS=1] [ROUNDS=2]
# Prints per run: implementation, round, median train seconds/epoch (validation excluded), CPU seconds of
# the whole process (training + validation + test), load average before the run.
set -euo pipefail
EPOCHS=${1:-1}; ROUNDS=${2:-2}
DATA=../shared/data/amazon-beauty/Beauty.txt
PY=${PYTHON:-$HOME/refvenv/bin/python}
R=.build/release/rdbctl
DB=.cache/gru4rec-beauty.recdb
export OMP_WAIT_POLICY=passive
for r in $(seq 1 "$ROUNDS"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(bash -c "$R train $DB --model speed --arch gru4rec --items id --hidden 64 --blocks 1 --gru-hidden 128 --dropout 0.3 --epochs $EPOCHS --threads 2 --json; python3 -c 'import resource; r = resource.getrusage(resource.RUSAGE_CHILDREN); print(round(r.ru_utime + r.ru_stime, 1))'")
  echo "rdbctl  round $r s/epoch $(echo "$out" | head -1 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["seconds_per_epoch"], 2))') cpu_s $(echo "$out" | tail -1) load $load"
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(bash -c "$PY ../shared/reference/seqrec_ref.py --data $DATA --model gru4rec --item-mode id --blocks 1 --gru-hidden 128 --dropout 0.3 --threads 2 --max-epochs $EPOCHS; python3 -c 'import resource; r = resource.getrusage(resource.RUSAGE_CHILDREN); print(round(r.ru_utime + r.ru_stime, 1))'")
  echo "pytorch round $r s/epoch $(echo "$out" | grep '^{' | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["train_s_per_epoch"])') cpu_s $(echo "$out" | tail -1) load $load"
done
