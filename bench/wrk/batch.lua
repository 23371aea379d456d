-- batch: 1,000 immediate transfers between random pairs per request.
local size = tonumber(os.getenv("BATCH") or "1000")

request = function()
  local items = {}
  for i = 1, size do
    local a, b = random_pair()
    items[i] = string.format(
      '{"lines":[{"account":"a%d","currency":"USD","amount":"-1"},' ..
      '{"account":"a%d","currency":"USD","amount":"1"}]}', a, b)
  end
  return wrk.format("POST", "/v1/transactions/batch", json_headers,
    '{"mode":"immediate","transactions":[' .. table.concat(items, ",") .. ']}')
end

function on_response(status, body)
  if status == 200 then
    local _, n = string.gsub(body, '"COMPLETED"', "")
    completed = completed + n
  end
end
