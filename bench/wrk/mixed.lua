-- mixed: 80 % reads (an account, or its balances now), 20 % immediate transfers.
request = function()
  local r = math.random()
  local a = math.random(0, accounts - 1)
  if r < 0.4 then
    return wrk.format("GET", "/v1/accounts/a" .. a, json_headers)
  elseif r < 0.8 then
    return wrk.format("GET", "/v1/accounts/a" .. a .. "/balances", json_headers)
  end
  return transfer_request()
end

function on_response(status, body)
  if status < 300 then completed = completed + 1 end
end
