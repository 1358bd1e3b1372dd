-- wrk -s scripts/wrk-recommendations.lua URL -- USERS: GET /v1/users/{user}/recommendations?k=10 for every user
-- "1"…"USERS" once in a shuffled order (seed 7), then again. The requests are formatted once, in init:
-- formatting one per request in wrk's Lua cost ~1.2 us of the ~9 us of CPU wrk takes a request from the cores it
-- shares with the server (scripts/bench-http.sh, scripts/bench-http-ab.sh).
local requests, n, i = {}, 0, 0

init = function(args)
  n = tonumber(args[1]) or error("give the number of users: wrk ... -s wrk-recommendations.lua URL -- USERS")
  math.randomseed(7)
  for u = 1, n do requests[u] = u end
  for u = n, 2, -1 do local j = math.random(1, u); requests[u], requests[j] = requests[j], requests[u] end
  for u = 1, n do requests[u] = wrk.format("GET", "/v1/users/" .. requests[u] .. "/recommendations?k=10") end
end

request = function() i = i % n + 1; return requests[i] end
