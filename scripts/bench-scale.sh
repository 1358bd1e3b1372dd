#!/usr/bin/env bash
# Large-catalogue training (issue #14), release builds, each part comparing against its peer in the same run:
#   scripts/bench-scale.sh beauty   Beauty SASRec, full CE and sampled softmax alternately, seeds $SEEDS (needs ../shared);
#                                   ITEMS=id (default), text or text+id (the frozen MiniLM table ../shared/emb/beauty_minilm.npy
#                                   through the trainable adapter, as LLM2Rec)
#   scripts/bench-scale.sh quality  generated data, 50k items: CE then sampled per seed, test NDCG@10 ratio
#   scripts/bench-scale.sh epoch    generated data, 1M events: one sampled epoch at 50k, 200k, 1M items (full CE at 50k between two sampled runs)
#   scripts/bench-scale.sh torch    RecDB and the PyTorch sampled-softmax peer alternated, one epoch each ($PAIRS pairs)
#   scripts/bench-scale.sh table    the README's scaling table through rdbctl: for each events × items cell in $CELLS, one
#                                   sampled epoch (`rdbctl train --windows all --epochs 1 --index Flat`), its validation, an
#                                   HNSW32 `rdbctl index build` of the item vectors, `recommend` p50/p99 (scale-bench), peak RSS.
#                                   PREP_ONLY=1 only generates and imports the databases (do that before the quiet window).
#   scripts/bench-scale.sh          beauty, quality and epoch
# Long: run it on a quiet machine (NICE=10 by default, so it yields to interactive work).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
SEEDS=${SEEDS:-"0 1 2"}
NEGATIVES=${NEGATIVES:-2048}
ITEMS=${ITEMS:-id}
NICE=${NICE:-10}
SHARED=${SHARED:-../shared}
export OMP_WAIT_POLICY=passive
BIN=${BIN:-.build/release}
if [ "$PART" = table ]; then
    [ -n "${SKIP_BUILD:-}" ] || swift build -c release --product rdbctl >&2
    [ -n "${SKIP_BUILD:-}" ] || swift build -c release --product scale-bench >&2
elif [ "$PART" != torch ]; then
    swift build -c release --product train-scale-bench >&2
    swift build -c release --product learn-bench >&2
fi
OUT=.cache/bench-scale
# generated_database BASE ROWS ITEMS: BASE.txt from `rdbctl generate --format sequences` (seed 42) and BASE.recdb with
# the whole catalogue imported first as items (so a model scores all of it, seen or not), then the events.
generated_database() {
    "$BIN/rdbctl" generate "$1.txt" --rows "$2" --items "$3" --format sequences --json >/dev/null
    python3 -c "import sys; n=int(sys.argv[1]); f=open(sys.argv[2],'w'); f.write('item_id\ttitle\n'); [f.write(f'i{i}\tt{i}\n') for i in range(n)]" "$3" "$1.items.tsv"
    rm -rf "$1.recdb.tmp"
    "$BIN/rdbctl" init "$1.recdb.tmp" >/dev/null
    "$BIN/rdbctl" import items "$1.recdb.tmp" "$1.items.tsv" --format tsv --id-column item_id --title-column title --json >/dev/null
    "$BIN/rdbctl" import interactions "$1.recdb.tmp" "$1.txt" --format sequences --json >/dev/null
    rm -f "$1.items.tsv"
    mv "$1.recdb.tmp" "$1.recdb"
}
mkdir -p "$OUT"

if [ "$PART" = beauty ] || [ "$PART" = all ]; then
    BEAUTY=$SHARED/data/amazon-beauty/Beauty.txt
    EMB=()
    [ "$ITEMS" = id ] || EMB=(--emb "$SHARED/emb/beauty_minilm.npy")
    # Result files are named by item mode (id keeps the old names).
    TAG=$([ "$ITEMS" = id ] && echo "" || echo "-${ITEMS/+/-}")
    if [ -f "$BEAUTY" ]; then
        for s in $SEEDS; do
            for loss in ce sampled; do
                nice -n "$NICE" .build/release/learn-bench --data "$BEAUTY" --arch sasrec --items "$ITEMS" "${EMB[@]}" --loss $loss \
                    --negatives "$NEGATIVES" --seed "$s" --threads 2 --quiet > "$OUT/beauty$TAG-$loss-$s.json"
            done
        done
        python3 - "$OUT" "$TAG" $SEEDS <<'PY'
