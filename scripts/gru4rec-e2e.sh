#!/usr/bin/env bash
# GRU4Rec on Amazon Beauty through rdbctl only, with RecBole's GRU4Rec defaults (item size 64, one GRU
# layer of 128, dropout 0.3, AdamW lr 1e-3, batch 256, maxlen 50, full-softmax CE, leave-one-out, full
# ranking, history not masked, early stopping on valid NDCG@10 with patience 10): for each seed, train
# (rdbctl train --json) and evaluate (rdbctl eval --json), then print mean ± std (sample std over seeds).
#   scripts/gru4rec-e2e.sh ITEMS SEEDS [-- extra rdbctl train options]
#   ITEMS: id | text+id (MiniLM title vectors, ../shared/emb/beauty_minilm.npy)     SEEDS: e.g. 0,1,2
# Set NOBUILD=1 to skip `swift build`. The database is kept in .cache/gru4rec-beauty.recdb.
# Reference (../shared/reference/beauty.json, PyTorch, 3 seeds): id 0.0326 ± 0.0011, text+id 0.0407 ± 0.0005.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:?ITEMS}; SEEDS=${2:?SEEDS}
shift $(( $# < 2 ? $# : 2 )); [ "${1:-}" = "--" ] && shift
SHARED=${SHARED:-../shared}
export OMP_WAIT_POLICY=passive
[ -n "${NOBUILD:-}" ] || swift build -c release --product rdbctl >&2
R=.build/release/rdbctl
DB=.cache/gru4rec-beauty.recdb
if [ ! -d "$DB" ]; then
    mkdir -p .cache
    $R init "$DB" >&2
    $R import interactions "$DB" "$SHARED/data/amazon-beauty/Beauty.txt" --format sequences --json >&2
    $R import embeddings "$DB" "$SHARED/emb/beauty_minilm.npy" --space minilm --kind item --json >&2
fi
case $ITEMS in id) SPEC=id ;; text+id) SPEC=text+id:minilm ;; *) echo "ITEMS: id or text+id" >&2; exit 2 ;; esac
rows=()
for SEED in ${SEEDS//,/ }; do
    NAME="gru4rec-${ITEMS/+/}-s$SEED"
    train=$($R train "$DB" --model "$NAME" --arch gru4rec --items "$SPEC" --hidden 64 --blocks 1 --gru-hidden 128 \
        --dropout 0.3 --lr 1e-3 --batch 256 --maxlen 50 --patience 10 --seed "$SEED" "$@" --json)
    plain=$($R eval "$DB" --model "$NAME" --json)
    echo "seed $SEED train: $(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); t.pop("curve",None); print(json.dumps(t))' "$train")" >&2
    rows+=("$(python3 -c 'import json,sys; print(json.dumps([json.loads(a) for a in sys.argv[1:]]))' "$train" "$plain")")
done
python3 - "$ITEMS" "${rows[@]}" <<'PY'
import json, statistics, sys
items, runs = sys.argv[1], [json.loads(r) for r in sys.argv[2:]]
def ms(xs):
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"
t = [r[0] for r in runs]; p = [r[1] for r in runs]
assert all(abs(a["test"]["ndcg@10"] - b["test"]["ndcg@10"]) < 1e-9 for a, b in zip(t, p)), "eval differs from train"
print(f"beauty gru4rec {items} seeds={len(runs)}")
print(f"  test NDCG@10 {ms([x['test']['ndcg@10'] for x in p])}   Recall@10 {ms([x['test']['recall@10'] for x in p])}")
print(f"  valid NDCG@10 {ms([x['valid']['ndcg@10'] for x in t])}")
print("  per seed NDCG@10: " + " ".join("%.4f" % x["test"]["ndcg@10"] for x in p))
print(f"  epochs {[x['epochs'] for x in t]}  best {[x['best_epoch'] for x in t]}  stop {[x.get('stop_reason') for x in t]}")
print(f"  s/epoch {ms([x['seconds_per_epoch'] for x in t])}")
PY
