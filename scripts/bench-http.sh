#!/usr/bin/env bash
# Issue #16's load check for `rdbctl serve`, in one run, on the Beauty SASRec model:
#  1. ROUNDS times, alternated: wrk (WRK_THREADS threads, CONNECTIONS connections, DURATION s) on
#     GET /v1/users/{user}/recommendations?k=10 (every user once, shuffled: scripts/wrk-recommendations.lua)
#     -> req/s, p50, p99; then the in-process peer, `db.recommend` on all cores (serve-bench --throughput-only)
#     for INPROC_SECONDS -> users/s, and the ratio.
#  2. The same wrk load, then the same in-process run on the server's database, while a writer (a second wrk,
#     one connection) posts batches of 10 random events to POST /v1/events back to back throughout; then a check
#     that every batch it was answered 200 for is in the database.
# For every wrk run it prints the CPU seconds the server, wrk and everything else on the machine used (from
# /proc), so a figure from a shared machine says how shared it was.
# Defaults are the issue's: DURATION=30 CONNECTIONS=64 (after a WARMUP=5 s run, reported on its own); WRK_THREADS=1 (see README: on 2 cores a second wrk
# thread takes CPU from the server). RDBCTL=path serves with that binary (A/B runs); NOBUILD=1 uses the
# binaries in .build/release as they are (`make test` builds them with other flags: a plain build recompiles all).
# Needs ../shared (Beauty). Installs wrk from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-18080}; CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}; INPROC_SECONDS=${INPROC_SECONDS:-10}; BATCH=${BATCH:-10}; WARMUP=${WARMUP:-5}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
if [ -z "${NOBUILD:-}" ]; then
  [ -n "${RDBCTL:-}" ] || swift build -c release --product rdbctl 2>&1 | grep -E "error|Build" | tail -2
  swift build -c release --product serve-bench 2>&1 | grep -E "error|Build" | tail -2
fi
R=${RDBCTL:-.build/release/rdbctl}; B=.build/release/serve-bench
WORK=.cache/bench-serve; SOURCE=$WORK/beauty.recdb; HTTPWORK=$WORK/http; DB=$HTTPWORK/beauty.recdb
export OMP_WAIT_POLICY=passive
$B --throughput-only >/dev/null   # builds the Beauty database and model once
# The server gets a fresh copy, so the events the writer posts never reach serve-bench's database.
rm -rf "$HTTPWORK"; mkdir -p "$HTTPWORK"; cp -r "$SOURCE" "$DB"
stat_of() { $R stats "$DB" --json | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
# serve-bench adds one user ("bench-user") after Beauty's users "1"…"N": ask only for those.
USERS=$(( $(stat_of users) - 1 )); ITEMS=$(stat_of items); EVENTS_BEFORE=$(stat_of interactions)
TMP=$(mktemp -d); SERVER=""
trap 'rm -rf "$TMP"; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; true' EXIT
cat > "$TMP/write.lua" <<LUAEOF
math.randomseed(11)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local rows = {}
  for i = 1, $BATCH do
    rows[i] = '{"user":"' .. math.random(1, $USERS) .. '","item":"' .. math.random(1, $ITEMS) .. '"}'
  end
  return wrk.format(nil, "/v1/events", nil, '{"events":[' .. table.concat(rows, ",") .. ']}')
end
LUAEOF

$R serve "$DB" --port "$PORT" > "$WORK/serve.log" 2>&1 & SERVER=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "the server did not start:"; cat "$WORK/serve.log"; exit 1; }

