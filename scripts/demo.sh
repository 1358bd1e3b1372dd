#!/usr/bin/env bash
# The main job: MovieLens-100K → RecDB → train SASRec inside the store → recommend and find similar items.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-ml100k.sh >/dev/null
swift build -c release --product rdbctl 2>&1 | grep -E "error|warning: unre|Compiling|Build complete" | tail -3
R=.build/release/rdbctl
DB=${DEMO_DB:-.cache/demo.recdb}
rm -rf "$DB"
set -x
$R init "$DB"
$R import interactions "$DB" .cache/ml-100k/ml-100k.inter --format recbole
$R import items "$DB" .cache/ml-100k/ml-100k.item --format recbole --id-column item_id --title-column movie_title
$R import users "$DB" .cache/ml-100k/ml-100k.user --format recbole --id-column user_id
$R stats "$DB"
$R show user "$DB" 196 --last 10
$R train "$DB" --model sasrec --arch sasrec --items id --epochs ${DEMO_EPOCHS:-15} --patience 5
$R models "$DB"
$R recommend "$DB" 196 -k 10
$R similar "$DB" 50 --model sasrec -k 5
$R verify "$DB"
