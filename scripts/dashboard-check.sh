#!/usr/bin/env bash
# Browser check of the dashboard (issue #16): serves the database `make demo` trained (DEMO_DB, default
# .cache/demo.recdb), loads the overview, a user page and the jobs page in headless Chromium (Debian's
# `chromium`, installed when missing), checks the rendered DOM (model table, training curve, a user's
# recommendations with titles) and saves screenshots into OUT (default .cache/dashboard).
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${DEMO_DB:-.cache/demo.recdb}; OUT=${OUT:-.cache/dashboard}; PORT=${PORT:-18081}; USER_ID=${USER_ID:-196}
[ -f "$DB/data.mdb" ] || { echo "no database at $DB: run make demo first" >&2; exit 2; }
command -v chromium >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq chromium >/dev/null; }
swift build -c release --product rdbctl 2>&1 | grep -E "error|Build" | tail -1
mkdir -p "$OUT"
.build/release/rdbctl serve "$DB" --port "$PORT" --read-only > "$OUT/serve.log" 2>&1 & SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
browse() {  # URL NAME: the DOM after scripts ran (virtual time lets the fetches finish), and a screenshot
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=8000 --window-size=1200,1000 \
    --screenshot="$OUT/$2.png" "$1" >/dev/null 2>&1
  chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=8000 --dump-dom "$1" 2>/dev/null > "$OUT/$2.html"
}
fail=0
check() { if grep -q -- "$2" "$OUT/$1.html"; then echo "ok   $1: $3"; else echo "FAIL $1: $3 (no '$2' in $OUT/$1.html)"; fail=1; fi; }
browse "http://127.0.0.1:$PORT/" overview
check overview 'id="models"' "the model table is rendered"
check overview '(active)' "the active version is marked"
check overview 'class="metric">0\.[0-9]' "the versions' test and validation metrics are shown"
check overview '<polyline' "a training curve is drawn"
check overview 'class="stat"' "database statistics are shown"
browse "http://127.0.0.1:$PORT/#/user/$USER_ID" user
check user 'id="recommendations"' "user $USER_ID has recommendations"
check user 'why: model' "the recommendations say which model and source"
check user 'href="#/item/' "history and recommendations link to item pages"
browse "http://127.0.0.1:$PORT/#/jobs" jobs
check jobs 'id="jobs"' "the jobs view is rendered"
echo "screenshots: $OUT/overview.png $OUT/user.png $OUT/jobs.png"
exit $fail