# CPU ticks (1/100 s): the server's, and the whole machine's busy and total.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat; }
# wrk_run LABEL LUA THREADS CONNECTIONS [quiet [SECONDS]]: prints "LABEL: R req/s, p50 X, p99 Y, non-2xx N (n requests)"
# and, unless quiet, the CPU the server, this wrk and everything else on the machine used meanwhile.
wrk_run() {
  local label=$1 lua=$2 threads=$3 connections=$4 quiet=${5:-} seconds=${6:-$DURATION} s0 m0 m1 s1 wu ws
  s0=$(proc_ticks "$SERVER"); m0=$(machine_ticks)
  { TIMEFORMAT='%U %S'; time wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$lua" "http://127.0.0.1:$PORT" -- "$USERS" > "$TMP/$label.out"; } 2> "$TMP/$label.time"
  s1=$(proc_ticks "$SERVER"); m1=$(machine_ticks)
  awk -v l="$label" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF} /requests in/ {n=$1}
    END {printf "%s: %s req/s, p50 %s, p99 %s, non-2xx %d (%d requests)\n", l, rps, p50, p99, bad+0, n}' "$TMP/$label.out"
  [ -z "$quiet" ] || return 0
  read -r wu ws < "$TMP/$label.time"
  echo "$s0 $s1 $m0 $m1 $wu $ws $(awk '/requests in/ {print $1}' "$TMP/$label.out")" | awk -v d="$DURATION" '{
    server = ($2 - $1) / 100; wrk = $7 + $8; busy = ($5 - $3) / 100; total = ($6 - $4) / 100
    printf "  CPU over %d s (%.0f core-s on the machine): server %.1f (%.0f us a request), this wrk %.1f (%.0f us a request), everything else %.1f, idle %.1f core-s\n",
      d, total, server, server * 1e6 / $9, wrk, wrk * 1e6 / $9, busy - server - wrk, total - busy
    printf "%f %f\n", server * 1e6 / $9, wrk * 1e6 / $9 > "/dev/stderr"}' 2> "$TMP/$label.cpu"
}
rps_of() { awk '/Requests\/sec/ {print $2}' "$TMP/$1.out"; }
# ratios LABEL INPROC_LINE. The throughput ratio is the issue's figure; the CPU ratio (a recommendation's CPU
# in-process over the server's and wrk's CPU for one request) is what it would be with the two cores to themselves.
ratios() {
  echo "$(rps_of "$1") $(echo "$2" | grep -o '[0-9]* users/s' | cut -d' ' -f1) $(cat "$TMP/$1.cpu") $(echo "$2" | grep -o '[0-9]* us CPU' | cut -d' ' -f1)" |
    awk '{printf "  HTTP / in-process: %.0f %% by throughput; by CPU a request, in-process %.0f us / (server %.0f + wrk %.0f us) = %.0f %%\n", 100 * $1 / $2, $5, $3, $4, 100 * $5 / ($3 + $4)}'
}

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
echo "reads: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency, GET /v1/users/{each of $USERS users, shuffled}/recommendations?k=10"
echo "in-process: serve-bench --throughput-only --seconds $INPROC_SECONDS (db.recommend on $(nproc) cores, first 20,000 users)"
curl -sf "http://127.0.0.1:$PORT/v1/users/1/recommendations?k=10" >/dev/null   # loads the model before timing
# The first seconds after start are slower (caches, the map's pages, the allocator's arenas): they are measured and
# printed on their own, so the rounds below measure the steady state. WARMUP=0 skips them.
if [ "$WARMUP" -gt 0 ]; then
  echo "warm-up, the first $WARMUP s after start (not in the rounds):"
  wrk_run warmup scripts/wrk-recommendations.lua "$WRK_THREADS" "$CONNECTIONS" quiet "$WARMUP" | sed "s/^/  /"
fi
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  wrk_run "http-$round" scripts/wrk-recommendations.lua "$WRK_THREADS" "$CONNECTIONS"
  inproc=$($B --throughput-only --seconds "$INPROC_SECONDS")
  echo "  $inproc"
  ratios "http-$round" "$inproc"
done

echo "with a concurrent writer: wrk -t1 -c1 POST /v1/events, batches of $BATCH random events, back to back"
# The writer runs through the HTTP reads and the in-process run after them (a few seconds to spare for start-up).
wrk_run writer "$TMP/write.lua" 1 1 quiet $((DURATION + INPROC_SECONDS + 5)) > "$TMP/writer.report" & WRITER=$!
wrk_run "http-with-writer" scripts/wrk-recommendations.lua "$WRK_THREADS" "$CONNECTIONS"
inproc=$($B --throughput-only --seconds "$INPROC_SECONDS" --work "$HTTPWORK")
echo "  $inproc (the server's database, the writer still posting)"
ratios http-with-writer "$inproc"
wait $WRITER
cat "$TMP/writer.report"
EVENTS_AFTER=$(stat_of interactions)
awk '/requests in/ {n=$1} /Non-2xx/ {bad=$NF} END {print n - bad}' "$TMP/writer.out" > "$TMP/ok"
OK=$(cat "$TMP/ok")
# wrk stops mid-request at the deadline: a batch can commit without its answer being counted.
if [ $((EVENTS_AFTER - EVENTS_BEFORE)) -ge $((OK * BATCH)) ] && [ $((EVENTS_AFTER - EVENTS_BEFORE)) -le $(((OK + 1) * BATCH)) ]; then
  echo "writer: $OK batches answered 200, $((EVENTS_AFTER - EVENTS_BEFORE)) events committed (all there)"
else
  echo "writer: $OK batches answered 200 but $((EVENTS_AFTER - EVENTS_BEFORE)) events committed: MISMATCH"; exit 1
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
