-- Creates accounts u0..u(ACCOUNTS-1) with rule `any`; each thread takes every n-th id.
local accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
local auth = "Basic " .. (os.getenv("AUTH") or "YWJjOjEyMw==")
local threads = tonumber(os.getenv("THREADS") or "2")
thread_id = 0
next_id = 0

function setup(thread)
  thread:set("next_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  local id = next_id % accounts
  next_id = next_id + threads
  return wrk.format("POST", "/v1/accounts",
    {["Content-Type"] = "application/json", ["Authorization"] = auth},
    string.format('{"id":"u%d","balance_rule":"any"}', id))
end
