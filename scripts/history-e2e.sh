#!/usr/bin/env bash
# Whole-history training end to end through rdbctl only: import a data set once, then for each seed
# train (rdbctl train --json) and evaluate (rdbctl eval --json, plain and with --exclude-seen), and
# print mean ± std (sample std over seeds) of the test metrics and the training time per epoch.
#   scripts/history-e2e.sh DATASET SEEDS WINDOWS [ARCH] [-- extra rdbctl train options]
#   DATASET: ml-100k | ml-latest-small | beauty     SEEDS: e.g. 0,1,2     WINDOWS: last | all | stride:N
#   e.g. scripts/history-e2e.sh ml-100k 0,1,2 all sasrec
#        scripts/history-e2e.sh ml-100k 0 all bert4rec -- --eval-every 20 --min-steps 1000
# Set NOBUILD=1 to skip `swift build`; TAG=x adds x to the model names (runs of the same windows with
# other options can then share the database). The database is kept in .cache/history-DATASET.recdb.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:?DATASET}; SEEDS=${2:?SEEDS}; WINDOWS=${3:?WINDOWS}; ARCH=${4:-sasrec}
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
SHARED=${SHARED:-../shared}
export OMP_WAIT_POLICY=passive
[ -n "${NOBUILD:-}" ] || swift build -c release --product rdbctl >&2
R=.build/release/rdbctl
DB=.cache/history-$DATASET.recdb
if [ ! -d "$DB" ]; then
    mkdir -p .cache
    $R init "$DB" >&2
    case $DATASET in
        ml-100k) $R import interactions "$DB" "$SHARED/data/ml-100k/ml-100k.inter" --format recbole --json >&2 ;;
        ml-latest-small) $R import interactions "$DB" "$SHARED/data/ml-latest-small/ratings.csv" --format csv \
                             --user-column userId --item-column movieId --time-column timestamp --json >&2 ;;
        beauty) $R import interactions "$DB" "$SHARED/data/amazon-beauty/Beauty.txt" --format sequences --json >&2 ;;
        *) echo "unknown data set $DATASET" >&2; rm -rf "$DB"; exit 2 ;;
    esac
fi
rows=()
for SEED in ${SEEDS//,/ }; do
    NAME="$ARCH-${WINDOWS//:/}${TAG:+-$TAG}-s$SEED"
    train=$($R train "$DB" --model "$NAME" --arch "$ARCH" --items id --windows "$WINDOWS" --seed "$SEED" "$@" --json)
    plain=$($R eval "$DB" --model "$NAME" --json)
    seen=$($R eval "$DB" --model "$NAME" --exclude-seen --json)
    echo "seed $SEED train: $(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); t.pop("curve",None); print(json.dumps(t))' "$train")" >&2
    rows+=("$(python3 -c 'import json,sys; print(json.dumps([json.loads(a) for a in sys.argv[1:]]))' "$train" "$plain" "$seen")")
done
python3 - "$DATASET" "$ARCH" "$WINDOWS" "${rows[@]}" <<'PY'
import json, statistics, sys
dataset, arch, windows, runs = sys.argv[1], sys.argv[2], sys.argv[3], [json.loads(r) for r in sys.argv[4:]]
def ms(xs):
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"
t = [r[0] for r in runs]; p = [r[1] for r in runs]; s = [r[2] for r in runs]
assert all(abs(a["test"]["ndcg@10"] - b["test"]["ndcg@10"]) < 1e-9 for a, b in zip(t, p)), "eval differs from train"
print(f"{dataset} {arch} id windows={windows} seeds={len(runs)}")
print(f"  test NDCG@10 {ms([x['test']['ndcg@10'] for x in p])}   Recall@10 {ms([x['test']['recall@10'] for x in p])}")
print(f"  test NDCG@10 excluding seen {ms([x['test']['ndcg@10'] for x in s])}   Recall@10 {ms([x['test']['recall@10'] for x in s])}")
print(f"  valid NDCG@10 {ms([x['valid']['ndcg@10'] for x in t])}")
print("  per seed NDCG@10: " + " ".join("%.4f" % x["test"]["ndcg@10"] for x in p))
print(f"  train examples {t[0].get('train_examples')}  epochs {[x['epochs'] for x in t]}  best {[x['best_epoch'] for x in t]}  steps {[x.get('steps') for x in t]}")
print(f"  s/epoch {ms([x['seconds_per_epoch'] for x in t])}")
PY
