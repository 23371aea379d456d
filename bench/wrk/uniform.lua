-- uniform: immediate transfers of 1 between two random accounts a0..a9999.
request = function()
  local a, b = random_pair()
  return wrk.format("POST", "/v1/transactions/immediate", json_headers, string.format(
    '{"lines":[{"account":"a%d","currency":"USD","amount":"-1"},' ..
    '{"account":"a%d","currency":"USD","amount":"1"}]}', a, b))
end

function on_response(status, body)
  if status == 201 then completed = completed + 1 end
end
