#!/usr/bin/env bash
# Large-catalogue training (issue #14), release builds, each part comparing against its peer in the same run:
#   scripts/bench-scale.sh beauty   Beauty SASRec id, full CE and sampled softmax alternately, seeds $SEEDS (needs ../shared)
#   scripts/bench-scale.sh quality  generated data, 50k items: CE then sampled per seed, test NDCG@10 ratio
#   scripts/bench-scale.sh epoch    generated data, 1M events: one sampled epoch at 50k, 200k, 1M items (full CE at 50k between two sampled runs)
#   scripts/bench-scale.sh torch    RecDB and the PyTorch sampled-softmax peer alternated, one epoch each ($PAIRS pairs)
#   scripts/bench-scale.sh          beauty, quality and epoch
# Long: run it on a quiet machine (NICE=10 by default, so it yields to interactive work).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
SEEDS=${SEEDS:-"0 1 2"}
NEGATIVES=${NEGATIVES:-2048}
NICE=${NICE:-10}
SHARED=${SHARED:-../shared}
export OMP_WAIT_POLICY=passive
if [ "$PART" != torch ]; then
    swift build -c release --product train-scale-bench >&2
    swift build -c release --product learn-bench >&2
fi
OUT=.cache/bench-scale
mkdir -p "$OUT"

if [ "$PART" = beauty ] || [ "$PART" = all ]; then
    BEAUTY=$SHARED/data/amazon-beauty/Beauty.txt
    if [ -f "$BEAUTY" ]; then
        for s in $SEEDS; do
            for loss in ce sampled; do
                nice -n "$NICE" .build/release/learn-bench --data "$BEAUTY" --arch sasrec --items id --loss $loss \
                    --negatives "$NEGATIVES" --seed "$s" --threads 2 --quiet > "$OUT/beauty-$loss-$s.json"
            done
        done
        python3 - "$OUT" $SEEDS <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = {l: [json.load(open(f"{out}/beauty-{l}-{s}.json")) for s in seeds] for l in ("ce", "sampled")}
for l, rs in rows.items():
    n = [r["test"]["ndcg@10"] for r in rs]; sec = [r["seconds_per_epoch"] for r in rs]
    sd = statistics.stdev(n) if len(n) > 1 else 0.0
    print(f"beauty {l:8s} test NDCG@10 {statistics.mean(n):.4f} ± {sd:.4f} ({', '.join(f'{x:.4f}' for x in n)})  "
          f"epochs {[r['epochs'] for r in rs]}  s/epoch median {statistics.median(sec):.2f}")
ratio = statistics.mean(r["test"]["ndcg@10"] for r in rows["sampled"]) / statistics.mean(r["test"]["ndcg@10"] for r in rows["ce"])
print(f"beauty sampled / ce = {ratio:.3f} (goal ≥ 0.97)")
PY
    else
        echo "beauty: $BEAUTY not found, skipped" >&2
    fi
fi
if [ "$PART" = quality ] || [ "$PART" = all ]; then
    nice -n "$NICE" .build/release/train-scale-bench quality --items 50000 --users 8000 --length 20 --epochs 15 --patience 2 \
        --seeds "$(echo $SEEDS | tr ' ' ,)" --negatives "$NEGATIVES" | tee "$OUT/quality.jsonl"
fi
if [ "$PART" = epoch ] || [ "$PART" = all ]; then
    nice -n "$NICE" .build/release/train-scale-bench epoch --items 50000,200000,1000000 --users 5000 --length 200 --ce \
        --negatives "$NEGATIVES" | tee "$OUT/epoch.jsonl"
fi
if [ "$PART" = torch ]; then
    # RecDB (rdbctl train, one epoch) and the PyTorch peer (tools/sampled_softmax_torch.py, same model, windows,
    # loss and data, 2 threads, sparse item-table updates) alternated, $PAIRS pairs, on a generated data set of
    # $TORCH_ROWS events over a $TORCH_ITEMS-item catalogue (every item imported, so both score the same catalogue).
    PAIRS=${PAIRS:-2}; TORCH_ROWS=${TORCH_ROWS:-200000}; TORCH_ITEMS=${TORCH_ITEMS:-1000000}
    PY=${PY:-/root/refvenv/bin/python}
    swift build -c release --product rdbctl >&2
    D="$OUT/torch-$TORCH_ROWS-$TORCH_ITEMS"
    if [ ! -d "$D.recdb" ]; then
        .build/release/rdbctl generate "$D.txt" --rows "$TORCH_ROWS" --items "$TORCH_ITEMS" --format sequences >&2
        python3 -c "import sys; n=int(sys.argv[1]); f=open(sys.argv[2],'w'); f.write('item_id\ttitle\n'); [f.write(f'i{i}\tt{i}\n') for i in range(n)]" "$TORCH_ITEMS" "$D.items.tsv"
        .build/release/rdbctl init "$D.recdb.tmp" >&2
        .build/release/rdbctl import items "$D.recdb.tmp" "$D.items.tsv" --format tsv --id-column item_id --title-column title >&2
        .build/release/rdbctl import interactions "$D.recdb.tmp" "$D.txt" --format sequences >&2
        mv "$D.recdb.tmp" "$D.recdb"
    fi
    : > "$OUT/torch.jsonl"
    for p in $(seq "$PAIRS"); do
        echo "pair $p: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        nice -n "$NICE" .build/release/rdbctl train "$D.recdb" --model pair$p --windows all --epochs 1 --negatives "$NEGATIVES" \
            --threads 2 --eval-users 100 --index Flat --json \
            | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'engine':'recdb','pair':$p,'seconds_per_epoch':d['seconds_per_epoch'],'windows':d['train_examples'],'steps':d['steps'],'items':d['items']}))" \
            | tee -a "$OUT/torch.jsonl"
        nice -n "$NICE" "$PY" tools/sampled_softmax_torch.py --data "$D.txt" --items "$TORCH_ITEMS" --negatives "$NEGATIVES" --threads 2 \
            | tee -a "$OUT/torch.jsonl"
    done
    python3 - "$OUT/torch.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = statistics.median(x["seconds_per_epoch"] for x in rows if x["engine"] == "recdb")
t = statistics.median(x["seconds_per_epoch"] for x in rows if x["engine"] == "pytorch")
print(f"s/epoch median: RecDB {r:.1f}, PyTorch {t:.1f}: RecDB {t / r:.2f}x faster")
PY
fi
