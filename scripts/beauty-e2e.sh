#!/usr/bin/env bash
# Amazon Beauty end to end through rdbctl only (import → train SASRec id → eval), then Learn's own
# driver (learn-bench) on the same file with the same configuration and seed; the test NDCG@10 of the
# two must agree (same data, same ids — Beauty's ids are dense in first-appearance order — and
# deterministic training).
#   scripts/beauty-e2e.sh [SEED] [MAX_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-0}
EPOCHS=${2:-200}
SHARED=${SHARED:-../shared}
BEAUTY=$SHARED/data/amazon-beauty
[ -f "$BEAUTY/Beauty.txt" ] || { echo "needs $BEAUTY/Beauty.txt" >&2; exit 2; }
swift build -c release --product rdbctl >&2
swift build -c release --product learn-bench >&2
R=.build/release/rdbctl
DB=.cache/beauty-e2e.recdb
rm -rf "$DB"
$R init "$DB" >&2
$R import interactions "$DB" "$BEAUTY/Beauty.txt" --format sequences --json >&2
$R import items "$DB" "$BEAUTY/beauty_items.tsv" --format tsv --id-column item_id --title-column title --json >&2
train=$($R train "$DB" --model sasrec --arch sasrec --items id --seed "$SEED" --epochs "$EPOCHS" --json)
eval=$($R eval "$DB" --model sasrec --json)
learn=$(.build/release/learn-bench --data "$BEAUTY/Beauty.txt" --arch sasrec --items id --seed "$SEED" --max-epochs "$EPOCHS" --quiet)
echo "rdbctl train: $train"
echo "rdbctl eval:  $eval"
echo "learn-bench:  $learn"
python3 - "$train" "$eval" "$learn" <<'PY'
import json, sys
t, e, l = (json.loads(x) for x in sys.argv[1:4])
rows = [("rdbctl train", t["test"]["ndcg@10"], t["test"]["recall@10"], t["epochs"]),
        ("rdbctl eval", e["test"]["ndcg@10"], e["test"]["recall@10"], e["epochs"]),
        ("learn-bench", l["test"]["ndcg@10"], l["test"]["recall@10"], l["epochs"])]
for name, n, r, ep in rows:
    print(f"{name:13s} test NDCG@10 {n:.5f}  Recall@10 {r:.5f}  epochs {ep}")
same = abs(t["test"]["ndcg@10"] - l["test"]["ndcg@10"]) < 1e-9 and abs(e["test"]["ndcg@10"] - t["test"]["ndcg@10"]) < 1e-9
print("MATCH" if same else "DIFFERENT")
sys.exit(0 if same else 1)
PY
