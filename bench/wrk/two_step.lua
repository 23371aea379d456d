-- two_step: create PENDING, then execute it with a separate request.
held = {}

request = function()
  if #held > 0 then
    local id = table.remove(held)
    return wrk.format("PUT", "/v1/transactions/" .. id, json_headers, "")
  end
  local a, b = random_pair()
  return wrk.format("POST", "/v1/transactions", json_headers, string.format(
    '{"id":"%s","lines":[{"account":"a%d","currency":"USD","amount":"-1"},' ..
    '{"account":"a%d","currency":"USD","amount":"1"}]}', next_id("ts"), a, b))
end

function on_response(status, body)
  if status == 201 then
    local id = string.match(body, '"id":"([^"]+)"')
    if id then table.insert(held, id) end
  elseif status == 200 then
    completed = completed + 1
  end
end
