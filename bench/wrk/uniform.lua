-- Immediate transfers of 1 between two random accounts of ACCOUNTS (rule `any`).
local accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
local auth = "Basic " .. (os.getenv("AUTH") or "YWJjOjEyMw==")
local counter = 0
thread_id = 0

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  math.randomseed(os.time() + thread_id * 7919)
end

request = function()
  local a = math.random(0, accounts - 1)
  local b = math.random(0, accounts - 2)
  if b >= a then b = b + 1 end
  local body = string.format(
    '{"lines":[{"account":"u%d","currency":"USD","amount":"-1"},{"account":"u%d","currency":"USD","amount":"1"}]}',
    a, b)
  return wrk.format("POST", "/v1/transactions/immediate",
    {["Content-Type"] = "application/json", ["Authorization"] = auth}, body)
end
