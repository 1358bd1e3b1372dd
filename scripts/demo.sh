#!/usr/bin/env bash
# The main job, end to end without Python at run time:
#   MovieLens-100K → RecDB → MiniLM title embeddings computed in the store → SASRec (text+id) trained
#   in the store → recommendations and similar items → a new movie added by title alone is embedded,
#   mapped into the model's space and recommendable at once, without retraining.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-ml100k.sh >/dev/null
scripts/fetch-minilm.sh >/dev/null
swift build -c release --product rdbctl 2>&1 | grep -E "error|Build" | tail -2
R=.build/release/rdbctl
DB=${DEMO_DB:-.cache/demo.recdb}
rm -rf "$DB"
set -x
$R init "$DB"
$R import interactions "$DB" .cache/ml-100k/ml-100k.inter --format recbole
$R import items "$DB" .cache/ml-100k/ml-100k.item --format recbole --id-column item_id --title-column movie_title
$R import users "$DB" .cache/ml-100k/ml-100k.user --format recbole --id-column user_id
$R stats "$DB"
$R show user "$DB" 196 --last 5
$R embed "$DB" --space minilm --encoder .cache/all-MiniLM-L6-v2 --template '{title}. {class}'
$R train "$DB" --model sasrec --arch sasrec --items text+id:minilm --epochs ${DEMO_EPOCHS:-15} --patience 5
$R models "$DB"
$R recommend "$DB" 196 -k 10
$R index build "$DB" --space minilm --type HNSW32
$R similar "$DB" 50 --space minilm -k 5
$R similar "$DB" 50 --model sasrec -k 5
# A movie the model has never seen, added by its title only: embedded on insert, mapped through the
# model's adapter, indexed — and immediately similar to its siblings and recommendable.
$R put-item "$DB" new-1 --title "Star Wars: Episode IV - A New Hope (Special Edition)" --attributes '{"class": "Action Adventure Sci-Fi"}'
$R similar "$DB" new-1 --model sasrec -k 5
$R similar "$DB" new-1 --space minilm -k 5
$R recommend "$DB" 196 -k 4 --allow new-1 --allow 172 --allow 181 --allow 1
$R verify "$DB"
set +x
echo
echo "Look at the result in a browser (dashboard at /, JSON API under /v1, schemas/openapi.json):"
echo "  $R serve $DB        # then open http://127.0.0.1:8080/"