import json, statistics, sys
out, tag, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = {l: [json.load(open(f"{out}/beauty{tag}-{l}-{s}.json")) for s in seeds] for l in ("ce", "sampled")}
for l, rs in rows.items():
    n = [r["test"]["ndcg@10"] for r in rs]; sec = [r["seconds_per_epoch"] for r in rs]
    sd = statistics.stdev(n) if len(n) > 1 else 0.0
    print(f"beauty{tag} {l:8s} test NDCG@10 {statistics.mean(n):.4f} ± {sd:.4f} ({', '.join(f'{x:.4f}' for x in n)})  "
          f"epochs {[r['epochs'] for r in rs]}  s/epoch median {statistics.median(sec):.2f}")
ratio = statistics.mean(r["test"]["ndcg@10"] for r in rows["sampled"]) / statistics.mean(r["test"]["ndcg@10"] for r in rows["ce"])
print(f"beauty{tag} sampled / ce = {ratio:.3f} (goal ≥ 0.97)")
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
    # SKIP_BUILD=1 uses the rdbctl already built (e.g. by `make test`'s -enable-testing build, which this would redo).
    [ -n "${SKIP_BUILD:-}" ] || swift build -c release --product rdbctl >&2
    D="$OUT/torch-$TORCH_ROWS-$TORCH_ITEMS"
    [ -d "$D.recdb" ] || generated_database "$D" "$TORCH_ROWS" "$TORCH_ITEMS"
    : > "$OUT/torch.jsonl"
    for p in $(seq "$PAIRS"); do
        # Each RecDB run commits ~1 GB (weights, item vectors, index); sync first so no run shares the machine
        # with the write-back of the one before.
        sync
        echo "pair $p: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        nice -n "$NICE" .build/release/rdbctl train "$D.recdb" --model pair$p --windows all --epochs 1 --negatives "$NEGATIVES" \
            --threads 2 --eval-users 100 --index Flat --json \
            | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'engine':'recdb','pair':$p,'seconds_per_epoch':d['seconds_per_epoch'],'windows':d['train_examples'],'steps':d['steps'],'items':d['items']}))" \
            | tee -a "$OUT/torch.jsonl"
        sync
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
if [ "$PART" = table ]; then
    # Each cell: `rdbctl generate --format sequences` (seed 42), the whole catalogue imported first as items (so the model
    # scores all of it, seen or not), then the events. Timings come from rdbctl's own JSON (train s/epoch, median validation
    # seconds) and from the wall clock of `rdbctl index build`; peak RSS is GNU time's maximum resident set of `rdbctl train`.
    CELLS=${CELLS:-"1000000x50000 1000000x200000 1000000x1000000 5000000x50000 5000000x200000 5000000x1000000 20000000x50000 20000000x200000 20000000x1000000"}
    [ -x /usr/bin/time ] || { echo "table: needs GNU time (apt-get install time)" >&2; exit 1; }
    for cell in $CELLS; do
        rows=${cell%x*}; items=${cell#*x}; D="$OUT/table-$rows-$items"
        if [ ! -d "$D.recdb" ]; then
            generated_database "$D" "$rows" "$items"
            rm -f "$D.txt"
            echo "prepared $D.recdb" >&2
        fi
        [ -z "${PREP_ONLY:-}" ] || continue
        model=t$(date +%s)
        echo "cell $rows events x $items items: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        /usr/bin/time -f '%M %e' -o "$D.train.time" "$BIN/rdbctl" train "$D.recdb" --model "$model" --loss sampled --negatives "$NEGATIVES" \
            --windows all --epochs 1 --index Flat --threads 2 --json > "$D.train.json"
        /usr/bin/time -f '%M %e' -o "$D.index.time" "$BIN/rdbctl" index build "$D.recdb" --space "$model@1" --type HNSW32 --ef-search 128 --json > "$D.index.json"
        "$BIN/scale-bench" "$D.recdb" --samples 2000 --recommend "$model" --recommend-samples 2000 | grep '"bench":"recommend"' > "$D.recommend.json"
        python3 - "$D" "$rows" "$items" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee -a "$OUT/table.jsonl"
import json, sys
d, rows, items, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = json.load(open(d + ".train.json")); rec = json.loads(open(d + ".recommend.json").read())
rss_kb, train_wall = open(d + ".train.time").read().split()
irss_kb, index_wall = open(d + ".index.time").read().split()
print(json.dumps({"events": rows, "items": items, "train_s_per_epoch": round(t["seconds_per_epoch"], 2),
    "eval_s": round(t["evaluation_seconds_per_epoch"], 2), "train_wall_s": float(train_wall), "peak_rss_gib": round(int(rss_kb) / 2**20, 2),
    "index_build_s": float(index_wall), "index_peak_rss_gib": round(int(irss_kb) / 2**20, 2),
    "recommend_p50_ms": rec["p50_ms"], "recommend_p99_ms": rec["p99_ms"], "windows": t["train_examples"], "steps": t["steps"],
    "scored_items": t["items"], "load_after": load}))
PY
    done
fi
