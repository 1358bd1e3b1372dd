#!/usr/bin/env bash
# HTTP load on the Beauty SASRec model (issue #16): wrk, 2 threads, 64 connections, DURATION seconds (default 30)
# on GET /v1/users/{random user}/recommendations?k=10 against `rdbctl serve`, beside the in-process throughput
# of `db.recommend` on all cores (serve-bench --throughput-only) in the same run, alternated ROUNDS times
# (default 2); then the same HTTP load while a writer posts event batches as fast as it can.
# Needs ../shared (Beauty). Installs wrk from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-18080}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
swift build -c release --product rdbctl --product serve-bench 2>&1 | grep -E "error|Build" | tail -2
R=.build/release/rdbctl; B=.build/release/serve-bench
WORK=.cache/bench-serve; DB=$WORK/beauty.recdb
OMP_WAIT_POLICY=passive $B --throughput-only >/dev/null   # builds the Beauty database and model once
stat_of() { $R stats "$DB" --json | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
# serve-bench adds one user ("bench-user") after Beauty's users "1"…"N": ask only for those.
USERS=$(( $(stat_of users) - 1 ))
LUA=$(mktemp); trap 'rm -f "$LUA"; kill $SERVER 2>/dev/null || true' EXIT
cat > "$LUA" <<LUAEOF
math.randomseed(7)
request = function() return wrk.format("GET", "/v1/users/" .. math.random(1, $USERS) .. "/recommendations?k=10") end
LUAEOF
OMP_WAIT_POLICY=passive $R serve "$DB" --port $PORT > "$WORK/serve.log" 2>&1 & SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
run_wrk() { wrk -t2 -c64 -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$PORT" | awk '
  /Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
  END {printf "HTTP: %s req/s, p50 %s, p99 %s, non-2xx %s\n", rps, p50, p99, bad+0}'; }
echo "wrk -t2 -c64 -d${DURATION}s on GET /v1/users/{random of $USERS}/recommendations?k=10; in-process: serve-bench --throughput-only (2 cores)"
for round in $(seq "$ROUNDS"); do
  echo "round $round"; run_wrk
  OMP_WAIT_POLICY=passive $B --throughput-only | sed 's/^/  /'
done
echo "with a concurrent writer (POST /v1/events, batches of 10, back to back):"
ITEMS=$(stat_of items)
( n=0; end=$((SECONDS + DURATION)); while [ $SECONDS -lt $end ]; do
    body='{"events":['; for i in $(seq 10); do
      body+="{\"user\":\"$(( (RANDOM * 32768 + RANDOM) % USERS + 1 ))\",\"item\":\"$(( (RANDOM * 32768 + RANDOM) % ITEMS + 1 ))\"}"
      [ "$i" -lt 10 ] && body+=','; done; body+=']}'
    curl -sf -X POST -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$PORT/v1/events" >/dev/null && n=$((n + 1))
  done; echo "  writer: $n batches of 10 events committed in ${DURATION}s" ) &
WRITER=$!
run_wrk
wait $WRITER
