-- mixed: 80 % reads (an account, or its balances now), 20 % immediate transfers.
request = function()
  local r = math.random()
  local a, b = random_pair()
  if r < 0.4 then
    return wrk.format("GET", "/v1/accounts/a" .. a, json_headers)
  elseif r < 0.8 then
    return wrk.format("GET", "/v1/accounts/a" .. a .. "/balances", json_headers)
  end
  return wrk.format("POST", "/v1/transactions/immediate", json_headers, string.format(
    '{"lines":[{"account":"a%d","currency":"USD","amount":"-1"},' ..
    '{"account":"a%d","currency":"USD","amount":"1"}]}', a, b))
end

function on_response(status, body)
  if status < 300 then completed = completed + 1 end
end
