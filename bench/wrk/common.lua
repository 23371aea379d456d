-- Shared by every scenario: thread ids, 5xx and completed-transfer counters, and a
-- RESULT line with the figures the harness reads. Each scenario defines request()
-- and on_response(status, body), which adds to `completed`.
auth = "Basic " .. (os.getenv("AUTH") or "YWJjOjEyMw==")
json_headers = {["Content-Type"] = "application/json", ["Authorization"] = auth}
accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
threads = {}
thread_id = 0
server_errors = 0
refused = 0  -- 503s and 429s a scenario counts apart from server errors
completed = 0

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id * 7919)
  counter = 0
end

function next_id(prefix)
  counter = counter + 1
  return string.format("%s-%d-%d-%d", prefix, os.time(), thread_id, counter)
end

function random_pair()
  local a = math.random(0, accounts - 1)
  local b = math.random(0, accounts - 2)
  if b >= a then b = b + 1 end
  return a, b
end

-- An immediate transfer of 1 between two random accounts a0..a9999.
function transfer_request()
  local a, b = random_pair()
  return wrk.format("POST", "/v1/transactions/immediate", json_headers, string.format(
    '{"lines":[{"account":"a%d","currency":"USD","amount":"-1"},' ..
    '{"account":"a%d","currency":"USD","amount":"1"}]}', a, b))
end

function response(status, headers, body)
  if status >= 500 then server_errors = server_errors + 1 end
  on_response(status, body)
end

function done(summary, latency, requests)
  local errors, transfers, refusals = 0, 0, 0
  for _, t in ipairs(threads) do
    errors = errors + t:get("server_errors")
    transfers = transfers + t:get("completed")
    refusals = refusals + t:get("refused")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"server_errors": %d, "refused": %d, "completed": %d, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors, refusals, transfers, e.status, e.connect + e.read + e.write + e.timeout))
end
