#!/usr/bin/env bash
# A/B of two `rdbctl` builds serving the Beauty model: scripts/bench-http-ab.sh OLD_RDBCTL NEW_RDBCTL [PAIRS] [SECONDS]
# Both serve their own copy of the same database (bench-http's, built by serve-bench) at once; wrk (-t1 -c64, the
# load of scripts/bench-http.sh: scripts/wrk-recommendations.lua) runs against them in turn, old then new, PAIRS
# times (default 6) for SECONDS each (default 10), after a 5-s warm-up of each. Per run: req/s, the server's CPU a
# request (from /proc) and latency percentiles p10…p99.9. Alternating short runs lets drift on a shared machine hit both builds alike.
# Needs ../shared (Beauty) and the release binaries (serve-bench builds the database on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$(realpath "$1"); NEW=$(realpath "$2"); PAIRS=${3:-6}; SECONDS_EACH=${4:-10}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
export OMP_WAIT_POLICY=passive
.build/release/serve-bench --throughput-only --seconds 1 >/dev/null   # builds the Beauty database and model once
SOURCE=.cache/bench-serve/beauty.recdb
WORK=$(mktemp -d); PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT
USERS=$(( $(.build/release/rdbctl stats "$SOURCE" --json | grep -o '"users":[0-9]*' | cut -d: -f2) - 1 ))
cat > "$WORK/read.lua" <<LUAEOF
dofile("$PWD/scripts/wrk-recommendations.lua")
done = function(summary, latency, requests)
  local out = {}
  for _, p in ipairs({10, 50, 90, 95, 99, 99.9}) do out[#out + 1] = string.format("p%s %.2f", p, latency:percentile(p) / 1000) end
  io.write(table.concat(out, " ") .. " ms\n")
end
LUAEOF
PORTS=(18181 18182)
for i in 0 1; do
  mkdir -p "$WORK/$i"; cp -r "$SOURCE" "$WORK/$i/"
  binary=$OLD; [ "$i" -eq 1 ] && binary=$NEW
  "$binary" serve "$WORK/$i/beauty.recdb" --port "${PORTS[$i]}" > "$WORK/$i.log" 2>&1 & PIDS+=($!)
done
for i in 0 1; do
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:${PORTS[$i]}/healthz" >/dev/null && break; sleep 0.1; done
  wrk -t1 -c64 -d5s -s "$WORK/read.lua" "http://127.0.0.1:${PORTS[$i]}" -- "$USERS" > /dev/null
done
echo "old $OLD, new $NEW; wrk -t1 -c64, $PAIRS alternated pairs of ${SECONDS_EACH}s; load $(cut -d' ' -f1-3 /proc/loadavg)"
for pair in $(seq "$PAIRS"); do
  for i in 0 1; do
    name=old; [ "$i" -eq 1 ] && name=new
    t0=$(awk '{print $14 + $15}' "/proc/${PIDS[$i]}/stat")
    out=$(wrk -t1 -c64 -d"${SECONDS_EACH}s" -s "$WORK/read.lua" "http://127.0.0.1:${PORTS[$i]}" -- "$USERS")
    t1=$(awk '{print $14 + $15}' "/proc/${PIDS[$i]}/stat")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$name $pair: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s, server $(( (t1 - t0) * 10000 / n )) us a request; $(echo "$out" | tail -1)"
  done
done
