-- Writes: a POST with a small JSON order body, the same request every time (pass-through).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = "POST"
wrk.body = '{"sku":"A-1","quantity":2,"customer":"bench"}'
wrk.headers["Content-Type"] = "application/json"
