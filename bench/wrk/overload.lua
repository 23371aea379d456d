-- overload: `uniform`'s transfers from four times its clients, each client honouring
-- Retry-After as the contract asks: a 503 or 429 puts that client to sleep for the
-- seconds given before its next request.
-- NOTE: wrk calls delay() once per response, but not always for the connection that
-- just answered; a queue of waits keeps the total each thread sleeps right.
waits = {}

request = transfer_request

response = function(status, headers, body)
  local wait = 0
  if status == 503 or status == 429 then
    refused = refused + 1
    wait = 1000 * tonumber(headers["Retry-After"] or headers["retry-after"] or "1")
  elseif status >= 500 then
    server_errors = server_errors + 1
  end
  table.insert(waits, wait)
  if status == 201 then completed = completed + 1 end
end

function delay()
  return table.remove(waits, 1) or 0
end
